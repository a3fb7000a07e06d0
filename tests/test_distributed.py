"""EpochTimer under DDP: two CPU processes (gloo) on this machine, launched by Lightning as users do."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import fit_args, read_scalars

TESTS = Path(__file__).resolve().parent


def run_ddp(tmp_path: Path, *extra: str) -> None:
    """A 2-process DDP fit through the CLI, as a user starts it; fails the test on error or hang."""
    args = [
        sys.executable, "-m", "cifarbench", "fit",
        *fit_args(tmp_path, "--data.synthetic", "128", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                  *extra),
    ]  # fmt: skip
    # Its own session, so a hang (a collective that only one rank reaches) is killed with every rank.
    # The tests folder on the path, for the callbacks that configs name (helpers.RecordSamplerIndices).
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(args, cwd=tmp_path, start_new_session=True, text=True, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("a 2-process DDP fit did not finish in 240 s (a collective reached by one rank only?)")
    assert process.returncode == 0, output[-3000:]


@pytest.mark.slow
def test_ddp_reduces_timings_over_ranks_and_writes_once(tmp_path):
    run_ddp(tmp_path)
    runs = list((tmp_path / "lightning_logs").iterdir())
    assert [run.name for run in runs] == ["version_0"]  # one TensorBoard run, not one per rank
    with open(runs[0] / "timings.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    for row in rows:
        assert int(row["world_size"]) == 2
        assert int(row["samples"]) == 2 * 2 * 16  # summed over ranks: 2 steps of 16 on each
        for name in ("data_loading", "training", "epoch"):
            assert float(row[f"{name}_s"]) >= float(row[f"{name}_mean_s"])  # the slowest rank vs the mean
    scalars = read_scalars(runs[0])
    assert len(scalars["time/training"]) == 2 and len(scalars["time/training_mean"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["torchvision", "tensor", "gpu"])
def test_ddp_ranks_share_each_epoch_and_cover_the_dataset_once(tmp_path, pipeline):
    config = tmp_path / "record.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: helpers.RecordSamplerIndices\n"
        f"      init_args:\n        out_dir: {tmp_path}\n"
    )
    run_ddp(tmp_path, "--config", str(config), "--data.pipeline", pipeline, "--trainer.limit_train_batches=1")
    orders = []
    for epoch in (0, 1):
        files = (tmp_path / f"indices-rank{rank}-epoch{epoch}.json" for rank in (0, 1))
        rank0, rank1 = (json.loads(file.read_text()) for file in files)
        assert len(rank0) == len(rank1) == 64  # 128 synthetic images, half to each rank
        assert sorted(rank0 + rank1) == list(range(128))  # disjoint, and together the whole dataset
        orders.append(rank0)
    assert orders[0] != orders[1]  # reshuffled every epoch

"""EpochTimer under DDP: two CPU processes (gloo) on this machine, launched by Lightning as users do."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys

import pytest

from helpers import read_scalars


@pytest.mark.slow
def test_ddp_reduces_timings_over_ranks_and_writes_once(tmp_path):
    args = [
        sys.executable, "-m", "cifarbench", "fit",
        "--data.synthetic", "128",
        "--data.batch_size", "16",
        "--data.num_workers", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.strategy", "ddp",
        "--trainer.devices", "2",
        "--trainer.max_epochs", "2",
        "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ]  # fmt: skip
    # Its own session, so a hang (a collective that only one rank reaches) is killed with every rank.
    process = subprocess.Popen(args, cwd=tmp_path, start_new_session=True, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("a 2-process DDP fit did not finish in 240 s (a collective reached by one rank only?)")
    assert process.returncode == 0, output[-3000:]

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

"""Every rank's figures in real 2-process DDP fits (gloo, CPU): the straggler verdict against known delays,
two "nodes" started the way a cluster starts them, and a rank that dies mid-epoch."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import assert_within, fit_args, read_scalars

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS / "ranks_fit.py"
# What a launcher or a scheduler sets; the tests set their own, and the environment they run in must not leak.
_LAUNCHER_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def environment(**extra: str) -> dict[str, str]:
    """This environment without a launcher's or scheduler's variables, the tests folder on the path, and
    ``extra``."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in _LAUNCHER_VARIABLES and not key.startswith(("SLURM_", "TORCHELASTIC_", "PMI_", "OMPI_"))
    }
    clean["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    return clean | extra


def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    # Its own session, so that a hang (a collective that only one rank reaches) is killed with every rank.
    return subprocess.Popen(args, cwd=cwd, env=env, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def finish(processes: list[subprocess.Popen], timeout: float) -> list[tuple[int, str, float]]:
    """Each process's exit status, output and when it was seen to end (seconds from now), in the order given;
    kills them all and fails the test past ``timeout`` seconds."""
    began, results = time.monotonic(), []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=max(1.0, began + timeout - time.monotonic()))
            results.append((process.returncode, output, time.monotonic() - began))
    except subprocess.TimeoutExpired:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"a DDP fit did not finish in {timeout:.0f} s (a collective reached by one rank only?)")
    return results


def straggler_fit(tmp_path: Path, *options: str) -> tuple[dict, list[dict], str, Path]:
    """``ranks_fit.py`` with ``options``: its fit_budget.json, each rank's truth, rank 0's output, its run."""
    ((status, output, _),) = finish([start([sys.executable, str(SCRIPT), str(tmp_path), *options], tmp_path,
                                           environment())], timeout=180)  # fmt: skip
    assert status == 0, output[-3000:]
    run = tmp_path / "lightning_logs" / "version_0"
    truth = [json.loads((tmp_path / f"slept-rank{rank}.json").read_text()) for rank in (0, 1)]
    return json.loads((run / "fit_budget.json").read_text()), truth, output, run


def kinds(budget: dict) -> dict[str, str]:
    return {finding["kind"]: finding["text"] for finding in budget["verdict"]}


def excess_in(text: str) -> float:
    """The straggler's own seconds beyond the median rank's, as its finding says them ("(+1.23 s, ...")."""
    return float(re.search(r"\(\+([\d.]+) s, ", text)[1])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_a_rank_slow_in_data_loading_is_the_straggler_and_rank_0_pays_in_its_backward(tmp_path):
    budget, truth, output, run = straggler_fit(tmp_path, "--data-sleep", "0", "0.03")
    found = kinds(budget)
    assert "compute_bound" not in found  # rank 0's backward is the wait, not compute
    assert (
        "straggler: rank 1 (host " in found["straggler"] and "is slow in data loading" in found["straggler"]
    )
    injected = truth[1]["data"]  # what rank 1's dataset really slept, over the fit
    assert_within(excess_in(found["straggler"]), injected, 0.15)
    rank0, rank1 = budget["ranks"]
    paid = rank0["backward"] - rank1["backward"]  # the wait rank 0 paid inside its backward
    print(
        f"injected {injected:.3f} s; excess {excess_in(found['straggler']):.3f} s; rank 0 paid {paid:.3f} s"
    )
    assert_within(paid, injected, 0.15)
    assert rank0["backward_wait"] == pytest.approx(paid) and rank1["backward_wait"] == 0.0
    assert [rank["gathers"] for rank in truth] == [2, 2]  # one collective per epoch, on every rank
    rows = read_rows(run / "timings_ranks.csv")
    assert [(row["epoch"], row["rank"]) for row in rows] == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    spreads = [float(row["rank_spread"]) for row in read_rows(run / "timings.csv")]
    assert all(spread > 2 for spread in spreads)  # rank 1's own time is several times rank 0's
    assert [value for _, value in read_scalars(run)["time/rank_spread"]] == pytest.approx(spreads)
    assert "Each rank's epochs (2 ranks)" in output and "1 (slowest)" in output


@pytest.mark.slow
def test_a_rank_slow_in_its_training_step_is_the_straggler_in_compute(tmp_path):
    budget, truth, _, _ = straggler_fit(tmp_path, "--step-sleep", "0", "0.1")
    found = kinds(budget)
    assert (
        "straggler: rank 1 (host " in found["straggler"] and "slow in its own compute" in found["straggler"]
    )
    excess, injected = excess_in(found["straggler"]), truth[1]["step_after_first"]
    rank0, rank1 = budget["ranks"]
    paid = rank0["backward"] - rank1["backward"]
    print(f"injected {truth[1]['step']:.3f} s ({injected:.3f} s after the first step); "
          f"excess {excess:.3f} s; rank 0 paid {paid:.3f} s")  # fmt: skip
    assert_within(excess, injected, 0.15)
    assert_within(paid, truth[1]["step"], 0.15)


@pytest.mark.slow
def test_the_same_delay_on_every_rank_is_no_straggler(tmp_path):
    budget, _, output, run = straggler_fit(tmp_path, "--data-sleep", "0.03", "0.03")
    found = kinds(budget)
    print(output[output.index("Each rank's epochs") :])
    assert "straggler" not in found and "input_bound" in found  # the ordinary verdict: both wait for data
    assert all(float(row["rank_spread"]) < 1.2 for row in read_rows(run / "timings.csv"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_nodes(tmp_path: Path, *options: str, config: Path | None = None) -> list[subprocess.Popen]:
    """Two "nodes" of one process each, started as a cluster starts them: each told its node rank, the world
    size and where rank 0 listens (LightningEnvironment reads them, and Lightning launches nothing itself);
    each with a root folder of its own, ``tmp_path/node<N>``."""
    port, processes = free_port(), []
    for node in (0, 1):
        root = tmp_path / f"node{node}"
        root.mkdir()
        nodes = ("--trainer.strategy", "ddp", "--trainer.num_nodes", "2", "--trainer.devices", "1",
                 "--data.synthetic", "32", "--data.batch_size", "8")  # fmt: skip
        args = [sys.executable, "-m", "cifarbench", "fit", *fit_args(root, *nodes, *options, config=config)]
        cluster = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(node),
                   "WORLD_SIZE": "2", "LOCAL_RANK": "0"}  # fmt: skip
        processes.append(start(args, root, environment(**cluster)))
    return processes


@pytest.mark.slow
def test_two_nodes_of_one_process_each_train_and_only_rank_0_writes(tmp_path):
    for status, output, _ in finish(start_nodes(tmp_path), timeout=240):
        assert status == 0, output[-3000:]
    run = tmp_path / "node0" / "lightning_logs" / "version_0"
    rows = read_rows(run / "timings_ranks.csv")
    assert [(row["epoch"], row["rank"]) for row in rows] == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    assert all(row["host"] for row in rows) and all(int(row["samples"]) == 2 * 8 for row in rows)
    assert [int(row["world_size"]) for row in read_rows(run / "timings.csv")] == [2, 2]
    ranks = json.loads((run / "fit_budget.json").read_text())["ranks"]
    assert [rank["rank"] for rank in ranks] == [0, 1]
    assert [path for path in (tmp_path / "node1").rglob("*") if path.is_file()] == []  # rank 1 wrote nothing


@pytest.mark.slow
def test_a_rank_that_dies_mid_epoch_stops_the_other_with_a_clear_error_and_keeps_finished_epochs(tmp_path):
    """Node 1's process ends at once in epoch 1 (no clean-up, as a crash or a lost node); rank 0 finds out in
    its next collective. (Within one node, Lightning's own launcher may kill every process first: README,
    "Scaling out".)"""
    config = tmp_path / "die.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: helpers.ExitOnRank\n"
        "      init_args:\n        rank: 1\n        epoch: 1\n        batch: 1\n"
    )
    processes = start_nodes(tmp_path, config=config)
    (died, _, died_at), (status, output, ended_at) = finish(processes[::-1], timeout=180)
    print(f"rank 0 exited {ended_at - died_at:.1f} s after rank 1 died, status {status}")
    assert died == 3 and status == 1, output[-3000:]
    assert ended_at - died_at < 30  # at once (gloo sees the closed connection), not after a timeout
    assert "cifarbench: error: this rank lost another rank of the distributed run" in output
    run = tmp_path / "node0" / "lightning_logs" / "version_0"
    assert [row["epoch"] for row in read_rows(run / "timings.csv")] == ["0"]
    ranks = [(row["epoch"], row["rank"]) for row in read_rows(run / "timings_ranks.csv")]
    assert ranks == [("0", "0"), ("0", "1")]
    assert json.loads((run / "fit_budget.json").read_text())["status"] == "interrupted"

"""The GPU check's pieces, on a CPU: its one line without CUDA, its judgement of the targets, its results
file, what it keeps of the lab, and the epoch benchmark and untimed fit it relies on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifarbench.benchmarking import training_only_fit, wall_clock
from cifarbench.callbacks import EpochTimer

REPO = Path(__file__).resolve().parents[1]


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, REPO / "benchmarks" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[script] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


gpu_check = load("gpu_check")

ALL_MET = {
    "fast_epoch_s": 0.8,
    "fast_speedup_over_lab": 7.0,
    "gpu_pipeline_data_share": 0.004,
    "epoch_timer_overhead": 0.002,
    "fast_minus_lab_train_acc_points": -1.5,
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.strip().splitlines() == [
        "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to check."
    ]


def passed_tests() -> object:
    return gpu_check.Step("CUDA tests", ["pytest"], returncode=0, output="2 passed in 3.1s")


def test_every_target_is_judged_against_its_bound():
    verdicts = gpu_check.judge(ALL_MET, passed_tests())
    assert len(verdicts) == 1 + len(gpu_check.TARGETS) and all(met == "met" for *_, met in verdicts)
    missed = gpu_check.judge(
        ALL_MET | {"fast_epoch_s": 1.3, "fast_minus_lab_train_acc_points": 2.5}, passed_tests()
    )
    assert [measured for _, measured, met in missed if met == "missed"] == [
        "fast_epoch_s = 1.3",
        "fast_minus_lab_train_acc_points = 2.5",
    ]
    failed = gpu_check.Step("CUDA tests", ["pytest"], returncode=1, output="1 failed, 1 passed")
    no_figures = gpu_check.judge({}, failed)
    assert [met for *_, met in no_figures] == ["missed"] * len(no_figures)
    assert sum(measured == "not measured" for _, measured, _ in no_figures) == len(gpu_check.TARGETS)


def test_the_results_file_has_the_machine_every_command_its_output_and_the_targets(tmp_path):
    steps = [
        passed_tests(),
        gpu_check.Step("Epochs", ["python", "benchmarks/epoch.py"], 12.5, 0, "fast 0.81"),
    ]
    path = gpu_check.write_results(
        tmp_path / "h100.md", "NVIDIA H100", steps, gpu_check.judge(ALL_MET, steps[0]), 300.0
    )
    text = path.read_text()
    assert text.startswith("# GPU check: NVIDIA H100") and "Machine: NVIDIA H100; " in text
    assert "`python benchmarks/epoch.py` (exit 0, 12.5 s)" in text and "fast 0.81" in text
    assert (
        "| the fast config is at least 5x the lab config on the same GPU | fast_speedup_over_lab = 7 | met |"
        in text
    )
    assert "(5.0 min)" in text


def test_the_lab_report_is_kept_without_its_runs(tmp_path):
    out, keep = tmp_path / "lab", tmp_path / "kept"
    (out / "c3" / "runs" / "workers_0").mkdir(parents=True)
    (out / "report.md").write_text("# report")
    for name in ("c3.md", "c3.csv", "c3_data_loading_vs_workers.png"):
        (out / "c3" / name).write_text(name)
    (out / "c3" / "runs" / "workers_0" / "events.out.tfevents.1").write_text("events")
    gpu_check.keep_lab_report(out, keep)
    kept = sorted(str(path.relative_to(keep)) for path in keep.rglob("*") if path.is_file())
    assert kept == ["c3/c3.csv", "c3/c3.md", "c3/c3_data_loading_vs_workers.png", "report.md"]


@pytest.mark.slow
def test_the_epoch_benchmark_writes_its_rows_and_figures(tmp_path):
    out = tmp_path / "epoch.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/epoch.py", "--accelerator", "cpu", "--images", "64", "--epochs", "2",
         "--only", "lab", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(out.read_text())
    (row,) = document["rows"]
    assert row["name"] == "lab" and row["epoch_s"] > row["data_loading_s"] >= 0
    assert row["wall_s"] == pytest.approx(row["epoch_s"], rel=0.25)  # two clocks on one epoch
    assert document["figures"] == {}  # a CPU has no known peak, and the other figures need the other configs


@pytest.mark.slow
def test_an_untimed_fit_runs_the_same_path_without_epoch_timer(tmp_path):
    options = ["--data.batch_size", "16", "--data.num_workers", "0", "--trainer.limit_train_batches", "2"]
    untimed = training_only_fit(options, 64, 2, tmp_path / "untimed", accelerator="cpu", timed=False)
    timed = training_only_fit(options, 64, 2, tmp_path / "timed", accelerator="cpu")
    assert not any(isinstance(callback, EpochTimer) for callback in untimed.callbacks)
    assert len(wall_clock(untimed).seconds) == 2 and len(wall_clock(timed).seconds) == 2
    (timer,) = [callback for callback in timed.callbacks if isinstance(callback, EpochTimer)]
    assert wall_clock(timed).seconds[-1] == pytest.approx(timer.history[-1].epoch_s, rel=0.1)

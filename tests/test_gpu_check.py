"""The GPU check's pieces, on a CPU: its one line without CUDA, the order and estimates of its steps, its
watchdog, its results written after every step (estimate against measurement, the targets), what it keeps of
the lab, and the benchmarks and untimed fit it relies on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
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

epoch = load("epoch")
accuracy = load("accuracy")

ALL_MET = {
    "events_vs_sync_training": 0.01,
    "events_vs_sync_epoch": -0.02,
    "fast_epoch_s": 0.75,
    "fast_speedup_over_lab": 7.0,
    "fast_cudagraph_skips": 0,
    "gpu_pipeline_data_share": 0.004,
    "epoch_timer_overhead": 0.002,
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("which", [[], ["--accuracy"], ["--lab"]])
def test_without_cuda_it_says_so_in_one_line_and_exits_0(which, tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", *which, "--results-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.strip().splitlines() == [
        "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to check."
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_most_decisive_steps_come_first_and_every_plan_fits_its_budget(tmp_path):
    check = gpu_check.check_plan(tmp_path)
    titles = [step.title for step in check.steps]
    assert titles[0].startswith("1. Smoke") and "CUDA events against synchronize" in titles[0]
    assert titles[1] == "2. The lab config against the fast config"
    assert titles[2].startswith("3. EpochTimer's cost on the fast config's epoch")
    assert titles[3] == "4. The gpu pipeline's data share"
    assert check.steps[0].estimate_s <= 30  # the smoke test answers within half a minute
    # the fast config is fitted before the lab config: its s/epoch is kept even if the lab's fit is cut short
    lab_vs_fast = check.steps[1].command
    assert lab_vs_fast[lab_vs_fast.index("--only") + 1] == "fast"
    for plan in (check, gpu_check.accuracy_plan(tmp_path), gpu_check.lab_plan(tmp_path)):
        assert sum(step.estimate_s for step in plan.steps) <= plan.budget_s, plan.name
        assert all(step.estimate_s < step.limit_s <= plan.budget_s for step in plan.steps), plan.name
        assert all(step.basis for step in plan.steps)
    assert check.budget_s + gpu_check.WATCHDOG_MARGIN_S == 330  # 5 minutes, stopped at 5.5
    assert gpu_check.lab_plan(tmp_path).budget_s == 480  # gpu-lab: 8 minutes
    # every target of the check is a figure that one of its steps provides
    provided = {key for step in check.steps for key in step.provides}
    assert {key for key, *_ in gpu_check.TARGETS} <= provided


def test_every_target_is_judged_against_its_bound():
    verdicts = gpu_check.judge(gpu_check.TARGETS, ALL_MET)
    assert len(verdicts) == len(gpu_check.TARGETS) and all(met == "met" for *_, met in verdicts)
    missed = gpu_check.judge(
        gpu_check.TARGETS,
        ALL_MET | {"fast_epoch_s": 1.3, "fast_cudagraph_skips": 2, "events_vs_sync_epoch": -0.06},
    )
    assert [measured for _, measured, met in missed if met == "missed"] == [
        "events_vs_sync_epoch = -0.06",
        "fast_epoch_s = 1.3",
        "fast_cudagraph_skips = 2",
    ]
    no_figures = gpu_check.judge(gpu_check.TARGETS, {})
    assert [measured for _, measured, _ in no_figures] == ["not measured"] * len(gpu_check.TARGETS)
    (parity,) = gpu_check.judge(gpu_check.ACCURACY_TARGETS, {"fast_minus_lab_train_acc_points": -1.5})
    assert parity[2] == "met"


def figures_step(title: str, folder, figures: dict, provides: tuple[str, ...] | None = None):
    """A step that writes its figures as a benchmark does, and ends."""
    path = folder / f"{title}.json"
    document = {"figures": figures}
    code = f"import json, pathlib; pathlib.Path({str(path)!r}).write_text(json.dumps({document!r}))"
    return gpu_check.Step(title, [sys.executable, "-c", code], 20, 1.0, "a test", path.name,
                          tuple(figures) if provides is None else provides)  # fmt: skip


def sleeping_step(title: str, seconds: float):
    return gpu_check.Step(
        title, [sys.executable, "-c", f"import time; time.sleep({seconds})"], 60, 2.0, "a test"
    )


def test_results_are_written_after_every_step_and_the_watchdog_stops_the_check(tmp_path):
    results = tmp_path / "nvidia-h200"
    check = gpu_check.Check(
        "check",
        300,
        [
            figures_step(
                "smoke",
                results,
                {"events_vs_sync_training": 0.01, "unrelated": 5.0},
                provides=("events_vs_sync_training",),
            ),  # fmt: skip
            sleeping_step("slow", 60),
            figures_step("never", results, {"fast_epoch_s": 0.7}),
        ],
        gpu_check.TARGETS,
    )
    seen_after: dict[str, dict] = {}

    def after_step(step) -> None:
        if results.with_suffix(".json").is_file():
            seen_after[step.title] = json.loads(results.with_suffix(".json").read_text())

    start = time.monotonic()
    passed = gpu_check.run_check(
        check, results, "NVIDIA H200; driver 580", watchdog_s=3, after_step=after_step
    )
    assert time.monotonic() - start < 15 and passed is False
    # after the first step, before the second ran, its figure was already on disk ...
    assert seen_after["smoke"]["figures"] == {}  # (written when the step before it ended: none)
    document = json.loads(results.with_suffix(".json").read_text())
    assert document["figures"] == {"events_vs_sync_training": 0.01}  # only what the step provides
    assert document["stopped_by_watchdog"] is True
    statuses = [step["status"] for step in document["steps"]]
    assert statuses[0] == "passed" and statuses[1].startswith("stopped by the watchdog")
    assert statuses[2] == "not run: the watchdog's time was spent"
    text = results.with_suffix(".md").read_text()
    assert text.startswith("# GPU check: NVIDIA H200") and "Machine: NVIDIA H200; driver 580" in text
    assert "stopped by the watchdog)" in text
    assert (
        "| CUDA-event and synchronize-based training totals within 5% "
        "| events_vs_sync_training = 0.01 | met |" in text
    )
    assert "| the fast config's 50,000-image epoch takes at most 0.8 s | not measured | missed |" in text


def test_after_each_step_the_results_hold_its_figures(tmp_path):
    results = tmp_path / "gpu"
    check = gpu_check.Check(
        "check",
        300,
        [figures_step("first", results, {"fast_epoch_s": 0.7}), figures_step("second", results, {"x": 1.0})],
        gpu_check.TARGETS,
    )
    figures_after = {}
    check_results = results.with_suffix(".json")

    def after_step(step) -> None:
        # run_check writes after this hook returns: read what the step itself left
        figures_after[step.title] = gpu_check.collect_figures(check, results)

    assert gpu_check.run_check(check, results, "GPU", watchdog_s=30, after_step=after_step)
    assert figures_after["first"] == {"fast_epoch_s": 0.7}
    assert json.loads(check_results.read_text())["figures"] == {"fast_epoch_s": 0.7, "x": 1.0}


def test_the_results_compare_each_steps_estimate_with_its_measured_time(tmp_path):
    steps = [
        gpu_check.Step("1. Smoke", ["python", "benchmarks/smoke.py"], 45, 20.0, "start 10 s + 2 fits",
                       seconds=24.5, returncode=0, status="passed", output="events_vs_sync_training: +1.00%"),
        gpu_check.Step("2. Lab vs fast", ["python", "benchmarks/epoch.py"], 150, 96.0, "compile 60 s"),
    ]  # fmt: skip
    check = gpu_check.Check("check", 300, steps, gpu_check.TARGETS)
    path = gpu_check.write_results(tmp_path / "h200", check, "NVIDIA H200; driver 580", ALL_MET, 300.0)
    text = path.read_text()
    assert "| step | estimate s | measured s | limit s | status | estimate made of |" in text
    assert "| 1. Smoke | 20 | 24.5 | 45 | passed | start 10 s + 2 fits |" in text
    assert "| 2. Lab vs fast | 96 | - | 150 | not run | compile 60 s |" in text
    assert "| all | 116 | 24.5 | 300 | | |" in text
    assert (
        "`python benchmarks/smoke.py` (passed, 24.5 s)" in text and "events_vs_sync_training: +1.00%" in text
    )
    assert "(5.0 min)" in text
    assert (
        "| the fast config is at least 6x the lab config on the same GPU | fast_speedup_over_lab = 7 | met |"
        in text
    )
    document = json.loads((tmp_path / "h200.json").read_text())
    assert document["steps"][0]["estimate_s"] == 20.0 and document["steps"][0]["seconds"] == 24.5


def test_the_watchdog_ends_a_check_stuck_outside_its_steps():
    code = (
        "import sys, time; sys.path.insert(0, 'benchmarks'); import gpu_check; "
        "gpu_check.Watchdog(0.5, on_hang=lambda: print('results written', flush=True), grace_s=0.5).start(); "
        "time.sleep(30)"
    )
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=25
    )
    assert result.returncode == 124 and time.monotonic() - start < 20
    assert "watchdog: 0 s are up" in result.stdout or "watchdog: 1 s are up" in result.stdout
    assert "results written" in result.stdout


def test_the_results_go_under_out_when_it_is_set(monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpu_check.default_results_dir() == tmp_path / "gpu-check"
    monkeypatch.delenv("OUT")
    assert gpu_check.default_results_dir() == REPO / "benchmarks" / "results"


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
    (out / "report.md").unlink()  # a lab stopped before its report: the parts it finished are kept
    gpu_check.keep_lab_report(out, keep)
    assert sorted(path.name for path in keep.rglob("*.md")) == ["c3.md"]


def test_the_epoch_benchmark_writes_its_json_after_every_config(tmp_path, monkeypatch):
    def fit_one(name, options, args, root):
        if name == "lab":
            raise RuntimeError("stopped half-way through the second config")
        return epoch.Row(name, 0.8, 0.8, 62_500.0, 0.004, 0.0, cudagraph_skips=0, graphs_per_epoch=[2, 0])

    monkeypatch.setattr(epoch, "fit_one", fit_one)
    monkeypatch.setattr(epoch, "training_flops_per_sample", lambda module: 3.33e9)
    out = tmp_path / "epoch.json"
    with pytest.raises(RuntimeError, match="half-way"):
        epoch.main(["--accelerator", "cpu", "--only", "fast", "--only", "lab", "--json", str(out)])
    document = json.loads(out.read_text())
    assert [row["name"] for row in document["rows"]] == ["fast"]
    assert document["figures"]["fast_epoch_s"] == 0.8 and document["figures"]["fast_cudagraph_skips"] == 0
    assert not (tmp_path / "epoch.json.partial").exists()


def test_epoch_timers_cost_is_the_median_steady_epoch_on_against_off():
    on = epoch.Row("fast", 0.804, 0.80, wall_spread=0.002)
    off = epoch.Row("fast, no EpochTimer", 0.800, wall_spread=0.003)
    figures = epoch.summary([off, on], 50_000, 3.33e9, None)
    assert figures["epoch_timer_overhead"] == pytest.approx(0.005)
    assert figures["epoch_timer_overhead_noise"] == 0.003
    assert epoch.relative_spread([1.0, 1.0, 1.0, 1.2, 0.8]) == pytest.approx(0.0)
    assert epoch.relative_spread([0.9, 1.0, 1.1]) == pytest.approx(0.05)


def test_the_accuracy_gap_is_each_configs_last_epoch_minus_the_labs():
    gaps = accuracy.gaps({"lab": [0.5, 0.8], "fast": [0.4, 0.79], "fast, no warm-up": [0.2, 0.3]})
    assert gaps == pytest.approx(
        {"fast_minus_lab_train_acc_points": -1.0, "fast_no_warm_up_minus_lab_train_acc_points": -50.0}
    )


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
    # a CPU has no known peak, and the other figures need the other configs
    assert set(document["figures"]) == {"lab_epoch_s", "lab_data_share"}
    assert row["steady_epochs"] == 1 and len(row["wall_per_epoch_s"]) == 2


@pytest.mark.slow
def test_an_untimed_fit_runs_the_same_path_without_epoch_timer(tmp_path):
    options = ["--data.batch_size", "16", "--data.num_workers", "0", "--trainer.limit_train_batches", "2"]
    untimed = training_only_fit(options, 64, 2, tmp_path / "untimed", accelerator="cpu", timed=False)
    timed = training_only_fit(options, 64, 2, tmp_path / "timed", accelerator="cpu")
    assert not any(isinstance(callback, EpochTimer) for callback in untimed.callbacks)
    assert len(wall_clock(untimed).seconds) == 2 and len(wall_clock(timed).seconds) == 2
    (timer,) = [callback for callback in timed.callbacks if isinstance(callback, EpochTimer)]
    assert wall_clock(timed).seconds[-1] == pytest.approx(timer.history[-1].epoch_s, rel=0.1)


@pytest.mark.slow
def test_the_smoke_step_compares_the_two_clocks_and_writes_its_figures(tmp_path):
    out = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/smoke.py", "--accelerator", "cpu", "--images", "64", "--batches", "2",
         "--epochs", "2", "--batch-size", "8", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(out.read_text())
    assert set(document["fits"]) == {"events", "sync"} and document["fits"]["events"]["clock"] == "host"
    assert set(document["figures"]) == {
        "events_vs_sync_training", "events_vs_sync_epoch", "events_vs_sync_data_loading_of_epoch"
    }  # fmt: skip
    assert document["machine"]["lightning"] and document["machine"]["peak_tflops_bf16"] is None  # a CPU


@pytest.mark.slow
def test_the_operator_window_step_writes_its_figures_on_a_cpu_too(tmp_path):
    """The GPU check's window step (benchmarks/ops_window.py), tried on the CPU: it records its steps and
    names the top operations; GPU busy and launches come only with CUDA kernels."""
    out = tmp_path / "ops.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/ops_window.py", "--images", "96", "--batch-size", "8", "--accelerator",
         "cpu", "--only", "lab", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["figures"]["lab_ops_recorded_steps"] == 3
    assert "convolution" in result["top"]["lab"]["backward"][0]
    assert "lab_gpu_busy" not in result["figures"]

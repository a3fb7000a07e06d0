"""OpWindow: a few steps profiled by operation, lined up with EpochTimer's phases, kept out of its totals."""

from __future__ import annotations

import csv
import gzip
import json
import warnings
from pathlib import Path

import pytest
import torch

from cifarbench.callbacks import EpochTimer, OpWindow
from cifarbench.callbacks.ops import OPS_CSV, OpRow, OpSummary, busy_share, device_figures
from cifarbench.callbacks.steps import STEP_END, STEP_START, Phase, StepAccount
from cifarbench.callbacks.verdict import GENERIC_ADVICE, Finding
from cifarbench.errors import ConfigError
from cifarbench.fitting import ADVICE, run_fit
from test_accounting import ManualClock, run_step

from helpers import SleepyModule, assert_within, fit_args, loader, quiet_trainer

STEPS, WAIT, WARMUP, ACTIVE = 10, 1, 2, 3
# The window's steps: warm-up, recorded, and the one after (its wait for data holds the profiler's shutdown).
WINDOW = range(WAIT, WAIT + WARMUP + ACTIVE + 1)
FORWARD, BACKWARD, OPTIMIZER = 0.05, 0.04, 0.01  # per step


def test_a_watched_step_and_the_one_whose_wait_it_overlaps_are_kept_apart():
    clock = ManualClock()
    account = StepAccount(clock)
    account.start_epoch()
    seen: list[str] = []
    script = [("wait", 1.0), ("start", 0.0), (Phase.TRAINING_STEP_START, 2.0), (Phase.TRAINING_STEP_END, 0.5)]
    run_step(account, clock, [*script, ("end", 0.0)])  # not watched
    account.watch(seen.append)  # in the next step's wait
    run_step(account, clock, [*script, ("end", 0.0)])
    account.watch(None)  # after that step ended: the next one's wait was watched too
    run_step(account, clock, [*script, ("end", 0.0)])
    run_step(account, clock, [*script, ("end", 0.0)])
    done = account.close_epoch()
    assert len(done) == 2 and account.epoch.steps == 2 and account.spread.count == 2
    assert account.window.steps == 2 and len(account.profiled) == 2
    assert account.window.forward_s == pytest.approx(4.0) and account.window.data_loading_s == pytest.approx(
        2.0
    )
    assert seen == [STEP_START, Phase.TRAINING_STEP_START, Phase.TRAINING_STEP_END, STEP_END]


def read_ops(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def phase_sum(rows: list[dict[str, str]], phase: str) -> float:
    return sum(float(row["self_host_s"]) for row in rows if row["phase"] == phase)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_window_records_its_steps_by_phase_and_leaves_them_out_of_the_epoch(tmp_path):
    module = SleepyModule(step_delay=FORWARD, backward_delay=BACKWARD, optimizer_delay=OPTIMIZER)
    timer, window = EpochTimer(print_table=False), OpWindow(0, WAIT, WARMUP, ACTIVE, trace=True)
    quiet_trainer(tmp_path, timer, window).fit(module, loader(0.002, steps=STEPS))
    (epoch,) = timer.history
    summary = window.summary
    assert summary is not None and summary.recorded_steps == ACTIVE  # torch's own ProfilerStep ranges
    assert epoch.op_window_steps == len(WINDOW) and epoch.steps == STEPS - len(WINDOW)
    # The ranges agree with EpochTimer's phases for the same steps, and ops.csv adds up to them.
    rows = read_ops(tmp_path / OPS_CSV)
    for phase in ("forward", "backward", "optimizer"):
        assert_within(summary.phase_s[phase], summary.timer_s[phase])
        assert_within(phase_sum(rows, phase), summary.timer_s[phase])
    whole = sum(summary.timer_s.values())
    assert_within(sum(summary.phase_s.values()), whole)
    # The sleeping backward is named at the top of the backward.
    assert summary.top("backward", 1)[0].operation == "SlowBackwardBackward"
    assert_within(
        summary.top("backward", 1)[0].host_s, sum(module.backward_delay.calls[i] for i in range(3, 6))
    )
    # Outside the window, the epoch's phases are the injected truth of the other steps.
    outside = [i for i in range(STEPS) if i not in WINDOW]
    assert_within(epoch.backward_s, sum(module.backward_delay.calls[i] for i in outside))
    assert_within(epoch.forward_s, sum(module.step_work.calls[i] for i in outside))
    assert epoch.samples == len(outside) * 4 and timer.budget.op_window == pytest.approx(epoch.op_window_s)
    with gzip.open(tmp_path / "trace.json.gz", "rt") as file:
        assert any(event.get("name") == "phase:backward" for event in json.load(file)["traceEvents"])


@pytest.mark.slow
def test_resnet18_convolutions_lead_forward_and_backward(tmp_path, capsys):
    options = ["--data.batch_size", "8", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"]
    window = [
        "--timer.ops",
        "true",
        "--timer.ops_wait",
        "0",
        "--timer.ops_warmup",
        "1",
        "--timer.ops_steps",
        "1",
    ]
    trainer = run_fit(fit_args(tmp_path, *options, *window))
    (op_window,) = [callback for callback in trainer.callbacks if isinstance(callback, OpWindow)]
    summary = op_window.summary
    assert summary is not None and summary.recorded_steps == 1
    for phase in ("forward", "backward"):
        assert "conv" in summary.top(phase, 1)[0].operation, summary.top(phase, 3)
    run = Path(trainer.log_dir)
    assert {row["phase"] for row in read_ops(run / OPS_CSV)} >= {"forward", "backward", "optimizer"}
    assert "Top operations per phase" in capsys.readouterr().out
    finding = Finding("compute_bound", "compute-bound: ...")
    (named,) = summary.amend([finding], ADVICE)
    assert "backward: " in named.text and "in `aten::convolution_backward`" in named.text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"tensors": 0}).Reload()
    assert "cifarbench/ops/text_summary" in events.Tags()["tensors"]


def fit_warnings(tmp_path, window: OpWindow, steps: int = 6) -> tuple[EpochTimer, list[str]]:
    timer = EpochTimer(print_table=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(tmp_path, timer, window).fit(SleepyModule(), loader(0.0, steps=steps))
    return timer, [str(w.message) for w in caught if "OpWindow" in str(w.message)]


def test_another_profiler_already_active_gets_one_warning_and_the_fit_completes(tmp_path):
    window = OpWindow(epoch=0, wait=1, warmup=1, active=2)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        timer, said = fit_warnings(tmp_path, window)
    assert len(said) == 1 and "another profiler is already active" in said[0]
    assert window.summary is None and timer.history[0].steps == 6 and timer.history[0].op_window_steps == 0


def test_device_times_on_a_cpu_get_one_warning_and_host_times(tmp_path):
    window = OpWindow(epoch=0, wait=1, warmup=1, active=2, device_times=True)
    timer, said = fit_warnings(tmp_path, window)
    assert len(said) == 1 and "device times need CUDA" in said[0]
    assert window.summary is not None and window.summary.gpu_busy is None
    assert all(row.device_s == 0 for row in window.summary.rows) and timer.history[0].op_window_steps == 4


def test_an_epoch_shorter_than_the_window_says_what_it_recorded(tmp_path):
    window = OpWindow(epoch=0, wait=1, warmup=1, active=3)
    timer, said = fit_warnings(tmp_path, window, steps=4)
    assert len(said) == 1 and "recorded 2 of 3 steps" in said[0]
    assert window.summary is not None and window.summary.recorded_steps == 2


def test_gpu_busy_and_launches_come_from_the_kernels_intervals():
    kernels = [(0.0, 10.0), (5.0, 15.0), (20.0, 30.0), (95.0, 120.0)]  # overlapping, and one past the window
    assert busy_share(kernels, 0.0, 100.0) == pytest.approx((15 + 10 + 5) / 100)
    assert busy_share([], 0.0, 100.0) == 0.0
    busy, launches, mean_us = device_figures(kernels, launches=8, steps=2, start=0.0, end=100.0)
    assert (busy, launches, mean_us) == (pytest.approx(0.30), 4.0, pytest.approx(55 / 4))


@pytest.mark.parametrize(
    ("busy", "kernel_us", "fires"), [(0.3, 8.0, True), (0.9, 8.0, False), (0.3, 200.0, False)]
)
def test_a_low_busy_share_with_small_kernels_is_launch_bound(busy, kernel_us, fires):
    rows = [OpRow("forward", "aten::addmm", 10, 0.01, 0.002, 1.0)]
    summary = OpSummary(rows, {"forward": 0.01}, 2, device_times=True, gpu_busy=busy)
    summary.launches_per_step, summary.mean_kernel_us = 900.0, kernel_us
    findings = summary.amend([Finding("summary", "fit ...")], ADVICE)
    assert [f.kind for f in findings] == ["summary", *(["launch_bound"] if fires else [])]
    if fires:
        assert "busy 30%" in findings[-1].text and "--model.compile reduce-overhead" in findings[-1].text
    assert "launch_bound" in GENERIC_ADVICE


def test_a_bad_window_option_names_the_cli_option(tmp_path):
    with pytest.raises(ConfigError, match=r"--timer.ops_steps 0: must be >= 1"):
        run_fit(fit_args(tmp_path, "--timer.ops", "true", "--timer.ops_steps", "0"))

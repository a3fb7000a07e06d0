"""Each finding's predicted saving, checked against the saving measured when its cause is removed."""

from __future__ import annotations

import json
import statistics

import pytest

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.records import BUDGET_JSON

from helpers import SleepyModule, SlowCheckpointIO, assert_within, loader, quiet_trainer

STEPS, EPOCHS = 6, 3


def fit(tmp_path, name: str, module: SleepyModule, per_batch: float = 0.0, **options) -> EpochTimer:
    timer = EpochTimer(print_table=False)
    trainer = quiet_trainer(tmp_path / name, timer, max_epochs=EPOCHS, **options)
    trainer.fit(module, loader(per_batch, steps=STEPS), loader(0.0, steps=2))
    return timer


def finding(timer: EpochTimer, kind: str):
    (found,) = [finding for finding in timer.verdict if finding.kind == kind]
    return found


def steady_epoch_s(timer: EpochTimer) -> float:
    return statistics.mean(row.epoch_s for row in timer.history)


def test_an_input_bound_findings_saving_is_what_a_fast_loader_saves_per_epoch(tmp_path):
    slow = fit(tmp_path, "slow", SleepyModule(step_delay=0.005), per_batch=0.05, limit_val_batches=0)
    fast = fit(tmp_path, "fast", SleepyModule(step_delay=0.005), limit_val_batches=0)
    predicted = finding(slow, "input_bound")
    measured = steady_epoch_s(slow) - steady_epoch_s(fast)
    assert_within(predicted.saving_s, measured, tolerance=0.15)
    assert predicted.share == pytest.approx(predicted.saving_s / (slow.budget.epochs_s / EPOCHS))
    assert f"saves at most {predicted.saving_s:.2f} s of" in predicted.text and "per epoch" in predicted.text
    document = json.loads((tmp_path / "slow" / BUDGET_JSON).read_text())
    (entry,) = [entry for entry in document["verdict"] if entry["kind"] == "input_bound"]
    assert entry["saving_s"] == pytest.approx(predicted.saving_s) and entry["share"] == pytest.approx(
        predicted.share
    )


def test_a_validation_heavy_findings_saving_is_what_no_validation_saves(tmp_path):
    slow = fit(tmp_path, "slow", SleepyModule(val_delay=0.1), limit_val_batches=2)
    fast = fit(tmp_path, "fast", SleepyModule(), limit_val_batches=0)
    predicted = finding(slow, "validation_heavy")
    assert_within(predicted.saving_s, slow.budget.fit_s - fast.budget.fit_s, tolerance=0.15)
    assert "of the fit" in predicted.text


def test_a_checkpoint_heavy_findings_saving_is_what_saving_nothing_saves(tmp_path):
    slow = fit(tmp_path, "slow", SleepyModule(), limit_val_batches=0, enable_checkpointing=True,
               plugins=[SlowCheckpointIO(0.15)])  # fmt: skip
    fast = fit(tmp_path, "fast", SleepyModule(), limit_val_batches=0)
    predicted = finding(slow, "checkpoint_heavy")
    assert_within(predicted.saving_s, slow.budget.fit_s - fast.budget.fit_s, tolerance=0.15)


def test_no_saving_is_claimed_for_advice_that_changes_the_step(tmp_path):
    timer = fit(tmp_path, "compute", SleepyModule(step_delay=0.02), limit_val_batches=0)
    (last,) = [finding for finding in timer.verdict if finding.kind == "compute_bound"]
    assert last.saving_s is None and last.share is None and "no saving is claimed" in last.text

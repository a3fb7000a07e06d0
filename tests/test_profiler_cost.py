"""The budget's `profiler` bucket: EpochTimer's own host time, taken out of the bucket it ran in."""

from __future__ import annotations

import time

import pytest

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.session import FitSession

from helpers import Delay, SleepyModule, assert_within, loader, quiet_trainer

STEPS = 12


def test_the_profiler_bucket_recovers_a_delay_inside_epochtimers_hooks_and_the_budget_still_adds_up(
    tmp_path, monkeypatch
):
    """A sleep injected into EpochTimer's own step start is its cost, not the step's or the wait's."""
    delay, start_step = Delay(0.02), FitSession.start_step

    def slow_start_step(session: FitSession) -> None:
        start_step(session)
        delay()  # inside the step (after its start mark), where Lightning's work would otherwise hold it

    monkeypatch.setattr(FitSession, "start_step", slow_start_step)
    module, train, timer = (
        SleepyModule(step_delay=0.01),
        loader(0.02, steps=STEPS),
        EpochTimer(print_table=False),
    )
    fit = quiet_trainer(tmp_path, timer, max_epochs=2)
    start = time.perf_counter()
    fit.fit(module, train)
    wall_s = time.perf_counter() - start

    budget = timer.budget
    assert_within(budget.fit_s, wall_s, tolerance=0.02)
    assert delay.total == pytest.approx(2 * STEPS * 0.02, rel=0.5)  # every step slept
    assert_within(budget.profiler, delay.total)
    assert_within(budget.data_loading, train.fetch.total)
    assert_within(budget.forward, module.step_work.after_first)
    assert budget.framework < 0.25 * delay.total  # the sleep is not Lightning's work
    assert sum(row.profiler_s for row in timer.history) == pytest.approx(budget.profiler, rel=0.1)


def test_without_an_injected_delay_the_profilers_cost_is_small_and_reported(tmp_path):
    timer = EpochTimer(print_table=False)
    quiet_trainer(tmp_path, timer).fit(SleepyModule(step_delay=0.01), loader(0.0, steps=STEPS))
    (epoch,) = timer.history
    assert 0 < epoch.profiler_s < 0.05 * epoch.training_s  # microseconds a step against a 10 ms step
    assert 0 < timer.budget.profiler

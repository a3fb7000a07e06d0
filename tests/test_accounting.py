"""The accounting behind EpochTimer, driven without a Trainer: marks from a clock the test controls."""

from __future__ import annotations

import math
import random

import pytest

from cifarbench.callbacks.accounting import FitAccount
from cifarbench.callbacks.quantities import BUCKET_ORDER, PARTS, Q
from cifarbench.callbacks.spread import LogHistogram
from cifarbench.callbacks.steps import Phase, StepAccount


class Mark:
    def __init__(self, at: float) -> None:
        self.at = at


class ManualClock:
    """A clock whose time only moves when the test says so; with ``lazy``, marks stay unready until ``settle``
    (as CUDA events the GPU has not reached). Each mark is an object, as an event is."""

    name = "manual"
    reuses_marks = True

    def __init__(self, lazy: bool = False) -> None:
        self.now, self.lazy, self.settled_until = 0.0, lazy, -1.0
        self.made: list[Mark] = []
        self.released: list[Mark] = []

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def mark(self) -> Mark:
        self.made.append(Mark(self.now))
        return self.made[-1]

    def ready(self, mark: Mark) -> bool:
        return not self.lazy or mark.at <= self.settled_until

    def settle(self) -> None:
        self.settled_until = self.now

    def seconds(self, start: Mark, end: Mark) -> float:
        return end.at - start.at

    def release(self, marks: list[Mark]) -> None:
        self.released += marks


def run_step(
    account: StepAccount, clock: ManualClock, script: list[tuple[str, float]], step: int = 1
) -> None:
    """One step: ``script`` is (what happens, seconds), marks between, as Lightning's hooks would put them."""
    for what, seconds in script:
        if what == "start":
            account.start_step()
        elif what == "end":
            account.end_step(samples=4, global_step=step)
        elif what == "wait":
            pass
        else:
            account.mark(what)
        clock.advance(seconds)


def parts(step) -> tuple[float, ...]:
    return tuple(getattr(step, part.column_name) for part in PARTS)


def test_automatic_optimization_splits_the_users_step_from_lightnings_work():
    clock = ManualClock()
    account = StepAccount(clock)
    account.start_epoch()
    clock.advance(0.3)  # waiting for the batch
    run_step(account, clock, [
        ("start", 0.05),                # Lightning: the closure's set-up
        ("training_step_start", 1.0),   # the user's training_step
        ("training_step_end", 0.2),     # Lightning: zero_grad, hook calls
        ("before_backward", 2.0),       # backward
        ("after_backward", 0.1),        # Lightning: the closure returns
        ("before_optimizer", 0.5),      # optimizer.step()
        ("after_optimizer", 0.2),       # Lightning: bookkeeping after the step
        ("end", 0.0),
    ])  # fmt: skip
    (step,) = account.drain()
    assert step.data_loading_s == pytest.approx(0.3)
    # forward, backward, optimizer, framework, step_other
    assert parts(step) == pytest.approx((1.0, 2.0, 0.5, 0.55, 0.0))
    assert step.training_s == pytest.approx(4.05)


def test_manual_optimization_with_two_optimizers_sums_backwards_and_optimizer_steps():
    clock = ManualClock()
    account = StepAccount(clock)
    account.start_epoch()
    run_step(account, clock, [
        ("start", 0.05),
        ("training_step_start", 1.0),   # forward of the first network
        ("before_backward", 2.0),
        ("after_backward", 0.0),
        ("before_optimizer", 0.5),
        ("after_optimizer", 0.7),       # forward of the second network: inside training_step, so step_other
        ("before_backward", 3.0),
        ("after_backward", 0.0),
        ("before_optimizer", 0.25),
        ("after_optimizer", 0.05),
        ("training_step_end", 0.1),
        ("end", 0.0),
    ])  # fmt: skip
    (step,) = account.drain()
    assert parts(step) == pytest.approx((1.0, 5.0, 0.75, 0.15, 0.75))


def test_an_accumulating_step_has_no_optimizer_time():
    clock = ManualClock()
    account = StepAccount(clock)
    account.start_epoch()
    script = [("start", 0.0), ("training_step_start", 1.0), ("training_step_end", 0.1),
              ("before_backward", 2.0), ("after_backward", 0.4), ("end", 0.0)]  # fmt: skip
    run_step(account, clock, script)
    (step,) = account.drain()
    assert parts(step) == pytest.approx((1.0, 2.0, 0.0, 0.5, 0.0))


def test_a_step_without_marks_is_all_framework_and_parts_always_add_up():
    clock = ManualClock()
    account = StepAccount(clock)
    account.start_epoch()
    run_step(account, clock, [("start", 1.5), ("end", 0.0)])
    rng = random.Random(0)
    phases = [value for name, value in vars(Phase).items() if name.isupper()]
    assert len(phases) == 6
    for index in range(50):  # random sequences of marks: the five parts always add up to the step
        script = [("start", rng.random())]
        script += [(rng.choice(phases), rng.random()) for _ in range(rng.randint(0, 10))]
        run_step(account, clock, [*script, ("end", 0.0)], step=index + 2)
    steps = account.drain()
    assert parts(steps[0]) == pytest.approx((0.0, 0.0, 0.0, 1.5, 0.0))
    for step in steps:
        assert sum(parts(step)) == pytest.approx(step.training_s)
        assert min(parts(step)) >= 0


def test_the_profilers_own_time_comes_out_of_the_gap_and_the_step_into_a_part_of_its_own():
    clock = ManualClock()
    account = StepAccount(clock)
    account.start_epoch()
    clock.advance(1.0)
    account.cost_s += 0.25  # EpochTimer's own work while the loop waited for the batch
    account.start_step()
    account.mark(Phase.TRAINING_STEP_START)
    clock.advance(2.0)
    account.mark(Phase.TRAINING_STEP_END)
    clock.advance(0.5)
    account.cost_s += 0.125  # its own work inside the step, in Lightning's part
    account.end_step(samples=4, global_step=1)
    (step,) = account.drain()
    assert step.data_loading_s == pytest.approx(0.75) and step.profiler_s == pytest.approx(0.375)
    assert step.forward_s == pytest.approx(2.0) and step.framework_s == pytest.approx(0.375)
    assert step.data_loading_s + step.training_s + step.profiler_s == pytest.approx(3.5)  # the wall time


def test_unready_steps_wait_and_are_read_in_order_after_one_settle():
    clock = ManualClock(lazy=True)  # like CUDA events the GPU has not reached yet
    account = StepAccount(clock)
    account.start_epoch()
    for index in range(3):
        clock.advance(0.1)
        run_step(account, clock, [("start", 0.5), ("end", 0.0)], step=index + 1)
    assert account.drain() == []  # nothing is ready: no wait, no read
    steps = account.close_epoch()
    assert [step.global_step for step in steps] == [1, 2, 3]
    assert account.epoch.training_s == pytest.approx(1.5) and account.epoch.data_loading_s == pytest.approx(
        0.3
    )
    assert account.epoch.steps == 3 and account.epoch.samples == 12


def test_every_mark_is_released_once_it_is_read_for_the_last_time():
    clock = ManualClock()
    account = StepAccount(clock)
    account.start_epoch()
    for _ in range(5):
        clock.advance(0.1)
        run_step(
            account, clock, [("start", 0.2), ("before_backward", 0.2), ("after_backward", 0.1), ("end", 0.0)]
        )
        account.drain()
        assert clock.released[-1] is not clock.made[-1]  # the step's end is still the next step's gap start
    account.close_epoch()
    # The epoch's first mark and each step's four, each released exactly once: a CUDA clock reuses them all.
    assert len(clock.made) == 21
    assert sorted(map(id, clock.released)) == sorted(map(id, clock.made))


def test_log_histogram_percentiles_are_within_2_percent_of_the_exact_ones():
    rng = random.Random(1)
    values = [rng.lognormvariate(-3, 1.0) for _ in range(20_000)] + [5.0]  # a long tail and one outlier
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99):
        exact = ordered[math.ceil(q * len(ordered)) - 1]  # nearest rank
        assert histogram.quantile(q) == pytest.approx(exact, rel=0.02)
    assert histogram.max == 5.0 and histogram.quantile(1.0) == 5.0
    assert len(histogram.counts) < 1500  # bounded by the range of values, not their number


def test_fit_budget_adds_up_and_moves_the_first_step_out_of_the_phases():
    clock = ManualClock()
    clock.now = 2.5
    fit = FitAccount()
    fit.begin(0.0)
    fit.open(Q.sanity_check, 1.0)
    fit.close(Q.sanity_check, 2.0)
    fit.epoch_started(2.5)
    account = StepAccount(clock)
    account.start_epoch()
    for index in range(2):
        clock.advance(0.5)
        run_step(account, clock, [("start", 0.0), ("training_step_start", 1.0), ("before_backward", 2.0),
                                  ("after_backward", 0.0), ("before_optimizer", 1.0), ("end", 0.0)],
                 step=index + 1)  # fmt: skip
    steps = account.close_epoch()
    fit.saw_step(steps[0])
    fit.add_epoch(account.epoch)
    fit.open(Q.validation, 11.5)
    fit.open(Q.checkpointing, 12.0)  # a save during validation counts as checkpointing, not validation
    fit.close(Q.checkpointing, 12.5)
    fit.close(Q.validation, 13.5)
    budget = fit.budget(now=14.0)
    assert list(budget) == [bucket.name for bucket in BUCKET_ORDER]
    assert budget.framework == pytest.approx(0.0) and budget.profiler == pytest.approx(0.0)
    assert budget["startup"] == pytest.approx(1.5) and budget["sanity_check"] == pytest.approx(1.0)
    assert budget["first_step"] == pytest.approx(4.0)
    assert (budget["forward"], budget["backward"], budget["optimizer"]) == pytest.approx((1.0, 2.0, 1.0))
    assert budget["data_loading"] == pytest.approx(1.0)
    assert budget["validation"] == pytest.approx(1.5) and budget["checkpointing"] == pytest.approx(0.5)
    assert sum(budget.values()) == pytest.approx(14.0)
    assert budget["other"] == pytest.approx(14.0 - 1.5 - 1.0 - 4.0 - 1.0 - 4.0 - 1.5 - 0.5)


def test_the_profilers_own_time_outside_the_steps_moves_from_its_bucket_and_the_budget_still_adds_up():
    fit = FitAccount()
    fit.begin(0.0)
    fit.epoch_started(1.0)
    fit.open(Q.validation, 5.0)
    fit.close(Q.validation, 7.0)
    fit.charge(Q.startup, 0.25)  # its hooks before the first epoch
    fit.charge(Q.validation, 0.5)  # ... during validation
    fit.charge(Q.other, 0.125)  # ... at epoch ends
    budget = fit.budget(now=10.0)
    assert budget.startup == pytest.approx(0.75) and budget.validation == pytest.approx(1.5)
    assert budget.profiler == pytest.approx(0.875)
    assert budget.other == pytest.approx(10.0 - 1.0 - 2.0 - 0.125)
    assert budget.fit_s == pytest.approx(10.0)

"""One fit, as EpochTimer sees it: its stage, its clocks and its accounts, driven by marks.

The callback's hooks and wrappers turn Lightning's calls into the calls here; this class knows no Lightning
(tests drive it directly). A new one is made for every fit, so nothing is left behind between fits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any, TypeVar

import torch

from cifarbench.callbacks.accounting import EpochClock, FitAccount, Stage
from cifarbench.callbacks.clocks import Clock, make_clock, wall_time
from cifarbench.callbacks.quantities import Budget, Q
from cifarbench.callbacks.ranks import RankLedger
from cifarbench.callbacks.steps import StepAccount
from cifarbench.callbacks.straggler import with_straggler
from cifarbench.callbacks.verdict import Finding, verdict


class FitSession:
    """The stage of one fit, its steps (:class:`StepAccount`) and its budget (:class:`FitAccount`)."""

    def __init__(self, device: torch.device | None = None, sync: bool = False) -> None:
        self.device = device or torch.device("cpu")
        self.clock: Clock = make_clock(self.device, sync)
        self.stage = Stage.IDLE
        self.steps = StepAccount(self.clock)
        self.fit = FitAccount()
        self.epoch = EpochClock()
        self.operators: Any = None  # what OpWindow's profiler saw (an ops.OpSummary), handed over by it
        self.ranks = RankLedger(lambda: self.fit.first_step)  # every rank's figures, gathered per epoch

    # -------------------------------------------------------------------------------------- the fit
    def set_up(self, begin_s: float) -> None:
        """Setup ran; the fit's clock starts at ``begin_s`` (now, or when the user marked the fit's start)."""
        self.fit.begin(begin_s)
        self.stage = Stage.SET_UP

    def fit_started(self) -> None:
        self.stage = Stage.STARTING

    def spent(self, seconds: float) -> None:
        """EpochTimer's own host time, charged where it was spent: in the steps or in a bucket around them."""
        if self.stage is Stage.TRAINING or self.stage is Stage.PAUSED:
            self.steps.cost_s += seconds
        elif self.stage is not Stage.IDLE:
            self.fit.charge(self.stage.bucket, seconds)

    def sanity_check(self, starting: bool) -> None:
        now = wall_time(self.device)
        if starting:
            self.fit.open(Q.sanity_check, now)
            self.stage = Stage.SANITY_CHECK
        else:
            self.fit.close(Q.sanity_check, now)
            self.stage = Stage.STARTING

    def peak_memory(self) -> int | None:
        """CUDA: the epoch's peak allocated bytes (reset at each epoch's start); none on a CPU."""
        return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None

    def end(
        self, advice: Mapping[str, str], now: float | None = None, first: Finding | None = None
    ) -> tuple[Budget, list[Finding]] | None:
        """The fit's budget up to ``now`` (default: after the device's queued work) and its verdict, with
        ``advice`` per kind and ``first`` (a divergence) before every other finding; ``None`` when the fit
        never began. The session is done."""
        budget = self.fit.budget(now if now is not None else wall_time(self.device))
        self.stage = Stage.IDLE
        if budget is None:
            return None
        if self.operators is not None:  # the same steps as EpochTimer saw them, next to the profiler's view
            self.operators.timer_steps(self.steps.profiled)
        fit = self.fit
        findings = verdict(budget, fit.steps.transfer_s, advice, fit.epochs, fit.steps.steps, self.operators)
        findings = with_straggler(findings, self.ranks, advice)  # a slow rank, when more than one ran
        return budget, findings[:1] + ([first] if first else []) + findings[1:]

    # ----------------------------------------------------------------------------------- epochs and steps
    def start_epoch(self) -> None:
        self.stage = Stage.TRAINING
        self.epoch.begin(wall_time(self.device))
        self.fit.epoch_started(self.epoch.start_s)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.steps.start_epoch()

    def start_step(self) -> None:
        if not self.stage.in_epoch:
            # Resumed from a mid-epoch checkpoint: Lightning skips on_train_epoch_start. The epoch's row then
            # covers the steps run since the resume (its `steps` says how many).
            self.start_epoch()
        elif self.stage is not Stage.TRAINING:
            self._resume()
        self.steps.start_step()

    def end_epoch(self) -> tuple[float, list[Any]]:
        """The epoch's seconds (pauses out) and its steps not yet read; the epoch's totals are final."""
        self._resume(at_epoch_end=True)
        epoch_s = self.epoch.seconds(wall_time(self.device))
        self.stage = Stage.BETWEEN_EPOCHS
        steps = self.steps.close_epoch()
        self._saw(steps)
        self.fit.add_epoch(self.steps.epoch, self.steps.window)
        return epoch_s, steps

    def interrupt_epoch(self) -> list[Any]:
        """An epoch cut short: the steps the device has passed (no synchronize), into the fit's totals."""
        steps = self.steps.drain()
        self._saw(steps)
        self.fit.add_epoch(self.steps.epoch, self.steps.window)
        self.stage = Stage.BETWEEN_EPOCHS
        return steps

    def read_steps(self) -> list[Any]:
        steps = self.steps.drain()
        self._saw(steps)
        return steps

    def _saw(self, steps: list[Any]) -> None:
        if steps:
            self.fit.saw_step(steps[0])

    def _resume(self, at_epoch_end: bool = False) -> None:
        """Close a pause: the next wait for data starts where it ended (at epoch end, a fallback, now)."""
        mark = self.epoch.resume(lambda: (wall_time(self.device), self.clock.mark()), at_epoch_end)
        if mark is not None:
            self.steps.restart_gap(mark)
        self.stage = Stage.TRAINING

    # -------------------------------------------------------------------------------- validation, saves
    def start_validation(self) -> None:
        now = wall_time(self.device)
        self.fit.open(Q.validation, now)
        if self.stage.in_epoch:  # validation inside the epoch: the epoch's clock pauses
            self.epoch.pause(now)
            self.stage = Stage.VALIDATING_MID_EPOCH
        else:
            self.stage = Stage.VALIDATING

    def end_validation(self) -> None:
        now = wall_time(self.device)
        self.fit.close(Q.validation, now)
        if self.stage is Stage.VALIDATING_MID_EPOCH:
            self.epoch.pause_ended(now, self.clock.mark())
            self.stage = Stage.PAUSED
        elif self.stage is Stage.VALIDATING:
            self.stage = Stage.BETWEEN_EPOCHS

    def start_save(self) -> bool:
        """A checkpoint save starts; returns whether it pauses the training epoch (pass it to end_save).

        Inside a training epoch the epoch's clock pauses as for validation: a save right after mid-epoch
        validation extends that pause, so the next batch's wait starts after the save.
        """
        start = wall_time(self.device)
        pauses = self.stage is Stage.TRAINING or self.stage is Stage.PAUSED
        if pauses:
            self.epoch.pause(start)
            self.stage = Stage.PAUSED
        self.fit.open(Q.checkpointing, start)
        return pauses

    def end_save(self, paused: bool) -> None:
        end = wall_time(self.device)
        self.fit.close(Q.checkpointing, end)
        if paused:
            self.epoch.pause_ended(end, self.clock.mark())

    @property
    def times_transfers(self) -> bool:
        """Whether a batch moved to the device now is a training batch (not validation's)."""
        return self.stage is Stage.TRAINING or self.stage is Stage.PAUSED


F = TypeVar("F", bound=Callable[..., Any])


def costed(hook: F) -> F:
    """A callback hook whose host time is EpochTimer's own cost, charged to its ``_session``."""

    @functools.wraps(hook)
    def costed_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = perf_counter()
        try:
            return hook(self, *args, **kwargs)
        finally:
            self._session.spent(perf_counter() - start)

    return costed_hook  # type: ignore[return-value]

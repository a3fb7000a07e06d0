"""The fit's stage, an epoch's clock and the fit budget: what lies around the training steps.

Nothing here knows Lightning (the steps themselves are :mod:`cifarbench.callbacks.steps`). Times are seconds
from ``time.perf_counter`` (after a device synchronize where the caller needs one).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from cifarbench.callbacks.quantities import BUCKET_ORDER, PARTS, Budget, Q, Quantity, Totals


class Stage(enum.Enum):
    """Where a fit is, as Lightning's ``Timer`` keys its state by ``RunningStage``: one value, not flags."""

    IDLE = "idle"  # no fit (before setup, after teardown)
    SET_UP = "set up"  # setup ran, the fit has not started (a Tuner's inner fit leaves from here)
    STARTING = "starting"  # from on_fit_start to the first training epoch
    SANITY_CHECK = "sanity check"
    TRAINING = "training"  # inside a training epoch, between or inside steps
    PAUSED = "paused"  # inside a training epoch, after a save or validation, until the next step starts
    VALIDATING_MID_EPOCH = "validating mid-epoch"  # validation inside a training epoch (val_check_interval)
    VALIDATING = "validating"  # validation after a training epoch
    BETWEEN_EPOCHS = "between epochs"

    @property
    def in_epoch(self) -> bool:
        return self in _IN_EPOCH

    @property
    def fit_started(self) -> bool:
        return self not in (Stage.IDLE, Stage.SET_UP)

    @property
    def bucket(self) -> Quantity:
        """The budget bucket that EpochTimer's own time in this stage would otherwise fall into."""
        return _BUCKET_OF.get(self, Q.other)


_IN_EPOCH = frozenset((Stage.TRAINING, Stage.PAUSED, Stage.VALIDATING_MID_EPOCH))
_BUCKET_OF = {
    Stage.SET_UP: Q.startup,
    Stage.STARTING: Q.startup,
    Stage.SANITY_CHECK: Q.sanity_check,
    Stage.VALIDATING_MID_EPOCH: Q.validation,
    Stage.VALIDATING: Q.validation,
}


class EpochClock:
    """A training epoch's wall time, less its pauses: validation inside it, and checkpoint saves.

    A pause ends where it ended (``pause_ended``), but is closed only when the next step starts (``resume``):
    the wait for the next batch starts at the pause's end, and counts as data loading.
    """

    def __init__(self) -> None:
        self.begin(0.0)

    def begin(self, now: float) -> None:
        self.start_s, self.paused_s = now, 0.0
        self._pause_start: float | None = None
        self._pause_end: tuple[float, Any] | None = None  # (wall time, clock mark)

    def pause(self, now: float) -> None:
        if self._pause_start is None:
            self._pause_start, self._pause_end = now, None

    def pause_ended(self, now: float, mark: Any) -> None:
        if self._pause_start is not None:
            self._pause_end = (now, mark)

    def resume(self, now: Callable[[], tuple[float, Any]], at_epoch_end: bool = False) -> Any:
        """Close the pause where it ended (at epoch end, or if it has not ended: ``now()``, a (wall, mark)
        pair); the mark where the next wait for data starts. ``None`` when there was no pause."""
        if self._pause_start is None:
            return None
        end_s, end_mark = now() if at_epoch_end or self._pause_end is None else self._pause_end
        self.paused_s += end_s - self._pause_start
        self._pause_start, self._pause_end = None, None
        return end_mark

    def seconds(self, now: float) -> float:
        return now - self.start_s - self.paused_s


# The spans that FitAccount times around the steps.
SPANS = (Q.sanity_check, Q.validation, Q.checkpointing)


class FitAccount:
    """Wall-clock spans of one fit, for the budget.

    The step buckets come from the steps themselves (:class:`Totals` over the fit); the spans here are what
    lies outside the training steps: start-up, the sanity check, validation and checkpointing. EpochTimer's
    own time outside the steps is charged (:meth:`charge`) to the bucket it ran in, and moved to ``profiler``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self, begin_s: float | None = None) -> None:
        self.begin_s = begin_s
        self.first_epoch_s: float | None = None
        self.spans: dict[Quantity, float] = dict.fromkeys(SPANS, 0.0)
        self.costs: dict[Quantity, float] = {}
        self._checkpointing_before_first_epoch_s = 0.0
        self._checkpointing_in_validation_s = 0.0
        self._open: dict[Quantity, float] = {}
        self.steps = Totals()
        self.window = Totals()  # the steps profiled by OpWindow, kept out of `steps`
        self.epochs = 0  # training epochs that ran (finished, or cut short)
        self.first_step: Any = None

    @property
    def begun(self) -> bool:
        return self.begin_s is not None

    def begin(self, now: float) -> None:
        """A new fit starts at ``now``, from nothing."""
        self.reset(begin_s=now)

    def open(self, span: Quantity, now: float) -> None:
        """Start a span of :data:`SPANS` (closed by :meth:`close`)."""
        self._open.setdefault(span, now)

    def close(self, span: Quantity, now: float) -> None:
        start = self._open.pop(span, None)
        if start is None:
            return
        seconds = now - start
        self.spans[span] += seconds
        if span is Q.checkpointing:
            if Q.validation in self._open or Q.sanity_check in self._open:
                self._checkpointing_in_validation_s += seconds
            elif self.first_epoch_s is None:
                self._checkpointing_before_first_epoch_s += seconds

    def charge(self, bucket: Quantity, seconds: float) -> None:
        """EpochTimer's own ``seconds``, spent where ``bucket``'s time is counted (outside the steps)."""
        self.costs[bucket] = self.costs.get(bucket, 0.0) + seconds

    def epoch_started(self, now: float) -> None:
        if self.first_epoch_s is None:
            self.first_epoch_s = now

    def saw_step(self, step: Any) -> None:
        """A step was read; the fit's first is kept apart (compilation and autotuning hide in it)."""
        if self.first_step is None:
            self.first_step = step

    def add_epoch(self, totals: Any, window: Any = None) -> None:
        """An epoch's steps (finished, or cut short by an interrupt) into the fit's totals; its profiled steps
        (``window``) into their own."""
        self.steps.merge(totals)
        if window is not None:
            self.window.merge(window)
        self.epochs += 1

    def budget(self, now: float) -> Budget | None:
        """Every second from :meth:`begin` to ``now``, by bucket; ``other`` is the rest."""
        if self.begin_s is None:
            return None
        fit_s = now - self.begin_s
        first_epoch = self.first_epoch_s if self.first_epoch_s is not None else now
        steps, first = self.steps, self.first_step
        sanity, validation, checkpointing = (self.spans[span] for span in SPANS)

        def without_first(part: Quantity) -> float:
            name = part.column_name
            return getattr(steps, name) - (getattr(first, name) if first else 0.0)

        seconds = {
            Q.startup: first_epoch - self.begin_s - sanity - self._checkpointing_before_first_epoch_s,
            Q.sanity_check: sanity,
            Q.first_step: first.training_s if first else 0.0,
            Q.data_loading: steps.data_loading_s,
            **{part: without_first(part) for part in PARTS},
            Q.validation: validation - self._checkpointing_in_validation_s,
            Q.checkpointing: checkpointing,
            Q.op_window: self.window.data_loading_s + self.window.training_s + self.window.profiler_s,
        }
        for bucket, cost in self.costs.items():
            if (
                bucket is not Q.other
            ):  # `other` is the rest: the profiler bucket takes its share from it below
                seconds[bucket] -= cost
        seconds[Q.profiler] = steps.profiler_s + sum(self.costs.values())
        seconds[Q.other] = fit_s - sum(seconds.values())
        return Budget(**{bucket.name: seconds[bucket] for bucket in BUCKET_ORDER})

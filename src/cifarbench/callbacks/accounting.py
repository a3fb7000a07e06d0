"""The accounting behind EpochTimer: clock marks in, per-step times, per-epoch totals and the fit budget out.

Nothing here knows Lightning: the callback turns hooks into marks, and tests drive these classes directly with
a clock of their own.

A training step is a run of marks: its start, any phase marks, its end. The time between two marks belongs to
a phase, by the mark that opened it:

- start -> forward, until the first ``before_backward`` (the training_step, the loss, Lightning's zero_grad);
- ``before_backward`` -> backward, until ``after_backward`` (every backward of the step, summed);
- ``before_optimizer`` -> optimizer, until ``after_optimizer`` (every optimizer step, summed); what follows
  the last optimizer step up to the step's end is optimizer time too (the lr scheduler, bookkeeping);
- anything else (after a backward, between optimizer steps, a second forward in manual optimization) ->
  step_other, so that forward + backward + optimizer + step_other is always the step's training time.

The data-loading time of a step is the gap from the previous step's end (or the epoch's start, or the end of a
pause) to its start.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cifarbench.callbacks.clocks import Clock
from cifarbench.callbacks.spread import LogHistogram


class Phase:
    """The marks inside a step (plain strings: hashed once, cheap to compare on the per-step path)."""

    BEFORE_BACKWARD = "before_backward"
    AFTER_BACKWARD = "after_backward"
    BEFORE_OPTIMIZER = "before_optimizer"
    AFTER_OPTIMIZER = "after_optimizer"


@dataclass(slots=True)
class StepTimes:
    """One finished training step, read off its marks (seconds)."""

    global_step: int
    samples: int
    data_loading_s: float
    training_s: float
    forward_s: float
    backward_s: float
    optimizer_s: float
    transfer_s: float

    @property
    def step_other_s(self) -> float:
        return self.training_s - self.forward_s - self.backward_s - self.optimizer_s


@dataclass
class Totals:
    """Running sums over steps: an epoch's, or a fit's."""

    steps: int = 0
    samples: int = 0
    data_loading_s: float = 0.0
    training_s: float = 0.0
    forward_s: float = 0.0
    backward_s: float = 0.0
    optimizer_s: float = 0.0
    transfer_s: float = 0.0

    def add(self, step: StepTimes) -> None:
        self.steps += 1
        self.samples += step.samples
        self.data_loading_s += step.data_loading_s
        self.training_s += step.training_s
        self.forward_s += step.forward_s
        self.backward_s += step.backward_s
        self.optimizer_s += step.optimizer_s
        self.transfer_s += step.transfer_s

    def merge(self, other: Totals) -> None:
        for name in ("steps", "samples", *_SECONDS):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def step_other_s(self) -> float:
        return self.training_s - self.forward_s - self.backward_s - self.optimizer_s


_SECONDS = ("data_loading_s", "training_s", "forward_s", "backward_s", "optimizer_s", "transfer_s")


# Steps wait this many at a time to be read: a bound on memory (a few KB), and a batch for the reading loop.
READ_EVERY = 32


@dataclass(slots=True)
class _Marks:
    """A step's marks, kept until the clock can read them."""

    gap_start: Any
    start: Any
    global_step: int = 0
    phases: list[tuple[str, Any]] = field(default_factory=list)
    transfers: list[tuple[Any, Any]] = field(default_factory=list)
    end: Any = None
    samples: int = 0


class StepAccount:
    """The training steps of one epoch at a time: marks in, :class:`StepTimes` and running totals out.

    Steps wait in a short queue until the clock can read their marks, so memory does not grow with the epoch:
    ``drain`` reads every step that is ready (``wait=True``: after ``clock.settle()``, all of them).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.epoch = Totals()
        self.spread = LogHistogram()
        self._pending: deque[_Marks] = deque()
        self._gap_start: Any = None
        self._step: _Marks | None = None
        self._transfers: list[tuple[Any, Any]] = []

    @property
    def in_step(self) -> bool:
        return self._step is not None

    def start_epoch(self) -> None:
        self.epoch = Totals()
        self.spread = LogHistogram()
        self._gap_start = self.clock.mark()

    def restart_gap(self, mark: Any) -> None:
        """The next step's data loading starts at ``mark`` (after a pause: validation, a checkpoint)."""
        self._gap_start = mark

    def add_transfer(self, start: Any, end: Any) -> None:
        """A batch's copy to the device; it belongs to the step that starts next."""
        self._transfers.append((start, end))

    def start_step(self) -> None:
        self._step = _Marks(self._gap_start, self.clock.mark(), transfers=self._transfers)
        self._transfers = []

    def mark(self, phase: str) -> None:
        """A :class:`Phase` mark, now, inside the current step (ignored between steps)."""
        step = self._step
        if step is not None:
            step.phases.append((phase, self.clock.mark()))

    def end_step(self, samples: int, global_step: int) -> bool:
        """The step ends now; ``global_step`` is the Trainer's after it (what loggers plot it at).

        Returns whether enough steps wait to be read (:data:`READ_EVERY`): reading them together, in one
        warm loop, costs less per step than one at a time between Lightning's hooks.
        """
        step, self._step = self._step, None
        if step is None:
            return False
        mark = step.end = self.clock.mark()
        step.samples, step.global_step = samples, global_step
        self._pending.append(step)
        self._gap_start = mark
        return len(self._pending) >= READ_EVERY

    def drain(self, wait: bool = False) -> list[StepTimes]:
        """The steps whose marks can be read now, in order, added to the epoch's totals and spread."""
        if wait:
            self.clock.settle()
        done = []
        pending, ready, epoch, spread = self._pending, self.clock.ready, self.epoch, self.spread
        while pending and (wait or ready(pending[0].end)):
            step = self._read(pending.popleft())
            epoch.add(step)
            spread.add(step.data_loading_s + step.training_s)
            done.append(step)
        return done

    def close_epoch(self) -> list[StepTimes]:
        """Read every step left (one settle), and let go of the epoch's last marks."""
        done = self.drain(wait=True)
        leftover = [mark for span in self._transfers for mark in span]
        self.clock.release([mark for mark in (self._gap_start, *leftover) if mark is not None])
        self._transfers, self._gap_start, self._step = [], None, None
        return done

    def _read(self, marks: _Marks) -> StepTimes:
        seconds = self.clock.seconds
        forward_s, backward_s, optimizer_s = _phase_seconds(marks, seconds)
        step = StepTimes(
            marks.global_step,
            marks.samples,
            seconds(marks.gap_start, marks.start) if marks.gap_start is not None else 0.0,
            seconds(marks.start, marks.end),
            forward_s,
            backward_s,
            optimizer_s,
            sum(seconds(start, end) for start, end in marks.transfers) if marks.transfers else 0.0,
        )
        if self.clock.reuses_marks:
            # Each of the step's marks is read for the last time, but its end (the next step's gap start).
            used = [marks.start, *(mark for _, mark in marks.phases)]
            used += [mark for span in marks.transfers for mark in span]
            if marks.gap_start is not None:
                used.append(marks.gap_start)
            self.clock.release(used)
        return step


# The phase that each mark opens; after an optimizer step it is "other" unless the step ends first.
_OPENS = {
    Phase.BEFORE_BACKWARD: "backward",
    Phase.AFTER_BACKWARD: "other",
    Phase.BEFORE_OPTIMIZER: "optimizer",
    Phase.AFTER_OPTIMIZER: "after_optimizer",
}


def _phase_seconds(marks: _Marks, seconds: Any) -> tuple[float, float, float]:
    """(forward, backward, optimizer) seconds of a step, by the mark that opened each interval (see the module
    docstring); the rest of the step is step_other."""
    forward = backward = optimizer = 0.0
    state, previous = "forward", marks.start
    for phase, mark in (*marks.phases, (None, marks.end)):
        interval = seconds(previous, mark)
        if state == "forward":
            forward += interval
        elif state == "backward":
            backward += interval
        elif state == "optimizer" or (state == "after_optimizer" and phase is None):
            # What follows the last optimizer step up to the step's end is the optimizer's too.
            optimizer += interval
        if phase is not None:
            state, previous = _OPENS[phase], mark
    return forward, backward, optimizer


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

    @property
    def paused(self) -> bool:
        return self._pause_start is not None

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


# ------------------------------------------------------------------------------------------- the fit budget
BUCKETS = (
    "startup",
    "sanity_check",
    "first_step",
    "data_loading",
    "forward",
    "backward",
    "optimizer",
    "step_other",
    "validation",
    "checkpointing",
    "other",
)


class FitAccount:
    """Wall-clock spans of one fit (seconds from ``time.perf_counter``), for the budget.

    The step buckets come from the steps themselves (:class:`Totals` over the fit); the spans here are what
    lies outside the training steps: start-up, the sanity check, validation and checkpointing.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self, begin_s: float | None = None) -> None:
        self.begin_s = begin_s
        self.first_epoch_s: float | None = None
        self.sanity_s = 0.0
        self.validation_s = 0.0
        self.checkpointing_s = 0.0
        self._checkpointing_before_first_epoch_s = 0.0
        self._checkpointing_in_validation_s = 0.0
        self._open: dict[str, float] = {}
        self.steps = Totals()
        self.first_step: StepTimes | None = None

    @property
    def begun(self) -> bool:
        return self.begin_s is not None

    def begin(self, now: float) -> None:
        """A new fit starts at ``now``, from nothing."""
        self.reset(begin_s=now)

    def open(self, span: str, now: float) -> None:
        """Start a ``sanity_check``, ``validation`` or ``checkpointing`` span (closed by :meth:`close`)."""
        self._open.setdefault(span, now)

    def close(self, span: str, now: float) -> float:
        start = self._open.pop(span, None)
        if start is None:
            return 0.0
        seconds = now - start
        if span == "sanity_check":
            self.sanity_s += seconds
        elif span == "validation":
            self.validation_s += seconds
        elif span == "checkpointing":
            self.checkpointing_s += seconds
            if "validation" in self._open or "sanity_check" in self._open:
                self._checkpointing_in_validation_s += seconds
            elif self.first_epoch_s is None:
                self._checkpointing_before_first_epoch_s += seconds
        return seconds

    def epoch_started(self, now: float) -> None:
        if self.first_epoch_s is None:
            self.first_epoch_s = now

    def saw_step(self, step: StepTimes) -> None:
        """A step was read; the fit's first is kept apart (compilation and autotuning hide in it)."""
        if self.first_step is None:
            self.first_step = step

    def add_epoch(self, totals: Totals) -> None:
        """An epoch's steps (finished, or cut short by an interrupt) into the fit's totals."""
        self.steps.merge(totals)

    def budget(self, now: float) -> dict[str, float]:
        """Every second from :meth:`begin` to ``now``, by bucket (:data:`BUCKETS`); ``other`` is the rest."""
        if self.begin_s is None:
            return {}
        fit_s = now - self.begin_s
        first_epoch = self.first_epoch_s if self.first_epoch_s is not None else now
        steps, first = self.steps, self.first_step
        first_training = first.training_s if first else 0.0

        def without_first(name: str) -> float:
            return getattr(steps, name) - (getattr(first, name) if first else 0.0)

        buckets = {
            "startup": first_epoch - self.begin_s - self.sanity_s - self._checkpointing_before_first_epoch_s,
            "sanity_check": self.sanity_s,
            "first_step": first_training,
            "data_loading": steps.data_loading_s,
            "forward": without_first("forward_s"),
            "backward": without_first("backward_s"),
            "optimizer": without_first("optimizer_s"),
            "step_other": steps.step_other_s - (first.step_other_s if first else 0.0),
            "validation": self.validation_s - self._checkpointing_in_validation_s,
            "checkpointing": self.checkpointing_s,
        }
        buckets["other"] = fit_s - sum(buckets.values())
        return buckets

"""The training steps of an epoch: clock marks in, :class:`StepTimes` and running totals out.

Nothing here knows Lightning: the callback and its wrappers turn Lightning's calls into marks, and tests drive
this class directly with a clock of their own.

A training step is a run of marks: its start, any phase marks, its end. The time between two marks belongs to
a part of the step, by the mark that opened it:

- ``training_step_start`` -> forward: the user's ``training_step`` (wrapped), until it ends or, in manual
  optimization, until its first backward;
- ``before_backward`` -> backward, until ``after_backward`` (every backward of the step, summed);
- ``before_optimizer`` -> optimizer, until ``after_optimizer`` (every optimizer step, summed);
- after a backward or an optimizer step, the user's code that is still inside ``training_step`` (manual
  optimization) -> step_other;
- everything else inside the step (the step's start, Lightning's closure, ``zero_grad``, hook dispatch, the
  tail after the optimizer step) -> framework: Lightning's own per-step work.

So the parts always add up to the step's training time. The data-loading time of a step is the gap from the
previous step's end (or the epoch's start, or the end of a pause) to its start.

EpochTimer's own host time (its hooks and wrappers) is added to :attr:`StepAccount.cost_s` as it happens; the
cost inside a step is taken out of its framework part, the cost in the gap before it out of its data loading,
and both are the step's ``profiler_s``.

A watcher (:meth:`StepAccount.watch`, OpWindow's profiler) is told every mark as it happens. The steps that
run or wait for their batch while one is set are *profiled*: slowed by it, they are kept apart (``window``)
and out of the epoch's totals and spread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cifarbench.callbacks.clocks import Clock
from cifarbench.callbacks.quantities import StepTimes, Totals
from cifarbench.callbacks.spread import LogHistogram


class Phase:
    """The marks inside a step (plain strings: hashed once, cheap to compare on the per-step path)."""

    TRAINING_STEP_START = "training_step_start"
    TRAINING_STEP_END = "training_step_end"
    BEFORE_BACKWARD = "before_backward"
    AFTER_BACKWARD = "after_backward"
    BEFORE_OPTIMIZER = "before_optimizer"
    AFTER_OPTIMIZER = "after_optimizer"


# Not marks: what a watcher (StepAccount.watch) is also told, as each step starts and ends.
STEP_START, STEP_END = "step_start", "step_end"


# Steps wait this many at a time to be read: a bound on memory (a few KB), and a batch for the reading loop.
READ_EVERY = 32
# A watcher profiles a few steps; more than this many are summed in `window` but not kept one by one.
PROFILED_KEPT = 64


@dataclass(slots=True)
class _Marks:
    """A step's marks, kept until the clock can read them."""

    gap_start: Any
    start: Any
    gap_cost_s: float
    start_cost_s: float
    global_step: int = 0
    phases: list[tuple[str, Any]] = field(default_factory=list)
    transfers: list[tuple[Any, Any]] = field(default_factory=list)
    end: Any = None
    samples: int = 0
    cost_s: float = 0.0
    profiled: bool = False


class StepAccount:
    """The training steps of one epoch at a time.

    Steps wait in a short queue until the clock can read their marks, so memory does not grow with the epoch:
    ``drain`` reads every step that is ready (``wait=True``: after ``clock.settle()``, all of them).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.cost_s = 0.0  # EpochTimer's own host time so far, added by its hooks and wrappers
        self.epoch = Totals()
        self.spread = LogHistogram()
        self._pending: deque[_Marks] = deque()
        self._gap_start: Any = None
        self._gap_cost_s = 0.0
        self._step: _Marks | None = None
        self._transfers: list[tuple[Any, Any]] = []
        self.window = Totals()  # the epoch's profiled steps (see watch)
        self.profiled: list[Any] = []  # the fit's profiled steps, in order (StepTimes)
        self._watcher: Callable[[str], None] | None = None
        self._profiling = False  # a watcher was set since the last step ended: the next step is profiled

    @property
    def in_step(self) -> bool:
        return self._step is not None

    def start_epoch(self) -> None:
        self.epoch = Totals()
        self.spread = LogHistogram()
        self.window = Totals()
        self._profiling = self._watcher is not None
        self.restart_gap(self.clock.mark())

    def watch(self, watcher: Callable[[str], None] | None) -> None:
        """``watcher(phase)`` at every mark from now on, and at each step's start and end
        (``STEP_START``, ``STEP_END``), until ``watch(None)``. A step that runs, or waits for its batch,
        while a watcher is set is profiled: it goes to ``window`` and ``profiled``, not to the epoch's totals
        and spread."""
        self._watcher = watcher
        if watcher is not None:
            self._profiling = True
            if self._step is not None:
                self._step.profiled = True

    def restart_gap(self, mark: Any) -> None:
        """The next step's data loading starts at ``mark`` (after a pause: validation, a checkpoint)."""
        self._gap_start, self._gap_cost_s = mark, self.cost_s

    def add_transfer(self, start: Any, end: Any) -> None:
        """A batch's copy to the device; it belongs to the step that starts next."""
        self._transfers.append((start, end))

    def start_step(self) -> None:
        self._step = _Marks(self._gap_start, self.clock.mark(), self._gap_cost_s, self.cost_s)
        self._step.transfers, self._transfers = self._transfers, []
        self._step.profiled = self._profiling
        if self._watcher is not None:
            self._watcher(STEP_START)

    def mark(self, phase: str) -> None:
        """A :class:`Phase` mark, now, inside the current step (ignored between steps)."""
        step = self._step
        if step is not None:
            step.phases.append((phase, self.clock.mark()))
            if self._watcher is not None:
                self._watcher(phase)

    def end_step(self, samples: int, global_step: int) -> bool:
        """The step ends now; ``global_step`` is the Trainer's after it (what loggers plot it at).

        Returns whether enough steps wait to be read (:data:`READ_EVERY`): reading them together, in one
        warm loop, costs less per step than one at a time between Lightning's hooks.
        """
        step, self._step = self._step, None
        if step is None:
            return False
        mark = step.end = self.clock.mark()
        step.samples, step.global_step, step.cost_s = samples, global_step, self.cost_s
        self._pending.append(step)
        self.restart_gap(mark)
        if self._watcher is not None:
            self._watcher(STEP_END)
        self._profiling = self._watcher is not None  # the wait for the next batch is profiled too
        return len(self._pending) >= READ_EVERY

    def drain(self, wait: bool = False) -> list[Any]:
        """The steps whose marks can be read now, in order, added to the epoch's totals and spread."""
        if wait:
            self.clock.settle()
        done = []
        pending, ready, epoch, spread = self._pending, self.clock.ready, self.epoch, self.spread
        while pending and (wait or ready(pending[0].end)):
            marks = pending.popleft()
            if marks.profiled:
                self._profiled(marks)
                continue
            step = self._read(marks)
            epoch.add(step)
            spread.add(step.data_loading_s + step.training_s)
            done.append(step)
        return done

    def _profiled(self, marks: _Marks) -> None:
        # Its wall time, whole: the watcher's work in EpochTimer's hooks can exceed the part it is taken from.
        span = self.clock.seconds(marks.gap_start, marks.end) if marks.gap_start is not None else None
        step = self._read(marks)
        if span is not None:
            step.profiler_s = max(0.0, span - step.data_loading_s - step.training_s)
        self.window.add(step)
        if len(self.profiled) < PROFILED_KEPT:
            self.profiled.append(step)

    def close_epoch(self) -> list[Any]:
        """Read every step left (one settle), and let go of the epoch's last marks."""
        done = self.drain(wait=True)
        leftover = [mark for span in self._transfers for mark in span]
        self.clock.release([mark for mark in (self._gap_start, *leftover) if mark is not None])
        self._transfers, self._gap_start, self._step = [], None, None
        return done

    def _read(self, marks: _Marks) -> Any:
        seconds = self.clock.seconds
        forward, backward, optimizer, framework, other = _part_seconds(marks, seconds)
        gap_cost, step_cost = marks.start_cost_s - marks.gap_cost_s, marks.cost_s - marks.start_cost_s
        gap = seconds(marks.gap_start, marks.start) if marks.gap_start is not None else gap_cost
        step = StepTimes(
            global_step=marks.global_step,
            samples=marks.samples,
            # EpochTimer's own time is a part of its own; on a device clock it may hide in a gap: floor at 0.
            data_loading_s=max(0.0, gap - gap_cost),
            training_s=forward + backward + optimizer + max(0.0, framework - step_cost) + other,
            transfer_s=sum(seconds(start, end) for start, end in marks.transfers) if marks.transfers else 0.0,
            forward_s=forward,
            backward_s=backward,
            optimizer_s=optimizer,
            step_other_s=other,
            framework_s=max(0.0, framework - step_cost),
            profiler_s=gap_cost + step_cost,
        )
        if self.clock.reuses_marks:
            # Each of the step's marks is read for the last time, but its end (the next step's gap start).
            used = [marks.start, *(mark for _, mark in marks.phases)]
            used += [mark for span in marks.transfers for mark in span]
            if marks.gap_start is not None:
                used.append(marks.gap_start)
            self.clock.release(used)
        return step


_FORWARD, _BACKWARD, _OPTIMIZER, _FRAMEWORK, _OTHER = range(5)
# The part that each mark opens (after a backward or an optimizer step: see _part_seconds).
_OPENS = {
    Phase.TRAINING_STEP_START: _FORWARD,
    Phase.TRAINING_STEP_END: _FRAMEWORK,
    Phase.BEFORE_BACKWARD: _BACKWARD,
    Phase.BEFORE_OPTIMIZER: _OPTIMIZER,
}


def _part_seconds(marks: _Marks, seconds: Any) -> list[float]:
    """(forward, backward, optimizer, framework, step_other) seconds of a step (see the module docstring)."""
    parts = [0.0, 0.0, 0.0, 0.0, 0.0]
    part, previous, in_training_step = _FRAMEWORK, marks.start, False
    for phase, mark in marks.phases:
        parts[part] += seconds(previous, mark)
        previous = mark
        if phase == Phase.TRAINING_STEP_START:
            in_training_step = True
        elif phase == Phase.TRAINING_STEP_END:
            in_training_step = False
        opened = _OPENS.get(phase)
        if opened is None:  # after a backward or an optimizer step
            opened = _OTHER if in_training_step else _FRAMEWORK
        part = opened
    parts[part] += seconds(previous, marks.end)
    return parts

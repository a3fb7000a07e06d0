"""OpWindow: a few training steps profiled operation by operation, lined up with EpochTimer's phases.

One short window per fit: ``torch.profiler`` with its schedule (``warmup`` steps, then ``active`` recorded
steps), started ``wait`` steps into one epoch, stopped and released after it. Inside the window EpochTimer's
steps tell OpWindow each mark as it happens (``StepAccount.watch``), and OpWindow opens a ``record_function``
range per part of the step (``phase:forward``, ``phase:backward``, ...; the wait for the batch is
``phase:data_loading``) and steps the profiler at each step's end, so that the recorded steps are whole steps
and every operation falls in one phase. EpochTimer keeps the profiled steps (slowed by the profiler) out of
the epoch's step columns and spread, and counts them in ``op_window_steps`` and ``op_window_s``.

What it writes: ``ops.csv`` (one row per phase and operation), a table at fit end under the fit budget and in
TensorBoard's TEXT tab (through EpochTimer's reporter), the top operations in a compute-bound finding, and on
CUDA the GPU's busy share and launches per step (a launch-bound finding). The raw trace only when asked.
A profiler is a guest: when it cannot start or fails, one warning, and the fit goes on.
"""

from __future__ import annotations

import gzip
import os
import shutil
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch.profiler import ProfilerActivity, profile, record_function, schedule
from typing_extensions import override

from cifarbench.callbacks.ops import OPS_CSV, RANGE_PREFIX, OpSummary, summarize
from cifarbench.callbacks.outputs import OutputGuard
from cifarbench.callbacks.quantities import Q
from cifarbench.callbacks.steps import STEP_END, STEP_START, Phase
from cifarbench.callbacks.timing import EpochTimer

TRACE_FILE = "trace.json.gz"

# The part of the step that each event opens (as steps._part_seconds splits a step's marks).
_OPENS = {
    STEP_START: Q.framework.name,
    STEP_END: Q.data_loading.name,
    Phase.TRAINING_STEP_START: Q.forward.name,
    Phase.TRAINING_STEP_END: Q.framework.name,
    Phase.BEFORE_BACKWARD: Q.backward.name,
    Phase.BEFORE_OPTIMIZER: Q.optimizer.name,
}


class PhaseRanges:
    """Watches the window's steps: one ``record_function`` range per part, and the profiler's step at each
    step's end. An error (the profiler's) stops it and is kept for OpWindow to report: a hook never raises."""

    def __init__(self, profiler: Any, steps: int) -> None:
        self.profiler, self.steps = profiler, steps  # the profiler's steps: warm-up and recorded
        self.ended = 0
        self.recorded = False
        self.error: Exception | None = None
        self._range: Any = None
        self._in_training_step = False

    def __call__(self, phase: str) -> None:
        if self.recorded or self.error is not None:
            return
        try:
            self._switch(phase)
        except Exception as error:  # noqa: BLE001 - inside EpochTimer's hooks: kept, reported by OpWindow
            self.error, self._range = error, None

    def _switch(self, phase: str) -> None:
        if phase == Phase.TRAINING_STEP_START:
            self._in_training_step = True
        elif phase in (Phase.TRAINING_STEP_END, STEP_START):
            self._in_training_step = False
        part = _OPENS.get(phase) or (Q.step_other.name if self._in_training_step else Q.framework.name)
        self.close()
        if phase == STEP_END:  # between two ranges: the recorded steps are whole steps
            self.ended += 1
            self.profiler.step()
            if self.ended >= self.steps:
                self.recorded = True
                return
        self._range = record_function(RANGE_PREFIX + part)
        self._range.__enter__()

    def close(self) -> None:
        open_range, self._range = self._range, None
        if open_range is not None:
            open_range.__exit__(None, None, None)


def profiler_active() -> bool:
    """Whether a torch profiler (torch.profiler, autograd's, Lightning's PyTorchProfiler) is on already."""
    # torch's own flags (private: read defensively, so that another torch version only loses the early check).
    python_flag = getattr(torch.autograd.profiler, "_is_profiler_enabled", False)
    native_check = getattr(torch._C._autograd, "_profiler_enabled", lambda: False)
    return bool(python_flag or native_check())


class OpWindow(Callback):
    """Profiles ``active`` training steps operation by operation, after ``warmup`` steps, ``wait`` steps into
    ``epoch``; needs an :class:`EpochTimer` among the Trainer's callbacks (whose phases it follows).

    Args:
        epoch: the epoch to profile; ``None``: the second, or the first when the fit has only one.
        wait: steps of the epoch before the window (the first steps pay for loader start-up).
        warmup: profiled steps not recorded (the profiler's own start-up), at least 1.
        active: steps recorded.
        device_times: record CUDA kernels (self time on the device, GPU busy, launches); ``None``: on CUDA.
        trace: also write ``trace.json.gz`` (Chrome/Perfetto format) in the log dir, up to ``trace_max_mb``.
        csv_filename: ``ops.csv`` in the log dir; ``None`` writes none.

    ``OpWindow.summary`` (an ``ops.OpSummary``) holds what the window saw once it ends.
    """

    def __init__(
        self,
        epoch: int | None = None,
        wait: int = 1,
        warmup: int = 2,
        active: int = 3,
        device_times: bool | None = None,
        trace: bool = False,
        trace_max_mb: float = 100.0,
        csv_filename: str | None = OPS_CSV,
    ) -> None:
        super().__init__()
        for name, value, least in (("epoch", epoch, 0), ("wait", wait, 0), ("warmup", warmup, 1),
                                   ("active", active, 1)):  # fmt: skip
            if value is not None and value < least:
                raise ValueError(f"OpWindow({name}={value!r}) must be >= {least}")
        if trace_max_mb <= 0:
            raise ValueError(f"OpWindow(trace_max_mb={trace_max_mb!r}) must be > 0")
        self.epoch, self.wait, self.warmup, self.active = epoch, wait, warmup, active
        self.device_times, self.trace, self.trace_max_mb = device_times, trace, trace_max_mb
        self.csv_filename = csv_filename
        self.summary: OpSummary | None = None
        self._timer: EpochTimer | None = None
        self._epoch, self._pending, self._log_dir = 0, False, ""
        self._profiler: Any = None
        self._ranges: PhaseRanges | None = None
        self._session: Any = None
        self._device_times = False

    @property
    def csv_path(self) -> str | None:
        return os.path.join(self._log_dir, self.csv_filename) if self._log_dir and self.csv_filename else None

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._abandon()
        self.summary = None
        timers = [callback for callback in trainer.callbacks if isinstance(callback, EpochTimer)]
        self._timer = timers[0] if timers else None
        if self._timer is None:
            rank_zero_warn("OpWindow follows EpochTimer's phases and needs an EpochTimer among the Trainer's "
                           "callbacks; without one there is no operator window.")  # fmt: skip
        last = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        self._epoch = self.epoch if self.epoch is not None else (0 if last == 1 else 1)
        self._pending = self._timer is not None

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_dir = trainer.log_dir or trainer.default_root_dir  # every rank asks: a collective call

    @override
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        ranges = self._ranges
        if ranges is not None and (ranges.recorded or ranges.error is not None):
            self._finish(trainer)
        elif self._pending and trainer.current_epoch == self._epoch and batch_idx == self.wait:
            self._start(trainer)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        ranges = self._ranges
        if ranges is not None and (ranges.recorded or ranges.error is not None):
            self._finish(trainer)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._ranges is not None:  # the epoch ended inside the window
            self._finish(trainer)

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._abandon()

    @override
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._abandon()

    def _start(self, trainer: L.Trainer) -> None:
        self._pending = False
        if profiler_active():
            rank_zero_warn("OpWindow: another profiler is already active (torch.profiler, or Lightning's "
                           "profiler=...); two cannot run at once, so there is no operator window in this "
                           "fit. The fit goes on.")  # fmt: skip
            return
        device = trainer.strategy.root_device
        if self.device_times and device.type != "cuda":
            rank_zero_warn(f"OpWindow(device_times=True): device times need CUDA, and this fit runs on "
                           f"{device}; ops.csv's self_device_s stays 0 and there is no GPU busy figure. The "
                           f"fit goes on with host times.")  # fmt: skip
        self._device_times = device.type == "cuda" and self.device_times is not False
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if self._device_times else [])]
        try:
            profiler = profile(
                activities=activities,
                schedule=schedule(wait=0, warmup=self.warmup, active=self.active, repeat=1),
                record_shapes=False, profile_memory=False, with_stack=False,
            )  # fmt: skip
            profiler.start()
        except Exception as error:  # noqa: BLE001 - a platform without the profiler: the fit goes on
            rank_zero_warn(f"OpWindow could not start torch.profiler ({type(error).__name__}: {error}); the "
                           f"fit goes on without the operator window.")  # fmt: skip
            return
        self._profiler, self._ranges = profiler, PhaseRanges(profiler, self.warmup + self.active)
        self._session = self._timer.session  # type: ignore[union-attr]
        self._session.steps.watch(self._ranges)

    def _finish(self, trainer: L.Trainer) -> None:
        profiler, ranges, session = self._profiler, self._ranges, self._session
        self._abandon(stop=False)
        try:
            profiler.stop()
            if ranges.error is not None:
                raise ranges.error
            recorded = max(0, ranges.ended - self.warmup)
            if recorded < self.active:
                rank_zero_warn(f"OpWindow recorded {recorded} of {self.active} steps: epoch {self._epoch} "
                               f"ended first. Profile a longer epoch (OpWindow(epoch=...)) or fewer "
                               f"steps.")  # fmt: skip
            if recorded == 0:
                return
            summary = summarize(profiler.events(), self.warmup, self._device_times)
            # Cut short, the profiler's last step is the wait after the last whole one.
            summary.recorded_steps = min(summary.recorded_steps, recorded)
        except Exception as error:  # noqa: BLE001 - the profiler's failure is not the fit's
            rank_zero_warn(f"OpWindow: the profiler failed ({type(error).__name__}: {error}); the fit goes "
                           f"on without the operator window.")  # fmt: skip
            return
        self.summary = session.operators = summary
        if trainer.is_global_zero:
            self._write(profiler, summary)

    def _write(self, profiler: Any, summary: OpSummary) -> None:
        guard, path = OutputGuard(), self.csv_path
        if path is not None:
            guard.run(path, lambda: summary.write_csv(path))
        if self.trace and self._log_dir:
            trace = os.path.join(self._log_dir, TRACE_FILE)
            guard.run(trace, lambda: write_trace(profiler, trace, int(self.trace_max_mb * 1e6)))

    def _abandon(self, stop: bool = True) -> None:
        """Let go of the profiler and the watch (stopping the profiler unless the caller does)."""
        profiler, ranges, session = self._profiler, self._ranges, self._session
        self._profiler, self._ranges, self._session = None, None, None
        if session is not None:
            session.steps.watch(None)
        if ranges is not None:
            ranges.close()
        if stop and profiler is not None:
            try:
                profiler.stop()
            except Exception:  # noqa: BLE001, S110 - already failing (an exception, a teardown): nothing to report
                pass


def write_trace(profiler: Any, path: str, max_bytes: int) -> None:
    """The window's trace, gzipped (Perfetto and Holistic Trace Analysis read it); removed when over
    ``max_bytes`` (the error says so)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    raw = f"{path}.partial.json"
    try:
        profiler.export_chrome_trace(raw)
        with open(raw, "rb") as source, gzip.open(path, "wb") as target:
            shutil.copyfileobj(source, target)
    finally:
        if os.path.exists(raw):
            os.remove(raw)
    size = os.path.getsize(path)
    if size > max_bytes:
        os.remove(path)
        raise ValueError(f"the trace is {size / 1e6:.1f} MB gzipped, over trace_max_mb={max_bytes / 1e6:g}; "
                         f"it was removed. Record fewer steps (active) or raise the cap")  # fmt: skip

"""EpochTimer: where a fit's time goes, per step, per epoch and for the whole fit.

Definitions (README, "Timing definitions"):

- data_loading: time between the end of one training step and the start of the next (from the epoch start, or
  the end of a pause, for the first): waiting for the batch, its host-to-device copy, and Lightning's
  between-step work. The time in ``Strategy.batch_to_device`` (the copy, and any ``on_after_batch_transfer``
  work such as the gpu pipeline's augmentation) is also reported alone as ``transfer_s``.
- training: from ``on_train_batch_start`` (batch on the device) to ``on_train_batch_end`` (after the optimizer
  step), split into forward, backward, optimizer and step_other (:mod:`cifarbench.callbacks.accounting`).
- epoch: wall time from train-epoch start to train-epoch end, with validation and checkpointing excluded.
- the fit budget: every second from the fit's start to its end, by bucket (start-up, sanity check, first step,
  the step buckets, validation, checkpointing, other).

On CUDA the per-step quantities are read from events recorded on the current stream, read as the GPU passes
them (no per-step synchronize); ``sync=True`` switches to the lab's ``torch.cuda.synchronize()`` at each
mark.

The hooks here only turn Lightning's calls into marks. The accounting (``accounting.py``), the outputs
(``outputs.py``, ``table.py``) and the verdict (``verdict.py``) are apart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.data import extract_batch_size
from typing_extensions import override

from cifarbench.callbacks.accounting import EpochClock, FitAccount, Phase, StepAccount, StepTimes
from cifarbench.callbacks.clocks import Clock, make_clock, wall_time
from cifarbench.callbacks.flops import peak_flops, training_flops_per_sample
from cifarbench.callbacks.outputs import (
    OutputGuard,
    TimingsCsv,
    add_budget_text,
    add_tensorboard_layout,
    budget_markdown,
    epoch_metrics,
    log_metrics,
    machine_description,
    step_metrics,
    write_budget_json,
)
from cifarbench.callbacks.records import BUDGET_JSON, TIMINGS_CSV, EpochTiming, epoch_timing
from cifarbench.callbacks.table import render_report
from cifarbench.callbacks.verdict import GENERIC_ADVICE, Finding, verdict

# Sampled steps wait for the loggers until the epoch ends: a logger's write costs far more than a step's
# marks (TensorBoard: about 0.1 ms a scalar), and at epoch end it is not inside any step. A very long epoch
# writes them every this many points, so memory stays bounded (about 100 bytes a point).
CURVE_POINTS_KEPT = 2_000
# The strategy and trainer methods EpochTimer wraps (as instance attributes) to see copies, optimizer steps
# and checkpoint saves, which have no hooks of their own.
_WRAPPED = (("strategy", "batch_to_device"), ("strategy", "optimizer_step"), ("trainer", "save_checkpoint"))


class EpochTimer(Callback):
    """Times data loading, the training step (forward, backward, optimizer) and the epoch, and the whole fit.

    Per epoch: a row in ``EpochTimer.history`` and ``<log dir>/timings.csv``, and TensorBoard scalars. At fit
    end (also after an interrupt): the fit budget (``EpochTimer.budget``, ``<log dir>/fit_budget.json``,
    TensorBoard text) and a verdict, printed under the tables.

    Args:
        sync: on CUDA, synchronize at every mark (the lab's exact method) instead of reading events as the GPU
            passes them. Slower; for comparison.
        log_every_n_steps: per-step curves (``time/step_*``) keep every n-th step. ``None`` follows the
            Trainer's ``log_every_n_steps``.
        csv_filename: file in the run's log dir that gets one row per finished epoch; ``None`` disables it.
        print_table: print the per-epoch table, the fit budget and the verdict when fit ends (or is
            interrupted).
        peak_flops: the device's peak FLOP/s for MFU; ``None`` takes Lightning's table for known GPUs (no MFU
            on a CPU or an unknown device).
        flops_per_sample: training FLOPs (forward and backward) per sample for MFU; ``None`` measures them on
            a meta-device copy of the module from its ``example_input_array``.

    ``advice`` (an attribute, kind -> text) is what each verdict suggests; it starts as the generic advice,
    and a project can name its own options there (cifarbench's CLI does).

    Example::

        timer = EpochTimer()
        trainer = L.Trainer(callbacks=[timer])
        timer.mark_fit_start()  # optional: lets the budget see the DataModule's setup too
        trainer.fit(model, datamodule)
        timer.history, timer.budget
    """

    def __init__(
        self,
        sync: bool = False,
        log_every_n_steps: int | None = None,
        csv_filename: str | None = TIMINGS_CSV,
        print_table: bool = True,
        peak_flops: float | None = None,
        flops_per_sample: float | None = None,
    ) -> None:
        super().__init__()
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"EpochTimer(log_every_n_steps={log_every_n_steps!r}) must be >= 1 or None")
        if csv_filename is not None and (not csv_filename or os.sep in csv_filename):
            raise ValueError(f"EpochTimer(csv_filename={csv_filename!r}) must be a plain file name or None")
        for name, value in (("peak_flops", peak_flops), ("flops_per_sample", flops_per_sample)):
            if value is not None and value <= 0:
                raise ValueError(f"EpochTimer({name}={value!r}) must be > 0 or None")
        self.sync = sync
        self.log_every_n_steps = log_every_n_steps
        self.csv_filename = csv_filename
        self.print_table = print_table
        self.peak_flops = peak_flops
        self.flops_per_sample = flops_per_sample
        self.advice: dict[str, str] = dict(GENERIC_ADVICE)

        self._history: list[EpochTiming] = []
        self._device = torch.device("cpu")
        self._clock: Clock = make_clock(self._device)
        self._steps = StepAccount(self._clock)
        self._fit = FitAccount()
        self._fit_start_given = False
        self._set_up = False  # between setup and the fit's end: only then is there a fit to report
        self._budget: dict[str, float] = {}
        self._verdict: list[Finding] = []
        self._guard = OutputGuard()
        self._log_dir: str | None = None
        self._csv: TimingsCsv | None = None
        self._mfu_flops: tuple[float, float] | None = None  # (per sample, device peak) when both are known
        self._every_n = 1
        self._curve: list[StepTimes] = []  # sampled steps, waiting to be logged
        self._in_epoch = False
        self._validating = False
        self._epoch = EpochClock()

    # ----------------------------------------------------------------------------------------- results
    @property
    def history(self) -> list[EpochTiming]:
        """Every finished epoch of this run, including those restored from a checkpoint."""
        return list(self._history)

    @property
    def budget(self) -> dict[str, float]:
        """The last fit's seconds by bucket, in order (empty before a fit ends); they add up to its time."""
        return dict(self._budget)

    @property
    def verdict(self) -> list[Finding]:
        """What bounds the last fit and what to try next (empty before a fit ends)."""
        return list(self._verdict)

    @property
    def csv_path(self) -> str | None:
        """Where the per-epoch rows are written (set once fit starts)."""
        return self._csv.path if self._csv else None

    @property
    def budget_path(self) -> str | None:
        return os.path.join(self._log_dir, BUDGET_JSON) if self._log_dir else None

    def mark_fit_start(self) -> None:
        """Start the fit's clock now: call just before ``trainer.fit`` to count what Lightning runs before the
        first callback hook (the DataModule's ``prepare_data`` and ``setup``, the logger's start) as start-up.
        """
        self._fit.begin(time.perf_counter())
        self._fit_start_given = True

    # ------------------------------------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not self._fit_start_given:
            self._fit.begin(time.perf_counter())
        self._fit_start_given = False
        self._set_up = True
        self._log_dir = None
        self._device = trainer.strategy.root_device
        self._clock = make_clock(self._device, self.sync)
        self._steps = StepAccount(self._clock)
        self._budget, self._verdict = {}, []
        self._every_n = self.log_every_n_steps or trainer.log_every_n_steps or 1
        self._wrap(trainer)

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._end_fit(trainer, status="finished")
        self._unwrap(trainer)

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every rank asks: Trainer.log_dir broadcasts rank 0's answer, a collective call.
        self._log_dir = trainer.log_dir or trainer.default_root_dir
        self._start_outputs(trainer)
        self._mfu_flops = self._flops_for_mfu(trainer, pl_module)

    @override
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit.open("sanity_check", wall_time(self._device))

    @override
    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit.close("sanity_check", wall_time(self._device))

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_epoch()

    @override
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._in_epoch:
            # Resumed from a mid-epoch checkpoint: Lightning skips on_train_epoch_start. The epoch's row then
            # covers the steps run since the resume (its `steps` says how many).
            self._start_epoch()
        if self._epoch.paused:
            self._resume()
        self._steps.start_step()

    @override
    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        self._steps.mark(Phase.BEFORE_BACKWARD)

    @override
    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._steps.mark(Phase.AFTER_BACKWARD)

    @override
    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self._steps.mark(Phase.BEFORE_OPTIMIZER)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._steps.end_step(_batch_size(batch), trainer.global_step):
            self._take(trainer, self._steps.drain())

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return  # inside the sanity check's own span
        if self._in_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            # The epoch's training is over: record it now, so that a checkpoint saved when validation ends
            # (ModelCheckpoint's default when validation runs) already holds this epoch's timing.
            self._end_epoch(trainer)
        now = wall_time(self._device)
        self._fit.open("validation", now)
        if self._in_epoch:  # validation inside the epoch: the epoch's clock pauses
            self._validating = True
            self._epoch.pause(now)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        now = wall_time(self._device)
        self._fit.close("validation", now)
        if self._validating:
            self._validating = False
            self._epoch.pause_ended(now, self._clock.mark())

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._in_epoch:  # not already recorded when end-of-epoch validation started
            self._end_epoch(trainer)

    @override
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # The finished epochs are already in the CSV; the budget and tables still come, so an interrupted run
        # reports what it did. Lightning skips callbacks' teardown after an exception. Nothing here may wait
        # for the GPU (a hung device, a sticky CUDA error) or raise: the user's exception comes first.
        self._unwrap(trainer)
        if not self._set_up:  # it failed before the fit reached EpochTimer (bad data, bad options)
            self._fit.reset()
            self._fit_start_given = False
            return
        try:
            if self._in_epoch:
                self._in_epoch = False
                self._take(trainer, self._steps.drain())  # the steps the GPU has passed; no synchronize
                self._fit.add_epoch(self._steps.epoch)
                self._write_curve(trainer)
            self._end_fit(trainer, status="interrupted", now=time.perf_counter())
        except Exception as error:  # noqa: BLE001 - a report must not replace the exception that stopped the fit
            rank_zero_warn(
                f"EpochTimer could not report the interrupted fit ({type(error).__name__}: {error})."
            )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": [row.as_row() for row in self._history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._history = [EpochTiming(**row) for row in state_dict.get("history", [])]

    # ---------------------------------------------------------------------------------------- epochs
    def _start_epoch(self) -> None:
        self._in_epoch = True
        self._validating = False
        self._epoch.begin(wall_time(self._device))
        self._fit.epoch_started(self._epoch.start_s)
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)
        self._steps.start_epoch()

    def _end_epoch(self, trainer: L.Trainer) -> None:
        self._resume(at_epoch_end=True)
        epoch_s = self._epoch.seconds(wall_time(self._device))
        self._in_epoch = False
        self._take(trainer, self._steps.close_epoch())
        self._fit.add_epoch(self._steps.epoch)
        self._write_curve(trainer)
        timing = self._epoch_timing(trainer, epoch_s)
        self._history.append(timing)
        self._guard.run(
            "loggers (epoch metrics)",
            lambda: log_metrics(trainer.loggers, epoch_metrics(timing), trainer.global_step),
        )
        self._append_csv(timing)

    def _resume(self, at_epoch_end: bool = False) -> None:
        """Close a pause: the next wait for data starts where it ended (at epoch end, a fallback, now)."""
        mark = self._epoch.resume(lambda: (wall_time(self._device), self._clock.mark()), at_epoch_end)
        if mark is not None:
            self._steps.restart_gap(mark)

    def _take(self, trainer: L.Trainer, steps: list[StepTimes]) -> None:
        """Steps just read: the fit's first is kept apart, the sampled ones wait for the per-step curves."""
        if not steps:
            return
        self._fit.saw_step(steps[0])
        if trainer.loggers:
            self._curve.extend(step for step in steps if step.global_step % self._every_n == 0)
            if len(self._curve) >= CURVE_POINTS_KEPT:
                self._write_curve(trainer)

    def _write_curve(self, trainer: L.Trainer) -> None:
        """The sampled steps to the loggers, at epoch end (or sooner, when CURVE_POINTS_KEPT are waiting)."""
        points, self._curve = self._curve, []
        if points and trainer.loggers:
            self._guard.run("loggers (per-step curves)", lambda: _log_steps(trainer, points))

    def _epoch_timing(self, trainer: L.Trainer, epoch_s: float) -> EpochTiming:
        peak_memory = torch.cuda.max_memory_allocated(self._device) if self._device.type == "cuda" else None
        return epoch_timing(
            trainer.current_epoch,
            self._steps.epoch,
            self._steps.spread,
            epoch_s,
            self._clock.name,
            peak_memory,
            self._mfu_flops,
            trainer.world_size,
            lambda seconds, samples: _reduce_over_ranks(trainer, seconds, samples),
        )

    # ------------------------------------------------------------------------------------------ fit end
    def _end_fit(self, trainer: L.Trainer, status: str, now: float | None = None) -> None:
        self._set_up, self._fit_start_given = False, False
        if not self._fit.begun:
            return
        self._budget = self._fit.budget(now if now is not None else wall_time(self._device))
        self._verdict = verdict(self._budget, self._fit.steps.transfer_s, self.advice)
        self._fit.reset()
        self._report(trainer, status)

    @rank_zero_only
    def _report(self, trainer: L.Trainer, status: str) -> None:
        if self.budget_path is not None:
            path = self.budget_path
            machine = machine_description(self._device)
            self._guard.run(
                path,
                lambda: write_budget_json(
                    path, self._budget, self._verdict, status, self._clock.name, machine
                ),
            )
        markdown = budget_markdown(self._budget, self._verdict)
        self._guard.run(
            "loggers (fit budget text)",
            lambda: add_budget_text(trainer.loggers, markdown, trainer.global_step),
        )
        if self.print_table:
            render_report(self._history, self._budget, self._verdict, self._clock.name)

    # ------------------------------------------------------------------------------------------ outputs
    @rank_zero_only
    def _start_outputs(self, trainer: L.Trainer) -> None:
        """(Re)write the CSV with the rows known so far (none, or those restored from a checkpoint)."""
        if self.csv_filename is not None and self._log_dir is not None:
            csv_file = self._csv = TimingsCsv(os.path.join(self._log_dir, self.csv_filename))
            self._guard.run(csv_file.path, lambda: csv_file.write_all(self._history))
        self._guard.run("TensorBoard layout", lambda: add_tensorboard_layout(trainer.loggers))

    @rank_zero_only
    def _append_csv(self, timing: EpochTiming) -> None:
        csv_file = self._csv
        if csv_file is not None:
            self._guard.run(csv_file.path, lambda: csv_file.append(timing, self._history))

    def _flops_for_mfu(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[float, float] | None:
        peak = self.peak_flops or peak_flops(trainer)
        if peak is None:
            return None  # measuring FLOPs would be wasted work
        per_sample = self.flops_per_sample or training_flops_per_sample(pl_module)
        return (per_sample, peak) if per_sample else None

    # ------------------------------------------------------------------------- copies, optimizer steps, saves
    def _wrap(self, trainer: L.Trainer) -> None:
        """See what has no hook: the copy of each training batch to the device, the end of every optimizer
        step, and every checkpoint save. Each is an instance attribute over the method, removed in teardown.
        """
        wrappers: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
            "batch_to_device": self._timed_transfer,
            "optimizer_step": self._marked_optimizer_step,
            "save_checkpoint": self._timed_save,
        }
        for owner_name, method in _WRAPPED:
            owner = trainer if owner_name == "trainer" else trainer.strategy
            if method not in vars(owner):  # not already wrapped (setup runs again for a second fit)
                setattr(owner, method, wrappers[method](getattr(owner, method)))

    @staticmethod
    def _unwrap(trainer: L.Trainer) -> None:
        for owner_name, method in _WRAPPED:
            owner = trainer if owner_name == "trainer" else trainer.strategy
            if method in vars(owner):
                delattr(owner, method)  # drops the instance attribute, exposing the method again

    def _timed_transfer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed_batch_to_device(*args: Any, **kwargs: Any) -> Any:
            if not self._in_epoch or self._validating:
                return original(*args, **kwargs)
            start = self._clock.mark()
            batch = original(*args, **kwargs)
            self._steps.add_transfer(start, self._clock.mark())
            return batch

        return timed_batch_to_device

    def _marked_optimizer_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def marked_optimizer_step(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            self._steps.mark(Phase.AFTER_OPTIMIZER)
            return result

        return marked_optimizer_step

    def _timed_save(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed_save_checkpoint(*args: Any, **kwargs: Any) -> Any:
            if self._steps.in_step:
                # A callback saving inside a step (before EpochTimer's on_train_batch_end): the save is that
                # step's time, counted once, there.
                return original(*args, **kwargs)
            start = wall_time(self._device)
            # Inside a training epoch, the epoch's clock pauses as for validation: a save right after
            # mid-epoch validation extends that pause, so the next batch's wait starts after the save.
            pauses = self._in_epoch and not self._validating
            if pauses:
                self._epoch.pause(start)
            self._fit.open("checkpointing", start)
            try:
                return original(*args, **kwargs)
            finally:
                end = wall_time(self._device)
                self._fit.close("checkpointing", end)
                if pauses:
                    self._epoch.pause_ended(end, self._clock.mark())

        return timed_save_checkpoint


def _log_steps(trainer: L.Trainer, steps: list[StepTimes]) -> None:
    for step in steps:
        log_metrics(trainer.loggers, step_metrics(step), step.global_step)


def _batch_size(batch: Any) -> int:
    # The common (inputs, targets) batch is read directly: extract_batch_size walks the whole structure, a few
    # microseconds a step that the overhead budget does not have.
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        shape = batch[0].shape
        if shape:
            return shape[0]
    try:
        return extract_batch_size(batch)
    except Exception:  # a batch with no tensor in it: count the step, not its samples
        return 0


def _reduce_over_ranks(
    trainer: L.Trainer, seconds: list[float], samples: int
) -> tuple[list[float], list[float], int]:
    """Once per epoch: max and mean of each per-rank total over ranks, and the samples summed over ranks."""
    if trainer.world_size == 1:
        return seconds, seconds, samples
    local = torch.tensor([*seconds, float(samples)], dtype=torch.float64, device=trainer.strategy.root_device)
    gathered = trainer.strategy.all_gather(local).reshape(trainer.world_size, -1)
    per_metric = gathered[:, :-1]
    return (
        per_metric.max(dim=0).values.tolist(),
        per_metric.mean(dim=0).tolist(),
        int(gathered[:, -1].sum().item()),
    )

"""EpochTimer: where a fit's time goes, per step, per epoch and for the whole fit.

The quantities are declared in :mod:`~cifarbench.callbacks.quantities` and defined in the README ("Timing
definitions"): data loading is the gap between training steps (the copy to the device included, and also
reported alone as ``transfer_s``); training runs from ``on_train_batch_start`` to ``on_train_batch_end``,
split into the user's forward, backward, optimizer, Lightning's own work and the rest
(:mod:`~cifarbench.callbacks.steps`); the epoch is its wall time without validation and saves; the fit
budget holds every second of the fit. On CUDA the marks are events on the current stream, read as the GPU
passes them (no per-step synchronize); ``sync=True`` synchronizes at each mark instead, as the lab did.

The hooks here only turn Lightning's calls into marks and hand them on: the fit's stage and accounts are a
:class:`~cifarbench.callbacks.session.FitSession`, the wrappers are :mod:`~cifarbench.callbacks.wrappers`, and
one rank-zero :class:`~cifarbench.callbacks.reporter.Reporter` writes the outputs. Every hook counts its own
host time as the budget's ``profiler`` bucket.
"""

from __future__ import annotations

import functools
import os
from time import perf_counter
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from cifarbench.callbacks import wrappers
from cifarbench.callbacks.flops import mfu_flops
from cifarbench.callbacks.progress import EpochProgress
from cifarbench.callbacks.records import BUDGET_JSON, TIMINGS_CSV, EpochTiming, epoch_timing
from cifarbench.callbacks.reporter import Reporter, run_file
from cifarbench.callbacks.samples import batch_samples, sample_counter
from cifarbench.callbacks.session import FitSession, costed
from cifarbench.callbacks.steps import Phase
from cifarbench.callbacks.verdict import GENERIC_ADVICE, Finding, divergence


class EpochTimer(Callback):
    """Times data loading, the training step and its parts, the epoch, and the whole fit.

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

    A new fit that does not resume from a checkpoint starts a new history; a resumed one keeps the
    checkpoint's. A Tuner's inner fit (``lr_find``, ``scale_batch_size``) leaves nothing behind.

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
        self.sync, self.log_every_n_steps = sync, log_every_n_steps
        self.csv_filename, self.print_table = csv_filename, print_table
        self.peak_flops, self.flops_per_sample = peak_flops, flops_per_sample
        self.advice: dict[str, str] = dict(GENERIC_ADVICE)

        self._history: list[Any] = []
        self._session = FitSession()  # idle until setup; a new one for every fit
        self._fit_start_s: float | None = None  # mark_fit_start()'s time, for the next fit
        self._budget: Any = None
        self._verdict: list[Finding] = []
        self._reporter: Reporter | None = None  # rank zero only
        self._log_dir: str | None = None
        self._mfu_flops: tuple[float, float] | None = None  # (per sample, device peak) when both are known
        self._every_n, self._samples = 1, batch_samples  # per-step curves' sampling; samples in a batch

    @property
    def history(self) -> list[Any]:
        """Every finished epoch of this run (``EpochTiming``), including those restored from a checkpoint."""
        return list(self._history)

    @property
    def budget(self) -> Any:
        """The last fit's seconds by bucket (a ``Budget``; ``None`` before a fit ends); they add up to it."""
        return self._budget

    @property
    def verdict(self) -> list[Finding]:
        """What bounds the last fit and what to try next (empty before a fit ends)."""
        return list(self._verdict)

    session = property(lambda self: self._session, doc="The current fit's FitSession (OpWindow watches it).")

    @property
    def csv_path(self) -> str | None:
        """Where the per-epoch rows are written (set once fit starts)."""
        return run_file(self._log_dir, self.csv_filename)

    @property
    def budget_path(self) -> str | None:  # where fit_budget.json is written (set once fit starts)
        return run_file(self._log_dir, BUDGET_JSON)

    def mark_fit_start(self) -> None:
        """Start the fit's clock now: just before ``trainer.fit``, so that start-up holds what Lightning runs
        before the first hook (the DataModule's ``prepare_data`` and ``setup``, the logger's start)."""
        self._fit_start_s = perf_counter()

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._session = FitSession(trainer.strategy.root_device, self.sync)
        self._session.set_up(self._fit_start_s if self._fit_start_s is not None else perf_counter())
        self._fit_start_s = None
        self._history, self._budget, self._verdict = [], None, []  # a checkpoint's history loads after this
        self._log_dir, self._reporter = None, None
        self._every_n = self.log_every_n_steps or trainer.log_every_n_steps or 1
        wrappers.install(trainer, self._session)

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            if self._session.stage.fit_started:
                self._end_fit(trainer, "finished")
            self._session = FitSession()  # a Tuner's inner fit ends here before it started: nothing to report
        wrappers.remove(trainer)

    @override
    @costed
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._session.fit_started()
        # Every rank asks: Trainer.log_dir broadcasts rank 0's answer, a collective call.
        self._log_dir = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero:
            progress = EpochProgress(trainer.progress_bar_callback, self.advice)
            outputs = (self.csv_path, self.budget_path, self.print_table, self._history, progress)
            self._reporter = Reporter(trainer.loggers, *outputs)
        self._mfu_flops = mfu_flops(trainer, pl_module, self.peak_flops, self.flops_per_sample)

    @override
    @costed
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._session.sanity_check(starting=True)

    @override
    @costed
    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._session.sanity_check(starting=False)

    @override
    @costed
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._samples = sample_counter(trainer.train_dataloader)
        self._session.start_epoch()

    @override
    @costed
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._session.start_step()

    @override
    @costed
    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        self._session.steps.mark(Phase.BEFORE_BACKWARD)

    @override
    @costed
    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._session.steps.mark(Phase.AFTER_BACKWARD)

    @override
    @costed
    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self._session.steps.mark(Phase.BEFORE_OPTIMIZER)

    @override
    @costed
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._session.steps.end_step(self._samples(batch), trainer.global_step):
            self._log_steps(self._session.read_steps())

    @override
    @costed
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._session.stage.fit_started:
            return  # inside the sanity check's own span, or not in a fit (trainer.validate)
        if self._session.stage.in_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            # The epoch's training is over: record it now, so that a checkpoint saved when validation ends
            # (ModelCheckpoint's default when validation runs) already holds this epoch's timing.
            self._end_epoch(trainer)
        self._session.start_validation()

    @override
    @costed
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._session.end_validation()

    @override
    @costed
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._session.stage.in_epoch:  # not already recorded when end-of-epoch validation started
            self._end_epoch(trainer)

    @override
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # The finished epochs are in the CSV; the budget and tables still come (Lightning skips teardown after
        # an exception). Nothing here may wait for the GPU or raise: the user's exception comes first.
        wrappers.remove(trainer)
        if not self._session.stage.fit_started:  # it failed before the fit began (bad data, bad options)
            self._session = FitSession()
            return
        try:
            if self._session.stage.in_epoch:
                self._log_steps(self._session.interrupt_epoch())
            self._end_fit(trainer, "interrupted", now=perf_counter())
        except Exception as error:  # noqa: BLE001 - a report must not replace the exception that stopped the fit
            rank_zero_warn(
                f"EpochTimer could not report the interrupted fit ({type(error).__name__}: {error})."
            )
        finally:
            self._session = FitSession()

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": [row.as_row() for row in self._history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._history = [EpochTiming(**row) for row in state_dict.get("history", [])]
        if self._reporter is not None:  # restored after the outputs started: the CSV shows these rows too
            self._reporter.rows_restored(self._history)

    def _end_epoch(self, trainer: L.Trainer) -> None:
        session = self._session
        epoch_s, steps = session.end_epoch()
        self._log_steps(steps)
        gather = functools.partial(session.ranks.gather, trainer)
        timing = epoch_timing(
            trainer.current_epoch, session.steps.epoch, session.steps.spread, epoch_s, session.clock.name,
            session.peak_memory(), self._mfu_flops, trainer.world_size, gather, session.steps.window,
        )  # fmt: skip
        self._history.append(timing)
        if self._reporter is not None:
            self._reporter.epoch_ended(timing, self._history, trainer.global_step, session.ranks)

    def _log_steps(self, steps: list[Any]) -> None:
        if self._reporter is not None and steps:
            self._reporter.steps_to_log(steps, self._every_n)

    def _end_fit(self, trainer: L.Trainer, status: str, now: float | None = None) -> None:
        session = self._session
        ended = session.end(self.advice, now, divergence(trainer.callbacks))
        if ended is not None:
            self._budget, self._verdict = ended
            if self._reporter is not None:
                self._reporter.fit_ended(self._history, *ended, status, session, trainer.global_step)

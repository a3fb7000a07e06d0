"""EpochTimer: where each training epoch's time goes (data loading vs training step), per epoch and per step.

Definitions (README, "Timing definitions"):

- data_loading: time between the end of one training step and the start of the next (from the epoch start
  for the first step): waiting for the batch, its host-to-device copy, and Lightning's between-step work.
  The time in ``Strategy.batch_to_device`` (the copy, and any ``on_after_batch_transfer`` work such as the
  gpu pipeline's augmentation) is also reported alone as ``transfer_s``.
- training: from ``on_train_batch_start`` (batch on the device) to ``on_train_batch_end`` (after the
  optimizer step).
- epoch: wall time from train-epoch start to train-epoch end, with validation (and what runs with it, such as
  checkpointing) excluded.

On CUDA both per-step quantities are read from events recorded on the current stream and read once per
epoch; ``sync=True`` switches to the lab's ``torch.cuda.synchronize()`` at every boundary instead.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.data import extract_batch_size
from typing_extensions import override

from cifarbench.callbacks.clocks import Clock, make_clock, wall_time
from cifarbench.callbacks.flops import peak_flops, training_flops_per_sample
from cifarbench.callbacks.table import render_timing_table


@dataclass(frozen=True)
class EpochTiming:
    """One finished training epoch. Seconds are the slowest rank's; ``*_mean_s`` average over ranks."""

    epoch: int
    data_loading_s: float
    training_s: float
    epoch_s: float
    transfer_s: float
    steps: int
    samples: int
    samples_per_s: float
    data_loading_mean_s: float
    training_mean_s: float
    epoch_mean_s: float
    world_size: int
    clock: str
    mfu: float | None = None  # model FLOP utilization, when the device's peak is known


CSV_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(EpochTiming))

# One TensorBoard chart with the epoch's split into data loading and training (custom-scalars plugin).
TENSORBOARD_LAYOUT: dict[str, dict[str, list[Any]]] = {
    "cifarbench timing": {
        "data loading vs training per epoch (s)": [
            "Multiline",
            ["^time/data_loading$", "^time/training$", "^time/epoch$"],
        ],
        "per step (s)": ["Multiline", ["^time/step_data_loading$", "^time/step_training$"]],
    }
}


@dataclass
class _Step:
    """The marks of one training step; read only at epoch end."""

    gap_start: Any
    start: Any
    end: Any
    samples: int
    global_step: int


@dataclass
class _Pause:
    """Validation inside a training epoch: excluded from the epoch's time."""

    start_wall: float
    end: tuple[float, Any] | None = None  # (wall time, clock mark) when validation ended


class EpochTimer(Callback):
    """Times data loading, the training step and the epoch, and logs them once per epoch.

    Args:
        sync: on CUDA, synchronize at every step boundary (the lab's exact method) instead of reading
            events once per epoch. Slower; for comparison.
        log_every_n_steps: per-step curves (``time/step_*``) keep every n-th step. ``None`` follows the
            Trainer's ``log_every_n_steps``.
        csv_filename: file in the run's log dir that gets one row per finished epoch; ``None`` disables it.
        print_table: print a per-epoch table when fit ends (or is interrupted).
        peak_flops: the device's peak FLOP/s for MFU; ``None`` takes Lightning's table for known GPUs (no MFU
            on a CPU or an unknown device).
        flops_per_sample: training FLOPs (forward and backward) per sample for MFU; ``None`` measures them on
            a meta-device copy of the module from its ``example_input_array``.

    Example::

        trainer = L.Trainer(callbacks=[EpochTimer()])
        trainer.fit(model, datamodule)
        for row in trainer.callbacks[0].history: ...
    """

    def __init__(
        self,
        sync: bool = False,
        log_every_n_steps: int | None = None,
        csv_filename: str | None = "timings.csv",
        print_table: bool = True,
        peak_flops: float | None = None,
        flops_per_sample: float | None = None,
    ) -> None:
        super().__init__()
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"EpochTimer(log_every_n_steps={log_every_n_steps!r}) must be >= 1 or None")
        if csv_filename is not None and (not csv_filename or os.sep in csv_filename):
            raise ValueError(f"EpochTimer(csv_filename={csv_filename!r}) must be a plain file name or None")
        self.sync = sync
        self.log_every_n_steps = log_every_n_steps
        self.csv_filename = csv_filename
        self.print_table = print_table
        for name, value in (("peak_flops", peak_flops), ("flops_per_sample", flops_per_sample)):
            if value is not None and value <= 0:
                raise ValueError(f"EpochTimer({name}={value!r}) must be > 0 or None")
        self.peak_flops = peak_flops
        self.flops_per_sample = flops_per_sample

        self._history: list[EpochTiming] = []
        self._device = torch.device("cpu")
        self._clock: Clock = make_clock(self._device)
        self._csv_path: str | None = None
        self._mfu_flops: tuple[float, float] | None = None  # (per sample, device peak) when both are known
        self._in_epoch = False
        self._reset_epoch()

    # ----------------------------------------------------------------------------------------- results
    @property
    def history(self) -> list[EpochTiming]:
        """Every finished epoch of this run, including those restored from a checkpoint."""
        return list(self._history)

    @property
    def csv_path(self) -> str | None:
        """Where the per-epoch rows are written (set once fit starts)."""
        return self._csv_path

    # ------------------------------------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._device = trainer.strategy.root_device
        self._clock = make_clock(self._device, self.sync)
        self._wrap_batch_to_device(trainer)

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._unwrap_batch_to_device(trainer)

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Every rank asks: Trainer.log_dir broadcasts rank 0's answer, a collective call.
        log_dir = trainer.log_dir or trainer.default_root_dir
        self._start_csv(log_dir)
        self._add_tensorboard_layout(trainer)
        self._mfu_flops = self._flops_for_mfu(trainer, pl_module)

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
        self._resume_if_paused(at_epoch_end=False)
        self._step_start = self._clock.mark()

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        end = self._clock.mark()
        step = _Step(self._gap_start, self._step_start, end, _batch_size(batch), trainer.global_step)
        self._steps.append(step)
        self._gap_start = end

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation is not training time (and the sanity check runs before any epoch starts).
        if not self._in_epoch:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            # The epoch's training is over: record it now, so that a checkpoint saved when validation ends
            # (ModelCheckpoint's default when validation runs) already holds this epoch's timing.
            self._end_epoch(trainer)
            return
        self._validating = True
        if self._pause is None:
            self._pause = _Pause(start_wall=wall_time(self._device))

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validating and self._pause is not None:
            self._validating = False
            self._pause.end = (wall_time(self._device), self._clock.mark())

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._in_epoch:  # not already recorded when end-of-epoch validation started
            self._end_epoch(trainer)

    @override
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_table()

    @override
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # The finished epochs are already in the CSV; show them too, so an interrupted run still reports.
        self._in_epoch = False
        self._unwrap_batch_to_device(trainer)  # Lightning skips callbacks' teardown after an exception
        self._print_table()

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": [dataclasses.asdict(row) for row in self._history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._history = [EpochTiming(**row) for row in state_dict.get("history", [])]

    # ---------------------------------------------------------------------------------------- helpers
    def _start_epoch(self) -> None:
        self._reset_epoch()
        self._in_epoch = True
        self._epoch_wall_start = wall_time(self._device)
        self._gap_start = self._clock.mark()

    def _reset_epoch(self) -> None:
        self._steps: list[_Step] = []
        self._transfers: list[tuple[Any, Any]] = []
        self._epoch_wall_start = 0.0
        self._paused_s = 0.0
        self._pause: _Pause | None = None
        self._validating = False
        self._gap_start: Any = None
        self._step_start: Any = None

    def _end_epoch(self, trainer: L.Trainer) -> None:
        self._resume_if_paused(at_epoch_end=True)
        epoch_s = wall_time(self._device) - self._epoch_wall_start - self._paused_s
        self._in_epoch = False
        self._clock.settle()
        timing = self._finish_epoch(trainer, epoch_s)
        self._history.append(timing)
        self._log(trainer, timing)
        self._append_csv(timing)

    def _resume_if_paused(self, at_epoch_end: bool) -> None:
        """End a mid-epoch validation pause where validation ended: the next batch is fetched after it, and
        that counts as data loading. At epoch end (a fallback: epochs normally end at validation start), now.
        """
        if self._pause is None:
            return
        if at_epoch_end or self._pause.end is None:
            end_wall, end_mark = wall_time(self._device), self._clock.mark()
        else:
            end_wall, end_mark = self._pause.end
        self._paused_s += end_wall - self._pause.start_wall
        self._gap_start = end_mark
        self._pause = None

    def _flops_for_mfu(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[float, float] | None:
        peak = self.peak_flops or peak_flops(trainer)
        if peak is None:
            return None  # measuring FLOPs would be wasted work
        per_sample = self.flops_per_sample or training_flops_per_sample(pl_module)
        return (per_sample, peak) if per_sample else None

    def _wrap_batch_to_device(self, trainer: L.Trainer) -> None:
        """Time the host-to-device copy of training batches, which Lightning does just before the step."""
        strategy = trainer.strategy
        if "batch_to_device" in vars(strategy):
            return  # already wrapped (setup runs again for a second fit on the same Trainer)
        original = strategy.batch_to_device

        def timed_batch_to_device(*args: Any, **kwargs: Any) -> Any:
            if not self._in_epoch or self._validating:
                return original(*args, **kwargs)
            start = self._clock.mark()
            batch = original(*args, **kwargs)
            self._transfers.append((start, self._clock.mark()))
            return batch

        strategy.batch_to_device = timed_batch_to_device

    @staticmethod
    def _unwrap_batch_to_device(trainer: L.Trainer) -> None:
        if "batch_to_device" in vars(trainer.strategy):
            del trainer.strategy.batch_to_device  # drops the instance attribute, exposing the method again

    def _finish_epoch(self, trainer: L.Trainer, epoch_s: float) -> EpochTiming:
        seconds = self._clock.seconds
        data_loading_s = sum(seconds(step.gap_start, step.start) for step in self._steps)
        training_s = sum(seconds(step.start, step.end) for step in self._steps)
        transfer_s = sum(seconds(start, end) for start, end in self._transfers)
        samples = sum(step.samples for step in self._steps)
        slowest, mean, total_samples = _reduce_over_ranks(
            trainer, [data_loading_s, training_s, epoch_s, transfer_s], samples
        )
        samples_per_s = total_samples / slowest[2] if slowest[2] > 0 else 0.0
        mfu = None
        if self._mfu_flops is not None:
            per_sample, peak = self._mfu_flops
            mfu = samples_per_s * per_sample / (peak * trainer.world_size)
        return EpochTiming(
            epoch=trainer.current_epoch,
            data_loading_s=slowest[0],
            training_s=slowest[1],
            epoch_s=slowest[2],
            transfer_s=slowest[3],
            steps=len(self._steps),
            samples=total_samples,
            samples_per_s=samples_per_s,
            data_loading_mean_s=mean[0],
            training_mean_s=mean[1],
            epoch_mean_s=mean[2],
            world_size=trainer.world_size,
            clock=self._clock.name,
            mfu=mfu,
        )

    def _log(self, trainer: L.Trainer, timing: EpochTiming) -> None:
        if not trainer.loggers:
            return
        epoch_metrics = {
            "time/data_loading": timing.data_loading_s,
            "time/training": timing.training_s,
            "time/epoch": timing.epoch_s,
            "time/transfer": timing.transfer_s,
            "throughput/samples_per_s": timing.samples_per_s,
        }
        if timing.mfu is not None:
            epoch_metrics["throughput/mfu"] = timing.mfu
        if timing.world_size > 1:
            epoch_metrics |= {
                "time/data_loading_mean": timing.data_loading_mean_s,
                "time/training_mean": timing.training_mean_s,
                "time/epoch_mean": timing.epoch_mean_s,
            }
        every_n = self.log_every_n_steps or trainer.log_every_n_steps
        seconds = self._clock.seconds
        for logger in trainer.loggers:
            # At the global step, like every other Lightning metric: loggers that need increasing steps (W&B)
            # would drop points logged at the epoch number.
            logger.log_metrics(epoch_metrics, step=trainer.global_step)
            for step in self._steps:
                if step.global_step % every_n == 0:
                    step_metrics = {
                        "time/step_data_loading": seconds(step.gap_start, step.start),
                        "time/step_training": seconds(step.start, step.end),
                    }
                    logger.log_metrics(step_metrics, step=step.global_step)
            logger.save()

    @rank_zero_only
    def _start_csv(self, log_dir: str) -> None:
        """(Re)write the CSV with the rows known so far: none, or those restored from a checkpoint."""
        if self.csv_filename is None:
            return
        os.makedirs(log_dir, exist_ok=True)
        self._csv_path = os.path.join(log_dir, self.csv_filename)
        with open(self._csv_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(dataclasses.asdict(row) for row in self._history)

    @rank_zero_only
    def _append_csv(self, timing: EpochTiming) -> None:
        if self._csv_path is None:
            return
        with open(self._csv_path, "a", newline="") as file:
            csv.DictWriter(file, fieldnames=CSV_FIELDS).writerow(dataclasses.asdict(timing))
            file.flush()
            os.fsync(file.fileno())

    @rank_zero_only
    def _add_tensorboard_layout(self, trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars(TENSORBOARD_LAYOUT)

    @rank_zero_only
    def _print_table(self) -> None:
        if self.print_table and self._history:
            render_timing_table(self._history)


def _batch_size(batch: Any) -> int:
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

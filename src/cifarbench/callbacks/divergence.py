"""StopOnDivergence: a training loss that is no longer finite (NaN or inf) ends the fit, without a
per-step synchronize.

A learning rate far too high drives the loss to 1e20 and then NaN; the fit would run to the end, save NaN
weights and time them as if nothing happened. Two checks, neither of which waits for the device mid-epoch:

- every ``check_every_n_steps``-th step, the step's loss is tested on its device (``isfinite``) and the
  one-element answer copied to the host asynchronously; it is read at a later check, once the device has
  passed it (``Event.query()``), or at the epoch's end. On a CPU the answer is there at once.
- at each training epoch's end, the epoch's logged losses (``callback_metrics``, e.g. ``train/loss_epoch``):
  a mean over the epoch, so any non-finite step makes it non-finite.

Found, it says so in one line and, by default, raises :class:`TrainingDiverged` before the epoch's
checkpoint is saved (ModelCheckpoint runs after every other callback), so the last checkpoint kept is one
from before. ``keep_going=True`` warns once and trains on. Under DDP the epoch-end check is agreed between
ranks (one collective per epoch) and the per-step check is off, so that every rank stops together.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite and the fit was stopped."""


class StopOnDivergence(Callback):
    """Stops a fit whose training loss is no longer finite; the step it was seen at is ``diverged_at_step``.

    Args:
        check_every_n_steps: test every n-th step's loss on its device (read later, asynchronously); the
            epoch's logged loss is checked at every epoch's end regardless.
        keep_going: warn once and train on instead of stopping.
        advice: what the message suggests (the CLI names its options here).

    Attributes:
        diverged_at_step: the global step at which a non-finite loss was first seen (for an epoch-end
            finding, the epoch's last step), or None.
        diverged_value: that loss (``nan``, ``inf`` or ``-inf``), or None.
    """

    def __init__(
        self,
        check_every_n_steps: int = 16,
        keep_going: bool = False,
        advice: str = "lower the learning rate, or warm it up",
    ) -> None:
        super().__init__()
        if check_every_n_steps < 1:
            raise ValueError(f"StopOnDivergence(check_every_n_steps={check_every_n_steps!r}) must be >= 1")
        self.check_every_n_steps = check_every_n_steps
        self.keep_going = keep_going
        self.advice = advice
        self.diverged_at_step: int | None = None
        self.diverged_value: float | None = None
        self._pending: _Probe | None = None

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = None

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.diverged_at_step is not None or trainer.world_size > 1:
            return
        step = trainer.global_step
        if step % self.check_every_n_steps:
            return
        self._read_pending(trainer, wait=False)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if self._pending is None and isinstance(loss, torch.Tensor):
            self._pending = _Probe(loss.detach(), step)
            self._read_pending(trainer, wait=False)  # on a CPU the answer is already there

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.diverged_at_step is not None:
            return
        self._read_pending(trainer, wait=True)
        if self.diverged_at_step is None:
            value = _first_non_finite_loss(trainer.callback_metrics)
            if trainer.world_size > 1:
                value = _agreed(trainer, value)
            if value is not None:
                self._found(trainer, value, max(trainer.global_step - 1, 0), at_epoch_end=True)

    def _read_pending(self, trainer: L.Trainer, wait: bool) -> None:
        probe = self._pending
        if probe is None or not probe.ready(wait):
            return
        self._pending = None
        if not probe.finite():
            self._found(trainer, probe.value(), probe.step, at_epoch_end=False)

    def _found(self, trainer: L.Trainer, value: float, step: int, at_epoch_end: bool) -> None:
        self.diverged_at_step, self.diverged_value = step, value
        where = f"in epoch {trainer.current_epoch} (its logged mean)" if at_epoch_end else f"at step {step}"
        message = f"the training loss became {value} {where}: training diverged; {self.advice}."
        if self.keep_going:
            rank_zero_warn(f"{message} Training goes on (keep_going).")
            return
        raise TrainingDiverged(f"{message} Stopped before saving this epoch's checkpoint.")


class _Probe:
    """One step's "is the loss finite?", computed on the loss's device and copied to the host without
    waiting; ``ready`` says whether the host copy can be read yet."""

    def __init__(self, loss: torch.Tensor, step: int) -> None:
        self.step = step
        self._loss = loss
        finite = torch.isfinite(loss).all()
        self._event: torch.cuda.Event | None = None
        if finite.device.type == "cuda":
            self._host = torch.empty((), dtype=torch.bool, pin_memory=True)
            self._host.copy_(finite, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = finite.to("cpu")

    def ready(self, wait: bool) -> bool:
        if self._event is None:
            return True
        if wait:
            self._event.synchronize()
            return True
        return bool(self._event.query())

    def finite(self) -> bool:
        return bool(self._host)

    def value(self) -> float:
        return float(self._loss.float().mean().cpu())  # read only once it is known to be non-finite


def _first_non_finite_loss(metrics: dict[str, Any]) -> float | None:
    for name, value in metrics.items():
        if "loss" in name and isinstance(value, torch.Tensor) and value.numel() == 1:
            number = float(value)
            if not math.isfinite(number):
                return number
    return None


def _agreed(trainer: L.Trainer, value: float | None) -> float | None:
    """The same answer on every rank: NaN when any rank saw a non-finite loss (one collective per epoch)."""
    diverged = trainer.strategy.reduce_boolean_decision(value is not None, all=False)
    return (value if value is not None else math.nan) if diverged else None

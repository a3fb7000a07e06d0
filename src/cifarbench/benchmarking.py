"""What the speed scripts under ``benchmarks/`` share: a training-only fit of a configuration through the one
fit path, and their argument types."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cifarbench.callbacks import EpochTimer
from cifarbench.fitting import CifarbenchCLI, run_cli


class EpochWallClock(L.Callback):
    """Each training epoch's wall time, synchronized on CUDA: a clock that is not the callback under test.

    :class:`BenchmarkCLI` puts it first among the callbacks and its stopper last, so that it starts before
    every other callback's epoch start and stops after every other callback's epoch end: their per-epoch work
    (an EpochTimer's table row, CSV and curves) is inside what it measures.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0
        self.stopper = _StopEpochClock(self)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _synchronize(trainer)
        self._start = time.perf_counter()


class _StopEpochClock(L.Callback):
    def __init__(self, clock: EpochWallClock) -> None:
        super().__init__()
        self.clock = clock

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _synchronize(trainer)
        self.clock.seconds.append(time.perf_counter() - self.clock._start)


class BenchmarkCLI(CifarbenchCLI):
    """The fit path with an outside epoch clock around every callback."""

    def before_fit(self) -> None:
        super().before_fit()
        clock = EpochWallClock()
        self.trainer.callbacks.insert(0, clock)
        self.trainer.callbacks.append(clock.stopper)


class UntimedCLI(BenchmarkCLI):
    """The same fit path without EpochTimer: the baseline of EpochTimer's own cost on a real epoch."""

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks = [
            callback for callback in trainer.callbacks if not isinstance(callback, EpochTimer)
        ]
        return trainer


def _synchronize(trainer: L.Trainer) -> None:
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)


def training_only_fit(
    options: list[str], images: int, epochs: int, root: Path, accelerator: str = "gpu", timed: bool = True
) -> L.Trainer:
    """Train the configuration that ``options`` (fit options) describe, unvalidated, from seed 0.

    It trains on ``images`` synthetic images for ``epochs`` and logs to TensorBoard under ``root``; the
    Trainer returned holds the trained module, EpochTimer (``timed=False``: none) and an
    :class:`EpochWallClock` (:func:`wall_clock`).
    """
    cli = run_cli(
        [
            "fit",
            *options,  # a --config among them must come first, so that the options below override it
            "--seed_everything", "0",
            "--data.synthetic", str(images),
            "--trainer.accelerator", accelerator,
            "--trainer.devices", "1",
            "--trainer.max_epochs", str(epochs),
            "--trainer.limit_val_batches", "0",
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_checkpointing", "false",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(root),
            "--timer.print_table", "false",
        ],
        cli_class=BenchmarkCLI if timed else UntimedCLI,
    )  # fmt: skip
    return cli.trainer


def wall_clock(trainer: L.Trainer) -> EpochWallClock:
    return next(callback for callback in trainer.callbacks if isinstance(callback, EpochWallClock))


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1, refused with the value and what it must be."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0, refused with the value and what it must be."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not > 0")
    return value

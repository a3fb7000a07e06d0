"""What the speed scripts under ``benchmarks/`` share: a training-only fit of a configuration through the one
fit path, and their argument types."""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L

from cifarbench.commands.fit import run_fit


def training_only_fit(
    options: list[str], images: int, epochs: int, root: Path, accelerator: str = "gpu"
) -> L.Trainer:
    """Train the configuration that ``options`` (fit options) describe, unvalidated, from seed 0.

    It trains on ``images`` synthetic images for ``epochs`` and logs to TensorBoard under ``root``; the
    Trainer returned holds the trained module and EpochTimer.
    """
    return run_fit(
        [
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
        ]
    )  # fmt: skip


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

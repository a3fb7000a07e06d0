"""One training-only fit of a named configuration through cifarbench's LightningCLI (shared by benchmarks)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cifarbench.cli import CifarbenchCLI
from cifarbench.data import CIFAR10DataModule
from cifarbench.model import ResNet18Classifier

FAST_CONFIG = Path(__file__).resolve().parents[1] / "src" / "cifarbench" / "configs" / "fast.yaml"


def fit_config(
    options: list[str], images: int, epochs: int, root: Path, accelerator: str = "gpu"
) -> CifarbenchCLI:
    """Train the configuration that ``options`` (CLI options) describe, unvalidated, from seed 0.

    It trains on ``images`` synthetic images for ``epochs``.

    The run logs to TensorBoard under ``root``; the returned CLI holds the trained model and the Trainer.
    """
    args = [
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
    ]  # fmt: skip
    # The `fit` subcommand, as `python -m cifarbench fit` runs it: with the CLI's checks and Ctrl-C handling.
    return CifarbenchCLI(ResNet18Classifier, CIFAR10DataModule, args=["fit", *args])


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

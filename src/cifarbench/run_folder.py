"""A finished run's folder, read back: ``timings.csv``, ``config.yaml`` and its TensorBoard scalars."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifarbench.errors import CifarbenchError

# TensorBoard tags of the epoch-level training metrics (ResNet18Classifier logs train/loss and train/acc).
LOSS_TAG = "train/loss_epoch"
ACC_TAG = "train/acc_epoch"


@dataclass
class RunResult:
    """One finished fit: per-epoch rows (timings.csv joined with loss and accuracy) and its config."""

    name: str
    log_dir: Path
    command: str
    epochs: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def column(self, key: str) -> list[float]:
        return [row[key] for row in self.epochs]

    def mean(self, key: str, first_epoch: int = 0) -> float:
        values = self.column(key)[first_epoch:]
        if not values:
            raise CifarbenchError(
                f"Run {self.name} ({self.log_dir}) has no epoch from {first_epoch} on; raise "
                f"--trainer.max_epochs (and --trainer.limit_train_batches if you set it to 0)"
            )
        return sum(values) / len(values)

    def steady_mean(self, key: str) -> float:
        """Mean over epochs after the first (worker start-up, compilation), or epoch 0 when it is alone."""
        return self.mean(key, first_epoch=1 if len(self.epochs) > 1 else 0)


def read_run(name: str, log_dir: Path, command: str = "") -> RunResult:
    """Per-epoch rows of a finished run folder: timings.csv columns plus ``loss`` and ``acc``."""
    timings = log_dir / "timings.csv"
    if not timings.is_file():
        raise CifarbenchError(
            f"{timings} is missing: the run finished no epoch, or its logger wrote elsewhere. Leave "
            f"--trainer.logger alone for lab runs and check that --trainer.max_epochs >= 1."
        )
    with open(timings, newline="") as file:
        epochs = [_numbers(row) for row in csv.DictReader(file)]
    scalars = read_scalars(log_dir)
    for tag, key in ((LOSS_TAG, "loss"), (ACC_TAG, "acc")):
        # Epoch metrics are logged once per epoch, in order, at the global step; the position is the epoch.
        for row, (_, value) in zip(epochs, scalars.get(tag, []), strict=False):
            row[key] = value
    return RunResult(name=name, log_dir=log_dir, command=command, epochs=epochs, config=read_config(log_dir))


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``(step, value)`` per scalar tag, from the newest TensorBoard event file in ``log_dir``."""
    event_files = sorted(log_dir.glob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime)
    if not event_files:
        return {}
    events = EventAccumulator(str(event_files[-1]), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def read_config(log_dir: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` (what LightningCLI ran), or ``{}`` when there is none."""
    return read_mapping(log_dir / "config.yaml")


def read_mapping(path: Path) -> dict[str, Any]:
    """A run's optional ``config.yaml`` or ``fit_budget.json`` (YAML reads JSON too); ``{}`` when absent."""
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = " ".join(str(error).split())  # YAML's messages span lines; one line per problem here
        raise CifarbenchError(f"{path}: cannot be read ({type(error).__name__}: {reason})") from None
    return loaded if isinstance(loaded, dict) else {}


def _numbers(row: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, text in row.items():
        try:
            out[key] = float(text)
        except (TypeError, ValueError):
            continue  # e.g. the clock's name: not a number to tabulate
    return out

"""Run one lab fit through ``cifarbench.cli.main`` and read back what it logged."""

from __future__ import annotations

import csv
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cifarbench.errors import CifarbenchError
from cifarbench.lab.context import LabContext, shell_command

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


def run_fit(ctx: LabContext, part: str, run: str, extra: list[str]) -> RunResult:
    """Fit once with the part's overrides ``extra`` and return the run's per-epoch results.

    The run's folder is emptied first: a repeated part replaces its runs instead of mixing event files.
    """
    from cifarbench.cli import main  # imported here: cli imports the lab dispatcher, which imports this

    args = ctx.fit_args(part, run, extra)
    log_dir = ctx.run_dir(part, run)
    shutil.rmtree(log_dir, ignore_errors=True)
    print(f"[lab {part}] run {run}: python -m cifarbench {shell_command(args[:-2])}", flush=True)
    with warnings.catch_warnings():
        # `python -m cifarbench lab ...` has its own sys.argv; LightningCLI warns when args are also given.
        warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter")
        main(args)
    return read_run(run, log_dir, command=f"python -m cifarbench {shell_command(args)}")


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
        values = scalars.get(tag, [])
        # Epoch metrics are logged once per epoch, in order, at the global step; the position is the epoch.
        for row, value in zip(epochs, values, strict=False):
            row[key] = value
    return RunResult(name=name, log_dir=log_dir, command=command, epochs=epochs, config=_read_config(log_dir))


def read_scalars(log_dir: Path) -> dict[str, list[float]]:
    """Scalar values per tag from the newest TensorBoard event file in ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted(log_dir.glob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime)
    if not event_files:
        return {}
    events = EventAccumulator(str(event_files[-1]), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _numbers(row: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, text in row.items():
        try:
            out[key] = float(text)
        except (TypeError, ValueError):
            continue  # e.g. the clock's name: not a number to tabulate
    return out


def _read_config(log_dir: Path) -> dict[str, Any]:
    path = log_dir / "config.yaml"
    if not path.is_file():
        return {}
    with open(path) as file:
        return yaml.safe_load(file) or {}


def optimizer_settings(config: dict[str, Any]) -> str:
    """``SGD(lr=0.1, momentum=0.9, ...)`` from a run's saved config: what the run really used."""
    optimizer = config.get("optimizer") or {}
    name = str(optimizer.get("class_path", "?")).rsplit(".", 1)[-1]
    init_args = optimizer.get("init_args") or {}
    shown = ("lr", "momentum", "nesterov", "weight_decay")
    args = ", ".join(f"{key}={init_args[key]}" for key in shown if key in init_args)
    return f"{name}({args})"

"""A finished run's folder, read back: ``timings.csv``, ``config.yaml``, ``fit_budget.json`` and its
TensorBoard scalars. The one reader of a run, for the lab and for ``compare``.

A run folder is usually a Lightning version folder: EpochTimer's files (named in
:mod:`cifarbench.callbacks.records`), LightningCLI's ``config.yaml`` and the TensorBoard event file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifarbench.callbacks.quantities import COLUMN, OPTIONAL_COLUMNS
from cifarbench.callbacks.records import BUDGET_JSON, TIMINGS_CSV
from cifarbench.errors import CifarbenchError
from cifarbench.readers import read_json_mapping, read_yaml_mapping

# TensorBoard tags of the epoch-level training metrics (ResNet18Classifier logs train/loss and train/acc).
LOSS_TAG = "train/loss_epoch"
ACC_TAG = "train/acc_epoch"
CONFIG_YAML = "config.yaml"  # LightningCLI's name for what it ran


@dataclass
class Run:
    """One run folder, read: its epochs (numbers by column, at least one), its config and budget when it has
    them, and the command that made it (lab runs)."""

    name: str
    folder: Path
    epochs: list[dict[str, float]]
    columns: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)  # non-numeric columns of the last epoch (the clock)
    command: str = ""

    def column(self, key: str) -> list[float]:
        return [row[key] for row in self.epochs]

    def mean(self, key: str, first_epoch: int = 0) -> float:
        """The mean of ``key`` over the epochs from ``first_epoch`` on; raises when there is none."""
        values = [row[key] for row in self.epochs[first_epoch:] if key in row]
        if not values:
            raise CifarbenchError(
                f"Run {self.name} ({self.folder}) has no {key} from epoch {first_epoch} on; raise "
                f"--trainer.max_epochs (and --trainer.limit_train_batches if you set it to 0)"
            )
        return sum(values) / len(values)

    def steady_mean(self, key: str) -> float:
        """Mean over epochs after the first (worker start-up, compilation), or epoch 0 when it is alone."""
        return self.mean(key, first_epoch=1 if len(self.epochs) > 1 else 0)

    def steady(self, key: str) -> float | None:
        """:meth:`steady_mean`, or None where the run has no number for ``key`` (an older CSV)."""
        rows = self.epochs[1:] or self.epochs
        values = [row[key] for row in rows if key in row and not math.isnan(row[key])]
        return sum(values) / len(values) if values else None


def read_run(
    name: str, folder: Path, required: Sequence[str], command: str = "", metrics: bool = False
) -> Run:
    """The run in ``folder``: its timings, config and budget; with ``metrics``, each epoch's ``loss`` and
    ``acc`` from TensorBoard too.

    Strict, with one line per problem (CifarbenchError): a timings file that is missing, unreadable, without
    the ``required`` columns, without a finished epoch, or with a row that has no number for one of them.
    """
    path = folder / TIMINGS_CSV
    if not path.is_file():
        raise CifarbenchError(
            f"{path} is missing: the run finished no epoch, or its logger wrote elsewhere (leave "
            f"--trainer.logger alone and check that --trainer.max_epochs >= 1)"
        )
    try:
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CifarbenchError(f"{path}: cannot be read ({type(error).__name__}: {error})") from None
    missing = [column for column in required if column not in columns]
    if missing:
        raise CifarbenchError(f"{path}: not an EpochTimer {TIMINGS_CSV} (no {', '.join(missing)} column)")
    if not rows:
        raise CifarbenchError(
            f"{path}: the run finished no epoch (the file has no rows); raise --trainer.max_epochs, and "
            f"--trainer.limit_train_batches if you set it to 0"
        )
    for line, row in enumerate(rows, start=2):
        bad = [column for column in required if not _is_number(row.get(column))]
        if bad:
            raise CifarbenchError(
                f"{path}: line {line} has no number for {', '.join(bad)} (a half-written row?)"
            )
        _check_row(path, line, row, numeric=(*required, *NUMERIC_COLUMNS))
    epochs = [{key: float(row[key]) for key in columns if _is_number(row.get(key))} for row in rows]
    text = {key: value for key, value in rows[-1].items() if key and not _is_number(value) and value}
    if metrics:
        _join_metrics(epochs, read_scalars(folder))
    config, budget = read_config(folder / CONFIG_YAML), read_budget(folder / BUDGET_JSON)
    return Run(name, folder, epochs, columns, config, budget, text, command)


# Columns read as numbers wherever a run is compared (a value that is not a number is refused, not skipped).
NUMERIC_COLUMNS = (*OPTIONAL_COLUMNS, COLUMN.world_size)


def _check_row(path: Path, line: int, row: dict[str, Any], numeric: Sequence[str]) -> None:
    """Every number in an EpochTimer row is finite and >= 0 (seconds, counts, bytes, MFU); the world size
    is a whole number >= 1; the columns in ``numeric`` hold numbers where they hold anything."""
    for column, text in row.items():
        if column is None or text in (None, ""):
            continue
        if not _is_number(text):
            if column in numeric:
                raise CifarbenchError(f"{path}: line {line}: {column} is {text[:40]!r}, not a number")
            continue
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise CifarbenchError(
                f"{path}: line {line}: {column} is {text}, not a finite number >= 0 (a corrupt or edited row)"
            )
        if column == "world_size" and (value < 1 or value != int(value)):
            raise CifarbenchError(f"{path}: line {line}: world_size is {text}, not a whole number >= 1")


def find_run_folders(path: Path) -> list[Path]:
    """``path`` itself when it is a run folder, else the run folders below it (sorted); [] for none."""
    if (path / TIMINGS_CSV).is_file():
        return [path]
    return sorted(found.parent for found in path.rglob(TIMINGS_CSV))


def _join_metrics(epochs: list[dict[str, float]], scalars: dict[str, list[tuple[int, float]]]) -> None:
    for tag, key in ((LOSS_TAG, "loss"), (ACC_TAG, "acc")):
        # Epoch metrics are logged once per epoch, in order, at the global step; the position is the epoch.
        for row, (_, value) in zip(epochs, scalars.get(tag, []), strict=False):
            row[key] = value


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


def read_config(path: Path) -> dict[str, Any]:
    """A run's optional ``config.yaml`` (LightningCLI's), read in bounded time and memory; ``{}`` when absent.

    The fields read from it are checked: ``optimizer`` (and its ``init_args``) must be mappings.
    """
    if not path.is_file():
        return {}
    config = read_yaml_mapping(path, what="LightningCLI's config (a mapping of options)")
    optimizer = config.get("optimizer")
    if optimizer is not None and not isinstance(optimizer, dict):
        raise CifarbenchError(
            f"{path}: optimizer is {_kind(optimizer)}, not a mapping (class_path, init_args)"
        )
    if isinstance(optimizer, dict) and not isinstance(optimizer.get("init_args") or {}, dict):
        raise CifarbenchError(
            f"{path}: optimizer.init_args is {_kind(optimizer['init_args'])}, not a mapping"
        )
    return config


def read_budget(path: Path) -> dict[str, Any]:
    """A run's optional ``fit_budget.json`` (EpochTimer's), read as JSON; ``{}`` when absent.

    The fields read from it are checked: ``fit_s`` a finite number >= 0, ``machine`` a mapping of strings.
    """
    if not path.is_file():
        return {}
    budget = read_json_mapping(path, what="EpochTimer's fit budget (a JSON object)")
    fit_s = budget.get("fit_s")
    if fit_s is not None and not _is_seconds(fit_s):
        raise CifarbenchError(f"{path}: fit_s is {_shown(fit_s)}, not a finite number of seconds >= 0")
    machine = budget.get("machine")
    if machine is not None:
        if not isinstance(machine, dict):
            raise CifarbenchError(f"{path}: machine is {_kind(machine)}, not a mapping (host, device)")
        for key in ("host", "device"):
            if machine.get(key) is not None and not isinstance(machine[key], str):
                raise CifarbenchError(f"{path}: machine.{key} is {_shown(machine[key])}, not a string")
    return budget


def _is_seconds(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _kind(value: Any) -> str:
    return f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{_kind(value)} ({text[:40]}{'...' if len(text) > 40 else ''})"


def _is_number(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True

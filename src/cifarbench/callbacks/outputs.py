"""Where EpochTimer's numbers go: timings.csv, fit_budget.json and the loggers (TensorBoard).

Every write goes through an :class:`OutputGuard`: a full disk, a removed folder or a logger that raises costs
one warning naming the file and the error, never the training run, and the numbers stay in memory.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn

from cifarbench.callbacks.quantities import (
    CSV_FIELDS,
    RANK_MEANS,
    STEP_CURVES,
    epoch_metric_tags,
    tensorboard_layout,
)
from cifarbench.callbacks.verdict import Finding

T = TypeVar("T")


class OutputGuard:
    """Runs writes; a failure is one warning per output (naming it and the error), and training goes on."""

    def __init__(self) -> None:
        self.failed: set[str] = set()

    def run(self, output: str, write: Callable[[], T]) -> T | None:
        try:
            result = write()
        except Exception as error:  # noqa: BLE001 - whatever breaks in an output must not end the fit
            if output not in self.failed:
                rank_zero_warn(
                    f"EpochTimer could not write {output} ({type(error).__name__}: {error}). Training goes "
                    f"on; the timings are kept in memory (EpochTimer.history, EpochTimer.budget)."
                )
            self.failed.add(output)
            return None
        self.failed.discard(output)
        return result


class TimingsCsv:
    """``timings.csv``: one row per finished epoch, flushed to disk as the epoch ends (``fields``: another
    header, as timings_ranks.csv's; rows are records with ``as_row()`` or mappings).

    After a failed write the next one rewrites the whole file from the history, so a disk that comes back
    loses nothing.
    """

    def __init__(self, path: str, fields: Sequence[str] = CSV_FIELDS) -> None:
        self.path, self.fields = path, fields
        self._complete = False

    def write_all(self, rows: Sequence[Any]) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._complete = False
        with open(self.path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(_as_row(row) for row in rows)
            _flush(file)
        self._complete = True

    def append(self, row: Any, history: Sequence[Any]) -> None:
        """Add ``row`` (the last of ``history``); rewrite everything if an earlier write failed."""
        self.append_rows([row], history)

    def append_rows(self, rows: Sequence[Any], history: Sequence[Any]) -> None:
        """Add ``rows`` (the last of ``history``); rewrite everything if an earlier write failed."""
        if not self._complete:
            self.write_all(history)
            return
        self._complete = False
        with open(self.path, "a", newline="") as file:
            csv.DictWriter(file, fieldnames=self.fields).writerows(_as_row(row) for row in rows)
            _flush(file)
        self._complete = True


def _as_row(row: Any) -> Mapping[str, Any]:
    return row if isinstance(row, Mapping) else row.as_row()


def _flush(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())


def write_budget_json(
    path: str,
    budget: Any,
    findings: Iterable[Finding],
    status: str,
    clock: str,
    machine: Mapping[str, str],
    ranks: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """``fit_budget.json``: ``{"fit_s", "buckets": {...}, "verdict": [{"kind", "text"}], ...}``, and with
    more than one rank ``"ranks": [{"rank", "host", "samples", <figure>: seconds, ...}]`` (over epochs)."""
    document: dict[str, Any] = {
        "fit_s": budget.fit_s,
        "buckets": budget.as_dict(),
        "verdict": [finding.as_dict() for finding in findings],
        "status": status,
        "clock": clock,
        "machine": dict(machine),  # so that runs from different machines are not compared unawares
    }
    if ranks:
        document["ranks"] = [dict(rank) for rank in ranks]
    temporary = f"{path}.partial"
    try:
        with open(temporary, "w") as file:
            json.dump(document, file, indent=2)
            file.write("\n")
            _flush(file)
        os.replace(temporary, path)  # whole or not at all, even if the process dies while writing
    except OSError:
        with contextlib.suppress(OSError):  # a full disk: leave no half-written file behind
            os.remove(temporary)
        raise


def machine_description(device: torch.device) -> dict[str, str]:
    """The host and the device a run trained on (a GPU's name; the CPU's otherwise)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {"host": platform.node(), "device": f"{device.type}: {name}"}


_EPOCH_TAGS = epoch_metric_tags()
_RANK_MEAN_COLUMNS = frozenset(quantity.column_name for quantity in RANK_MEANS)


def epoch_metrics(timing: Any) -> dict[str, float]:
    """The epoch-level scalars (seconds, samples/s, MFU, bytes); the means over ranks only with several."""
    metrics = {}
    for column, tag in _EPOCH_TAGS.items():
        value = getattr(timing, column)
        if value is None or (column in _RANK_MEAN_COLUMNS and timing.world_size == 1):
            continue
        metrics[tag] = float(value)
    return metrics


def step_metrics(step: Any) -> dict[str, float]:
    """One sampled step's scalars, for the per-step curves."""
    return {quantity.step_tag_name: getattr(step, quantity.column_name) for quantity in STEP_CURVES}


def log_metrics(loggers: Sequence[Logger], metrics: dict[str, float], step: int) -> None:
    for logger in loggers:
        logger.log_metrics(metrics, step=step)


def add_tensorboard_layout(loggers: Sequence[Logger]) -> None:
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_custom_scalars(tensorboard_layout())


BUDGET_TAG, OPS_TAG = "cifarbench/fit_budget", "cifarbench/ops"


def add_budget_text(loggers: Sequence[Logger], markdown: str, step: int, tag: str = BUDGET_TAG) -> None:
    """The budget and verdict (or OpWindow's table) as TensorBoard text (its TEXT tab renders markdown)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(tag, markdown, global_step=step)
            logger.experiment.flush()


def budget_markdown(budget: Any, findings: Iterable[Finding]) -> str:
    fit_s = budget.fit_s
    lines = ["| bucket | seconds | share |", "| --- | --- | --- |"]
    lines += [
        f"| {name} | {seconds:.3f} | {seconds / fit_s:.1%} |" for name, seconds in budget.items() if fit_s
    ]
    lines.append(f"| **fit** | **{fit_s:.3f}** | 100% |")
    lines += ["", *(f"- {finding.text}" for finding in findings)]
    return "\n".join(lines)

"""Where EpochTimer's numbers go: timings.csv, fit_budget.json and the loggers (TensorBoard).

Every write goes through an :class:`OutputGuard`: a full disk, a removed folder or a logger that raises costs
one warning naming the file and the error, never the training run, and the numbers stay in memory.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn

from cifarbench.callbacks.accounting import StepTimes
from cifarbench.callbacks.records import CSV_FIELDS, EpochTiming
from cifarbench.callbacks.verdict import Finding

T = TypeVar("T")

# The custom-scalars charts (TensorBoard's CUSTOM SCALARS tab).
TENSORBOARD_LAYOUT: dict[str, dict[str, list[Any]]] = {
    "cifarbench timing": {
        "data loading vs training per epoch (s)": [
            "Multiline",
            ["^time/data_loading$", "^time/training$", "^time/epoch$"],
        ],
        "inside the step, per epoch (s)": [
            "Multiline",
            ["^time/forward$", "^time/backward$", "^time/optimizer$", "^time/step_other$"],
        ],
        "per step (s)": [
            "Multiline",
            [
                "^time/step_data_loading$",
                "^time/step_training$",
                "^time/step_forward$",
                "^time/step_backward$",
                "^time/step_optimizer$",
            ],
        ],
    }
}


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
    """``timings.csv``: one row per finished epoch, flushed to disk as the epoch ends.

    After a failed write the next one rewrites the whole file from the history, so a disk that comes back
    loses nothing.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._complete = False

    def write_all(self, rows: Sequence[EpochTiming]) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._complete = False
        with open(self.path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(row.as_row() for row in rows)
            _flush(file)
        self._complete = True

    def append(self, row: EpochTiming, history: Sequence[EpochTiming]) -> None:
        """Add ``row`` (the last of ``history``); rewrite everything if an earlier write failed."""
        if not self._complete:
            self.write_all(history)
            return
        self._complete = False
        with open(self.path, "a", newline="") as file:
            csv.DictWriter(file, fieldnames=CSV_FIELDS).writerow(row.as_row())
            _flush(file)
        self._complete = True


def _flush(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())


def write_budget_json(
    path: str,
    budget: Mapping[str, float],
    findings: Iterable[Finding],
    status: str,
    clock: str,
    machine: Mapping[str, str],
) -> None:
    """``fit_budget.json``: ``{"fit_s", "buckets": {...}, "verdict": [{"kind", "text"}], ...}``."""
    document = {
        "fit_s": sum(budget.values()),
        "buckets": dict(budget),
        "verdict": [finding.as_dict() for finding in findings],
        "status": status,
        "clock": clock,
        "machine": dict(machine),  # so that runs from different machines are not compared unawares
    }
    temporary = f"{path}.partial"
    with open(temporary, "w") as file:
        json.dump(document, file, indent=2)
        file.write("\n")
        _flush(file)
    os.replace(temporary, path)  # whole or not at all, even if the process dies while writing


def machine_description(device: torch.device) -> dict[str, str]:
    """The host and the device a run trained on (a GPU's name; the CPU's otherwise)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {"host": platform.node(), "device": f"{device.type}: {name}"}


def epoch_metrics(timing: EpochTiming) -> dict[str, float]:
    """The epoch-level scalars (seconds, samples/s, MFU, bytes)."""
    metrics = {
        "time/data_loading": timing.data_loading_s,
        "time/training": timing.training_s,
        "time/epoch": timing.epoch_s,
        "time/transfer": timing.transfer_s,
        "time/forward": timing.forward_s,
        "time/backward": timing.backward_s,
        "time/optimizer": timing.optimizer_s,
        "time/step_other": timing.step_other_s,
        "time/step_p90": timing.step_p90_s,
        "throughput/samples_per_s": timing.samples_per_s,
    }
    if timing.mfu is not None:
        metrics["throughput/mfu"] = timing.mfu
    if timing.peak_memory_bytes is not None:
        metrics["memory/peak_bytes"] = float(timing.peak_memory_bytes)
    if timing.world_size > 1:
        metrics |= {
            "time/data_loading_mean": timing.data_loading_mean_s,
            "time/training_mean": timing.training_mean_s,
            "time/epoch_mean": timing.epoch_mean_s,
        }
    return metrics


def step_metrics(step: StepTimes) -> dict[str, float]:
    """One sampled step's scalars, for the per-step curves."""
    return {
        "time/step_data_loading": step.data_loading_s,
        "time/step_training": step.training_s,
        "time/step_forward": step.forward_s,
        "time/step_backward": step.backward_s,
        "time/step_optimizer": step.optimizer_s,
    }


def log_metrics(loggers: Sequence[Logger], metrics: dict[str, float], step: int) -> None:
    for logger in loggers:
        logger.log_metrics(metrics, step=step)


def add_tensorboard_layout(loggers: Sequence[Logger]) -> None:
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_custom_scalars(TENSORBOARD_LAYOUT)


def add_budget_text(loggers: Sequence[Logger], markdown: str, step: int) -> None:
    """The budget and verdict as TensorBoard text (its TEXT tab renders the markdown table)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text("cifarbench/fit_budget", markdown, global_step=step)
            logger.experiment.flush()


def budget_markdown(budget: Mapping[str, float], findings: Iterable[Finding]) -> str:
    fit_s = sum(budget.values())
    lines = ["| bucket | seconds | share |", "| --- | --- | --- |"]
    lines += [
        f"| {name} | {seconds:.3f} | {seconds / fit_s:.1%} |" for name, seconds in budget.items() if fit_s
    ]
    lines.append(f"| **fit** | **{fit_s:.3f}** | 100% |")
    lines += ["", *(f"- {finding.text}" for finding in findings)]
    return "\n".join(lines)

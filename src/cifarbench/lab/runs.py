"""Run one lab fit through the one fit path, and read back what it logged."""

from __future__ import annotations

import shutil
from typing import Any

from cifarbench.comparison import REQUIRED
from cifarbench.fitting import run_fit
from cifarbench.lab.context import LabContext, shell_command
from cifarbench.run_folder import Run, read_run


def fit_once(ctx: LabContext, part: str, run: str, extra: list[str]) -> Run:
    """Fit once with the part's overrides ``extra`` and return the run's per-epoch results.

    The run's folder is emptied first: a repeated part replaces its runs instead of mixing event files.
    """
    args = ctx.fit_args(part, run, extra)
    log_dir = ctx.run_dir(part, run)
    shutil.rmtree(log_dir, ignore_errors=True)
    # One line per run: where it goes and the command that repeats it (the pinned logger left out).
    print(
        f"[lab {part}] run {run} -> {log_dir}: python -m cifarbench fit {shell_command(args[:-2])}",
        flush=True,
    )
    run_fit(args)
    command = f"python -m cifarbench fit {shell_command(args)}"
    return read_run(run, log_dir, REQUIRED, command=command, metrics=True)


def optimizer_settings(config: dict[str, Any]) -> str:
    """``SGD(lr=0.1, momentum=0.9, ...)`` from a run's saved config: what the run really used."""
    optimizer = config.get("optimizer") or {}
    name = str(optimizer.get("class_path", "?")).rsplit(".", 1)[-1]
    init_args = optimizer.get("init_args") or {}
    shown = ("lr", "momentum", "nesterov", "weight_decay")
    args = ", ".join(f"{key}={init_args[key]}" for key in shown if key in init_args)
    return f"{name}({args})"

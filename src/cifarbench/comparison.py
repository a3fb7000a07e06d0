"""Runs side by side: steady-state epochs, where they go, the ratio to a baseline, and what changed.

A run is a folder that :mod:`cifarbench.run_folder` reads (EpochTimer's timings, usually with LightningCLI's
config and the fit budget). The first run given is the baseline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cifarbench.callbacks.quantities import COLUMN, COMPARED, OPTIONAL_COLUMNS, PARTS, REQUIRED_COLUMNS, Q
from cifarbench.callbacks.records import TIMINGS_CSV
from cifarbench.errors import CifarbenchError
from cifarbench.plots import stacked_bars
from cifarbench.run_folder import Run, find_run_folders, read_run
from cifarbench.tables import write_csv

# The columns a timings.csv must have, and those an older one may lack (see callbacks.quantities).
REQUIRED = REQUIRED_COLUMNS
OPTIONAL = OPTIONAL_COLUMNS
# compare's own columns around the compared quantities (seconds are steady-state means: the epochs after the
# first).
RUN, EPOCHS, FIRST_EPOCH, SPEEDUP, FIT = "run", "epochs", "first_epoch_s", "speedup", "fit_s"
COLUMNS = (RUN, EPOCHS, FIRST_EPOCH, *(q.column_name for q in COMPARED), COLUMN.samples_per_s, SPEEDUP, FIT)
# Where a steady epoch goes, as stacked bars (the rest of the epoch is "other").
PLOT_PARTS = {quantity.name.replace("_", " "): quantity.column_name for quantity in (Q.data_loading, *PARTS)}


def find_runs(paths: Sequence[str | Path]) -> tuple[list[Run], list[str]]:
    """The runs in ``paths`` (each a run folder, or a folder that holds runs), read; and warnings.

    Raises CifarbenchError with one line per path that is no run or holds none, and per file that cannot be
    read.
    """
    folders: list[tuple[str, Path]] = []
    problems: list[str] = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            problems.append(
                f"{path}: no such folder (give a run folder, with a {TIMINGS_CSV}, or one that holds runs)"
            )
            continue
        found = find_run_folders(path)
        if not found:
            problems.append(f"{path}: no run in it (no {TIMINGS_CSV} in the folder or below it)")
        folders += [(_run_name(path, folder), folder) for folder in found]
    runs = []
    for name, folder in folders:
        try:
            runs.append(read_run(name, folder, REQUIRED))
        except CifarbenchError as error:
            problems.append(str(error))
    if problems:
        raise CifarbenchError("\n".join(problems))
    return runs, warnings_for(runs)


def _run_name(given: Path, folder: Path) -> str:
    if folder == given:
        return str(given)
    return str(given / folder.relative_to(given))


def warnings_for(runs: Sequence[Run]) -> list[str]:
    """What makes the runs less comparable: other machines, world sizes or clocks, and missing columns."""
    notes = []
    for label, values in (
        ("machines", [_machine(run) for run in runs]),
        ("world sizes", [str(int(run.epochs[-1].get(COLUMN.world_size, 1))) for run in runs]),
        ("clocks", [run.text.get(COLUMN.clock, "?") for run in runs]),
    ):
        known = {value for value in values if value and value != "?"}
        if len(known) > 1:
            each = ", ".join(f"{run.name}: {value}" for run, value in zip(runs, values, strict=True))
            notes.append(f"warning: the runs come from different {label} ({each}); compare with care")
    for run in runs:
        missing = [column for column in OPTIONAL if column not in run.columns]
        if missing:
            notes.append(
                f"warning: {run.folder / TIMINGS_CSV} was written by an older cifarbench (no "
                f"{', '.join(missing)}): those columns are left empty for it"
            )
    return notes


def _machine(run: Run) -> str:
    machine = run.budget.get("machine") or {}
    return " / ".join(str(machine[key]) for key in ("host", "device") if machine.get(key))


def run_letter(index: int) -> str:
    """A, B, C, ...: how the table, the option differences and the plot name the runs (A is the baseline)."""
    return chr(ord("A") + index) if index < 26 else str(index + 1)


def table_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per run (steady-state means; see :data:`COLUMNS`), with the speed-up over the first run."""
    rows = []
    for run in runs:
        epoch_s, samples = run.steady(COLUMN.epoch), run.steady(COLUMN.samples)
        rows.append(
            {
                RUN: run.name,
                EPOCHS: len(run.epochs),
                FIRST_EPOCH: run.epochs[0][COLUMN.epoch],
                **{quantity.column_name: run.steady(quantity.column_name) for quantity in COMPARED},
                COLUMN.samples_per_s: samples / epoch_s if samples is not None and epoch_s else None,
                FIT: run.budget.get(FIT),
            }
        )
    # Throughput, not epoch time, so that runs with epochs of other sizes compare fairly (2.0: twice as fast).
    baseline = rows[0][COLUMN.samples_per_s] if rows else None
    for row in rows:
        rate = row[COLUMN.samples_per_s]
        row[SPEEDUP] = rate / baseline if baseline and rate else None
    return rows


def config_differences(runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    """The options whose values differ between the runs' config.yaml, as ``(--option, [value per run])``."""
    flat = [flatten_config(run.config) for run in runs if run.config]
    if len(flat) < 2 or len(flat) < len(runs):
        return []
    keys = sorted(set().union(*flat), key=lambda key: (key.split(".")[0], key))
    differing = []
    for key in keys:
        values = [options.get(key, "(not set)") for options in flat]
        if len({json.dumps(value, sort_keys=True, default=str) for value in values}) > 1:
            differing.append((f"--{key}", [_show(value) for value in values]))
    return differing


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"batch_size": 16}}`` -> ``{"data.batch_size": 16}``, as the fit options name them
    (``init_args`` levels left out: ``--optimizer.lr``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key == "init_args" and isinstance(value, Mapping):
            flat |= flatten_config(value, prefix)
        elif isinstance(value, Mapping) and value:
            flat |= flatten_config(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def write_table_csv(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    return write_csv(path, list(rows), COLUMNS)


def plot_runs(path: Path, runs: Sequence[Run]) -> Path:
    """Stacked bars of each run's steady epoch: data loading, the step's parts, and the rest ("other")."""
    unsplit = "training (older CSV, not split)"
    stacks: dict[str, list[float]] = {label: [] for label in [*PLOT_PARTS, unsplit, "other"]}
    for run in runs:
        parts = {label: run.steady(column) or 0.0 for label, column in PLOT_PARTS.items()}
        unsplit_s = run.steady(COLUMN.training) if run.steady(COLUMN.forward) is None else None
        parts[unsplit] = unsplit_s or 0.0
        parts["other"] = max(0.0, (run.steady(COLUMN.epoch) or 0.0) - sum(parts.values()))
        for label, seconds in parts.items():
            stacks[label].append(seconds)
    if not any(stacks[unsplit]):
        del stacks[unsplit]
    return stacked_bars(
        path,
        # The run's letter and last two folders: enough to tell runs apart, short enough for the axis.
        [f"{run_letter(index)}: {'/'.join(Path(run.name).parts[-2:])}" for index, run in enumerate(runs)],
        stacks,
        title="Where each run's steady-state epoch goes",
        xlabel="run",
        ylabel="time per epoch (s)",
    )

"""``python -m cifarbench compare RUN_DIR [RUN_DIR ...] [--plot FILE.png] [--csv FILE]``: runs compared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from rich.console import Console
from rich.table import Table

from cifarbench.callbacks.quantities import COLUMN, COMPARED, PARTS, Q
from cifarbench.commands.parsing import new_parser
from cifarbench.comparison import (
    EPOCHS,
    FIRST_EPOCH,
    FIT,
    SPEEDUP,
    config_differences,
    find_runs,
    plot_runs,
    run_letter,
    table_rows,
    write_table_csv,
)
from cifarbench.errors import ConfigError

SUMMARY = "runs side by side: steady-state epochs, where they go, the speed-up, and what changed"


def compare_options(plot: str | None = None, csv: str | None = None) -> None:
    """Compare runs: per run the steady-state epoch (the mean over epochs after the first; the first apart),
    data loading, training and its parts, the rank spread (runs with several ranks), samples/s, and the
    speed-up over the first run given; then the options that differ between the runs' config.yaml. A RUN_DIR
    is a run's folder (with its timings.csv, e.g. lightning_logs/version_3) or a folder that holds runs.

    Args:
        plot: also draw stacked bars of where each run's steady epoch goes, into this PNG file.
        csv: also write the table to this CSV file.
    """


def build_parser() -> ArgumentParser:
    parser = new_parser("python -m cifarbench compare", compare_options.__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", help="run folders, or folders that hold runs; the first is the baseline"
    )
    parser.add_function_arguments(compare_options, as_group=False)
    return parser


def main(argv: list[str]) -> None:
    options = build_parser().parse_args(argv)
    if options.plot and not options.plot.lower().endswith(".png"):
        raise ConfigError(f"--plot {options.plot!r} must name a .png file")
    runs, warnings = find_runs(options.runs)
    rows = table_rows(runs)
    print_table(rows)
    differences = config_differences(runs)
    if differences:
        print("\nOptions that differ (from each run's config.yaml):")
        for option, values in differences:
            print(f"  {option}: " + ", ".join(f"{run_letter(i)} {value}" for i, value in enumerate(values)))
    elif len(runs) > 1 and all(run.config for run in runs):
        print("\nThe runs' config.yaml files agree on every option.")
    for warning in warnings:
        print(warning)
    if options.csv:
        print(f"table: {_write(options.csv, '--csv', lambda path: write_table_csv(path, rows))}")
    if options.plot:
        print(f"plot: {_write(options.plot, '--plot', lambda path: plot_runs(path, runs))}")


def _write(path: str, option: str, write: Callable[[Path], Path]) -> Path:
    """``write(path)``, with a folder that is missing or a file that cannot be written named in one line."""
    target = Path(path)
    if not target.parent.is_dir():
        raise ConfigError(f"{option} {path!r}: the folder {target.parent} does not exist")
    try:
        return write(target)
    except OSError as error:
        raise ConfigError(f"{option} {path!r} cannot be written ({error.strerror or error})") from None


# How each row of the printed table is labelled and formatted (the CSV keeps every digit).
# Indented under what they are part of: the epoch holds data loading and training, training holds the parts.
_INDENT = {Q.data_loading: "  ", Q.training: "  ", **dict.fromkeys(PARTS, "    "), Q.profiler: "  "}
_LABEL = {
    Q.epoch: "epoch, steady",
    Q.profiler: "EpochTimer's own cost",
    Q.rank_spread: "rank spread (slowest / median rank's own time)",
}
ROWS = {
    EPOCHS: ("epochs", "{:.0f}"),
    FIRST_EPOCH: ("first epoch (s)", "{:.3f}"),
    **{
        quantity.column_name: (
            f"{_INDENT.get(quantity, '')}{_LABEL.get(quantity, quantity.name.replace('_', ' '))}"
            + (" (s)" if quantity.unit == "s" else ""),
            "{:.3f}" if quantity.unit == "s" else "{:.2f}x",
        )
        for quantity in COMPARED
    },
    COLUMN.samples_per_s: ("samples/s", "{:,.0f}"),
    SPEEDUP: ("speed-up over A (samples/s)", "{:.2f}x"),
    FIT: ("fit, whole (s)", "{:.3f}"),
}


# Rows shown only when a run has them: the rank spread is measured only with more than one rank.
_ONLY_WHEN_KNOWN = frozenset({COLUMN.rank_spread})


def print_table(rows: list[dict[str, Any]]) -> None:
    """One column per run (A is the baseline), one row per quantity: readable for any number of columns."""
    letters = [run_letter(index) for index in range(len(rows))]
    for letter, row in zip(letters, rows, strict=True):
        print(f"{letter}: {row['run']}")
    table = Table(title="Steady-state epoch: the mean over epochs after the first")
    table.add_column("", justify="left")
    for letter in letters:
        table.add_column(letter, justify="right")
    for key, (label, form) in ROWS.items():
        if key in _ONLY_WHEN_KNOWN and all(row.get(key) is None for row in rows):
            continue
        table.add_row(label, *("" if row.get(key) is None else form.format(row[key]) for row in rows))
    Console().print(table)

"""What is printed when fit ends: a row per epoch (data loading vs training), the fit budget (where every
second went, inside the step too), and the verdict under them. The per-epoch phases, percentiles and memory
are in timings.csv and TensorBoard; the tables stay within 80 columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cifarbench.callbacks.verdict import Finding

HEADERS = ["epoch", "data loading (s)", "training (s)", "epoch (s)", "data share", "samples/s"]
BUDGET_HEADERS = ["fit budget", "seconds", "share", "what it holds"]
# One line per bucket, short enough for an 80-column table (the README has the full definitions).
BUCKET_MEANINGS = {
    "startup": "setup, device moves, loader start-up",
    "sanity_check": "validation batches before training",
    "first_step": "the first step (compile, autotune)",
    "data_loading": "waiting for batches, with the copy",
    "forward": "training_step and loss (zero_grad)",
    "backward": "every backward pass",
    "optimizer": "optimizer steps and what follows",
    "step_other": "the rest of the training steps",
    "validation": "validation runs",
    "checkpointing": "checkpoint saves",
    "other": "logging, callbacks, epoch ends",
}


def timing_table_rows(history: Sequence[Any]) -> list[list[str]]:
    """Rows of formatted cells, one per epoch, from ``EpochTiming`` records."""
    rows = []
    for row in history:
        share = row.data_loading_s / row.epoch_s if row.epoch_s > 0 else 0.0
        rows.append(
            [
                str(row.epoch),
                f"{row.data_loading_s:.3f}",
                f"{row.training_s:.3f}",
                f"{row.epoch_s:.3f}",
                f"{share:.1%}",
                f"{row.samples_per_s:,.0f}",
            ]
        )
    return rows


def budget_rows(budget: Mapping[str, float]) -> list[list[str]]:
    fit_s = sum(budget.values())
    rows = [
        [name, f"{seconds:.3f}", f"{seconds / fit_s:.1%}" if fit_s else "", BUCKET_MEANINGS.get(name, "")]
        for name, seconds in budget.items()
    ]
    return [*rows, ["fit", f"{fit_s:.3f}", "100.0%", "trainer.fit's wall time"]]


def render_report(
    history: Sequence[Any], budget: Mapping[str, float], findings: Sequence[Finding], clock: str
) -> None:
    """Print the per-epoch table, the budget and the verdict (rich if installed, plain columns otherwise)."""
    tables = []
    if history:
        tables.append((f"EpochTimer ({clock} clock)", HEADERS, timing_table_rows(history)))
    if budget:
        tables.append(("Where the fit's time went", BUDGET_HEADERS, budget_rows(budget)))
    lines = [finding.text for finding in findings]
    try:
        from rich.console import Console  # optional: the callbacks need only torch and lightning
        from rich.table import Table
    except ImportError:
        for title, headers, rows in tables:
            _print_plain(title, headers, rows)
        for line in lines:
            print(f"- {line}")
        return
    console = Console()
    for title, headers, rows in tables:
        table = Table(title=title)
        for index, header in enumerate(headers):
            left = headers is BUDGET_HEADERS and index in (0, 3)  # names and words; numbers align right
            table.add_column(header, justify="left" if left else "right")
        for cells in rows:
            table.add_row(*cells)
        console.print(table)
    for line in lines:
        console.print(f"- {line}", highlight=False)


def _print_plain(title: str, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(header), *(len(row[index]) for row in rows)) for index, header in enumerate(headers)]
    print(title)
    for cells in [headers, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True)))

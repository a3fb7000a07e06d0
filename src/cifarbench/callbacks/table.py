"""What is printed when fit ends: a row per epoch (data loading vs training), the fit budget (where every
second went, inside the step too), each rank's figures when there are several, and the verdict under them.
The per-epoch phases, percentiles and memory are in timings.csv and TensorBoard; the tables stay within 80
columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cifarbench.callbacks.quantities import Q
from cifarbench.callbacks.verdict import Finding

HEADERS = ["epoch", "data loading (s)", "training (s)", "epoch (s)", "data share", "samples/s"]
BUDGET_HEADERS = ["fit budget", "seconds", "share", "what it holds"]
_EPOCH, _DATA, _TRAINING, _SECONDS, _RATE = (
    quantity.column_name for quantity in (Q.index, Q.data_loading, Q.training, Q.epoch, Q.samples_per_s)
)


def timing_table_rows(history: Sequence[Any]) -> list[list[str]]:
    """Rows of formatted cells, one per epoch, from ``EpochTiming`` records."""
    rows = []
    for row in history:
        data_s, epoch_s = getattr(row, _DATA), getattr(row, _SECONDS)
        share = data_s / epoch_s if epoch_s > 0 else 0.0
        rows.append(
            [
                str(getattr(row, _EPOCH)),
                f"{data_s:.3f}",
                f"{getattr(row, _TRAINING):.3f}",
                f"{epoch_s:.3f}",
                f"{share:.1%}",
                f"{getattr(row, _RATE):,.0f}",
            ]
        )
    return rows


def budget_rows(budget: Any) -> list[list[str]]:
    """One row per bucket (its meaning from the quantity's declaration), then the fit."""
    fit_s = budget.fit_s
    rows = [
        [name, f"{seconds:.3f}", f"{seconds / fit_s:.1%}" if fit_s else "", getattr(Q, name).meaning]
        for name, seconds in budget.items()
    ]
    return [*rows, ["fit", f"{fit_s:.3f}", "100.0%", "trainer.fit's wall time"]]


def render_report(
    history: Sequence[Any],
    budget: Any,
    findings: Sequence[Finding],
    clock: str,
    operators: tuple[str, list[str], list[list[str]]] | None = None,
    ranks: tuple[str, list[str], list[list[str]]] | None = None,
) -> None:
    """Print the per-epoch table, the budget, the per-rank table and OpWindow's ``operators`` table (each
    title, headers, rows) if any, and the verdict (rich if installed, plain columns otherwise)."""
    tables = []
    if history:
        tables.append((f"EpochTimer ({clock} clock)", HEADERS, timing_table_rows(history)))
    if budget:
        tables.append(("Where the fit's time went", BUDGET_HEADERS, budget_rows(budget)))
    if ranks is not None:
        tables.append(ranks)
    if operators is not None:
        tables.append(operators)
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
            # names and words align left, numbers right
            left = index in (0, 3) if headers is BUDGET_HEADERS else headers is not HEADERS and index < 2
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

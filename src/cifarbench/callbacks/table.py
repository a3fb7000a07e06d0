"""The per-epoch timing table printed when fit ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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


HEADERS = ["epoch", "data loading (s)", "training (s)", "epoch (s)", "data share", "samples/s"]


def render_timing_table(history: Sequence[Any]) -> None:
    """Print the table with rich when it is installed, as plain columns otherwise."""
    rows = timing_table_rows(history)
    title = f"EpochTimer ({history[-1].clock} clock)"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        print(title)
        for cells in [HEADERS, *rows]:
            print("  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True)))
        return
    table = Table(title=title)
    for header in HEADERS:
        table.add_column(header, justify="right")
    for cells in rows:
        table.add_row(*cells)
    Console().print(table)

"""Shared by C6 and C7: per-epoch training time, loss and accuracy of several runs, with curve plots."""

from __future__ import annotations

from pathlib import Path

from cifarbench.plots import line_plot
from cifarbench.run_folder import Run
from cifarbench.tables import markdown_table, write_csv

COLUMNS = ("run", "settings", "epoch", "training_s", "loss", "acc")


def epoch_rows(runs: dict[str, Run], settings: dict[str, str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for label, result in runs.items():
        for row in result.epochs:
            rows.append(
                {
                    "run": label,
                    "settings": settings.get(label, ""),
                    "epoch": int(row["epoch"]) + 1,
                    "training_s": row["training_s"],
                    "loss": row.get("loss"),
                    "acc": row.get("acc"),
                }
            )
    return rows


def write_curves(
    folder: Path, part: str, runs: dict[str, Run], settings: dict[str, str], title: str
) -> tuple[Path, list[Path], str]:
    """CSV, loss and accuracy plots, and the markdown table of every run's epochs."""
    rows = epoch_rows(runs, settings)
    csv_path = write_csv(folder / f"{part}.csv", rows, COLUMNS)
    figures = []
    for key, label in (("loss", "training loss (cross-entropy)"), ("acc", "top-1 training accuracy (0-1)")):
        series = {
            name: (
                [int(r["epoch"]) + 1 for r in result.epochs if key in r],
                [r[key] for r in result.epochs if key in r],
            )
            for name, result in runs.items()
        }
        figures.append(
            line_plot(
                folder / f"{part}_{key}.png",
                series,
                title=f"{title}: {label} per epoch",
                xlabel="epoch",
                ylabel=label,
            )
        )
    averages = "\n".join(
        f"- {name}: average training time {result.mean('training_s'):.4f} sec per epoch"
        for name, result in runs.items()
    )
    images = "\n\n".join(f"![{part} {path.stem}]({path.name})" for path in figures)
    markdown = f"{markdown_table(rows, COLUMNS)}\n\n{averages}\n\n{images}"
    return csv_path, figures, markdown

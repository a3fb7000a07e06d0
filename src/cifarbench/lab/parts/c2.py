"""C2: per-epoch data-loading, training and total time of the default run (C2.1-C2.3)."""

from __future__ import annotations

from cifarbench.lab.context import LabContext
from cifarbench.lab.result import PartResult
from cifarbench.lab.runs import fit_once
from cifarbench.plots import stacked_bars
from cifarbench.tables import markdown_table, write_csv

NAME = "c2"
TITLE = "C2: time per epoch"
COLUMNS = ("epoch", "data_loading_s", "training_s", "epoch_s", "other_s")


def run(ctx: LabContext) -> PartResult:
    folder = ctx.part_dir(NAME)
    result = fit_once(ctx, NAME, "default", [])
    rows = [
        {
            # 1-based like the lab's "Epoch 1..5".
            "epoch": int(row["epoch"]) + 1,
            "data_loading_s": row["data_loading_s"],
            "training_s": row["training_s"],
            "epoch_s": row["epoch_s"],
            # What neither bucket holds (Lightning's bookkeeping, logging): shows that the numbers add up.
            "other_s": row["epoch_s"] - row["data_loading_s"] - row["training_s"],
        }
        for row in result.epochs
    ]
    csv_path = write_csv(folder / "c2.csv", rows, COLUMNS)
    figure = stacked_bars(
        folder / "c2_epoch_times.png",
        [str(row["epoch"]) for row in rows],
        {
            "data loading": [row["data_loading_s"] for row in rows],
            "training": [row["training_s"] for row in rows],
            "other": [max(0.0, row["other_s"]) for row in rows],
        },
        title="C2: where each training epoch's time goes",
        xlabel="epoch",
        ylabel="time (s)",
    )
    lists = "\n\n".join(
        f"### {label}\n\n" + "\n".join(f"- Epoch {row['epoch']}: {row[key]:.4f} sec" for row in rows)
        for label, key in (
            ("C2.1 Data loading time", "data_loading_s"),
            ("C2.2 Training time", "training_s"),
            ("C2.3 Total running time", "epoch_s"),
        )
    )
    markdown = (
        f"{markdown_table(rows, COLUMNS)}\n\n{lists}\n\n"
        f"![C2 epoch times]({figure.name})\n\n"
        "data_loading_s: the loop waiting for the next batch (including its copy to the device); "
        "training_s: batch ready to end of the optimizer step; epoch_s: the training epoch's wall time, "
        "without validation."
    )
    return PartResult(NAME, TITLE, markdown, folder, csv_path, [figure], [result])

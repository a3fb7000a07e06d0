"""C4: 1 worker vs the best count (from ``lab c3``'s CSV when it exists): where the epoch's time goes."""

from __future__ import annotations

from jsonargparse.typing import NonNegativeInt

from cifarbench.lab.context import LabContext
from cifarbench.lab.parts.c3 import best_workers_from_csv, worker_overrides
from cifarbench.lab.result import PartResult
from cifarbench.lab.runs import fit_once
from cifarbench.plots import stacked_bars
from cifarbench.tables import markdown_table, write_csv

NAME = "c4"
TITLE = "C4: 1 worker vs best"
FALLBACK_BEST = 4  # the lab's answer to C3.2, used when c3 has not run here
COLUMNS = ("workers", "data_loading_s", "training_s", "epoch_s", "data_loading_first_epoch_s")


def run(ctx: LabContext, best: NonNegativeInt | None = None) -> PartResult:
    """C4: 1 worker vs the best count.

    Args:
        best: c4: the count to compare with 1 worker (default: c3's best from its CSV, else 4).
    """
    folder = ctx.part_dir(NAME)
    from_c3 = best_workers_from_csv(ctx.out_dir / "c3" / "c3.csv")
    source = "given with --best"
    if best is None:
        best, source = (
            (from_c3, f"from {ctx.out_dir / 'c3' / 'c3.csv'}")
            if from_c3 is not None
            else (FALLBACK_BEST, "the lab's answer; run `lab c3` first to measure it here")
        )
    counts = [1] if best == 1 else [1, best]
    rows, runs = [], []
    for count in counts:
        result = fit_once(ctx, NAME, f"workers_{count}", worker_overrides(count))
        runs.append(result)
        rows.append(
            {
                "workers": count,
                # Averages over the epochs after the first, as in C3: steady state, start-up apart.
                "data_loading_s": result.steady_mean("data_loading_s"),
                "training_s": result.steady_mean("training_s"),
                "epoch_s": result.steady_mean("epoch_s"),
                "data_loading_first_epoch_s": result.epochs[0]["data_loading_s"],
            }
        )
    csv_path = write_csv(folder / "c4.csv", rows, COLUMNS)
    figure = stacked_bars(
        folder / "c4_one_vs_best.png",
        [f"{row['workers']} worker(s)" for row in rows],
        {
            "data loading": [row["data_loading_s"] for row in rows],
            "training": [row["training_s"] for row in rows],
            "other": [max(0.0, r["epoch_s"] - r["data_loading_s"] - r["training_s"]) for r in rows],
        },
        title="C4: average epoch time, 1 worker vs best",
        xlabel="DataLoader workers",
        ylabel="time per epoch (s)",
    )
    markdown = (
        f"Best count: {best} ({source}).\n\n{markdown_table(rows, COLUMNS)}\n\n"
        f"![C4 1 worker vs best]({figure.name})\n\n"
        "With more workers, batches are decoded and augmented in parallel processes while the main process "
        "trains, so the loop waits less for data; the training step itself does not change."
    )
    return PartResult(NAME, TITLE, markdown, folder, csv_path, [figure], runs)

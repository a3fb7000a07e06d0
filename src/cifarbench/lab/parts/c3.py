"""C3: the num_workers sweep. Workers 0, 4, 8, ... until data loading stops improving (C3.1, C3.2)."""

from __future__ import annotations

import csv
from pathlib import Path

from jsonargparse.typing import PositiveInt

from cifarbench.callbacks.worker_tuner import sweep_until_no_improvement
from cifarbench.lab.context import LabContext
from cifarbench.lab.options import WorkerCounts
from cifarbench.lab.result import PartResult
from cifarbench.lab.runs import fit_once
from cifarbench.plots import line_plot
from cifarbench.run_folder import Run
from cifarbench.tables import markdown_table, write_csv

NAME = "c3"
TITLE = "C3: num_workers sweep"
DEFAULT_WORKERS = WorkerCounts(range(0, 33, 4))  # the lab's 0, 4, 8, ...; the rule stops early
COLUMNS = ("workers", "data_loading_first_epoch_s", "data_loading_steady_s", "epoch_steady_s", "best")


def worker_overrides(workers: int) -> list[str]:
    # persistent_workers keeps the processes alive across epochs, so epochs after the first measure loading,
    # not spawning; epoch 0 (with the spawn) is reported on its own.
    persistent = (
        ["--data.persistent_workers", "true"] if workers > 0 else ["--data.persistent_workers", "false"]
    )
    return ["--data.num_workers", str(workers), *persistent]


def run(ctx: LabContext, workers: WorkerCounts = DEFAULT_WORKERS, patience: PositiveInt = 1) -> PartResult:
    """C3: the num_workers sweep.

    Args:
        workers: c3: worker counts to sweep, in order; the sweep stops when loading stops improving.
        patience: c3: counts in a row without improvement before the sweep stops.
    """
    folder = ctx.part_dir(NAME)
    runs: dict[int, Run] = {}

    def steady_loading(count: int) -> float:
        runs[count] = fit_once(ctx, NAME, f"workers_{count}", worker_overrides(count))
        return runs[count].steady_mean("data_loading_s")

    sweep = sweep_until_no_improvement(workers, steady_loading, patience)
    rows = [
        {
            "workers": count,
            "data_loading_first_epoch_s": run.epochs[0]["data_loading_s"],
            "data_loading_steady_s": sweep.costs[count],
            "epoch_steady_s": run.steady_mean("epoch_s"),
            "best": "yes" if count == sweep.best else "",
        }
        for count, run in runs.items()
    ]
    csv_path = write_csv(folder / "c3.csv", rows, COLUMNS)
    counts = [row["workers"] for row in rows]
    figure = line_plot(
        folder / "c3_data_loading_vs_workers.png",
        {
            "steady state (epochs after the first)": (counts, [r["data_loading_steady_s"] for r in rows]),
            "first epoch (includes worker start-up)": (
                counts,
                [r["data_loading_first_epoch_s"] for r in rows],
            ),
        },
        title="C3: data-loading time per epoch vs DataLoader workers",
        xlabel="num_workers",
        ylabel="data-loading time per epoch (s)",
    )
    single_epoch = len(next(iter(runs.values())).epochs) == 1
    stop = (
        f"stopped after {counts[-1]} workers: {patience} count(s) in a row did not improve on the best"
        if sweep.stopped_early
        else "measured every count in the list"
    )
    lists = "\n".join(f"- {row['workers']} workers: {row['data_loading_steady_s']:.4f} sec" for row in rows)
    markdown = (
        f"### C3.1 Data-loading time per epoch\n\n{markdown_table(rows, COLUMNS)}\n\n{lists}\n\n"
        f"![C3 data loading vs workers]({figure.name})\n\n"
        f"The sweep {stop}. data_loading_steady_s is the mean over epochs after the first, with "
        f"persistent_workers, so it measures loading rather than process start-up"
        + (" (only one epoch ran, so it is epoch 0 here: raise --trainer.max_epochs)" if single_epoch else "")
        + ".\n\n"
        f"### C3.2 Best worker count\n\n"
        f"**{sweep.best} workers** give the shortest data-loading time ({sweep.best_cost:.4f} s per epoch)."
    )
    return PartResult(NAME, TITLE, markdown, folder, csv_path, [figure], list(runs.values()))


def best_workers_from_csv(path: Path) -> int | None:
    """The best count of an earlier ``lab c3`` (its CSV), or ``None`` when there is none."""
    if not path.is_file():
        return None
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            if row.get("best") == "yes":
                return int(row["workers"])
    return None

"""C7: SGD without batch norm (``--model.norm none``) next to the batch-norm baseline."""

from __future__ import annotations

from cifarbench.lab.context import LabContext
from cifarbench.lab.parts.curves import write_curves
from cifarbench.lab.result import PartResult
from cifarbench.lab.runs import fit_once, optimizer_settings
from cifarbench.run_folder import Run

NAME = "c7"
TITLE = "C7: no batch norm"
NORMS = ("none", "batch")


def run(ctx: LabContext) -> PartResult:
    folder = ctx.part_dir(NAME)
    runs: dict[str, Run] = {}
    for norm in NORMS:
        runs[f"norm={norm}"] = fit_once(ctx, NAME, f"norm_{norm}", ["--model.norm", norm])
    settings = {name: optimizer_settings(result.config) for name, result in runs.items()}
    csv_path, figures, table = write_curves(folder, NAME, runs, settings, "C7 batch norm")
    markdown = (
        f"{table}\n\nBoth runs use the lab's SGD; norm=none replaces every BatchNorm2d with an identity."
    )
    return PartResult(NAME, TITLE, markdown, folder, csv_path, figures, list(runs.values()))

"""C7: SGD without batch norm (``--model.norm none``) next to the batch-norm baseline."""

from __future__ import annotations

from cifarbench.lab.context import LabContext
from cifarbench.lab.parts.curves import write_curves
from cifarbench.lab.result import PartResult
from cifarbench.lab.runs import RunResult, optimizer_settings, run_fit

PART = "c7"
NORMS = ("none", "batch")


def run(ctx: LabContext) -> PartResult:
    folder = ctx.part_dir(PART)
    runs: dict[str, RunResult] = {}
    for norm in NORMS:
        runs[f"norm={norm}"] = run_fit(ctx, PART, f"norm_{norm}", ["--model.norm", norm])
    settings = {name: optimizer_settings(result.config) for name, result in runs.items()}
    csv_path, figures, table = write_curves(folder, PART, runs, settings, "C7 batch norm")
    markdown = (
        f"{table}\n\nBoth runs use the lab's SGD; norm=none replaces every BatchNorm2d with an identity."
    )
    return PartResult(PART, "C7: no batch norm", markdown, folder, csv_path, figures, list(runs.values()))

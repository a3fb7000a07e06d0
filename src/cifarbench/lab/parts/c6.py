"""C6: SGD, SGD with nesterov, Adagrad, Adadelta and Adam with the lab's hyperparameters."""

from __future__ import annotations

from cifarbench.lab.context import LabContext
from cifarbench.lab.parts.curves import write_curves
from cifarbench.lab.result import PartResult
from cifarbench.lab.runs import fit_once, optimizer_settings
from cifarbench.run_folder import Run

NAME = "c6"
TITLE = "C6: optimizers"

# The lab's hyperparameters: lr 0.1 and weight decay 5e-4 for all, momentum 0.9 where the optimizer has one.
# Every value is given explicitly (LightningCLI would carry lr and weight_decay over from the default SGD when
# the class changes, but stating them keeps each run's config self-explanatory).
_COMMON = ["--optimizer.lr", "0.1", "--optimizer.weight_decay", "5e-4"]
OPTIMIZERS: dict[str, list[str]] = {
    "SGD": ["--optimizer", "torch.optim.SGD", *_COMMON, "--optimizer.momentum", "0.9"],
    "SGD nesterov": [
        "--optimizer", "torch.optim.SGD", *_COMMON, "--optimizer.momentum", "0.9",
        "--optimizer.nesterov", "true",
    ],
    "Adagrad": ["--optimizer", "torch.optim.Adagrad", *_COMMON],
    "Adadelta": ["--optimizer", "torch.optim.Adadelta", *_COMMON],
    "Adam": ["--optimizer", "torch.optim.Adam", *_COMMON],
}  # fmt: skip


def run(ctx: LabContext) -> PartResult:
    folder = ctx.part_dir(NAME)
    runs: dict[str, Run] = {}
    for name, overrides in OPTIMIZERS.items():
        runs[name] = fit_once(ctx, NAME, name.lower().replace(" ", "_"), overrides)
    # Read back from each run's saved config.yaml: the settings the optimizer really got.
    settings = {name: optimizer_settings(result.config) for name, result in runs.items()}
    csv_path, figures, table = write_curves(folder, NAME, runs, settings, "C6 optimizers")
    markdown = f"{table}\n\nSettings are read back from each run's config.yaml."
    return PartResult(NAME, TITLE, markdown, folder, csv_path, figures, list(runs.values()))

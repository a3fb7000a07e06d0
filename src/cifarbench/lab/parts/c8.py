"""C8: eager vs torch.compile modes: first-epoch time (includes compilation) vs steady-state epoch time."""

from __future__ import annotations

import torch

from cifarbench.lab.context import LabContext
from cifarbench.lab.options import CompileModes
from cifarbench.lab.result import PartResult
from cifarbench.lab.runs import fit_once
from cifarbench.model import COMPILE_MODES
from cifarbench.plots import grouped_bars
from cifarbench.run_folder import Run
from cifarbench.tables import markdown_table, write_csv

NAME = "c8"
TITLE = "C8: torch.compile modes"
COLUMNS = ("mode", "status", "first_epoch_s", "steady_epoch_s", "training_steady_s", "note")
# On a CPU, reduce-overhead is CUDA graphs (nothing to gain) and max-autotune benchmarks kernels for many
# minutes: by default the CPU compares eager with the default mode only. --modes asks for others.
CPU_DEFAULT_MODES: tuple[str, ...] = ("default",)


def default_modes() -> tuple[str, ...]:
    return COMPILE_MODES if torch.cuda.is_available() else CPU_DEFAULT_MODES


def run(ctx: LabContext, modes: CompileModes | None = None) -> PartResult:
    """C8: eager vs torch.compile modes.

    Args:
        modes: c8: torch.compile modes to run next to eager (default: all three on CUDA, default on a CPU).
    """
    folder = ctx.part_dir(NAME)
    chosen = list(modes) if modes is not None else list(default_modes())
    rows: list[dict[str, object]] = []
    runs: list[Run] = []
    for mode in ["eager", *chosen]:
        if mode == "eager":
            # Not guarded: if eager fails, the fit options are wrong, and that should stop the part.
            result = fit_once(ctx, NAME, mode, [])
        else:
            try:
                result = fit_once(ctx, NAME, mode.replace("-", "_"), ["--model.compile", mode])
            except Exception as error:  # noqa: BLE001 - any failure to compile is a result here
                reason = f"{type(error).__name__}: {error}".splitlines()[0][:200]
                print(f"[lab c8] {mode} could not run: {reason}", flush=True)
                rows.append({"mode": mode, "status": "failed", "note": reason})
                continue
        runs.append(result)
        rows.append(
            {
                "mode": mode,
                "status": "ok",
                "first_epoch_s": result.epochs[0]["epoch_s"],
                "steady_epoch_s": result.steady_mean("epoch_s"),
                "training_steady_s": result.steady_mean("training_s"),
                "note": "" if len(result.epochs) > 1 else "one epoch only: steady state is epoch 0",
            }
        )
    csv_path = write_csv(folder / "c8.csv", rows, COLUMNS)
    measured = [row for row in rows if row["status"] == "ok"]
    figure = grouped_bars(
        folder / "c8_compile_modes.png",
        [str(row["mode"]) for row in measured],
        {
            "first epoch (compilation included)": [float(row["first_epoch_s"]) for row in measured],
            "steady-state epoch": [float(row["steady_epoch_s"]) for row in measured],
        },
        title="C8: eager vs torch.compile, epoch time",
        xlabel="execution mode",
        ylabel="epoch time (s)",
    )
    skipped = sorted(set(COMPILE_MODES) - set(chosen))
    note = (
        f" Not run here: {', '.join(skipped)} (no GPU: reduce-overhead is CUDA graphs, and max-autotune "
        f"tunes kernels for minutes on a CPU; ask with --modes)."
        if skipped
        else ""
    )
    markdown = (
        f"{markdown_table(rows, COLUMNS)}\n\n![C8 compile modes]({figure.name})\n\n"
        f"first_epoch_s includes compilation; steady_epoch_s averages the epochs after it.{note}"
    )
    return PartResult(NAME, TITLE, markdown, folder, csv_path, [figure], runs)

"""What every lab part needs to know: where results go and which fit overrides the user passed."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

# Every lab run: results are timings and curves, so checkpoints (45 MB each) are not kept. The user's own
# overrides come after these and can switch them back on.
LAB_BASE_OVERRIDES: tuple[str, ...] = ("--trainer.enable_checkpointing", "false")

# `--quick`: explicit synthetic data, tiny batches, two epochs (so steady state exists), no validation.
QUICK_OVERRIDES: tuple[str, ...] = (
    "--data.synthetic", "256",
    "--data.batch_size", "16",
    "--trainer.max_epochs", "2",
    "--trainer.limit_train_batches", "3",
    "--trainer.limit_val_batches", "0",
    "--trainer.log_every_n_steps", "1",
)  # fmt: skip
# Without --verbose a run shows nothing of its own: the lab prints one line per run and the part's table.
QUIET_OVERRIDES: tuple[str, ...] = (
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--timer.print_table", "false",
)  # fmt: skip


@dataclass
class LabContext:
    """Where a part writes (``out_dir / part``), the user's fit overrides, and the command that started it."""

    out_dir: Path
    overrides: list[str] = field(default_factory=list)
    quick: bool = False
    verbose: bool = False
    command: str = "python -m cifarbench lab"

    def part_dir(self, part: str) -> Path:
        folder = self.out_dir / part
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def fit_args(self, part: str, run: str, extra: list[str]) -> list[str]:
        """``fit`` options of one run: lab defaults, quick profile, user overrides, then the run's own.

        The run's own come last because they are what the experiment varies (jsonargparse: last one wins).
        The logger is pinned so the run's folder is known in advance: ``<out>/<part>/runs/<run>``, and the
        whole sweep shows up in TensorBoard with ``tensorboard --logdir <out>/<part>``.
        """
        logger = {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {
                "save_dir": str(self.out_dir / part),
                "name": "runs",
                "version": run,
                "default_hp_metric": False,
            },
        }
        quick = list(QUICK_OVERRIDES) if self.quick else []
        quiet = [] if self.verbose else list(QUIET_OVERRIDES)
        return [
            *LAB_BASE_OVERRIDES,
            *quiet,
            *quick,
            *self.overrides,
            *extra,
            "--trainer.logger",
            json.dumps(logger),
        ]

    def run_dir(self, part: str, run: str) -> Path:
        return self.out_dir / part / "runs" / run


def shell_command(args: list[str]) -> str:
    """The exact command line for ``args``, quoted for a POSIX shell."""
    return " ".join(shlex.quote(arg) for arg in args)

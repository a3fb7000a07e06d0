"""``python -m cifarbench tune [fit options] [--trials 8] [--steps 50] [--out DIR] [--allow ...]``.

From a verdict to a measured cure: short bounded fits, each applying the best run's top finding's next move,
kept when it beats the measured noise (:mod:`cifarbench.tuning`). Every option ``tune`` does not know is a fit
option, given to every trial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cifarbench.commands.lab import default_out_dir
from cifarbench.commands.parsing import bools_as_flags, new_parser, split_known
from cifarbench.errors import ConfigError
from cifarbench.fitting import check_writable, run_fit
from cifarbench.lab.context import shell_command
from cifarbench.quiet import lab_run_output
from cifarbench.tuning.report import write_report
from cifarbench.tuning.search import Search, resolved_config, search, tuned_yaml

SUMMARY = "turn the verdict into a measured cure: short fits that try each finding's moves, kept if faster"


@dataclass
class TuneOptions:
    """Options of ``tune``; any other option is a fit option, given to every trial.

    Args:
        trials: the most moves to try (the two baseline runs come on top).
        steps: training batches per epoch of each trial (two epochs: the first kept apart); default 50, or the
            config's ``--trainer.limit_train_batches`` when that is a smaller count.
        out: where the trials, tune.md and tuned.yaml go (default: lightning_logs/tune/<time>).
        allow: ``changes-training`` also applies moves that change what is trained (validating or saving less
            often, a larger batch); by default they are only listed.
        verbose: show Lightning's own output for every trial.
    """

    trials: int = 8
    steps: int | None = None
    out: str | None = None
    allow: Literal["same-results", "changes-training"] = "same-results"
    verbose: bool = False


def main(argv: list[str]) -> None:
    parser = new_parser("python -m cifarbench tune", SUMMARY)
    parser.add_class_arguments(TuneOptions, as_group=False)
    bools_as_flags(parser)
    own, fit_options = split_known(parser, argv)
    options = parser.parse_args(own)
    if options.trials < 1:
        raise ConfigError(f"--trials {options.trials} must be >= 1 (the moves to try)")
    if options.steps is not None and options.steps < 2:
        raise ConfigError(f"--steps {options.steps} must be >= 2 (a steady-state epoch needs two steps)")
    out_dir = Path(options.out) if options.out else default_out_dir(fit_options).parent / "tune" / _stamp()
    check_writable(out_dir, option="--out")
    config = resolved_config(fit_options)  # every fit option checked before the first trial
    steps = options.steps or default_steps(config)
    run = Search(out_dir, fit_options, options.trials, steps, options.allow == "changes-training",
                 options.verbose)  # fmt: skip
    command = f"python -m cifarbench {shell_command(['tune', *argv])}"
    best = None
    try:
        with lab_run_output(options.verbose):
            best = search(run, run_fit)
    except BaseException:
        run.status = "interrupted"
        write_report(run, best, command)
        print(f"[tune] interrupted: the finished trials and tune.md are in {out_dir}", flush=True)
        raise
    report = write_report(run, best, command)
    tuned = out_dir / "tuned.yaml"
    tuned.write_text(tuned_yaml(best.options))
    print(f"[tune] {run.stop_reason}; the chain of trials: {report}", flush=True)
    print(f"[tune] run the tuned config: python -m cifarbench fit --config {tuned}", flush=True)


def default_steps(config: dict[str, Any]) -> int:
    """50 batches an epoch, or the config's own limit when it is a smaller count (``--config demo``: 12)."""
    limit = (config.get("trainer") or {}).get("limit_train_batches")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and 2 <= limit < 50 else 50


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")

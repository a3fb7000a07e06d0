"""The tuning loop: bounded trial fits, each judged against the current best on its finding's measure.

Every trial is a normal run folder (``<out>/trials/<NN-name>``: timings.csv, fit_budget.json, config.yaml and
TensorBoard), so ``compare`` and TensorBoard read them as any other run.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from cifarbench.callbacks.quantities import COLUMN
from cifarbench.callbacks.records import BUDGET_JSON
from cifarbench.comparison import REQUIRED, flatten_config
from cifarbench.errors import CifarbenchError, ConfigError
from cifarbench.fitting import run_cli
from cifarbench.lab.context import QUIET_OVERRIDES, shell_command
from cifarbench.run_folder import Run, read_run
from cifarbench.tuning.moves import CHANGES_TRAINING, FIT_TIME, MEASURE, MOVES, SAME_RESULTS, THROUGHPUT, Move

# The smallest gain that counts, whatever the measured noise: below it a "gain" is not worth a config change.
MIN_GAIN = 0.01
# The finding that ends the search: the step itself is the bound. (Start-up and the first step are paid once
# per fit; in a trial this short they are large by design, so the search looks past them.)
FINAL_KINDS = ("compute_bound",)


@dataclass
class Trial:
    """One fit of the search, and what became of its move."""

    number: int
    name: str
    options: list[str]  # the fit options of the config it tried (without the trial's bounds)
    run: Run | None = None
    move: Move | None = None
    finding: dict[str, Any] = field(default_factory=dict)  # what the move answered
    gain: float | None = None  # on the finding's measure, as a share of the current best
    kept: bool | None = None
    note: str = ""

    @property
    def throughput(self) -> float:
        rate = self.run.steady(COLUMN.samples_per_s) if self.run else None
        return rate or 0.0

    @property
    def fit_time_per_epoch(self) -> float:
        """The fit's time per epoch, start-up left out (it is paid once, and varies from run to run)."""
        if self.run is None or not self.run.epochs:
            return 0.0
        startup = float((self.run.budget.get("buckets") or {}).get("startup") or 0.0)
        return (float(self.run.budget.get("fit_s") or 0.0) - startup) / len(self.run.epochs)

    def measure(self, kind: str) -> float:
        return self.fit_time_per_epoch if MEASURE.get(kind) == FIT_TIME else self.throughput

    def findings(self) -> list[dict[str, Any]]:
        if self.run is None:
            return []
        return [entry for entry in self.run.budget.get("verdict", []) if entry.get("kind") != "summary"]


@dataclass
class Search:
    """What ``tune`` was asked, and the trials so far."""

    out_dir: Path
    user_options: list[str]
    trials: int
    steps: int
    allow_changes: bool
    verbose: bool
    history: list[Trial] = field(default_factory=list)
    not_applied: list[tuple[Move, dict[str, Any]]] = field(default_factory=list)
    noise: dict[str, float] = field(default_factory=dict)  # by measure: samples/s, fit time per epoch
    baseline_throughput: float = 0.0
    status: str = "running"
    stop_reason: str = ""

    def bounds(self) -> list[str]:
        """Enough steps for a steady state, the first epoch kept apart: two epochs of ``steps`` batches."""
        return ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", str(self.steps)]

    def fit_args(self, name: str, options: Sequence[str]) -> list[str]:
        logger = {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(self.out_dir), "name": "trials", "version": name},
        }
        quiet = [] if self.verbose else list(QUIET_OVERRIDES)
        return [*quiet, *options, *self.bounds(), "--trainer.logger", json.dumps(logger)]


def resolved_config(options: Sequence[str]) -> dict[str, Any]:
    """The full fit config of ``options`` (LightningCLI's ``--print_config``): checks every option first."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            run_cli(["fit", *options, "--print_config"])
        except SystemExit as done:
            if done.code not in (0, None):
                raise
    config = yaml.safe_load(printed.getvalue())
    if not isinstance(config, dict):
        raise CifarbenchError(f"the fit options {shell_command(list(options))} give no config")
    return config


def run_trial(search: Search, trial: Trial, fit: Callable[[list[str]], Any]) -> None:
    print(
        f"[tune] trial {trial.number}: {trial.name} -> {search.out_dir / 'trials' / trial.name}", flush=True
    )
    fit(search.fit_args(trial.name, trial.options))
    trial.run = read_run(trial.name, search.out_dir / "trials" / trial.name, REQUIRED)
    if not (search.out_dir / "trials" / trial.name / BUDGET_JSON).is_file():
        raise CifarbenchError(f"trial {trial.name} left no {BUDGET_JSON}: was --timer turned off?")


def next_move(
    search: Search, current: Trial, config: dict[str, Any], tried: set[str]
) -> tuple[Move, dict] | None:
    """The first move not yet tried for the current run's findings, largest finding first."""
    on_cuda = torch.cuda.is_available() and str(config.get("trainer.accelerator")) in ("gpu", "cuda", "auto")
    for finding in current.findings():
        kind = finding.get("kind", "")
        if kind in FINAL_KINDS:
            return None
        for move in MOVES.get(kind, ()):
            if move.name in tried or not move.applies_to(config, on_cuda):
                continue
            if move.effect == CHANGES_TRAINING and not search.allow_changes:
                if all(listed.name != move.name for listed, _ in search.not_applied):
                    search.not_applied.append((move, finding))
                continue
            return move, finding
    return None


def search(search: Search, fit: Callable[[list[str]], Any]) -> Trial:
    """Run the search; the best trial. Each trial is written as it ends; ``tune.md`` after each one too."""
    baseline = Trial(1, "01-baseline", list(search.user_options))
    repeat = Trial(2, "02-baseline-again", list(search.user_options))
    for trial in (baseline, repeat):
        run_trial(search, trial, fit)
        search.history.append(trial)
    first, second = baseline.throughput, repeat.throughput
    # The noise: how far two runs of the same config differ, as a share of their mean.
    search.baseline_throughput = statistics.mean([first, second])
    search.noise = {
        measure: _spread(baseline.measure(kind), repeat.measure(kind))
        for measure, kind in ((THROUGHPUT, "input_bound"), (FIT_TIME, "validation_heavy"))
    }
    # The faster of the two is what a move must beat (by more than the noise): no move wins by luck.
    current, tried = (baseline if first >= second else repeat), set()
    while len(search.history) - 2 < search.trials:
        config = flatten_config(resolved_config(current.options))
        chosen = next_move(search, current, config, tried)
        if chosen is None:
            kinds = [finding.get("kind") for finding in current.findings()]
            search.stop_reason = (
                f"the best run is {kinds[0].replace('_', '-')}" if kinds and kinds[0] in FINAL_KINDS
                else "no move is left to try for its findings"
            )  # fmt: skip
            break
        move, finding = chosen
        tried.add(move.name)
        number = len(search.history) + 1
        trial = Trial(number, f"{number:02d}-{move.name.replace(' ', '-').replace(',', '')}",
                      [*current.options, *move.options(config)], move=move, finding=finding)  # fmt: skip
        search.history.append(trial)
        try:
            run_trial(search, trial, fit)
        except (CifarbenchError, ConfigError) as error:  # a move this setup cannot take (e.g. no workers)
            trial.kept, trial.note = False, f"failed: {error}"
            continue
        kind = finding["kind"]
        before, after = current.measure(kind), trial.measure(kind)
        if not before or not after:
            trial.kept, trial.note = False, "not measured"
            continue
        trial.gain = (after - before) / before if MEASURE.get(kind) != FIT_TIME else (before - after) / before
        # Judged against the noise of the same measure, between the two baseline runs.
        trial.kept = trial.gain > max(search.noise[MEASURE.get(kind, THROUGHPUT)], MIN_GAIN)
        if trial.kept:
            current = trial
    else:
        search.stop_reason = f"the {search.trials} trials allowed (--trials) are used up"
    search.status = "finished"
    return current


def _spread(first: float, second: float) -> float:
    """How far two runs of the same config differ, as a share of their mean."""
    return abs(first - second) / statistics.mean([first, second]) if first and second else 0.0


def tuned_yaml(options: Sequence[str]) -> str:
    """The config of ``options`` as YAML, usable as ``fit --config tuned.yaml`` (no trial bounds)."""
    return yaml.safe_dump(resolved_config(options), sort_keys=False)


__all__ = ["SAME_RESULTS", "THROUGHPUT", "Search", "Trial", "search", "tuned_yaml"]

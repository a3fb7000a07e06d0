"""The one writer of EpochTimer's outputs: timings.csv, fit_budget.json, the loggers and the printed tables.

It lives on rank zero only (the callback makes none elsewhere) and has three calls: an epoch ended, steps to
log, the fit ended. With more than one rank it also writes every rank's rows (timings_ranks.csv, next to
timings.csv), their figures in fit_budget.json and a per-rank table. Every write goes through one
:class:`OutputGuard`, so an output that fails costs a warning and never the fit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.loggers import Logger

from cifarbench.callbacks.outputs import (
    OPS_TAG,
    OutputGuard,
    TimingsCsv,
    add_budget_text,
    add_tensorboard_layout,
    budget_markdown,
    epoch_metrics,
    log_metrics,
    machine_description,
    step_metrics,
    write_budget_json,
)
from cifarbench.callbacks.progress import EpochProgress
from cifarbench.callbacks.ranks import RANKS_CSV_FIELDS, RankLedger
from cifarbench.callbacks.records import RANKS_CSV
from cifarbench.callbacks.session import FitSession
from cifarbench.callbacks.straggler import rank_table, ranks_json
from cifarbench.callbacks.table import render_report
from cifarbench.callbacks.verdict import Finding

# Sampled steps wait for the loggers until the epoch ends: a logger's write costs far more than a step's
# marks (TensorBoard: about 0.1 ms a scalar), and at epoch end it is not inside any step. A very long epoch
# writes them every this many points, so memory stays bounded (about 100 bytes a point).
CURVE_POINTS_KEPT = 2_000


class Reporter:
    """Writes one fit's outputs into ``log_dir`` (``None``: loggers and the table only)."""

    def __init__(
        self,
        loggers: Sequence[Logger],
        csv_path: str | None,
        budget_path: str | None,
        print_table: bool,
        history: Sequence[Any],
        progress: EpochProgress | None = None,
    ) -> None:
        self.loggers = list(loggers)
        self.budget_path = budget_path
        self.print_table = print_table
        self.progress = progress
        self.guard = OutputGuard()
        self._curve: list[Any] = []
        self.csv = TimingsCsv(csv_path) if csv_path else None
        ranks_path = os.path.join(os.path.dirname(csv_path), RANKS_CSV) if csv_path else None
        self.ranks_csv = TimingsCsv(ranks_path, RANKS_CSV_FIELDS) if ranks_path else None  # with >1 rank
        self.rows_restored(history)
        self.guard.run("TensorBoard layout", lambda: add_tensorboard_layout(self.loggers))

    def rows_restored(self, history: Sequence[Any]) -> None:
        """timings.csv (re)written with the rows known so far: none, or a checkpoint's."""
        csv_file = self.csv
        if csv_file is not None:
            self.guard.run(csv_file.path, lambda: csv_file.write_all(history))

    def epoch_ended(
        self, timing: Any, history: Sequence[Any], global_step: int, ranks: RankLedger | None = None
    ) -> None:
        """An epoch's row: its sampled steps and scalars to the loggers, a line in timings.csv (and with more
        than one rank, a line per rank in timings_ranks.csv), its shares on the progress bar (and a line when
        the epoch's verdict moved, with the tables on)."""
        self._write_curve()
        progress = self.progress
        if progress is not None:
            self.guard.run("progress bar", lambda: progress.epoch_ended(timing, self.print_table))
        if self.loggers:
            metrics = epoch_metrics(timing)
            self.guard.run("loggers (epoch metrics)", lambda: log_metrics(self.loggers, metrics, global_step))
        csv_file = self.csv
        if csv_file is not None:
            self.guard.run(csv_file.path, lambda: csv_file.append(timing, history))
        ranks_file = self.ranks_csv
        if ranks_file is not None and ranks is not None and ranks.world_size > 1:
            rows = ranks.csv_rows(last_only=True)
            self.guard.run(ranks_file.path, lambda: ranks_file.append_rows(rows, ranks.csv_rows()))

    def steps_to_log(self, steps: Sequence[Any], every_n: int) -> None:
        """Steps just read; every ``every_n``-th global step waits for the per-step curves."""
        if not self.loggers:
            return
        self._curve.extend(step for step in steps if step.global_step % every_n == 0)
        if len(self._curve) >= CURVE_POINTS_KEPT:
            self._write_curve()

    def fit_ended(
        self,
        history: Sequence[Any],
        budget: Any,
        findings: Sequence[Finding],
        status: str,
        session: FitSession,
        global_step: int,
    ) -> None:
        """The budget and verdict: fit_budget.json, TensorBoard text, and the printed tables."""
        self._write_curve()
        clock, machine = session.clock.name, machine_description(session.device)
        path = self.budget_path
        ranks = ranks_json(session.ranks)
        if path is not None:
            self.guard.run(
                path, lambda: write_budget_json(path, budget, findings, status, clock, machine, ranks)
            )
        markdown = budget_markdown(budget, findings)
        self.guard.run(
            "loggers (fit budget text)", lambda: add_budget_text(self.loggers, markdown, global_step)
        )
        operators = session.operators  # OpWindow's table, under the budget
        if operators is not None:
            text = operators.markdown()
            self.guard.run(
                "loggers (ops text)", lambda: add_budget_text(self.loggers, text, global_step, OPS_TAG)
            )
        if self.print_table:
            render_report(
                history,
                budget,
                findings,
                clock,
                operators.table() if operators is not None else None,
                rank_table(session.ranks),
            )

    def _write_curve(self) -> None:
        points, self._curve = self._curve, []
        if points and self.loggers:
            self.guard.run("loggers (per-step curves)", lambda: _log_steps(self.loggers, points))


def _log_steps(loggers: Sequence[Logger], steps: Sequence[Any]) -> None:
    for step in steps:
        log_metrics(loggers, step_metrics(step), step.global_step)


def run_file(log_dir: str | None, name: str | None) -> str | None:
    """``<log_dir>/<name>``, or ``None`` when either is missing (no log dir, or the output turned off)."""
    return os.path.join(log_dir, name) if log_dir and name else None

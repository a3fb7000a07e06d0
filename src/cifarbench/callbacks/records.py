"""One finished epoch's timings: the record behind EpochTimer.history, timings.csv and the table."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from cifarbench.callbacks.quantities import COLUMNS, STEP_SECONDS, Q, Quantity, epoch_columns_record
from cifarbench.callbacks.ranks import RankEpoch, rank_spread
from cifarbench.callbacks.spread import LogHistogram

# The files EpochTimer writes in a run's log dir; readers of a run folder take the names from here.
TIMINGS_CSV = "timings.csv"
BUDGET_JSON = "fit_budget.json"
RANKS_CSV = "timings_ranks.csv"  # one row per (epoch, rank), with more than one rank

# (this rank's figures, its samples) -> every rank's, in rank order (the epoch's one collective)
Gather = Callable[[Mapping[Quantity, float], int], list[RankEpoch]]


class _EpochTimingMethods:
    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


EpochTiming = epoch_columns_record(
    "EpochTiming",
    _EpochTimingMethods,
    "One finished training epoch (seconds; one field per timings.csv column, see quantities.QUANTITIES).\n\n"
    "Seconds are the slowest rank's; ``*_mean_s`` average over ranks. Fields added after the first version "
    "have defaults, so that a checkpoint written before them loads.",
)

# Each rank's own figures, gathered once per epoch: the slowest rank's value, and the mean.
_PER_RANK = (Q.epoch, *STEP_SECONDS, Q.step_p50, Q.step_p90, Q.step_max, Q.peak_memory, Q.op_window)
# The columns that hold a mean over ranks, and the figure each averages.
_MEANS = {Q.data_loading_mean: Q.data_loading, Q.training_mean: Q.training, Q.epoch_mean: Q.epoch}


def epoch_timing(
    epoch: int,
    totals: Any,
    spread: LogHistogram,
    epoch_s: float,
    clock: str,
    peak_memory: int | None,
    mfu_flops: tuple[float, float] | None,
    world_size: int,
    gather: Gather,
    window: Any = None,
) -> Any:
    """An epoch's row from this rank's step totals and spread, and every rank's (``gather``: one collective).

    ``window`` sums the steps that OpWindow profiled (a ``Totals``): they are in no other column but
    ``op_window_steps`` and ``op_window_s``, and the epoch's samples per second are those of the other steps.
    """
    window_s = window.data_loading_s + window.training_s + window.profiler_s if window is not None else 0.0
    local = {
        Q.epoch: epoch_s,
        **{quantity: getattr(totals, quantity.column_name) for quantity in STEP_SECONDS},
        Q.step_p50: spread.quantile(0.5),
        Q.step_p90: spread.quantile(0.9),
        Q.step_max: spread.max,
        Q.peak_memory: float(peak_memory or 0),
        Q.op_window: window_s,
    }
    ranks = gather({quantity: local[quantity] for quantity in _PER_RANK}, totals.samples)
    slowest = {quantity: max(rank[quantity] for rank in ranks) for quantity in _PER_RANK}
    mean = {quantity: sum(rank[quantity] for rank in ranks) / len(ranks) for quantity in _PER_RANK}
    samples = sum(rank.samples for rank in ranks)
    outside_window_s = slowest[Q.epoch] - slowest[Q.op_window]
    samples_per_s = samples / outside_window_s if outside_window_s > 0 else 0.0
    mfu = None
    if mfu_flops is not None:
        per_sample, peak = mfu_flops
        mfu = samples_per_s * per_sample / (peak * world_size)
    values = {
        **slowest,
        **{column: mean[figure] for column, figure in _MEANS.items()},
        Q.index: epoch,
        Q.steps: totals.steps,
        Q.op_window_steps: window.steps if window is not None else 0,
        Q.samples: samples,
        Q.samples_per_s: samples_per_s,
        Q.world_size: world_size,
        Q.clock: clock,
        Q.mfu: mfu,
        Q.peak_memory: int(slowest[Q.peak_memory]) if peak_memory is not None else None,
        Q.rank_spread: rank_spread(ranks),
    }
    return EpochTiming(**{quantity.column_name: values[quantity] for quantity in COLUMNS})

"""One finished epoch's timings: the record behind EpochTimer.history, timings.csv and the table."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cifarbench.callbacks.accounting import Totals
from cifarbench.callbacks.spread import LogHistogram

# The files EpochTimer writes in a run's log dir; readers of a run folder take the names from here.
TIMINGS_CSV = "timings.csv"
BUDGET_JSON = "fit_budget.json"

# (per-rank values, samples) -> (the slowest rank's values, their mean over ranks, samples summed over ranks)
Reduce = Callable[[list[float], int], tuple[list[float], list[float], int]]


@dataclass(frozen=True)
class EpochTiming:
    """One finished training epoch (seconds). Seconds are the slowest rank's; ``*_mean_s`` average over ranks.

    The fields after ``mfu`` came with the step anatomy; their defaults let a checkpoint written before them
    load (its epochs show 0 there).
    """

    epoch: int
    data_loading_s: float
    training_s: float
    epoch_s: float
    transfer_s: float
    steps: int
    samples: int
    samples_per_s: float
    data_loading_mean_s: float
    training_mean_s: float
    epoch_mean_s: float
    world_size: int
    clock: str
    mfu: float | None = None  # model FLOP utilization, when the device's peak is known
    forward_s: float = 0.0
    backward_s: float = 0.0
    optimizer_s: float = 0.0
    step_other_s: float = 0.0
    step_p50_s: float = 0.0  # one step's data loading + training: the median step ...
    step_p90_s: float = 0.0  # ... the 90th percentile ...
    step_max_s: float = 0.0  # ... and the slowest
    peak_memory_bytes: int | None = None  # CUDA: torch.cuda.max_memory_allocated during the epoch

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# timings.csv's columns, in this order: scripts read them by name, and new ones only ever come last.
CSV_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(EpochTiming))


def epoch_timing(
    epoch: int,
    totals: Totals,
    spread: LogHistogram,
    epoch_s: float,
    clock: str,
    peak_memory: int | None,
    mfu_flops: tuple[float, float] | None,
    world_size: int,
    reduce: Reduce,
) -> EpochTiming:
    """An epoch's row from this rank's step totals and spread, reduced over ranks (one collective)."""
    seconds = [
        totals.data_loading_s, totals.training_s, epoch_s, totals.transfer_s, totals.forward_s,
        totals.backward_s, totals.optimizer_s, totals.step_other_s, spread.quantile(0.5),
        spread.quantile(0.9), spread.max, float(peak_memory or 0),
    ]  # fmt: skip
    slowest, mean, samples = reduce(seconds, totals.samples)
    samples_per_s = samples / slowest[2] if slowest[2] > 0 else 0.0
    mfu = None
    if mfu_flops is not None:
        per_sample, peak = mfu_flops
        mfu = samples_per_s * per_sample / (peak * world_size)
    return EpochTiming(
        epoch=epoch,
        data_loading_s=slowest[0],
        training_s=slowest[1],
        epoch_s=slowest[2],
        transfer_s=slowest[3],
        steps=totals.steps,
        samples=samples,
        samples_per_s=samples_per_s,
        data_loading_mean_s=mean[0],
        training_mean_s=mean[1],
        epoch_mean_s=mean[2],
        world_size=world_size,
        clock=clock,
        mfu=mfu,
        forward_s=slowest[4],
        backward_s=slowest[5],
        optimizer_s=slowest[6],
        step_other_s=slowest[7],
        step_p50_s=slowest[8],
        step_p90_s=slowest[9],
        step_max_s=slowest[10],
        peak_memory_bytes=int(slowest[11]) if peak_memory is not None else None,
    )

"""One finished epoch's timings: the record behind EpochTimer.history, timings.csv and the table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


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

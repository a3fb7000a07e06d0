"""Every rank's figures, once per epoch, in one collective; and the fit's record of them.

Each rank sends its own epoch figures, its sample count and its host name in one float64 tensor
(``all_gather``: one collective per epoch, none per step). From them come the slowest rank's and the mean
(timings.csv), each rank's own row (timings_ranks.csv, fit_budget.json's ``ranks`` block), the rank spread,
and the straggler verdict (:mod:`~cifarbench.callbacks.straggler`).

In DDP every rank meets the others in the gradient all-reduce inside its backward: a rank that arrives early
waits there for the slowest. A rank's **backward wait** is its backward beyond the least backward of any rank
(the rank that waited least: the slowest); its **own time** is its data loading and training less that wait,
what the epoch would have cost it alone.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cifarbench.callbacks.quantities import PARTS, RANK_FIGURES, Q, Quantity

# A host name travels in the epoch's collective as float64s of 6 bytes each (whole numbers below 2**53 are
# exact): 11 of them hold 66 bytes, more than a Linux host name's 64 (a longer FQDN is cut).
HOST_BYTES_PER_FLOAT = 6
HOST_FLOATS = 11
RANK, HOST = "rank", "host"
# The fit's first step on each rank (compilation, autotuning, DDP's first-iteration set-up: unlike the others
# and unlike from rank to rank), sent with every epoch's figures so that compute can be judged without it.
FIRST_STEP: tuple[Quantity, ...] = (Q.training, *PARTS)


@dataclass(frozen=True)
class RankEpoch:
    """One rank's figures for one epoch (seconds by quantity), its samples and its host."""

    rank: int
    host: str
    figures: Mapping[Quantity, float]
    samples: int
    first_step: Mapping[Quantity, float] = field(default_factory=dict)  # the fit's first step, when known

    def __getitem__(self, quantity: Quantity) -> float:
        return self.figures[quantity]


def encode_host(host: str) -> list[float]:
    size = HOST_BYTES_PER_FLOAT * HOST_FLOATS
    data = host.encode()[:size].ljust(size, b"\0")
    return [
        float(int.from_bytes(data[start : start + HOST_BYTES_PER_FLOAT], "big"))
        for start in range(0, size, HOST_BYTES_PER_FLOAT)
    ]


def decode_host(values: Sequence[float]) -> str:
    data = b"".join(int(value).to_bytes(HOST_BYTES_PER_FLOAT, "big") for value in values)
    return data.rstrip(b"\0").decode(errors="replace")


def gather_over_ranks(
    trainer: Any, figures: Mapping[Quantity, float], samples: int, first_step: Any = None
) -> list[RankEpoch]:
    """Every rank's ``figures``, samples, host and first step (a ``StepTimes``; ``None`` before it was read),
    in rank order: one ``all_gather`` (none with one rank)."""
    host = platform.node()
    first = [getattr(first_step, quantity.column_name) if first_step else 0.0 for quantity in FIRST_STEP]
    if trainer.world_size == 1:
        own = RankEpoch(0, host, dict(figures), samples, dict(zip(FIRST_STEP, first, strict=True)))
        return with_waits([own])
    quantities, count, firsts = list(figures), len(figures), len(FIRST_STEP)
    local = torch.tensor(
        [*figures.values(), *first, float(samples), *encode_host(host)],
        dtype=torch.float64,
        device=trainer.strategy.root_device,
    )
    gathered = trainer.strategy.all_gather(local).reshape(trainer.world_size, -1).cpu().tolist()
    return with_waits(
        [
            RankEpoch(
                rank,
                decode_host(row[count + firsts + 1 :]),
                dict(zip(quantities, row[:count], strict=True)),
                int(row[count + firsts]),
                dict(zip(FIRST_STEP, row[count : count + firsts], strict=True)),
            )
            for rank, row in enumerate(gathered)
        ]
    )


def with_waits(ranks: list[RankEpoch]) -> list[RankEpoch]:
    """``ranks`` with each one's backward wait (its backward beyond the least of any rank's)."""
    least = min(rank.figures.get(Q.backward, 0.0) for rank in ranks)
    return [
        RankEpoch(
            rank.rank,
            rank.host,
            {**rank.figures, Q.backward_wait: rank.figures.get(Q.backward, 0.0) - least},
            rank.samples,
            rank.first_step,
        )
        for rank in ranks
    ]


def own_seconds(rank: RankEpoch) -> float:
    """Data loading and training, less the wait for slower ranks: what the rank's epochs cost it alone."""
    return rank[Q.data_loading] + own_compute(rank)


def own_compute(rank: RankEpoch) -> float:
    return rank[Q.training] - rank[Q.backward_wait]


def median_index(values: Sequence[float]) -> int:
    """The index of the median value; with an even count the lower one, so that the median is a real rank and
    half the ranks being slow (a slow node) still stands out."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    return order[(len(values) - 1) // 2]


def rank_spread(ranks: Sequence[RankEpoch]) -> float | None:
    """The slowest rank's own time over the median rank's; ``None`` with one rank (or nothing measured)."""
    if len(ranks) < 2:
        return None
    own = [own_seconds(rank) for rank in ranks]
    median = own[median_index(own)]
    return max(own) / median if median > 0 else None


class RankLedger:
    """Every rank's figures for each epoch of one fit, as gathered (all ranks keep them; rank zero writes)."""

    def __init__(self, first_step: Callable[[], Any] = lambda: None) -> None:
        self.epochs: list[tuple[int, list[RankEpoch]]] = []
        self._first_step = first_step  # this rank's first step of the fit (a StepTimes), once it was read

    def gather(self, trainer: Any, figures: Mapping[Quantity, float], samples: int) -> list[RankEpoch]:
        """The epoch's one collective (:func:`gather_over_ranks`), kept under ``trainer.current_epoch``."""
        ranks = gather_over_ranks(trainer, figures, samples, self._first_step())
        self.epochs.append((trainer.current_epoch, ranks))
        return ranks

    @property
    def world_size(self) -> int:
        return len(self.epochs[-1][1]) if self.epochs else 1

    def totals(self) -> list[RankEpoch]:
        """Each rank's figures summed over the fit's epochs (its host as last seen)."""
        if not self.epochs:
            return []
        last = self.epochs[-1][1]
        totals = []
        for rank in last:
            rows = [ranks[rank.rank] for _, ranks in self.epochs if rank.rank < len(ranks)]
            figures = {
                quantity: sum(row.figures.get(quantity, 0.0) for row in rows) for quantity in rank.figures
            }
            samples = sum(row.samples for row in rows)
            totals.append(RankEpoch(rank.rank, rank.host, figures, samples, rank.first_step))
        return totals

    def after_first_step(self) -> list[RankEpoch]:
        """:meth:`totals` without each rank's first step in its training and parts, the waits taken again
        over what is left (as the fit budget keeps the first step apart)."""
        ranks = []
        for rank in self.totals():
            first = rank.first_step
            figures = {quantity: value - first.get(quantity, 0.0) for quantity, value in rank.figures.items()}
            ranks.append(RankEpoch(rank.rank, rank.host, figures, rank.samples, first))
        return with_waits(ranks)

    def csv_rows(self, last_only: bool = False) -> list[dict[str, Any]]:
        """timings_ranks.csv's rows (:data:`RANKS_CSV_FIELDS`): one per (epoch, rank)."""
        epochs = self.epochs[-1:] if last_only else self.epochs
        return [
            {
                Q.index.column_name: epoch,
                RANK: rank.rank,
                HOST: rank.host,
                **{quantity.column_name: rank.figures.get(quantity, 0.0) for quantity in RANK_FIGURES},
                Q.samples.column_name: rank.samples,
            }
            for epoch, ranks in epochs
            for rank in ranks
        ]

    def as_json(self) -> list[dict[str, Any]]:
        """fit_budget.json's ``ranks`` block: each rank's host, samples and figures over the fit, by name."""
        return [
            {
                RANK: rank.rank,
                HOST: rank.host,
                Q.samples.name: rank.samples,
                **{quantity.name: rank.figures.get(quantity, 0.0) for quantity in RANK_FIGURES},
            }
            for rank in self.totals()
        ]


#: timings_ranks.csv's header, in order.
RANKS_CSV_FIELDS: tuple[str, ...] = (
    Q.index.column_name,
    RANK,
    HOST,
    *(quantity.column_name for quantity in RANK_FIGURES),
    Q.samples.column_name,
)

"""The slow rank: which one, on which host, slow in what, and what the others pay for it.

In DDP every rank waits for the slowest in the gradient all-reduce, inside its backward. One rank with a slow
disk or a busy CPU makes every other rank's backward look long, and a verdict read off one rank's budget
calls that compute. Here the ranks' own figures (:class:`~cifarbench.callbacks.ranks.RankLedger`, gathered
once per epoch) are compared: a rank whose own data loading or own compute (training less its backward wait)
is well above the median rank's is a straggler, and the others' wait is measured as their backward less its.
With the same cause on every rank no rank stands out, and the ordinary verdict applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cifarbench.callbacks.quantities import Q
from cifarbench.callbacks.ranks import RankEpoch, RankLedger, median_index, own_compute, own_seconds
from cifarbench.callbacks.verdict import GENERIC_ADVICE, Finding

# A rank's own data loading or compute >= the median rank's + 10% of the training epochs' wall time: every
# other rank then waits that long in its backward, so the job loses a tenth of every rank's time to one rank.
# Between ranks with the same work the parts differ by a few percent (timing noise on a shared machine, an
# uneven last batch), which cannot reach it; a cause shared by every rank moves the median too, so it never
# fires for one.
STRAGGLER_SHARE = 0.10
# The per-rank table lists every rank up to this many; beyond, the slowest, the median and the fastest.
RANKS_LISTED = 3
RANK_HEADERS = ["rank", "host", "data (s)", "compute (s)", "waited (s)", "own (s)"]
_HOST_WIDTH = 24


@dataclass(frozen=True)
class Straggler:
    rank: RankEpoch  # its figures over the fit
    median: RankEpoch  # the median rank's, in the part that makes the straggler slow
    part: str  # "data loading" or "compute"
    seconds: float  # the straggler's own seconds in that part, over the fit
    median_s: float  # the median rank's
    paid_s: float  # what the other ranks waited for it in their backward (the median over them), over the fit
    epochs: int
    epochs_s: float  # the training epochs' wall time over the fit (the slowest rank's)

    @property
    def excess_s(self) -> float:
        return self.seconds - self.median_s

    def finding(self, advice: Mapping[str, str] | None = None) -> Finding:
        tip = {**GENERIC_ADVICE, **(advice or {})}["straggler"]
        per_epoch, saving = self.epochs_s / self.epochs, self.paid_s / self.epochs
        share = saving / per_epoch if per_epoch > 0 else 0.0
        where = (
            "data loading"
            if self.part == "data loading"
            else "its own compute (training less its wait; the first step left out)"
        )
        rank = self.rank.rank
        text = (
            f"straggler: rank {rank} (host {self.rank.host}) is slow in {where}: {self.seconds:.2f} s "
            f"against the median rank's {self.median_s:.2f} s (rank {self.median.rank}) over {self.epochs} "
            f"epoch{'s' if self.epochs != 1 else ''} (+{self.excess_s:.2f} s, "
            f"{self.excess_s / self.epochs_s:.0%} of the training epochs). The other ranks paid for it: "
            f"{self.paid_s:.2f} s of waiting in the gradient all-reduce, inside their backward (their "
            f"backward less rank {rank}'s), which one rank's budget reads as compute; removing it saves at "
            f"most {saving:.2f} s of {per_epoch:.2f} s per epoch ({share:.0%}), leaving about "
            f"{per_epoch - saving:.2f} s. Try {tip}."
        )
        return Finding("straggler", text, saving, share)


def find_straggler(ledger: RankLedger) -> Straggler | None:
    """The rank whose own data loading, or else own compute, is furthest above the median rank's, by at least
    :data:`STRAGGLER_SHARE` of the training epochs; ``None`` with one rank or none that stands out.

    Data loading comes first: it is measured directly, while a wait outside the backward (DDP's broadcast of
    buffers from rank 0 at the start of each forward, with batch norm) counts as the waiting rank's compute,
    so a rank 0 slow in loading can make another look slow in compute. Compute is judged without the fit's
    first step (compilation, autotuning and DDP's first-iteration set-up differ from rank to rank).
    """
    ranks = ledger.totals()
    if len(ranks) < 2:
        return None
    epochs_s = max(rank[Q.epoch] for rank in ranks)
    if epochs_s <= 0:
        return None
    steady = ledger.after_first_step()
    for part, values in (
        ("data loading", [rank[Q.data_loading] for rank in ranks]),
        ("compute", [own_compute(rank) for rank in steady]),
    ):
        slowest, median = values.index(max(values)), median_index(values)
        if values[slowest] - values[median] >= STRAGGLER_SHARE * epochs_s:
            slow = ranks[slowest]
            waits = [rank[Q.backward] - slow[Q.backward] for rank in ranks if rank.rank != slow.rank]
            paid = max(0.0, waits[median_index(waits)])
            return Straggler(
                slow, ranks[median], part, values[slowest], values[median], paid, len(ledger.epochs), epochs_s
            )
    return None


def with_straggler(findings: list[Finding], ledger: RankLedger, advice: Mapping[str, str]) -> list[Finding]:
    """``findings`` with a straggler's right after the summary; a compute-bound finding goes, since the wait
    it would call compute is the straggler's. Unchanged when no rank stands out."""
    straggler = find_straggler(ledger)
    if straggler is None:
        return findings
    rest = [finding for finding in findings[1:] if finding.kind != "compute_bound"]
    return [*findings[:1], straggler.finding(advice), *rest]


def rank_table(ledger: RankLedger) -> tuple[str, list[str], list[list[str]]] | None:
    """The per-rank section of the printed report (title, headers, rows): every rank when there are few, else
    the slowest, the median and the fastest by own time; ``None`` with one rank."""
    ranks = ledger.totals()
    if len(ranks) < 2:
        return None
    own = [own_seconds(rank) for rank in ranks]
    slowest, fastest = own.index(max(own)), own.index(min(own))
    if len(ranks) <= RANKS_LISTED:
        labelled = [(f"{rank.rank}{' (slowest)' if rank.rank == slowest else ''}", rank) for rank in ranks]
    else:
        roles = (("slowest", slowest), ("median", median_index(own)), ("fastest", fastest))
        labelled = [(f"{role}: {index}", ranks[index]) for role, index in roles]
    title = f"Each rank's epochs ({len(ranks)} ranks): own = data + compute, less the wait"
    return title, RANK_HEADERS, [_rank_cells(label, rank) for label, rank in labelled]


def _rank_cells(label: str, rank: RankEpoch) -> list[str]:
    host = rank.host if len(rank.host) <= _HOST_WIDTH else rank.host[: _HOST_WIDTH - 3] + "..."
    seconds = (rank[Q.data_loading], own_compute(rank), rank[Q.backward_wait], own_seconds(rank))
    return [label, host, *(f"{value:.3f}" for value in seconds)]


def ranks_json(ledger: RankLedger) -> list[dict[str, Any]] | None:
    """fit_budget.json's ``ranks`` block; ``None`` with one rank (the buckets already say it all)."""
    return ledger.as_json() if ledger.world_size > 1 else None

"""Every rank's figures, without processes: the one gather per epoch, the host names it carries, the rank
spread, the straggler rule and where the ranks' figures are written."""

from __future__ import annotations

import csv
import functools
import json
import platform
from types import SimpleNamespace

import pytest
import torch

from cifarbench.callbacks import EpochTiming
from cifarbench.callbacks.quantities import CSV_FIELDS, PARTS, RANK_FIGURES, Budget, Q, StepTimes, Totals
from cifarbench.callbacks.ranks import (
    HOST_BYTES_PER_FLOAT,
    HOST_FLOATS,
    RankEpoch,
    RankLedger,
    decode_host,
    encode_host,
    rank_spread,
    with_waits,
)
from cifarbench.callbacks.records import RANKS_CSV, epoch_timing
from cifarbench.callbacks.reporter import Reporter
from cifarbench.callbacks.session import FitSession
from cifarbench.callbacks.spread import LogHistogram
from cifarbench.callbacks.straggler import (
    RANKS_LISTED,
    STRAGGLER_SHARE,
    find_straggler,
    rank_table,
    with_straggler,
)
from cifarbench.callbacks.verdict import Finding, verdict


@pytest.mark.parametrize("host", ["node-7", "gpu-a100-017.cluster.example.org", "hôte-é", ""])
def test_a_host_name_survives_the_float_tensor(host):
    values = encode_host(host)
    assert len(values) == HOST_FLOATS and all(value < 2**53 and value == int(value) for value in values)
    through = torch.tensor(values, dtype=torch.float64).tolist()  # as the collective carries it
    assert decode_host(through) == host


def test_a_long_host_name_is_cut_not_lost():
    host = "n" * 100
    assert decode_host(encode_host(host)) == host[: HOST_BYTES_PER_FLOAT * HOST_FLOATS]


def rank_epoch(
    rank: int, data: float, forward: float, backward: float, epoch: float, host: str = "h"
) -> RankEpoch:
    """A rank's epoch whose training is its forward and backward (the other parts nil)."""
    figures = {quantity: 0.0 for quantity in (Q.epoch, Q.data_loading, Q.training, *PARTS)}
    figures |= {
        Q.data_loading: data,
        Q.forward: forward,
        Q.backward: backward,
        Q.training: forward + backward,
    }
    figures[Q.epoch] = epoch
    return RankEpoch(rank, host, figures, 16)


def ledger_of(*epochs: list[RankEpoch]) -> RankLedger:
    ledger = RankLedger()
    ledger.epochs = [(index, with_waits(ranks)) for index, ranks in enumerate(epochs)]
    return ledger


class TwoRankStrategy:
    """A strategy for world size 2 whose all_gather stacks this rank's tensor over another rank's, and counts
    its calls."""

    def __init__(self, other: list[float]) -> None:
        self.root_device, self.other, self.calls = torch.device("cpu"), other, 0

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.stack([tensor, torch.tensor(self.other, dtype=tensor.dtype)])


def test_one_epoch_is_one_gather_carrying_every_ranks_row_samples_and_host():
    totals = Totals(steps=2, samples=32, data_loading_s=0.1, training_s=1.0, forward_s=0.3, backward_s=0.7)
    spread = LogHistogram()
    spread.add(0.5)
    spread.add(0.5)
    # The other rank waited 2.0 s for data and spent 0.1 s in its backward: rank 0 waited 0.6 s there for it.
    # Its figures: the epoch, the 9 step seconds (data loading, training, transfer, forward, backward,
    # optimizer, step other, framework, profiler), p50, p90, max, peak memory, the op window.
    ledger = RankLedger()
    figures = [3.0, 2.0, 0.4, 0.0, 0.3, 0.1, 0.0, 0.0, 0.0, 0.0, 0.3, 0.3, 0.3, 0.0, 0.0]
    first_step = [0.0] * 6  # its first step's training and five parts: not read yet
    strategy = TwoRankStrategy([*figures, *first_step, 32.0, *encode_host("node-b")])
    trainer = SimpleNamespace(world_size=2, strategy=strategy, current_epoch=4)
    timing = epoch_timing(
        4, totals, spread, 3.0, "host", None, None, 2, functools.partial(ledger.gather, trainer)
    )
    assert strategy.calls == 1  # the epoch's one collective
    assert timing.samples == 64 and timing.data_loading_s == 2.0
    assert timing.data_loading_mean_s == pytest.approx(1.05)
    ((epoch, (rank0, rank1)),) = ledger.epochs
    assert epoch == 4 and (rank0.host, rank1.host) == (platform.node(), "node-b")
    assert rank0[Q.backward_wait] == pytest.approx(0.6) and rank1[Q.backward_wait] == 0.0
    # Own time: rank 0: 0.1 + 1.0 - 0.6 = 0.5; rank 1: 2.0 + 0.4 = 2.4; the median of two is the lower one.
    assert timing.rank_spread == pytest.approx(2.4 / 0.5)
    rows = ledger.csv_rows()
    assert [(row["epoch"], row["rank"], row["host"]) for row in rows] == [
        (4, 0, platform.node()),
        (4, 1, "node-b"),
    ]
    assert rows[1][Q.data_loading.column_name] == 2.0 and rows[1][Q.samples.column_name] == 32


def test_one_rank_gathers_nothing_and_has_no_spread():
    strategy = TwoRankStrategy([])
    trainer = SimpleNamespace(world_size=1, strategy=strategy, current_epoch=0)
    ledger = RankLedger()
    gather = functools.partial(ledger.gather, trainer)
    totals = Totals(steps=1, samples=4, training_s=1.0)
    timing = epoch_timing(0, totals, LogHistogram(), 1.0, "host", None, None, 1, gather)
    assert strategy.calls == 0 and timing.rank_spread is None and ledger.world_size == 1
    assert find_straggler(ledger) is None and rank_table(ledger) is None


def test_a_rank_slow_in_data_loading_is_named_with_what_the_others_paid():
    # Per epoch: rank 1 waits 1.0 s for data; rank 0 waits as long inside its backward.
    ledger = ledger_of(
        *[[rank_epoch(0, 0.02, 0.3, 1.2, 1.6, "a"), rank_epoch(1, 1.02, 0.3, 0.2, 1.6, "b")]] * 2
    )
    straggler = find_straggler(ledger)
    assert straggler is not None and straggler.rank.rank == 1 and straggler.part == "data loading"
    assert straggler.excess_s == pytest.approx(2.0) and straggler.paid_s == pytest.approx(2.0)
    finding = straggler.finding()
    assert "rank 1 (host b) is slow in data loading" in finding.text and "+2.00 s" in finding.text
    assert finding.saving_s == pytest.approx(1.0) and finding.share == pytest.approx(1.0 / 1.6)


def test_a_rank_slow_in_its_own_compute_is_named_and_its_wait_is_not_counted_as_compute():
    # Rank 1's step takes 0.5 s longer in forward; rank 0 waits those 0.5 s in its backward.
    ledger = ledger_of([rank_epoch(0, 0.02, 0.3, 0.7, 1.1), rank_epoch(1, 0.02, 0.8, 0.2, 1.1)])
    straggler = find_straggler(ledger)
    assert straggler is not None and straggler.rank.rank == 1 and straggler.part == "compute"
    assert straggler.excess_s == pytest.approx(0.5) and straggler.paid_s == pytest.approx(0.5)
    assert "its own compute" in straggler.finding().text


def test_the_same_cause_on_every_rank_is_no_straggler_and_the_ordinary_verdict_stays():
    ledger = ledger_of([rank_epoch(0, 1.0, 0.3, 0.21, 1.6), rank_epoch(1, 1.01, 0.3, 0.2, 1.6)])
    assert find_straggler(ledger) is None
    findings = [Finding("summary", "fit"), Finding("compute_bound", "compute-bound: ...")]
    assert with_straggler(findings, ledger, {}) == findings


def test_a_rank_just_under_the_threshold_is_no_straggler_and_just_over_is():
    epoch_s = 2.0
    under = STRAGGLER_SHARE * epoch_s * 0.9
    over = STRAGGLER_SHARE * epoch_s * 1.1
    for extra, fires in ((under, False), (over, True)):
        ledger = ledger_of(
            [rank_epoch(0, 0.0, 0.5, 0.5 + extra, epoch_s), rank_epoch(1, extra, 0.5, 0.5, epoch_s)]
        )
        assert (find_straggler(ledger) is not None) is fires


def test_a_straggler_comes_after_the_summary_and_replaces_compute_bound():
    ledger = ledger_of([rank_epoch(0, 0.0, 0.3, 1.2, 1.6), rank_epoch(1, 1.0, 0.3, 0.2, 1.6)])
    budget = Budget(forward=0.3, backward=1.2, data_loading=0.0)
    findings = with_straggler(verdict(budget, 0.0), ledger, {"straggler": "the CLI's advice"})
    assert [finding.kind for finding in findings] == ["summary", "straggler"]
    assert findings[1].text.endswith("Try the CLI's advice.")


def test_many_ranks_name_the_slow_one_against_the_median_and_the_table_stays_short():
    ranks = [rank_epoch(index, 0.05, 0.3, 1.0, 1.6, f"node{index // 4}") for index in range(8)]
    ranks[5] = rank_epoch(5, 0.85, 0.3, 0.2, 1.6, "node1")  # every other rank waits 0.8 s for rank 5
    ledger = ledger_of(ranks)
    straggler = find_straggler(ledger)
    assert straggler is not None and (straggler.rank.rank, straggler.rank.host) == (5, "node1")
    assert straggler.median_s == pytest.approx(0.05) and straggler.paid_s == pytest.approx(0.8)
    title, headers, rows = rank_table(ledger)
    assert "8 ranks" in title and len(rows) == 3 and len(ranks) > RANKS_LISTED
    assert [row[0].split(":")[0] for row in rows] == ["slowest", "median", "fastest"]
    assert rows[0][0] == "slowest: 5" and rows[0][1] == "node1"
    widths = [max(len(cells[column]) for cells in [headers, *rows]) for column in range(len(headers))]
    assert sum(widths) + 3 * len(widths) + 1 <= 80  # within 80 columns, with rich's padding and borders


def test_few_ranks_are_all_listed_with_the_slowest_marked():
    ledger = ledger_of([rank_epoch(0, 0.0, 0.3, 1.2, 1.6), rank_epoch(1, 1.0, 0.3, 0.2, 1.6)])
    _, headers, rows = rank_table(ledger)
    assert [row[0] for row in rows] == ["0", "1 (slowest)"]
    assert dict(zip(headers, rows[0], strict=True))["waited (s)"] == "1.000"


def test_rank_spread_is_the_slowest_own_time_over_the_median_ranks():
    ranks = with_waits([rank_epoch(0, 0.0, 0.5, 0.5, 1.0), rank_epoch(1, 0.0, 0.5, 0.5, 1.0)])
    assert rank_spread(ranks) == pytest.approx(1.0)
    ranks = with_waits(
        [rank_epoch(i, 0.0, 0.5, 0.5, 1.0) for i in range(3)] + [rank_epoch(3, 1.0, 0.5, 0.5, 2)]
    )
    assert rank_spread(ranks) == pytest.approx(2.0)


def fake_timing(epoch: int):
    return EpochTiming(**{name: epoch if name != "clock" else "host" for name in CSV_FIELDS})


def test_rank_zero_writes_every_ranks_rows_per_epoch_and_a_ranks_block(tmp_path, capsys):
    reporter = Reporter([], str(tmp_path / "timings.csv"), str(tmp_path / "fit_budget.json"), True, [])
    session = FitSession()
    epochs = [[rank_epoch(0, 0.0, 0.3, 1.2, 1.6, "a"), rank_epoch(1, 1.0, 0.3, 0.2, 1.6, "b")]] * 2
    for index, ranks in enumerate(epochs):
        session.ranks.epochs.append((index, with_waits(ranks)))
        reporter.epoch_ended(fake_timing(index), [], 0, session.ranks)
        with open(tmp_path / RANKS_CSV) as file:  # flushed as each epoch ends
            rows = list(csv.DictReader(file))
        assert [(int(row["epoch"]), int(row["rank"]), row["host"]) for row in rows][-2:] == [
            (index, 0, "a"), (index, 1, "b")]  # fmt: skip
        assert len(rows) == 2 * (index + 1)
    assert list(rows[0]) == ["epoch", "rank", "host", *(q.column_name for q in RANK_FIGURES), "samples"]
    assert float(rows[0][Q.backward_wait.column_name]) == pytest.approx(1.0)
    budget = Budget(forward=0.6, backward=2.4)
    findings = with_straggler(verdict(budget, 0.0), session.ranks, {})
    reporter.fit_ended([], budget, findings, "finished", session, 0)
    document = json.loads((tmp_path / "fit_budget.json").read_text())
    assert [(rank["rank"], rank["host"], rank["samples"]) for rank in document["ranks"]] == [
        (0, "a", 32),
        (1, "b", 32),
    ]
    assert document["ranks"][1]["data_loading"] == pytest.approx(2.0)
    assert document["ranks"][0]["backward_wait"] == pytest.approx(2.0)
    assert [finding["kind"] for finding in document["verdict"]] == ["summary", "straggler"]
    out = capsys.readouterr().out
    assert "Each rank's epochs (2 ranks)" in out and "1 (slowest)" in out


def test_one_rank_writes_no_ranks_file_and_no_ranks_block(tmp_path):
    reporter = Reporter([], str(tmp_path / "timings.csv"), str(tmp_path / "fit_budget.json"), False, [])
    session = FitSession()
    session.ranks.epochs.append((0, with_waits([rank_epoch(0, 0.0, 0.3, 0.2, 0.6)])))
    reporter.epoch_ended(fake_timing(0), [], 0, session.ranks)
    reporter.fit_ended([], Budget(forward=0.3), [], "finished", session, 0)
    assert not (tmp_path / RANKS_CSV).exists()
    assert "ranks" not in json.loads((tmp_path / "fit_budget.json").read_text())


def test_a_slow_first_step_on_one_rank_is_no_straggler():
    # Rank 1's first step took 1.0 s more (compilation, autotuning); every later step is even.
    ranks = [rank_epoch(0, 0.0, 0.5, 2.0, 3.0), rank_epoch(1, 0.0, 1.5, 1.0, 3.0)]
    ranks = [RankEpoch(r.rank, r.host, r.figures, r.samples, {Q.training: t, Q.forward: t}) for r, t in
             zip(ranks, (0.1, 1.1), strict=True)]  # fmt: skip
    assert find_straggler(ledger_of(ranks)) is None
    without_first = ledger_of([RankEpoch(r.rank, r.host, r.figures, r.samples) for r in ranks])
    assert find_straggler(without_first) is not None  # the same figures, had the first step not been apart


def test_a_rank_0_slow_in_loading_is_named_for_loading_though_the_other_waited_in_its_forward():
    # Rank 0 loads 1.0 s more; rank 1 waits for it in its forward (DDP's buffer broadcast from rank 0), where
    # the wait looks like compute.
    ledger = ledger_of([rank_epoch(0, 1.0, 0.3, 0.2, 1.6), rank_epoch(1, 0.0, 1.3, 0.2, 1.6)])
    straggler = find_straggler(ledger)
    assert straggler is not None and (straggler.rank.rank, straggler.part) == (0, "data loading")


def test_the_first_step_travels_in_the_same_gather():
    first = StepTimes(training_s=2.0, forward_s=1.5, backward_s=0.5)
    ledger = RankLedger(lambda: first)
    ledger.gather(SimpleNamespace(world_size=1, current_epoch=0), {Q.training: 3.0, Q.forward: 2.0}, 4)
    (rank,) = ledger.after_first_step()
    assert rank.first_step[Q.training] == 2.0 and rank[Q.training] == 1.0 and rank[Q.forward] == 0.5

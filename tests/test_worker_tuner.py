"""WorkerTuner and the sweep rule it shares with `lab c3`: driven by injected costs, not wall-clock luck."""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from cifarbench.__main__ import main
from cifarbench.callbacks import WorkerTuner
from cifarbench.callbacks.worker_tuner import (
    default_worker_candidates,
    sweep_until_no_improvement,
    time_loader,
)
from cifarbench.data import CIFAR10DataModule
from cifarbench.errors import ConfigError

from helpers import SleepyModule, fit_args, loader, quiet_trainer


class RecordingCost:
    """A fake timing source: fixed cost per candidate, and the order in which it was asked."""

    def __init__(self, costs: dict[int, float]) -> None:
        self.costs, self.asked = costs, []

    def __call__(self, workers: int) -> float:
        self.asked.append(workers)
        return self.costs[workers]


def test_sweep_stops_at_the_first_count_that_does_not_improve():
    cost = RecordingCost({0: 16.9, 4: 0.80, 8: 0.93, 12: 0.5, 16: 0.4})
    result = sweep_until_no_improvement([0, 4, 8, 12, 16], cost)
    assert cost.asked == [0, 4, 8]  # 12 and 16 are never run, although 12 would have been faster
    assert result.best == 4 and result.best_cost == 0.80
    assert result.stopped_early


def test_sweep_with_patience_looks_past_one_bad_count():
    cost = RecordingCost({0: 16.9, 4: 0.80, 8: 0.93, 12: 0.5, 16: 0.6, 20: 0.7})
    result = sweep_until_no_improvement([0, 4, 8, 12, 16, 20], cost, patience=2)
    assert cost.asked == [0, 4, 8, 12, 16, 20]
    assert result.best == 12


def test_sweep_measures_every_count_while_loading_keeps_improving():
    cost = RecordingCost({0: 4.0, 1: 3.0, 2: 2.0})
    result = sweep_until_no_improvement([0, 1, 2], cost)
    assert cost.asked == [0, 1, 2] and result.best == 2 and not result.stopped_early


def test_sweep_keeps_the_fewer_workers_on_a_tie():
    result = sweep_until_no_improvement([0, 4], RecordingCost({0: 1.0, 4: 1.0}))
    assert result.best == 0


def test_sweep_never_picks_a_count_slower_than_one_it_measured():
    rng = random.Random(3)
    for _ in range(200):
        candidates = list(range(0, 40, 4))
        costs = {c: rng.uniform(0.1, 10.0) for c in candidates}
        result = sweep_until_no_improvement(candidates, costs.__getitem__, patience=rng.randint(1, 3))
        assert result.best_cost == min(result.costs.values())


def test_sweep_rejects_a_patience_below_one():
    with pytest.raises(ValueError, match=r"patience=0"):
        sweep_until_no_improvement([0], float, patience=0)


def test_default_candidates_double_up_to_the_cpu_count():
    assert default_worker_candidates(8) == [0, 1, 2, 4, 8]
    assert default_worker_candidates(2) == [0, 1, 2]
    assert default_worker_candidates(1) == [0, 1]


def test_time_loader_measures_the_injected_loading_delay_per_batch():
    per_batch = 0.03
    seconds = time_loader(loader(per_batch, steps=5), num_batches=3, skip_batches=1)
    # Sleep never returns early; a loaded machine may oversleep, hence the loose upper bound.
    assert per_batch * 0.95 <= seconds < per_batch * 3 + 0.05


def test_time_loader_keeps_one_batch_to_time_and_names_the_fix_for_none():
    per_batch = 0.03
    seconds = time_loader(loader(per_batch, steps=1), num_batches=3, skip_batches=1)  # nothing left to skip
    assert per_batch * 0.95 <= seconds < per_batch * 3 + 0.05
    with pytest.raises(ValueError, match=r"no batch to time.*skip_batches=0"):
        time_loader(iter([]), num_batches=3, skip_batches=0)


class CountingDataModule(L.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.num_workers = 0
        self.loader_workers: list[int] = []

    def train_dataloader(self) -> DataLoader:
        self.loader_workers.append(self.num_workers)
        data = TensorDataset(torch.randn(16, 8), torch.randint(0, 2, (16,)))
        return DataLoader(data, batch_size=4, num_workers=self.num_workers)


def _fit(tmp_path: Path, tuner: WorkerTuner, datamodule: L.LightningDataModule) -> None:
    trainer = quiet_trainer(tmp_path, tuner, max_steps=1, limit_val_batches=0)
    trainer.fit(SleepyModule(), datamodule=datamodule)


def test_tuner_sets_the_fastest_measured_count_before_the_loader_is_built(tmp_path):
    cost = RecordingCost({0: 5.0, 1: 2.0, 2: 3.0, 3: 0.1})
    datamodule = CountingDataModule()
    tuner = WorkerTuner(candidates=[0, 1, 2, 3], measure=cost)
    _fit(tmp_path, tuner, datamodule)
    assert cost.asked == [0, 1, 2]
    assert tuner.best == 1 and datamodule.num_workers == 1
    assert datamodule.loader_workers == [1]  # the fit's own train loader used the tuned count


def test_tuner_times_the_real_train_loader_per_candidate(tmp_path):
    datamodule = CountingDataModule()
    tuner = WorkerTuner(candidates=[0, 0], num_batches=2)  # two real timings of the same loader
    _fit(tmp_path, tuner, datamodule)
    assert datamodule.loader_workers[:2] == [0, 0]  # built once per candidate, then once for the fit
    assert tuner.result is not None and list(tuner.result.costs) == [0]


def test_tuner_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"WorkerTuner\(num_batches=0\)"):
        WorkerTuner(num_batches=0)
    with pytest.raises(ValueError, match=r"WorkerTuner\(candidates=\[-1\]\)"):
        WorkerTuner(candidates=[-1])


@pytest.mark.slow
def test_num_workers_auto_is_0_without_a_sweep_for_the_gpu_pipeline():
    """Its training loader always runs in the main process, so a sweep would time one loader many times."""
    data = CIFAR10DataModule(synthetic=16, pipeline="gpu", num_workers="auto")
    data.setup("fit")
    assert data.num_workers == 0


def test_fit_with_num_workers_auto_tunes_then_trains(tmp_path, caplog):
    caplog.set_level("INFO")
    main(["fit", *fit_args(tmp_path, "--data.num_workers", "auto", "--data.synthetic", "96",
                           "--data.batch_size", "8", "--trainer.max_epochs", "1")])  # fmt: skip
    (message,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("WorkerTuner:")]
    assert "num_workers=" in message
    assert (tmp_path / "lightning_logs" / "version_0" / "timings.csv").is_file()


def test_auto_without_worker_tuner_says_how_to_add_it(tmp_path):
    """A library user who asks for "auto" without the callback that resolves it is told how to add it."""
    data = CIFAR10DataModule(synthetic=16, batch_size=8, num_workers="auto")
    trainer = quiet_trainer(tmp_path, max_steps=1)
    with pytest.raises(
        ConfigError, match=r"num_workers='auto'\) needs WorkerTuner.*callbacks=\[WorkerTuner\(\)\]"
    ):
        trainer.fit(SleepyModule(), datamodule=data)

"""EpochTimer reused the way other Lightning projects use it: a Tuner before the fit, one timer for several
Trainers (k-fold, notebooks), several training loaders, and a framework that costs more than the step."""

from __future__ import annotations

import csv
import json
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.records import BUDGET_JSON, TIMINGS_CSV

from helpers import BATCH, SleepyDataset, SleepyModule, assert_within, loader, quiet_trainer


class FitEnd(L.Callback):
    """Notes when the fit ends (its teardown, which runs before EpochTimer's when it comes first)."""

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.at = time.perf_counter()


class TunableModule(SleepyModule):
    """What Lightning's tuners need: a learning rate and a batch size they can change."""

    def __init__(self, batch_size: int = BATCH) -> None:
        super().__init__()
        self.lr, self.batch_size = 0.1, batch_size

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        return DataLoader(SleepyDataset(8 * self.batch_size, 0.0), batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(SleepyDataset(2 * self.batch_size, 0.0), batch_size=self.batch_size)


@pytest.mark.parametrize("tune", ["lr_find", "scale_batch_size"])
def test_a_tuners_inner_fit_leaves_nothing_and_the_fit_after_it_is_timed(tmp_path, capsys, tune):
    """Before: the tuner's inner fit left a budget that was all start-up, with a start-up-heavy verdict."""
    timer, module, ended = EpochTimer(), TunableModule(), FitEnd()
    trainer = quiet_trainer(tmp_path, ended, timer, max_epochs=2)
    tuner = Tuner(trainer)
    if tune == "lr_find":
        tuner.lr_find(module, num_training=6, early_stop_threshold=None)
    else:
        tuner.scale_batch_size(module, mode="power", steps_per_trial=1, max_trials=2)
    assert timer.budget is None and timer.verdict == [] and timer.history == []
    assert not (tmp_path / BUDGET_JSON).exists() and not (tmp_path / TIMINGS_CSV).exists()
    assert "Where the fit's time went" not in capsys.readouterr().out

    start = time.perf_counter()
    trainer.fit(module)
    wall_s = ended.at - start  # up to the fit's end, before EpochTimer prints its tables
    assert [row.epoch for row in timer.history] == [0, 1] and timer.history[0].steps == 8
    assert_within(timer.budget.fit_s, wall_s, tolerance=0.02)
    assert "startup_heavy" not in [finding.kind for finding in timer.verdict]
    assert "Where the fit's time went" in capsys.readouterr().out


def test_one_timer_for_several_trainers_starts_a_new_history_for_each_new_fit(tmp_path):
    """k-fold or a notebook: before, the second run's history and timings.csv began with the first run's."""
    timer = EpochTimer(print_table=False)
    quiet_trainer(tmp_path / "fold0", timer, max_epochs=2).fit(SleepyModule(), loader(0.0, steps=3))
    assert [row.epoch for row in timer.history] == [0, 1]
    quiet_trainer(tmp_path / "fold1", timer, max_epochs=1).fit(SleepyModule(), loader(0.0, steps=5))
    assert [(row.epoch, row.steps) for row in timer.history] == [(0, 5)]
    with open(tmp_path / "fold1" / TIMINGS_CSV) as file:
        assert [row["steps"] for row in csv.DictReader(file)] == ["5"]
    document = json.loads((tmp_path / "fold1" / BUDGET_JSON).read_text())
    assert document["fit_s"] == pytest.approx(timer.budget.fit_s)


def test_a_resumed_fit_keeps_the_checkpoints_history(tmp_path):
    timer = EpochTimer(print_table=False)
    first = quiet_trainer(tmp_path, timer, max_epochs=1, enable_checkpointing=True)
    first.fit(SleepyModule(), loader(0.0, steps=3))
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.ckpt")
    resumed = quiet_trainer(tmp_path, timer, max_epochs=2)
    resumed.fit(SleepyModule(), loader(0.0, steps=3), ckpt_path=checkpoint)
    assert [row.epoch for row in timer.history] == [0, 1]


@pytest.mark.parametrize("shape", ["dict", "list"])
def test_several_training_loaders_count_every_loaders_samples(tmp_path, shape):
    """Before: a dict of loaders counted only the first loader's batch (4 of the 10 samples a step)."""

    class TwoLoaders(SleepyModule):
        def training_step(self, batch, batch_idx):
            parts = batch.values() if isinstance(batch, dict) else batch
            inputs = torch.cat([part[0] for part in parts])
            targets = torch.cat([part[1] for part in parts])
            return super().training_step((inputs, targets), batch_idx)

    small = DataLoader(SleepyDataset(5 * 4, 0.0), batch_size=4)
    large = DataLoader(SleepyDataset(5 * 6, 0.0), batch_size=6)
    loaders = {"small": small, "large": large} if shape == "dict" else [small, large]
    timer = EpochTimer(print_table=False)
    quiet_trainer(tmp_path, timer).fit(TwoLoaders(), CombinedLoader(loaders, mode="max_size_cycle"))
    (epoch,) = timer.history
    assert epoch.steps == 5 and epoch.samples == 5 * (4 + 6)


class BareModule(L.LightningModule):
    """The smallest training step there is: one tiny linear layer, no metrics, no logging."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 2)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightnings_own_work_is_framework_and_a_tiny_step_is_told_so(tmp_path):
    """Lightning's closure, zero_grad and hooks outweigh a tiny step: framework, and the verdict names it."""
    timer = EpochTimer(print_table=False)
    quiet_trainer(tmp_path, timer).fit(BareModule(), loader(0.0, steps=40))
    (epoch,) = timer.history
    assert epoch.framework_s > epoch.forward_s, epoch
    kinds = [finding.kind for finding in timer.verdict]
    assert "framework_heavy" in kinds, timer.verdict
    (finding,) = [finding for finding in timer.verdict if finding.kind == "framework_heavy"]
    assert "larger batch" in finding.text and "self.log" in finding.text

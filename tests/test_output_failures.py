"""EpochTimer never kills the training it measures: a failing CSV, a raising logger or an unwritable
fit_budget.json cost one warning that names the file and the error; training goes on and nothing is lost."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.loggers import Logger

import cifarbench.callbacks.outputs as outputs
from cifarbench.callbacks import EpochTimer

from helpers import SleepyModule, loader, quiet_trainer


def fit(tmp_path: Path, timer: EpochTimer, epochs: int = 3, **kwargs) -> L.Trainer:
    callbacks = kwargs.pop("callbacks", [])
    trainer = quiet_trainer(tmp_path, timer, *callbacks, **({"max_epochs": epochs} | kwargs))
    trainer.fit(SleepyModule(), loader(0.0, steps=2))
    return trainer


def epochs_in(path: Path) -> list[int]:
    with open(path) as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def timer_warnings(records: list[warnings.WarningMessage]) -> list[str]:
    return [str(record.message) for record in records if "EpochTimer could not write" in str(record.message)]


def test_a_csv_that_cannot_be_written_warns_once_and_is_rewritten_whole_when_it_can(tmp_path):
    class BlockTheCsv(L.Callback):
        """Epoch 1's row cannot be written (a folder stands where the file was); from epoch 2 it can."""

        def on_train_epoch_start(self, trainer, pl_module):
            path = Path(timer.csv_path)
            if trainer.current_epoch == 1:
                path.unlink()
                path.mkdir()
            elif trainer.current_epoch == 2:
                shutil.rmtree(path)

    timer = EpochTimer(print_table=False)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        fit(tmp_path, timer, epochs=4, callbacks=[BlockTheCsv()])
    (message,) = timer_warnings(records)
    assert timer.csv_path in message and "IsADirectoryError" in message
    assert [epoch.epoch for epoch in timer.history] == [0, 1, 2, 3]  # training went on
    assert epochs_in(Path(timer.csv_path)) == [0, 1, 2, 3]  # the missed row came back with the next write


def test_a_logger_that_raises_costs_one_warning_not_the_fit(tmp_path):
    class BrokenLogger(Logger):
        name, version = "broken", 0

        def log_metrics(self, metrics, step=None):
            raise ConnectionError("the tracking server is down")

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    timer = EpochTimer(print_table=False)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        fit(tmp_path, timer, logger=BrokenLogger())
    messages = timer_warnings(records)
    # One per output that uses the logger (epoch metrics, per-step curves), each once for the whole fit.
    assert messages and all("ConnectionError: the tracking server is down" in m for m in messages)
    assert len(messages) == len(set(m.split(" (")[0] for m in messages)) <= 2
    assert [epoch.epoch for epoch in timer.history] == [0, 1, 2]
    assert epochs_in(Path(timer.csv_path)) == [0, 1, 2]


def test_an_unwritable_budget_file_warns_with_its_path_and_keeps_the_budget(tmp_path):
    (tmp_path / "fit_budget.json").mkdir()  # a folder where the file would go
    timer = EpochTimer(print_table=False)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        fit(tmp_path, timer)
    (message,) = timer_warnings(records)
    assert str(tmp_path / "fit_budget.json") in message
    assert timer.budget and sum(timer.budget.values()) > 0  # still in memory
    assert timer.verdict[0].kind == "summary"


def test_a_failing_write_never_raises_out_of_the_fit(tmp_path, monkeypatch):
    """Whatever the error (here: every open() of the timer's files fails), the fit finishes."""

    def refuse(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "open", refuse, raising=False)
    timer = EpochTimer(print_table=False)
    with pytest.warns(UserWarning, match="No space left on device"):
        fit(tmp_path, timer)
    assert [epoch.epoch for epoch in timer.history] == [0, 1, 2]
    assert not (tmp_path / "timings.csv").exists()

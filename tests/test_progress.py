"""While a fit runs: the last epoch's shares on the progress bar, and a line when an epoch's verdict moves."""

from __future__ import annotations

import csv
import re

import lightning as L
import pytest
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.progress import KEY
from cifarbench.callbacks.records import TIMINGS_CSV

from helpers import Delay, SleepyDataset, SleepyModule, TimedLoader, quiet_trainer


class ReadBar(L.Callback):
    """Reads what the bar would show at each epoch's end (after EpochTimer's, which comes first)."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen.append(trainer.progress_bar_callback.get_metrics(trainer, pl_module).get(KEY))


@pytest.mark.parametrize("bar", [TQDMProgressBar, RichProgressBar], ids=["tqdm", "rich"])
def test_the_bar_shows_the_last_epochs_shares_as_in_the_csv(tmp_path, bar):
    read = ReadBar()
    trainer = quiet_trainer(tmp_path, EpochTimer(print_table=False), read, bar(), max_epochs=2,
                            enable_progress_bar=True)  # fmt: skip
    trainer.fit(SleepyModule(step_delay=0.01, backward_delay=0.005), TimedLoader(SleepyDataset(16, 0.01),
                batch_size=4))  # fmt: skip
    with open(tmp_path / TIMINGS_CSV) as file:
        rows = list(csv.DictReader(file))
    assert len(read.seen) == 2 and all(read.seen)
    for text, row in zip(read.seen, rows, strict=True):  # each epoch's end shows that epoch's shares
        shown = {label: float(value) / 100 for label, value in re.findall(r"(\w+) (\d+)%", text)}
        epoch_s = float(row["epoch_s"])
        for label, column in (("data", "data_loading_s"), ("fwd", "forward_s"), ("bwd", "backward_s"),
                              ("opt", "optimizer_s")):  # fmt: skip
            assert abs(shown[label] - float(row[column]) / epoch_s) <= 0.02, (label, text, row)


def test_no_bar_no_shares_and_a_line_when_the_epochs_verdict_moves(tmp_path, capsys):
    class SlowFirstEpoch(SleepyDataset):
        def __getitem__(self, index):
            if self.slow:
                self.extra()
            return super().__getitem__(index)

    data = SlowFirstEpoch(16, 0.0)
    data.slow, data.extra = True, Delay(0.02)

    class FastAfterFirst(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            data.slow = False

    timer = EpochTimer()
    quiet_trainer(tmp_path, timer, FastAfterFirst(), max_epochs=2).fit(
        SleepyModule(step_delay=0.02), TimedLoader(data, batch_size=4)
    )
    out = capsys.readouterr().out
    assert "EpochTimer: epoch 1 is compute-bound (was input-bound)" in out
    assert timer._reporter.progress.text  # the shares were kept, with no bar to show them

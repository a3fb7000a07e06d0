"""EpochTimer is proved with injected, known delays: a dataset, a copy and a step that sleep."""

from __future__ import annotations

import csv
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.clocks import CudaEventClock, HostClock, make_clock
from cifarbench.data import CIFAR10DataModule, datasets, pipelines
from cifarbench.model import ResNet18Classifier

from helpers import BATCH, Delay, SleepyModule, Stopwatch, assert_within, loader, quiet_trainer

# Timings against injected delays: one torch thread (conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 8
DATA_DELAY = 0.04  # per batch
STEP_DELAY = 0.06
COPY_DELAY = 0.02
VAL_DELAY = 0.25  # per validation batch: must not show up anywhere


def trainer(tmp_path, timer: EpochTimer, epochs: int = 1, **kwargs) -> L.Trainer:
    callbacks = kwargs.pop("callbacks", [])
    return quiet_trainer(tmp_path, timer, *callbacks, **({"max_epochs": epochs} | kwargs))


def fit_one(
    tmp_path,
    module: SleepyModule,
    train: DataLoader,
    val: DataLoader | None = None,
    sync: bool = False,
    timer_options: dict | None = None,
    **kwargs,
):
    timer = EpochTimer(sync=sync, print_table=False, **(timer_options or {}))
    trainer(tmp_path, timer, **kwargs).fit(module, train, val)
    return timer.history


def test_data_loading_matches_a_sleeping_dataset(tmp_path):
    train = loader(DATA_DELAY)
    (epoch,) = fit_one(tmp_path, SleepyModule(), train)
    assert epoch.steps == STEPS and epoch.samples == STEPS * BATCH
    assert_within(epoch.data_loading_s, train.fetch.total)
    assert epoch.training_s < 0.2 * train.fetch.total  # loading is not mistaken for training


def test_training_matches_a_sleeping_step(tmp_path):
    module = SleepyModule(step_delay=STEP_DELAY)
    (epoch,) = fit_one(tmp_path, module, loader(0.0))
    assert_within(epoch.training_s, module.step_work.total)
    assert epoch.data_loading_s < 0.2 * module.step_work.total


class SlowSaveOnValidationEnd(L.Callback):
    """Stands in for ModelCheckpoint saving after validation, which Lightning runs after other callbacks."""

    def __init__(self) -> None:
        self.delay = Delay(VAL_DELAY)

    def on_validation_end(self, trainer, pl_module):
        self.delay()


def test_data_plus_training_accounts_for_the_epoch_and_validation_is_excluded(tmp_path):
    module, train, save = (
        SleepyModule(step_delay=STEP_DELAY, val_delay=VAL_DELAY),
        loader(DATA_DELAY),
        SlowSaveOnValidationEnd(),
    )
    history = fit_one(
        tmp_path,
        module,
        train,
        loader(0.0),
        max_epochs=2,
        num_sanity_val_steps=2,
        limit_val_batches=2,
        callbacks=[save],
    )
    assert len(history) == 2
    # Sanity check + 2 validation runs of 2 batches each slept, and so did each save after them: none counts.
    assert module.val_delay.total > 6 * VAL_DELAY and save.delay.total > 3 * VAL_DELAY
    assert_within(sum(e.data_loading_s for e in history), train.fetch.total)
    assert_within(sum(e.training_s for e in history), module.step_work.total)
    for epoch in history:
        assert_within(epoch.data_loading_s + epoch.training_s, epoch.epoch_s)
    assert_within(sum(e.epoch_s for e in history), train.fetch.total + module.step_work.total)


def test_mid_epoch_validation_is_not_counted_as_data_loading(tmp_path):
    module, train = SleepyModule(step_delay=STEP_DELAY, val_delay=VAL_DELAY), loader(DATA_DELAY)
    (epoch,) = fit_one(
        tmp_path, module, train, loader(0.0), val_check_interval=STEPS // 2, limit_val_batches=1
    )
    assert module.val_delay.total > 2 * VAL_DELAY  # validated twice inside the epoch
    assert_within(epoch.data_loading_s, train.fetch.total)
    assert_within(epoch.epoch_s, train.fetch.total + module.step_work.total)


def test_host_to_device_copy_is_measured_and_is_part_of_data_loading(tmp_path):
    module, train = SleepyModule(copy_delay=COPY_DELAY), loader(DATA_DELAY)
    (epoch,) = fit_one(tmp_path, module, train)
    assert_within(epoch.transfer_s, module.copy_delay.total)
    assert_within(epoch.data_loading_s, train.fetch.total + module.copy_delay.total)


def test_csv_gets_one_flushed_row_per_epoch_as_it_ends(tmp_path):
    rows_seen_at_epoch_start = []

    class ReadCsv(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if timer.csv_path:
                with open(timer.csv_path) as file:
                    rows_seen_at_epoch_start.append(len(list(csv.DictReader(file))))

    timer = EpochTimer(print_table=False)
    run = trainer(tmp_path, timer, epochs=3)
    run.callbacks.append(ReadCsv())
    run.fit(SleepyModule(), loader(0.0, steps=2))
    assert rows_seen_at_epoch_start == [0, 1, 2]  # each epoch's row was on disk before the next began
    with open(timer.csv_path) as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    assert [float(row["training_s"]) for row in rows] == [e.training_s for e in timer.history]
    assert {row["clock"] for row in rows} == {"host"}


@pytest.mark.parametrize("validate", [False, True], ids=["saved-at-epoch-end", "saved-at-validation-end"])
def test_history_survives_checkpoint_and_resume(tmp_path, validate):
    # Validating after every step makes ModelCheckpoint save when validation ends, before the epoch ends.
    val = loader(0.0, steps=1) if validate else None
    options = {"val_check_interval": 0.5} if validate else {}
    first = EpochTimer(print_table=False)
    run = trainer(tmp_path / "first", first, epochs=2, enable_checkpointing=True, **options)
    run.fit(SleepyModule(), loader(0.0, steps=2), val)
    checkpoint = run.checkpoint_callback.best_model_path
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1

    resumed = EpochTimer(print_table=False)
    run = trainer(tmp_path / "second", resumed, epochs=3, **options)
    run.fit(SleepyModule(), loader(0.0, steps=2), val, ckpt_path=checkpoint)
    assert [e.epoch for e in resumed.history] == [0, 1, 2]
    assert resumed.history[:2] == first.history
    with open(resumed.csv_path) as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == [0, 1, 2]


def test_table_is_printed_at_the_end_of_fit(tmp_path, capsys):
    trainer(tmp_path, EpochTimer(), epochs=2).fit(SleepyModule(), loader(0.0, steps=2))
    output = capsys.readouterr().out
    assert "EpochTimer" in output and "data loading" in output
    assert sum(line.strip("│| ").startswith(("0 ", "1 ")) for line in output.splitlines()) == 2


def test_bad_constructor_arguments_repeat_the_call():
    with pytest.raises(ValueError, match=r"EpochTimer\(log_every_n_steps=0\) must be >= 1"):
        EpochTimer(log_every_n_steps=0)
    with pytest.raises(ValueError, match=r"EpochTimer\(csv_filename='a/b.csv'\)"):
        EpochTimer(csv_filename="a/b.csv")


def test_host_clock_reads_perf_counter_gaps():
    clock = make_clock(torch.device("cpu"))
    assert isinstance(clock, HostClock)
    start = clock.mark()
    time.sleep(0.05)
    end = clock.mark()
    clock.settle()
    assert_within(clock.seconds(start, end), 0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_events_agree_with_synchronized_timing(tmp_path):
    """On a real GPU epoch, the event clock (one sync per epoch) matches the lab's sync-per-step clock."""
    assert isinstance(make_clock(torch.device("cuda")), CudaEventClock)
    events, synced = (
        fit_one(
            tmp_path, SleepyModule(step_delay=STEP_DELAY), loader(DATA_DELAY), sync=sync, accelerator="gpu"
        )[0]
        for sync in (False, True)
    )
    assert events.clock == "cuda_events" and synced.clock == "cuda_sync"
    assert_within(events.training_s, synced.training_s)
    assert_within(events.data_loading_s, synced.data_loading_s)


def test_mfu_uses_the_measured_training_flops_and_the_peak(tmp_path):
    module = SleepyModule(step_delay=0.01)
    module.example_input_array = torch.zeros(1, 8)
    (epoch,) = fit_one(tmp_path, module, loader(0.0), timer_options={"peak_flops": 1e9})
    # Linear(8 -> 2): 2 * 8 * 2 FLOPs forward, as many for the weight gradient (the input needs none).
    assert epoch.mfu == pytest.approx(epoch.samples_per_s * 64 / 1e9)


def test_no_mfu_without_a_known_peak(tmp_path):
    module = SleepyModule()
    module.example_input_array = torch.zeros(1, 8)
    (epoch,) = fit_one(tmp_path, module, loader(0.0))  # a CPU has no entry in Lightning's peak table
    assert epoch.mfu is None


def test_resume_from_a_mid_epoch_checkpoint_records_that_epoch_once(tmp_path):
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    first = EpochTimer(print_table=False)
    run = trainer(tmp_path / "first", first, epochs=2, enable_checkpointing=True, callbacks=[saver])
    run.fit(SleepyModule(), loader(0.0, steps=4))
    mid_epoch = tmp_path / "ckpt" / "epoch=1-step=6.ckpt"  # 2 of epoch 1's 4 steps done
    assert mid_epoch.exists()

    resumed = EpochTimer(print_table=False)
    run = trainer(tmp_path / "second", resumed, epochs=2)
    run.fit(SleepyModule(), loader(0.0, steps=4), ckpt_path=mid_epoch)
    assert [(e.epoch, e.steps) for e in resumed.history] == [(0, 4), (1, 2)]


def test_a_timer_is_reusable_after_an_interrupted_fit(tmp_path):
    class Crash(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            raise RuntimeError("boom")

    timer = EpochTimer(print_table=False)
    with pytest.raises(RuntimeError, match="boom"):
        trainer(tmp_path / "crash", timer, callbacks=[Crash()]).fit(SleepyModule(), loader(0.0, steps=2))
    trainer(tmp_path / "again", timer).fit(SleepyModule(), loader(0.0, steps=2))
    assert [e.steps for e in timer.history] == [2]


def test_no_per_step_item_calls_in_a_default_cli_model_fit(tmp_path, monkeypatch):
    """On CUDA every .item() is a host sync; neither EpochTimer nor the shipped model may do one per step."""

    calls = {"count": 0}
    original_item = torch.Tensor.item

    def counting_item(self):
        calls["count"] += 1
        return original_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    per_fit = []
    for steps in (2, 6):
        calls["count"] = 0
        run = trainer(tmp_path / str(steps), EpochTimer(print_table=False), limit_train_batches=steps)
        # The tensor pipeline: torchvision's RandomCrop calls .item() per image on the CPU, which is no sync.
        data = CIFAR10DataModule(synthetic=48, batch_size=8, num_workers=0, pipeline="tensor")
        run.fit(ResNet18Classifier(), data)
        per_fit.append(calls["count"])
    assert per_fit[1] == per_fit[0]  # 4 more steps, not one more .item()


class TinyImageClassifier(L.LightningModule):
    """A linear classifier of 3x32x32 images whose step sleeps: the data module's batches, little compute."""

    def __init__(self, step_delay: float) -> None:
        super().__init__()
        self.layer = nn.Linear(3 * 32 * 32, 10)
        self.step_delay, self.step_work = Delay(step_delay), Stopwatch()

    def training_step(self, batch, batch_idx):
        with self.step_work:
            self.step_delay()
            images, labels = batch
            return nn.functional.cross_entropy(self.layer(images.flatten(1)), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class SlowAugmentation:
    """Wraps an augmentation with a sleep, and adds up the wall time of every call, sleep and real work.

    The total is the truth to compare with: the real work (PIL crops and flips, per image, in the
    torchvision pipeline) is data loading too, and on a loaded 2-core machine it is not negligible.
    """

    def __init__(self, augment, delay: float) -> None:
        self.augment, self.delay, self.total = augment, Delay(delay), 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        self.delay()
        augmented = self.augment(*args, **kwargs)
        self.total += time.perf_counter() - start
        return augmented


def slow_augmentation(monkeypatch, pipeline: str, per_batch: float) -> SlowAugmentation:
    """Make each training batch's augmentation sleep ``per_batch`` seconds, wherever the pipeline runs it."""
    if pipeline == "torchvision":  # per image, in the dataset (main process: num_workers=0)
        augmentation = SlowAugmentation(pipelines.train_transform(), per_batch / BATCH)
        monkeypatch.setattr(pipelines, "train_transform", lambda: augmentation)
    else:  # per batch: in the dataset (tensor), or in on_after_batch_transfer on the device (gpu)
        augmentation = SlowAugmentation(pipelines.random_crop_flip, per_batch)
        monkeypatch.setattr(datasets, "random_crop_flip", augmentation)
        monkeypatch.setattr(pipelines, "random_crop_flip", augmentation)
    return augmentation


@pytest.mark.parametrize("pipeline", ["torchvision", "tensor", "gpu"])
def test_augmentation_is_data_loading_in_every_pipeline(tmp_path, monkeypatch, pipeline):
    """The gpu pipeline augments after the copy to the device, still before the step: data time, too."""

    augmentation = slow_augmentation(monkeypatch, pipeline, DATA_DELAY)
    module = TinyImageClassifier(step_delay=STEP_DELAY)
    data = CIFAR10DataModule(synthetic=STEPS * BATCH, batch_size=BATCH, num_workers=0, pipeline=pipeline)
    timer = EpochTimer(print_table=False)
    trainer(tmp_path, timer, limit_val_batches=0).fit(module, data)
    (epoch,) = timer.history
    assert epoch.steps == STEPS and augmentation.delay.total > STEPS * DATA_DELAY * 0.99  # every batch slept
    assert_within(epoch.data_loading_s, augmentation.total)
    assert_within(epoch.training_s, module.step_work.total)
    if pipeline == "gpu":  # augmented after the copy, within Strategy.batch_to_device: part of transfer too
        assert_within(epoch.transfer_s, augmentation.total)

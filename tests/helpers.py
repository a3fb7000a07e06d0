"""Helpers shared by the tests (importable, unlike conftest)."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.utils import calculate_md5

from cifarbench.data import cifar10_files
from cifarbench.fitting import run_fit
from cifarbench.run_folder import read_scalars

IMAGES_PER_FILE = 6
BATCH = 4  # samples per batch of the sleepy loaders


def write_batch(path: Path, images_hwc: np.ndarray, labels: np.ndarray) -> None:
    """Write one batch the way the official files are laid out: rows of R, G, B planes, protocol 2."""
    data = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)
    batch = {
        "batch_label": f"{path.name} written by the tests",
        "labels": [int(label) for label in labels],
        "data": np.ascontiguousarray(data),
        "filenames": [f"image_{i}.png" for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


class RunsCode:
    """Pickles into a call of os.system that would create ``marker``: a batch file that tries to run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def assert_within(measured: float, expected: float, tolerance: float = 0.10) -> None:
    assert abs(measured - expected) <= tolerance * expected, (
        f"{measured:.4f}s is not within {tolerance:.0%} of {expected:.4f}s"
    )


class Stopwatch:
    """Adds up the wall time of each block it times (``with watch:``): a test's truth, taken where the work
    happens, so that a slower or loaded machine moves the truth with the measurement."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.calls.append(time.perf_counter() - self._start)

    @property
    def total(self) -> float:
        return sum(self.calls)

    @property
    def after_first(self) -> float:
        """Every block but the first (the fit budget keeps the fit's first step apart)."""
        return sum(self.calls[1:])


class Delay(Stopwatch):
    """Sleeps, and adds up how long it really slept (a loaded machine oversleeps): the injected truth."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def __call__(self) -> None:
        with self:
            time.sleep(self.seconds)


class SleepyDataset(Dataset):
    """Each batch of BATCH items takes ``per_batch`` seconds to load (in the main process: num_workers=0)."""

    def __init__(self, length: int, per_batch: float) -> None:
        self.length, self.delay = length, Delay(per_batch / BATCH)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.delay()
        return torch.randn(8), torch.tensor(index % 2)


class SlowBackward(torch.autograd.Function):
    """The identity, whose backward sleeps: a known backward time inside autograd."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, delay: Delay) -> torch.Tensor:
        ctx.delay = delay
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ctx.delay()
        return grad, None


class SlowSGD(torch.optim.SGD):
    """SGD whose update (after Lightning's closure: training_step and backward) sleeps."""

    def __init__(self, params, delay: Delay, lr: float = 0.1) -> None:
        super().__init__(params, lr=lr)
        self.delay = delay

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.delay()
        super().step()
        return loss


class SlowCheckpointIO(TorchCheckpointIO):
    """Checkpoint saves that take a known extra time (Trainer(plugins=[SlowCheckpointIO(seconds)]))."""

    def __init__(self, seconds: float) -> None:
        self.delay = Delay(seconds)

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.delay()
        super().save_checkpoint(checkpoint, path, storage_options)


class SleepyModule(L.LightningModule):
    """A linear classifier with a known delay wherever a fit spends time: the step's phases, the copy,
    validation, setup, and one extra delay in the fit's first step."""

    def __init__(
        self,
        step_delay: float = 0.0,
        copy_delay: float = 0.0,
        val_delay: float = 0.0,
        backward_delay: float = 0.0,
        optimizer_delay: float = 0.0,
        setup_delay: float = 0.0,
        first_step_delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 2)
        self.step_delay, self.copy_delay, self.val_delay = (
            Delay(step_delay),
            Delay(copy_delay),
            Delay(val_delay),
        )
        self.backward_delay, self.optimizer_delay = Delay(backward_delay), Delay(optimizer_delay)
        self.setup_delay, self.first_step_delay = Delay(setup_delay), Delay(first_step_delay)
        self.step_work = Stopwatch()  # each training_step, whole: its sleeps and its real work
        self.steps_run = 0

    def setup(self, stage: str) -> None:
        self.setup_delay()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layer(inputs)

    def training_step(self, batch, batch_idx):
        with self.step_work:
            if self.steps_run == 0:
                self.first_step_delay()
            self.steps_run += 1
            self.step_delay()
            inputs, targets = batch
            loss = nn.functional.cross_entropy(self(inputs), targets)
            return SlowBackward.apply(loss, self.backward_delay) if self.backward_delay.seconds else loss

    def validation_step(self, batch, batch_idx):
        self.val_delay()

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        if self.trainer.training:
            self.copy_delay()
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def configure_optimizers(self):
        if self.optimizer_delay.seconds:
            return SlowSGD(self.parameters(), self.optimizer_delay)
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TimedLoader(DataLoader):
    """A DataLoader that times each batch it hands out in ``fetch`` (the sampler, every ``__getitem__`` and
    the collation): the data-loading truth, measured where the loading happens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch = Stopwatch()

    def __iter__(self):
        batches = super().__iter__()
        while True:
            with self.fetch:
                batch = next(batches, None)
            if batch is None:
                self.fetch.calls.pop()  # the call that found the end handed out no batch
                return
            yield batch


def loader(per_batch: float, steps: int = 8) -> TimedLoader:
    return TimedLoader(SleepyDataset(steps * BATCH, per_batch), batch_size=BATCH, num_workers=0)


# The small quiet CPU Trainer of the tests that build one themselves: one epoch, nothing logged, saved,
# printed or sanity-checked unless a test asks for it (its keyword arguments override these).
QUIET_TRAINER: dict[str, Any] = {
    "accelerator": "cpu",
    "max_epochs": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


def quiet_trainer(root: Path | str, *callbacks: L.Callback, **options: Any) -> L.Trainer:
    """``L.Trainer`` with :data:`QUIET_TRAINER`, writing under ``root``, with ``callbacks`` in this order."""
    return L.Trainer(default_root_dir=root, callbacks=list(callbacks), **(QUIET_TRAINER | options))


def use_checksums_of(folder: Path, monkeypatch) -> None:
    """Make ``folder``'s batch files the official ones: their MD5s replace the official checksums."""
    for attribute in ("TRAIN_FILES", "TEST_FILES"):
        names = getattr(cifar10_files, attribute)
        monkeypatch.setattr(cifar10_files, attribute, {name: calculate_md5(folder / name) for name in names})


class RecordSamplerIndices(L.Callback):
    """Writes the sample indices this rank's training loader will draw this epoch, one JSON file per rank.

    Used from a YAML config in DDP tests (run with the tests folder on PYTHONPATH).
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        indices = [int(index) for index in trainer.train_dataloader.sampler]
        name = f"indices-rank{trainer.global_rank}-epoch{trainer.current_epoch}.json"
        Path(self.out_dir, name).write_text(json.dumps(indices))


# A small CPU fit: synthetic data, 2 epochs of 2 batches of 16, no validation and no checkpoint (saving
# ResNet-18's 45 MB costs seconds a save on a 2-core machine), every step logged, quiet.
# Tests change it by appending options (jsonargparse: the last value wins), as hydra-template's cfg_train.
SMALL_FIT: dict[str, str] = {
    "--data.synthetic": "64",
    "--data.batch_size": "16",
    "--data.num_workers": "0",
    "--trainer.accelerator": "cpu",
    "--trainer.max_epochs": "2",
    "--trainer.limit_train_batches": "2",
    "--trainer.limit_val_batches": "0",
    "--trainer.enable_checkpointing": "false",
    "--trainer.log_every_n_steps": "1",
    "--trainer.enable_progress_bar": "false",
    "--trainer.enable_model_summary": "false",
}


def fit_args(
    root: Path | None, *extra: str, config: Path | None = None, without: tuple[str, ...] = ()
) -> list[str]:
    """``python -m cifarbench fit`` options of :data:`SMALL_FIT` logging under ``root``, then ``extra``.

    ``config`` is read first, so every option here overrides it; ``without`` drops base options (e.g.
    ``--data.synthetic`` to read files instead).
    """
    base = [item for option, value in SMALL_FIT.items() if option not in without for item in (option, value)]
    return [
        *(["--config", str(config)] if config else []),
        *base,
        *(["--trainer.default_root_dir", str(root)] if root is not None else []),
        *extra,
    ]


def learning_fit_args(root: Path, *extra: str, epochs: int = 3, config: Path | None = None) -> list[str]:
    """A seeded fit on 256 synthetic images with Adam (learns fast): every batch of every epoch."""
    return fit_args(
        root,
        "--seed_everything", "0",
        "--data.synthetic", "256",
        "--data.batch_size", "32",
        "--optimizer", "Adam",
        "--optimizer.lr", "0.001",
        "--trainer.max_epochs", str(epochs),
        "--trainer.limit_train_batches", "1.0",
        "--trainer.log_every_n_steps", "50",
        *extra,
        config=config,
    )  # fmt: skip


def short_learning_fit(root: Path, *extra: str) -> dict[str, list[tuple[int, float]]]:
    """A 3-epoch :func:`learning_fit_args` fit through the one fit path; its TensorBoard scalars."""
    run_fit(learning_fit_args(root, *extra))
    return read_scalars(root / "lightning_logs" / "version_0")


class RecordLearningRate(L.Callback):
    """The first optimizer's learning rate at every epoch start (named in tests' --trainer.callbacks)."""

    def __init__(self) -> None:
        self.per_epoch: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.per_epoch.append(trainer.optimizers[0].param_groups[0]["lr"])


class ExitOnRank(L.Callback):
    """Ends this process at once on ``rank``, at ``epoch``'s batch ``batch``: ``os._exit``, no clean-up, as a
    crash or a lost node would (named in DDP tests' configs; the other ranks must notice on their own)."""

    def __init__(self, rank: int = 1, epoch: int = 1, batch: int = 1) -> None:
        self.rank, self.epoch, self.batch = rank, epoch, batch

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx
    ) -> None:
        if (trainer.global_rank, trainer.current_epoch, batch_idx) == (self.rank, self.epoch, self.batch):
            os._exit(3)

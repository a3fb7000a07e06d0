"""Helpers shared by the tests (importable, unlike conftest)."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, Dataset

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


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    (event_file,) = log_dir.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


class Delay:
    """Sleeps, and adds up how long it really slept (a loaded machine oversleeps): the injected truth."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.total = seconds, 0.0

    def __call__(self) -> None:
        start = time.perf_counter()
        time.sleep(self.seconds)
        self.total += time.perf_counter() - start


class SleepyDataset(Dataset):
    """Each batch of BATCH items takes ``per_batch`` seconds to load (in the main process: num_workers=0)."""

    def __init__(self, length: int, per_batch: float) -> None:
        self.length, self.delay = length, Delay(per_batch / BATCH)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.delay()
        return torch.randn(8), torch.tensor(index % 2)


class SleepyModule(L.LightningModule):
    def __init__(self, step_delay: float = 0.0, copy_delay: float = 0.0, val_delay: float = 0.0) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 2)
        self.step_delay, self.copy_delay, self.val_delay = (
            Delay(step_delay),
            Delay(copy_delay),
            Delay(val_delay),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layer(inputs)

    def training_step(self, batch, batch_idx):
        self.step_delay()
        inputs, targets = batch
        return nn.functional.cross_entropy(self(inputs), targets)

    def validation_step(self, batch, batch_idx):
        self.val_delay()

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        if self.trainer.training:
            self.copy_delay()
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(per_batch: float, steps: int = 8) -> DataLoader:
    return DataLoader(SleepyDataset(steps * BATCH, per_batch), batch_size=BATCH, num_workers=0)


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


def learning_fit_args(root: Path, *extra: str, epochs: int = 3, config: Path | None = None) -> list[str]:
    """CLI options of a seeded fit on 256 synthetic images with Adam (learns fast), without "fit".

    ``config`` is read first, so the options here (and then ``extra``) override it.
    """
    return [
        *(["--config", str(config)] if config else []),
        "--seed_everything", "0",
        "--data.synthetic", "256",
        "--data.batch_size", "32",
        "--data.num_workers", "0",
        "--optimizer", "Adam",
        "--optimizer.lr", "0.001",
        "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", str(epochs),
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
        *extra,
    ]  # fmt: skip


def short_learning_fit(root: Path, *extra: str) -> dict[str, list[tuple[int, float]]]:
    """A 3-epoch :func:`learning_fit_args` fit through ``python -m cifarbench``; its TensorBoard scalars."""
    from cifarbench.cli import main

    main(["fit", *learning_fit_args(root, *extra)])
    return read_scalars(root / "lightning_logs" / "version_0")

"""CIFAR10DataModule: CIFAR-10 (or explicit synthetic images) through the lab's transforms and DataLoader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cifarbench import cifar10_files
from cifarbench.errors import ConfigError
from cifarbench.synthetic import make_synthetic

# The lab's normalisation constants (lab2-report.txt, Q3 code).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

# Synthetic data: the test split is a fifth of the train split's size, drawn with another seed.
_SYNTHETIC_TRAIN_SEED = 0
_SYNTHETIC_TEST_SEED = 1


def train_transform() -> Callable[[Image.Image], torch.Tensor]:
    """The lab's per-sample augmentation: pad-4 random crop, horizontal flip, tensor, normalise."""
    return transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(0.5),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )


def eval_transform() -> Callable[[Image.Image], torch.Tensor]:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


class ImageArrayDataset(Dataset):
    """uint8 HWC images held in memory, handed out as PIL images through ``transform``."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, transform: Callable[[Image.Image], Any]
    ) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 train/test splits; validation and test both use the test split.

    Args:
        data_dir: folder that holds (or will hold) ``cifar-10-batches-py``.
        batch_size: images per batch (the lab's 128).
        num_workers: DataLoader worker processes; 0 loads in the main process.
        pin_memory: page-locked batches for faster copies to the GPU; ``None`` pins when training on CUDA.
        persistent_workers: keep workers alive between epochs (needs ``num_workers > 0``).
        download: fetch the official archive when the files are missing.
        verify_integrity: check every batch file against the official md5 checksums.
        synthetic: use this many learnable synthetic training images instead of CIFAR-10 (the test split gets
            a fifth as many). Never chosen silently.
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 4,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        download: bool = True,
        verify_integrity: bool = True,
        synthetic: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"CIFAR10DataModule(batch_size={batch_size!r}) must be >= 1 (the lab uses 128)")
        if num_workers < 0:
            raise ConfigError(
                f"CIFAR10DataModule(num_workers={num_workers!r}) must be >= 0 (0 loads in the main process)"
            )
        if persistent_workers and num_workers == 0:
            raise ConfigError(
                "CIFAR10DataModule(persistent_workers=True, num_workers=0): persistent workers need "
                "--data.num_workers >= 1"
            )
        if synthetic is not None and synthetic < 1:
            raise ConfigError(
                f"CIFAR10DataModule(synthetic={synthetic!r}) must be a number of images >= 1, or None for "
                f"CIFAR-10"
            )
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.download = download
        self.verify_integrity = verify_integrity
        self.synthetic = synthetic
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def prepare_data(self) -> None:
        # Runs on one process per node, before setup: the only place that writes to data_dir.
        if self.synthetic is None and self.download and not cifar10_files.has_verified_files(self.data_dir):
            cifar10_files.download(self.data_dir)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            self.train_set = ImageArrayDataset(*self._read_split(train=True), train_transform())
        if self.test_set is None:
            self.test_set = ImageArrayDataset(*self._read_split(train=False), eval_transform())

    def _read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        if self.synthetic is None:
            return cifar10_files.read_split(self.data_dir, train=train, verify_integrity=self.verify_integrity)
        size = self.synthetic if train else max(1, self.synthetic // 5)
        split = "train" if train else "test"
        rank_zero_info(f"Using {size} synthetic {split} images (--data.synthetic), not CIFAR-10.")
        return make_synthetic(size, seed=_SYNTHETIC_TRAIN_SEED if train else _SYNTHETIC_TEST_SEED)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.train_set, "train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.test_set, "test"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.test_set, "test"), shuffle=False)

    @staticmethod
    def _require(dataset: Dataset | None, split: str) -> Dataset:
        if dataset is None:
            raise RuntimeError(f"CIFAR10DataModule: the {split} split is not loaded; call setup() first")
        return dataset

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory(),
            persistent_workers=self.persistent_workers,
        )

    def _pin_memory(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

"""CIFAR10DataModule: CIFAR-10 (or explicit synthetic images) through one of the training pipelines.

The DataModule reads the splits and builds the loaders; how a batch is made (datasets, sampler, collate
function, workers, on-device augmentation) is the pipeline's (:mod:`cifarbench.data.pipelines`).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from cifarbench.data import cifar10_files
from cifarbench.data.pipelines import Pipeline, make_pipeline
from cifarbench.data.synthetic import make_synthetic
from cifarbench.errors import ConfigError
from cifarbench.quiet import notice

# Synthetic data: the test split is a fifth of the train split's size, drawn with another seed.
_SYNTHETIC_TRAIN_SEED = 0
_SYNTHETIC_TEST_SEED = 1


# A worker is a process with a copy of the dataset; far more of them than CPUs only costs memory and start-up.
WORKERS_PER_CPU = 8
_MIN_WORKER_CAP = 32  # the lab's C3 sweep (0, 4, 8, ...) stays possible on a small machine
# What one image costs in memory while a split is made: uint8 pixels, an int64 label, and the int64 label
# permutation drawn for it (see make_synthetic).
_BYTES_PER_SYNTHETIC_IMAGE = 3 * 32 * 32 + 8 + 16


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def max_workers() -> int:
    """The most DataLoader workers ``--data.num_workers`` accepts on this machine."""
    return max(_MIN_WORKER_CAP, WORKERS_PER_CPU * _cpus())


def _synthetic_sizes(synthetic: int) -> tuple[int, int]:
    return synthetic, max(1, synthetic // 5)


def available_memory_bytes() -> int | None:
    """Memory the system can give without swapping (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory_for_synthetic(synthetic: int) -> None:
    needed = sum(_synthetic_sizes(synthetic)) * _BYTES_PER_SYNTHETIC_IMAGE
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise ConfigError(
            f"--data.synthetic {synthetic} needs {_gib(needed)} of memory for its images (train and test "
            f"splits, {_BYTES_PER_SYNTHETIC_IMAGE} bytes each) but {_gib(available)} is available: ask for "
            f"fewer images (CIFAR-10 has 50000)"
        )


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 train/test splits; validation and test both use the test split.

    Args:
        data_dir: folder that holds (or will hold) ``cifar-10-batches-py``.
        batch_size: images per batch (the lab's 128).
        num_workers: DataLoader worker processes; 0 loads in the main process. ``"auto"``: a
            :class:`~cifarbench.callbacks.WorkerTuner` among the Trainer's callbacks (``python -m cifarbench
            fit`` adds it) times the train loader at fit start and picks the count.
        pin_memory: page-locked batches for faster copies to the GPU; ``None`` pins when training on CUDA.
        persistent_workers: keep workers alive between epochs (needs ``num_workers > 0``).
        download: fetch the official archive when the files are missing.
        verify_integrity: check every batch file against the official md5 checksums.
        synthetic: use this many learnable synthetic training images instead of CIFAR-10 (the test split gets
            a fifth as many). Never chosen silently.
        pipeline: how training batches are made: ``torchvision`` (the lab's PIL transforms in workers),
            ``tensor`` (batched torch augmentation on the CPU) or ``gpu`` (batched augmentation on the
            training device); see :mod:`cifarbench.data.pipelines`.
        seed: the ``tensor`` and ``gpu`` pipelines shuffle each epoch with ``seed + epoch``. (``torchvision``
            keeps the lab's DataLoader shuffle, seeded by ``--seed_everything``.)
        drop_last: drop the smaller last training batch of each epoch. With ``--model.compile`` every batch
            shape is a graph of its own (a second compile, and with CUDA graphs a second recording), so
            ``python -m cifarbench fit`` turns this on when compiling. Validation and test keep every image.
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int | Literal["auto"] = 4,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        download: bool = True,
        verify_integrity: bool = True,
        synthetic: int | None = None,
        pipeline: str = "torchvision",
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"CIFAR10DataModule(batch_size={batch_size!r}) must be >= 1 (the lab uses 128)")
        if num_workers != "auto" and (not isinstance(num_workers, int) or num_workers < 0):
            raise ConfigError(
                f"CIFAR10DataModule(num_workers={num_workers!r}) must be >= 0 (0 loads in the main process), "
                f"or 'auto' to let WorkerTuner pick"
            )
        if num_workers != "auto" and num_workers > max_workers():
            raise ConfigError(
                f"CIFAR10DataModule(num_workers={num_workers!r}) is more than {max_workers()} ("
                f"{WORKERS_PER_CPU} per CPU, and this machine has {_cpus()}): each worker is a process with "
                f"its own copy of the dataset. Use --data.num_workers auto, or a count up to {max_workers()}"
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
        if synthetic is not None:
            _check_memory_for_synthetic(synthetic)
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.download = download
        self.verify_integrity = verify_integrity
        self.synthetic = synthetic
        self.pipeline = pipeline
        self.seed = seed
        self.drop_last = drop_last
        self.training_pipeline: Pipeline = make_pipeline(pipeline)
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def prepare_data(self) -> None:
        # Runs on one process per node, before setup: the only place that writes to data_dir. Only missing
        # files trigger a download: extracting the archive over files that fail their checksum would replace
        # data the user may have put there on purpose (--data.verify_integrity false).
        if self.synthetic is None and self.download and not cifar10_files.has_all_files(self.data_dir):
            cifar10_files.download(self.data_dir)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.num_workers == "auto" and not self.training_pipeline.trains_in_workers:
            # Its training loader always runs in the main process: there is nothing for WorkerTuner to time.
            notice(
                f"--data.pipeline {self.pipeline} loads in the main process: --data.num_workers auto is 0.",
                logging.INFO,
            )
            self.num_workers = 0
        if stage == "fit" and self.train_set is None:
            self.train_set = self.training_pipeline.train_dataset(*self._read_split(train=True))
        if self.test_set is None:
            self.test_set = self.training_pipeline.eval_dataset(*self._read_split(train=False))

    def _check_labels(self, labels: np.ndarray, split: str) -> None:
        """The model must have an output for every label (cross-entropy would fail with an IndexError)."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        classes = getattr(module, "num_classes", None)
        top = int(labels.max()) if len(labels) else -1
        if isinstance(classes, int) and top >= classes:
            raise ConfigError(
                f"--model.num_classes {classes} is too few for the {split} split, whose labels go up "
                f"to {top}: use --model.num_classes {top + 1} or more (CIFAR-10 has 10)"
            )

    def _workers(self) -> int:
        if self.num_workers == "auto":
            raise ConfigError(
                "CIFAR10DataModule(num_workers='auto') needs WorkerTuner to pick the count when Trainer.fit "
                "starts: Trainer(callbacks=[WorkerTuner()]) (from cifarbench.callbacks; `python -m "
                "cifarbench fit` adds it for you), or pass a number (e.g. --data.num_workers 4)"
            )
        return self.num_workers

    def teardown(self, stage: str) -> None:
        self.training_pipeline.teardown()

    def _read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        split = "train" if train else "test"
        if self.synthetic is None:
            images, labels = cifar10_files.read_split(
                self.data_dir, train=train, verify_integrity=self.verify_integrity
            )
        else:
            size = _synthetic_sizes(self.synthetic)[0 if train else 1]
            notice(f"Using {size} synthetic {split} images (--data.synthetic), not CIFAR-10.")
            images, labels = make_synthetic(
                size, seed=_SYNTHETIC_TRAIN_SEED if train else _SYNTHETIC_TEST_SEED
            )
        self._check_labels(labels, split)
        return images, labels

    def train_dataloader(self) -> DataLoader:
        train_set = self._require(self.train_set, "train")
        if self.drop_last and len(train_set) < self.batch_size:  # type: ignore[arg-type]
            raise ConfigError(
                f"CIFAR10DataModule(drop_last=True) with {len(train_set)} training images and batch_size="  # type: ignore[arg-type]
                f"{self.batch_size} leaves no batch: lower --data.batch_size or use more images"
            )
        sampler = self.training_pipeline.train_sampler(train_set, self.seed)
        if self.training_pipeline.trains_in_workers:
            return self._loader(train_set, shuffle=sampler is None, sampler=sampler, drop_last=self.drop_last)
        if self.num_workers != 0:
            notice(
                f"--data.pipeline {self.pipeline} loads training batches in the main process; "
                f"--data.num_workers {self.num_workers} applies to validation and test only.",
                logging.INFO,
            )
        return self._loader(train_set, sampler=sampler, num_workers=0, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.test_set, "test"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.test_set, "test"), shuffle=False)

    @staticmethod
    def _require(dataset: Dataset | None, split: str) -> Dataset:
        if dataset is None:
            raise RuntimeError(f"CIFAR10DataModule: the {split} split is not loaded; call setup() first")
        return dataset

    def _loader(
        self,
        dataset: Dataset,
        shuffle: bool = False,
        sampler: Sampler[int] | None = None,
        num_workers: int | None = None,
        drop_last: bool = False,
    ) -> DataLoader:
        workers = self._workers() if num_workers is None else num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            collate_fn=self.training_pipeline.collate_fn,
            pin_memory=self._pin_memory(),
            # WorkerTuner may try 0 workers even when persistent_workers is set; DataLoader rejects that pair.
            persistent_workers=self.persistent_workers and workers > 0,
            drop_last=drop_last,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The pipeline's on-device step (the gpu pipeline augments here), before the training step."""
        return self.training_pipeline.on_after_batch_transfer(batch)

    def _pin_memory(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

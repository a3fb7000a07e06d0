"""CIFAR10DataModule: CIFAR-10 (or explicit synthetic images) through one of three training pipelines.

- ``torchvision`` (the lab's): per-sample PIL transforms in DataLoader workers.
- ``tensor``: the split held once as a uint8 tensor; each batch is cropped, flipped and normalised in torch
  on the CPU, in whichever process iterates the loader (the main one with ``num_workers=0``).
- ``gpu``: the loader yields only indices; the split is moved to the training device once, and the same
  batched augmentation runs there in ``on_after_batch_transfer``. Lightning calls that hook inside
  ``strategy.batch_to_device``, before the step starts, so EpochTimer counts it as data loading.

Validation and test batches are normalised only, for every pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, NamedTuple, cast

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms

from cifarbench import cifar10_files
from cifarbench.augment import normalization_affine, normalize, pad_and_mirror, random_crop_flip
from cifarbench.callbacks.worker_tuner import WorkerTuner
from cifarbench.errors import ConfigError
from cifarbench.synthetic import make_synthetic

# The lab's normalisation constants (lab2-report.txt, Q3 code).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

# Synthetic data: the test split is a fifth of the train split's size, drawn with another seed.
_SYNTHETIC_TRAIN_SEED = 0
_SYNTHETIC_TEST_SEED = 1

PIPELINES = ("torchvision", "tensor", "gpu")


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


def images_to_tensor(images_hwc: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) as read from disk -> a contiguous uint8 tensor (N, C, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(images_hwc)).permute(0, 3, 1, 2).contiguous()


class IndexBatch(NamedTuple):
    """A training batch of the ``gpu`` pipeline before augmentation: which images, and their labels.

    A NamedTuple, so Lightning moves both tensors to the device like any other batch.
    """

    indices: torch.Tensor
    labels: torch.Tensor


def _as_index_tensor(indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.int64)


def keep_batch(batch: Any) -> Any:
    """collate_fn for datasets whose ``__getitems__`` already returns a whole batch."""
    return batch


class NormalizedTensorDataset(Dataset):
    """``tensor`` and ``gpu`` pipelines, validation and test: uint8 images, normalised per batch only.

    The DataLoader hands ``__getitems__`` the batch's indices, so one call builds the whole batch.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.images = images
        self.labels = labels
        self.scale, self.shift = normalization_affine(mean, std)

    def __len__(self) -> int:
        return len(self.labels)

    def _uint8_batch(self, index: torch.Tensor) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = _as_index_tensor(indices)
        return normalize(self._uint8_batch(index), self.scale, self.shift), self.labels[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images, labels = self.__getitems__([index])
        return images[0], int(labels[0])


class AugmentedTensorDataset(NormalizedTensorDataset):
    """``tensor`` pipeline, training: zero-padded uint8 images cropped, flipped and normalised per batch."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        # Only the padded (and mirrored) copy is kept: crops are windows into it.
        super().__init__(pad_and_mirror(images), labels, mean, std)

    def _uint8_batch(self, index: torch.Tensor) -> torch.Tensor:
        return random_crop_flip(self.images, index)


class IndexDataset(Dataset):
    """``gpu`` pipeline, training: batches of indices and labels; the images stay on the device.

    ``padded`` is the zero-padded uint8 split that the DataModule copies to the device once per fit; the
    loader never reads it.
    """

    def __init__(self, padded: torch.Tensor, labels: torch.Tensor) -> None:
        self.padded = padded
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: Sequence[int]) -> IndexBatch:
        index = _as_index_tensor(indices)
        return IndexBatch(index, self.labels[index])

    def __getitem__(self, index: int) -> IndexBatch:
        return self.__getitems__([index])


class SeededShuffleSampler(Sampler[int]):
    """A new permutation of ``range(num_samples)`` every epoch, drawn from ``seed + epoch``.

    Lightning calls ``set_epoch`` at the start of every training epoch. Under DDP
    (``use_distributed_sampler``, on by default) Lightning replaces this sampler with a
    ``DistributedSampler`` over the same map-style dataset, which shards the indices across ranks and
    shuffles per epoch from ``seed_everything``'s seed. This class is deliberately not a DistributedSampler,
    so that the replacement happens.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


class CIFAR10DataModule(L.LightningDataModule):
    """CIFAR-10 train/test splits; validation and test both use the test split.

    Args:
        data_dir: folder that holds (or will hold) ``cifar-10-batches-py``.
        batch_size: images per batch (the lab's 128).
        num_workers: DataLoader worker processes; 0 loads in the main process. ``"auto"``: a
            :class:`~cifarbench.callbacks.WorkerTuner` times the train loader at fit start and picks the
            count.
        pin_memory: page-locked batches for faster copies to the GPU; ``None`` pins when training on CUDA.
        persistent_workers: keep workers alive between epochs (needs ``num_workers > 0``).
        download: fetch the official archive when the files are missing.
        verify_integrity: check every batch file against the official md5 checksums.
        synthetic: use this many learnable synthetic training images instead of CIFAR-10 (the test split gets
            a fifth as many). Never chosen silently.
        pipeline: ``torchvision`` (the lab's PIL transforms in workers), ``tensor`` (batched torch
            augmentation on the CPU) or ``gpu`` (batched augmentation on the training device). See the module
            docstring.
        seed: the ``tensor`` and ``gpu`` pipelines shuffle each epoch with ``seed + epoch``. (``torchvision``
            keeps the lab's DataLoader shuffle, seeded by ``--seed_everything``.)
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
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"CIFAR10DataModule(batch_size={batch_size!r}) must be >= 1 (the lab uses 128)")
        if num_workers != "auto" and (not isinstance(num_workers, int) or num_workers < 0):
            raise ConfigError(
                f"CIFAR10DataModule(num_workers={num_workers!r}) must be >= 0 (0 loads in the main process), "
                f"or 'auto' to let WorkerTuner pick"
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
        if pipeline not in PIPELINES:
            raise ConfigError(
                f"CIFAR10DataModule(pipeline={pipeline!r}) is not a pipeline: use --data.pipeline "
                f"torchvision (the lab's), tensor or gpu"
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
        self.pipeline = pipeline
        self.seed = seed
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None
        # gpu pipeline: the one copy of the padded uint8 training set on the training device.
        self._device_set: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # set, scale, shift

    def prepare_data(self) -> None:
        # Runs on one process per node, before setup: the only place that writes to data_dir. Only missing
        # files trigger a download: extracting the archive over files that fail their checksum would replace
        # data the user may have put there on purpose (--data.verify_integrity false).
        if self.synthetic is None and self.download and not cifar10_files.has_all_files(self.data_dir):
            cifar10_files.download(self.data_dir)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.num_workers == "auto":
            self._attach_worker_tuner()
        if stage == "fit" and self.train_set is None:
            self.train_set = self._train_dataset(*self._read_split(train=True))
        if self.test_set is None:
            self.test_set = self._eval_dataset(*self._read_split(train=False))

    def _attach_worker_tuner(self) -> None:
        # `--data.num_workers auto` needs no second option: setup() runs before the callbacks' on_fit_start,
        # where the tuner sets self.num_workers, and before any dataloader is built.
        if self.pipeline == "gpu":
            # Its training loader always runs in the main process: there is nothing for the tuner to time.
            rank_zero_info("--data.pipeline gpu loads in the main process: --data.num_workers auto is 0.")
            self.num_workers = 0
            return
        trainer = self.trainer
        if trainer is None:
            return
        if not any(isinstance(callback, WorkerTuner) for callback in trainer.callbacks):
            trainer.callbacks.append(WorkerTuner())

    def _workers(self) -> int:
        if self.num_workers == "auto":
            raise ConfigError(
                "CIFAR10DataModule(num_workers='auto') is resolved by WorkerTuner when Trainer.fit starts; "
                "outside fit, pass a number (e.g. --data.num_workers 4)"
            )
        return self.num_workers

    def teardown(self, stage: str) -> None:
        self._device_set = None  # frees the device copy; the next fit makes it again

    def _train_dataset(self, images: np.ndarray, labels: np.ndarray) -> Dataset:
        if self.pipeline == "torchvision":
            return ImageArrayDataset(images, labels, train_transform())
        label_tensor = torch.from_numpy(labels).to(torch.int64)
        if self.pipeline == "tensor":
            return AugmentedTensorDataset(images_to_tensor(images), label_tensor, CIFAR10_MEAN, CIFAR10_STD)
        return IndexDataset(pad_and_mirror(images_to_tensor(images)), label_tensor)

    def _eval_dataset(self, images: np.ndarray, labels: np.ndarray) -> Dataset:
        if self.pipeline == "torchvision":
            return ImageArrayDataset(images, labels, eval_transform())
        label_tensor = torch.from_numpy(labels).to(torch.int64)
        return NormalizedTensorDataset(images_to_tensor(images), label_tensor, CIFAR10_MEAN, CIFAR10_STD)

    def _read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        if self.synthetic is None:
            return cifar10_files.read_split(
                self.data_dir, train=train, verify_integrity=self.verify_integrity
            )
        size = self.synthetic if train else max(1, self.synthetic // 5)
        split = "train" if train else "test"
        rank_zero_info(f"Using {size} synthetic {split} images (--data.synthetic), not CIFAR-10.")
        return make_synthetic(size, seed=_SYNTHETIC_TRAIN_SEED if train else _SYNTHETIC_TEST_SEED)

    def train_dataloader(self) -> DataLoader:
        train_set = self._require(self.train_set, "train")
        if self.pipeline == "torchvision":
            return self._loader(train_set, shuffle=True)
        sampler = SeededShuffleSampler(len(train_set), seed=self.seed)
        # The gpu pipeline's loader only slices index lists: worker processes would add start-up and IPC time
        # and nothing else, so it always loads in the main process.
        num_workers = 0 if self.pipeline == "gpu" else self._workers()
        if num_workers != self.num_workers:
            rank_zero_info(
                f"--data.pipeline gpu loads index batches in the main process; --data.num_workers "
                f"{self.num_workers} applies to validation and test only."
            )
        return self._loader(train_set, sampler=sampler, num_workers=num_workers)

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
    ) -> DataLoader:
        workers = self._workers() if num_workers is None else num_workers
        # The tensor datasets build whole batches in __getitems__; the default collate would re-stack them.
        collate_fn = None if self.pipeline == "torchvision" else keep_batch
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_fn,
            pin_memory=self._pin_memory(),
            # WorkerTuner may try 0 workers even when persistent_workers is set; DataLoader rejects that pair.
            persistent_workers=self.persistent_workers and workers > 0,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """gpu pipeline: turn an index batch, now on the training device, into augmented, normalised images.

        Lightning runs this inside ``strategy.batch_to_device``, before ``on_train_batch_start``, so the
        augmentation kernels are data-loading time in EpochTimer, never training time.
        """
        if not isinstance(batch, IndexBatch):
            return batch
        padded, scale, shift = self._training_set_on(batch.indices.device)
        return normalize(random_crop_flip(padded, batch.indices), scale, shift), batch.labels

    def _training_set_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The padded uint8 training set on ``device``, copied there once per fit (the airbench approach)."""
        if self._device_set is None or self._device_set[0].device != device:
            padded = cast(IndexDataset, self._require(self.train_set, "train")).padded
            scale, shift = normalization_affine(CIFAR10_MEAN, CIFAR10_STD, device)
            self._device_set = (padded.to(device), scale, shift)
        return self._device_set

    def _pin_memory(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

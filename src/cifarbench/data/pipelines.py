"""Training pipelines: how a training batch is made. One class each, registered by ``--data.pipeline`` name.

- ``torchvision`` (the lab's): per-sample PIL transforms in DataLoader workers.
- ``tensor``: the split held once as a uint8 tensor; each batch is cropped, flipped and normalised in torch on
  the CPU, in whichever process iterates the loader (the main one with ``num_workers=0``).
- ``gpu``: the loader yields only indices; the split is moved to the training device once, and the same
  batched augmentation runs there in ``on_after_batch_transfer``. Lightning calls that hook inside
  ``strategy.batch_to_device``, before the step starts, so EpochTimer counts it as data loading.

Validation and test batches are normalised only, for every pipeline. A new pipeline is one subclass of
:class:`Pipeline` decorated with :func:`register_pipeline` (README, "Development").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import transforms

from cifarbench.data.augment import normalization_affine, normalize, pad_and_mirror, random_crop_flip
from cifarbench.data.datasets import (
    AugmentedTensorDataset,
    ImageArrayDataset,
    IndexBatch,
    IndexDataset,
    NormalizedTensorDataset,
    SeededShuffleSampler,
    images_to_tensor,
    keep_batch,
    labels_to_tensor,
)
from cifarbench.errors import ConfigError

# The lab's normalisation constants (lab2-report.txt, Q3 code).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


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


class Pipeline:
    """How one fit's batches are made: its datasets, sampler, collate function and use of workers.

    Class attributes:
        name: the ``--data.pipeline`` value.
        summary: one line for ``--help`` and error messages.
        trains_in_workers: the train loader uses ``--data.num_workers``; ``False``: always the main process.
        needs_workers: the per-sample work is slow without worker processes (Lightning's "does not have many
            workers" warning is worth showing).
        collate_fn: the DataLoader's, for every split; ``None`` is PyTorch's default.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    trains_in_workers: ClassVar[bool] = True
    needs_workers: ClassVar[bool] = False
    collate_fn: ClassVar[Callable[[Any], Any] | None] = None

    def train_dataset(self, images: np.ndarray, labels: np.ndarray) -> Dataset:
        raise NotImplementedError

    def eval_dataset(self, images: np.ndarray, labels: np.ndarray) -> Dataset:
        return NormalizedTensorDataset(
            images_to_tensor(images), labels_to_tensor(labels), CIFAR10_MEAN, CIFAR10_STD
        )

    def train_sampler(self, dataset: Dataset, seed: int) -> Sampler[int] | None:
        """``None``: the DataLoader shuffles (seeded by ``--seed_everything``)."""
        return SeededShuffleSampler(len(dataset), seed=seed)  # type: ignore[arg-type]

    def on_after_batch_transfer(self, batch: Any) -> Any:
        """A batch on the training device, before the step (inside ``strategy.batch_to_device``)."""
        return batch

    def teardown(self) -> None:
        """Free what the fit held (the gpu pipeline's device copy of the training set)."""


PIPELINES: dict[str, type[Pipeline]] = {}
LAB_PIPELINE = "torchvision"  # the default: the lab's per-image transforms


def register_pipeline(cls: type[Pipeline]) -> type[Pipeline]:
    """Class decorator: make ``cls`` selectable as ``--data.pipeline <cls.name>``."""
    PIPELINES[cls.name] = cls
    return cls


def make_pipeline(name: str) -> Pipeline:
    try:
        return PIPELINES[name]()
    except KeyError:
        names = [f"{key} (the lab's)" if key == LAB_PIPELINE else key for key in PIPELINES]
        choices = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        raise ConfigError(
            f"CIFAR10DataModule(pipeline={name!r}) is not a pipeline: use --data.pipeline {choices}"
        ) from None


@register_pipeline
class TorchvisionPipeline(Pipeline):
    name = "torchvision"
    summary = "the lab's: per-image PIL transforms in DataLoader workers"
    needs_workers = True

    def train_dataset(self, images: np.ndarray, labels: np.ndarray) -> Dataset:
        return ImageArrayDataset(images, labels, train_transform())

    def eval_dataset(self, images: np.ndarray, labels: np.ndarray) -> Dataset:
        return ImageArrayDataset(images, labels, eval_transform())

    def train_sampler(self, dataset: Dataset, seed: int) -> Sampler[int] | None:
        return None  # the lab's DataLoader shuffle


@register_pipeline
class TensorPipeline(Pipeline):
    name = "tensor"
    summary = "whole batches cropped, flipped and normalised in torch on the CPU"
    collate_fn = staticmethod(keep_batch)

    def train_dataset(self, images: np.ndarray, labels: np.ndarray) -> Dataset:
        return AugmentedTensorDataset(
            images_to_tensor(images), labels_to_tensor(labels), CIFAR10_MEAN, CIFAR10_STD
        )


@register_pipeline
class GpuPipeline(Pipeline):
    name = "gpu"
    summary = "the training set on the device, augmented there per batch"
    # The loader only slices index lists: worker processes would add start-up and IPC time and nothing else.
    trains_in_workers = False
    collate_fn = staticmethod(keep_batch)

    def __init__(self) -> None:
        self.train_set: IndexDataset | None = None
        # The one copy of the padded uint8 training set on the training device, with its normalisation.
        self.device_set: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # set, scale, shift

    def train_dataset(self, images: np.ndarray, labels: np.ndarray) -> Dataset:
        self.train_set = IndexDataset(pad_and_mirror(images_to_tensor(images)), labels_to_tensor(labels))
        return self.train_set

    def on_after_batch_transfer(self, batch: Any) -> Any:
        """Turn an index batch, now on the training device, into augmented, normalised images.

        Lightning runs this inside ``strategy.batch_to_device``, before ``on_train_batch_start``, so the
        augmentation kernels are data-loading time in EpochTimer, never training time.
        """
        if not isinstance(batch, IndexBatch):
            return batch
        padded, scale, shift = self._training_set_on(batch.indices.device)
        return normalize(random_crop_flip(padded, batch.indices), scale, shift), batch.labels

    def _training_set_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The padded uint8 training set on ``device``, copied there once per fit (the airbench approach)."""
        if self.device_set is None or self.device_set[0].device != device:
            if self.train_set is None:
                raise RuntimeError(
                    "GpuPipeline: no training set to copy; CIFAR10DataModule.setup('fit') first"
                )
            scale, shift = normalization_affine(CIFAR10_MEAN, CIFAR10_STD, device)
            self.device_set = (self.train_set.padded.to(device), scale, shift)
        return self.device_set

    def teardown(self) -> None:
        self.device_set = None  # frees the device copy; the next fit makes it again

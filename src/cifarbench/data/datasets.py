"""The datasets and the sampler that the pipelines are made of.

Images arrive as uint8 HWC arrays (as read from disk or made synthetically). The torchvision pipeline hands
them out one PIL image at a time; the tensor datasets build a whole batch per ``__getitems__`` call, from
the batch's indices, so that there is no per-sample Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from cifarbench.data.augment import normalization_affine, normalize, pad_and_mirror, random_crop_flip


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


def labels_to_tensor(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(labels).to(torch.int64)


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

    ``padded`` is the zero-padded uint8 split that the pipeline copies to the device once per fit; the
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

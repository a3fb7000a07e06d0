"""How many samples a training batch holds, with one training loader or several.

With several training loaders (a dict or a list of them, which Lightning combines with ``CombinedLoader``) a
batch holds one batch of each, in the same structure: its samples are the sum over the loaders. With one
loader, the first tensor's first dimension, as Lightning's own ``extract_batch_size`` counts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.utilities.data import extract_batch_size

Counter = Callable[[Any], int]


def sample_counter(train_dataloader: Any) -> Counter:
    """The counter for batches of ``train_dataloader`` (``trainer.train_dataloader``: the user's loaders)."""
    if isinstance(train_dataloader, Mapping) and len(train_dataloader) > 1:
        return _sum_over_loaders(lambda batch: batch.values() if isinstance(batch, Mapping) else [batch])
    if isinstance(train_dataloader, Sequence) and len(train_dataloader) > 1:
        return _sum_over_loaders(lambda batch: batch if isinstance(batch, list | tuple) else [batch])
    return batch_samples


def _sum_over_loaders(parts: Callable[[Any], Any]) -> Counter:
    def samples(batch: Any) -> int:
        # A loader that is exhausted (CombinedLoader's "max_size" mode) gives None: no samples.
        return sum(batch_samples(part) for part in parts(batch) if part is not None)

    return samples


def batch_samples(batch: Any) -> int:
    """Samples in one loader's batch."""
    # The common (inputs, targets) batch is read directly: extract_batch_size walks the whole structure, a few
    # microseconds a step that the overhead budget does not have.
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        shape = batch[0].shape
        if shape:
            return shape[0]
    try:
        return extract_batch_size(batch)
    except Exception:  # a batch with no tensor in it: count the step, not its samples
        return 0

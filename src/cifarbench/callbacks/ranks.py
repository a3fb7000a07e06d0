"""Once per epoch, every rank's figures in one collective: the slowest rank's, the mean, the samples."""

from __future__ import annotations

import lightning as L
import torch


def reduce_over_ranks(
    trainer: L.Trainer, seconds: list[float], samples: int
) -> tuple[list[float], list[float], int]:
    """Max and mean of each per-rank figure over ranks, and the samples summed over ranks (one all_gather)."""
    if trainer.world_size == 1:
        return seconds, seconds, samples
    local = torch.tensor([*seconds, float(samples)], dtype=torch.float64, device=trainer.strategy.root_device)
    gathered = trainer.strategy.all_gather(local).reshape(trainer.world_size, -1)
    per_metric = gathered[:, :-1]
    return (
        per_metric.max(dim=0).values.tolist(),
        per_metric.mean(dim=0).tolist(),
        int(gathered[:, -1].sum().item()),
    )

"""A 2-process DDP fit of a tiny model on the CPU (gloo), with known delays per rank: the straggler tests'
run.

    python tests/ranks_fit.py OUT --data-sleep 0 0.03 --step-sleep 0 0

``--data-sleep`` is each rank's sleep per sample in its dataset, ``--step-sleep`` per training step. Lightning
starts the second process itself (re-running this script), as it does for a user's own script, and
EpochTimer is used as any Lightning project would. Each rank writes ``OUT/slept-rank<r>.json``: what it
really slept, in data loading and in its steps (the tests' truth), and how often the strategy's all_gather
ran.
The model is a linear layer: its own work is well under a millisecond a step, so the delays are the story.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cifarbench.callbacks import EpochTimer

BATCH = 4


def this_rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


class Slept:
    """Sleeps, and adds up how long it really slept (a loaded machine oversleeps)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        if seconds > 0:
            start = time.perf_counter()
            time.sleep(seconds)
            self.calls.append(time.perf_counter() - start)


class RankSleepyDataset(Dataset):
    def __init__(self, length: int, per_sample: list[float]) -> None:
        self.length, self.per_sample, self.slept = length, per_sample, Slept()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.slept(self.per_sample[this_rank()])
        return torch.randn(8), torch.tensor(index % 2)


class RankSleepyModule(L.LightningModule):
    def __init__(self, per_step: list[float]) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 2)
        self.per_step, self.slept = per_step, Slept()

    def training_step(self, batch, batch_idx):
        self.slept(self.per_step[self.global_rank])
        inputs, targets = batch
        return nn.functional.cross_entropy(self.layer(inputs), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class CountGathers(L.Callback):
    """Counts the strategy's all_gather calls in the fit (EpochTimer's gather at each epoch's end)."""

    def __init__(self) -> None:
        self.calls = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        gather = trainer.strategy.all_gather

        def counted(*args, **kwargs):
            self.calls += 1
            return gather(*args, **kwargs)

        trainer.strategy.all_gather = counted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--data-sleep", type=float, nargs=2, default=[0.0, 0.0])
    parser.add_argument("--step-sleep", type=float, nargs=2, default=[0.0, 0.0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    dataset = RankSleepyDataset(2 * args.steps * BATCH, args.data_sleep)
    module, counter = RankSleepyModule(args.step_sleep), CountGathers()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=60)),
        max_epochs=args.epochs,
        default_root_dir=args.out,
        callbacks=[EpochTimer(), counter],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(module, DataLoader(dataset, batch_size=BATCH, num_workers=0))
    truth = {
        "data": sum(dataset.slept.calls),
        "step": sum(module.slept.calls),
        "step_after_first": sum(module.slept.calls[1:]),  # as compute is judged: the fit's first step apart
        "gathers": counter.calls,
    }
    Path(args.out, f"slept-rank{trainer.global_rank}.json").write_text(json.dumps(truth))


if __name__ == "__main__":
    main()

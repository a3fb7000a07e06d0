"""What EpochTimer (and Lightning) cost per training step, measured side by side in one process.

Runs the same number of steps of the same small model on the same in-memory data as:
  1. a plain PyTorch loop,
  2. Lightning fit without EpochTimer,
  3. Lightning fit with EpochTimer (default mode),
  4. Lightning fit with EpochTimer(sync=True),
interleaved over several rounds (median per variant), and prints per-step times and ratios.

The model is small on purpose: on a CPU, ResNet-18's ~0.7 s step would hide any per-step overhead.

    python benchmarks/overhead.py [--steps 1000] [--rounds 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cifarbench.callbacks import EpochTimer

BATCH = 64
WIDTH = 256


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10))


def make_loader(steps: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(steps * BATCH, WIDTH, generator=generator)
    targets = torch.randint(0, 10, (steps * BATCH,), generator=generator)
    return DataLoader(TensorDataset(inputs, targets), batch_size=BATCH, shuffle=False)


class SmallClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_model()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        return nn.functional.cross_entropy(self.net(inputs), targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def plain_loop(steps: int, device: str) -> float:
    model = make_model().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = make_loader(steps)
    synchronize(device)
    start = time.perf_counter()
    for inputs, targets in loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def lightning_fit(steps: int, device: str, timer: EpochTimer | None) -> float:
    """Wall time of one epoch, measured by a clock outside the callbacks under test."""
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = L.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            max_epochs=1,
            callbacks=[timer] if timer else [],
            logger=TensorBoardLogger(log_dir),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        epoch_clock = _EpochWallClock(device)
        trainer.callbacks.insert(0, epoch_clock)  # first in, so it brackets the others' hooks
        trainer.fit(SmallClassifier(), make_loader(steps))
        return epoch_clock.seconds


class _EpochWallClock(L.Callback):
    def __init__(self, device: str) -> None:
        self.device, self.seconds, self._start = device, 0.0, 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats; the median is reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.steps < 10 or args.rounds < 1:
        parser.error(f"--steps {args.steps} must be >= 10 and --rounds {args.rounds} >= 1")
    if args.device == "cpu":
        torch.set_num_threads(1)  # idle intra-op threads wake slowly on small CPUs and swamp the overhead

    variants: dict[str, Callable[[], float]] = {
        "plain PyTorch loop": lambda: plain_loop(args.steps, args.device),
        "Lightning, no EpochTimer": lambda: lightning_fit(args.steps, args.device, None),
        "Lightning + EpochTimer": lambda: lightning_fit(
            args.steps, args.device, EpochTimer(print_table=False)
        ),
        "Lightning + EpochTimer(sync=True)": lambda: lightning_fit(
            args.steps, args.device, EpochTimer(sync=True, print_table=False)
        ),
    }
    variants["plain PyTorch loop"]()  # warm-up: first-touch allocations, lazy inits
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}/{args.rounds} ...", flush=True)
        for name, run in variants.items():
            seconds[name].append(run())

    per_step_us = {name: statistics.median(values) / args.steps * 1e6 for name, values in seconds.items()}
    plain = per_step_us["plain PyTorch loop"]
    bare = per_step_us["Lightning, no EpochTimer"]
    print(
        f"\n{args.steps} steps of a {WIDTH}-wide MLP, batch {BATCH}, on {args.device}, "
        f"median of {args.rounds}"
    )
    print(f"{'variant':<36}{'us/step':>10}{'vs plain':>10}{'vs Lightning':>14}")
    for name, value in per_step_us.items():
        print(f"{name:<36}{value:>10.1f}{value / plain:>10.3f}{value / bare:>14.3f}")
    timer_cost = per_step_us["Lightning + EpochTimer"] - bare
    print(
        f"\nEpochTimer (default) adds {timer_cost:+.1f} us/step "
        f"({timer_cost / bare:+.2%} over Lightning alone)."
    )
    print(f"Lightning adds {bare - plain:+.1f} us/step over the plain loop ({bare / plain - 1:+.2%}).")


if __name__ == "__main__":
    main()

"""What EpochTimer (and Lightning) cost per training step, measured side by side in one process.

Runs the same number of steps of the same small model on the same in-memory data as:
  1. a plain PyTorch loop,
  2. Lightning fit without EpochTimer,
  3. Lightning fit with a callback that does nothing (what Lightning charges any callback for its hooks),
  4. Lightning fit with EpochTimer (default: phases, spread and the budget),
  5. Lightning fit with EpochTimer(sync=True),
  6. Lightning fit with StopOnDivergence (the CLI's check for a NaN or infinite loss),
interleaved over several rounds (median per variant), and prints per-step times and ratios; the costs are the
median of each round's difference with that round's Lightning-alone run. Then it times a few
ResNet-18 training steps (batch 128, the lab's) to put EpochTimer's cost per step next to a real step.

The model is small on purpose (a step of about 1 ms): ResNet-18's step would hide any per-step overhead. The
time measured is the training epoch's (epoch start to end, synchronized on CUDA): the per-step curves, which
EpochTimer hands to the logger when the epoch ends, are a per-epoch cost and are reported apart.

    python benchmarks/overhead.py [--steps 1000] [--rounds 3] [--device cpu|cuda] [--resnet-steps 3]
                                  [--json FILE]

To compare EpochTimer's cost with another version's, side by side: benchmarks/overhead_versus.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.divergence import StopOnDivergence

BATCH = 64
WIDTH = 384  # Lightning's step of this MLP takes about 1 ms on the development machine's CPU (2 cores)


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


def lightning_fit(steps: int, device: str, callback: L.Callback | None) -> tuple[float, float]:
    """(the training epoch's wall time, what EpochTimer's epoch end took), by clocks outside the callback."""
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = L.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            max_epochs=1,
            callbacks=[callback] if callback else [],
            logger=TensorBoardLogger(log_dir),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        epoch_clock = _EpochWallClock(device)
        trainer.callbacks.insert(0, epoch_clock)  # first in, so it brackets the others' per-step hooks
        trainer.callbacks.append(epoch_clock.after_epoch_end)  # last: the others' epoch-end work is before it
        trainer.fit(SmallClassifier(), make_loader(steps))
        return epoch_clock.seconds, epoch_clock.epoch_end_s


class _EpochWallClock(L.Callback):
    """The training epoch's wall time (first callback in), and what the other callbacks' epoch ends took."""

    def __init__(self, device: str) -> None:
        self.device, self.seconds, self.epoch_end_s = device, 0.0, 0.0
        self.start = self.end = 0.0
        self.after_epoch_end = _AfterEpochEnd(self)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(self.device)
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(self.device)
        self.end = time.perf_counter()
        self.seconds = self.end - self.start


class _AfterEpochEnd(L.Callback):
    def __init__(self, clock: _EpochWallClock) -> None:
        self.clock = clock

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        synchronize(self.clock.device)
        self.clock.epoch_end_s = time.perf_counter() - self.clock.end


class Nothing(L.Callback):
    """A callback with no code of its own: Lightning still calls each of its hooks."""


def resnet18_step_s(steps: int) -> float:
    """Median wall time of a plain ResNet-18 training step (batch 128, 32x32) on the CPU."""
    from cifarbench.model import resnet18

    model = resnet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    times = []
    for _ in range(steps + 1):  # the first is a warm-up
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def paired_cost_us(variant_s: list[float], baseline_s: list[float], steps: int) -> float:
    return statistics.median(v - b for v, b in zip(variant_s, baseline_s, strict=True)) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats; the median is reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--resnet-steps", type=int, default=3, help="ResNet-18 steps timed for scale (0: none)"
    )
    parser.add_argument("--json", help="also write the per-step figures (us) to this JSON file")
    args = parser.parse_args()
    if args.steps < 10 or args.rounds < 1 or args.resnet_steps < 0:
        parser.error(
            f"--steps {args.steps} must be >= 10, --rounds {args.rounds} >= 1, --resnet-steps "
            f"{args.resnet_steps} >= 0"
        )
    threads = torch.get_num_threads()
    if args.device == "cpu":
        torch.set_num_threads(1)  # idle intra-op threads wake slowly on small CPUs and swamp the overhead

    variants: dict[str, Callable[[], tuple[float, float]]] = {
        "plain PyTorch loop": lambda: (plain_loop(args.steps, args.device), 0.0),
        "Lightning, no callback": lambda: lightning_fit(args.steps, args.device, None),
        "Lightning + a callback doing nothing": lambda: lightning_fit(args.steps, args.device, Nothing()),
        "Lightning + EpochTimer": lambda: lightning_fit(
            args.steps, args.device, EpochTimer(print_table=False)
        ),
        "Lightning + EpochTimer(sync=True)": lambda: lightning_fit(
            args.steps, args.device, EpochTimer(sync=True, print_table=False)
        ),
        # The CLI's divergence check (every 16th step's loss tested on its device, read back later).
        "Lightning + StopOnDivergence": lambda: lightning_fit(args.steps, args.device, StopOnDivergence()),
    }
    variants["plain PyTorch loop"]()  # warm-up: first-touch allocations, lazy inits
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    epoch_end: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}/{args.rounds} ...", flush=True)
        for name, run in variants.items():
            epoch_s, end_s = run()
            seconds[name].append(epoch_s)
            epoch_end[name].append(end_s)

    per_step_us = {name: statistics.median(values) / args.steps * 1e6 for name, values in seconds.items()}
    plain, bare = per_step_us["plain PyTorch loop"], per_step_us["Lightning, no callback"]
    print(
        f"\n{args.steps} steps of a {WIDTH}-wide MLP, batch {BATCH}, on {args.device}, "
        f"median of {args.rounds}"
    )
    print(f"{'variant':<40}{'us/step':>10}{'vs plain':>10}{'vs Lightning':>14}")
    for name, value in per_step_us.items():
        print(f"{name:<40}{value:>10.1f}{value / plain:>10.3f}{value / bare:>14.3f}")
    # The costs: the median over rounds of each round's difference with the same round's Lightning-alone run
    # (paired, so that the machine drifting between rounds cancels out).
    timer_cost = paired_cost_us(
        seconds["Lightning + EpochTimer"], seconds["Lightning, no callback"], args.steps
    )
    divergence_cost = paired_cost_us(
        seconds["Lightning + StopOnDivergence"], seconds["Lightning, no callback"], args.steps
    )
    hooks_cost = paired_cost_us(
        seconds["Lightning + a callback doing nothing"], seconds["Lightning, no callback"], args.steps
    )
    end_ms = 1000 * (
        statistics.median(epoch_end["Lightning + EpochTimer"])
        - statistics.median(epoch_end["Lightning, no callback"])
    )
    print(
        f"\nEpochTimer (default) adds {timer_cost:+.1f} us/step ({timer_cost / bare:+.2%} over Lightning "
        f"alone); "
        f"Lightning's calls to any callback's hooks are {hooks_cost:+.1f} us/step of that."
    )
    print(
        f"Its epoch end (table row, CSV, per-step curves to the logger) took {end_ms:.1f} ms, once per epoch."
    )
    print(f"StopOnDivergence (the CLI's NaN/inf check) adds {divergence_cost:+.1f} us/step.")
    print(f"Lightning adds {bare - plain:+.1f} us/step over the plain loop ({bare / plain - 1:+.2%}).")
    if args.json:
        figures = {
            "epochtimer_us": timer_cost,
            "hooks_us": hooks_cost,
            "lightning_us": bare,
            "plain_us": plain,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    if args.resnet_steps and args.device == "cpu":
        torch.set_num_threads(threads)
        resnet_s = resnet18_step_s(args.resnet_steps)
        print(
            f"A ResNet-18 training step (batch 128, CPU, {threads} threads) takes {resnet_s:.3f} s: "
            f"EpochTimer's "
            f"{timer_cost:.1f} us is {timer_cost / 1e6 / resnet_s:.4%} of it."
        )


if __name__ == "__main__":
    main()

"""Images/s of one epoch of augmented training batches, per pipeline, measured side by side in one process.

    python benchmarks/dataloading.py [--images 50000] [--batch-size 128] [--workers N]

No model runs: the loop only takes batches from CIFAR10DataModule's train loader (and, for the gpu pipeline,
runs the on-device augmentation that Lightning would run in on_after_batch_transfer). Pipelines:
torchvision with 0 workers (the baseline of every ratio), torchvision with N workers (default: every CPU),
tensor (0 workers), and gpu when CUDA is available. Data is synthetic (--data.synthetic), so no download.

Worker start-up is kept out of the timed epoch (persistent workers and a few warm-up batches), so the figures
are steady-state throughput; the gpu pipeline's one-time copy of the set to the device is warm-up too.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import move_data_to_device

from cifarbench.benchmarking import positive_int
from cifarbench.data import CIFAR10DataModule

WARMUP_BATCHES = 3


@dataclass(frozen=True)
class Result:
    name: str
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def _batches(datamodule: CIFAR10DataModule, device: torch.device) -> Iterator[Any]:
    """The training batches as the training step would receive them on ``device``."""
    for batch in datamodule.train_dataloader():
        if device.type != "cpu":
            batch = move_data_to_device(batch, device)
        yield datamodule.on_after_batch_transfer(batch, dataloader_idx=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_one_epoch(name: str, datamodule: CIFAR10DataModule, device: torch.device) -> Result:
    """Warm up (workers, device copy), then time one full epoch of batches."""
    for step, _ in enumerate(_batches(datamodule, device)):
        if step + 1 >= WARMUP_BATCHES:
            break
    _sync(device)
    images = 0
    start = time.perf_counter()
    for images_batch, _labels in _batches(datamodule, device):
        images += len(images_batch)
    _sync(device)
    return Result(name, images, time.perf_counter() - start)


def make_datamodule(pipeline: str, args: argparse.Namespace, num_workers: int) -> CIFAR10DataModule:
    datamodule = CIFAR10DataModule(
        synthetic=args.images,
        batch_size=args.batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pipeline=pipeline,
        pin_memory=False,
    )
    datamodule.setup("fit")
    return datamodule


def run(args: argparse.Namespace) -> list[Result]:
    cpu = torch.device("cpu")
    results = []
    lab = make_datamodule("torchvision", args, num_workers=0)
    results.append(time_one_epoch("torchvision, 0 workers", lab, cpu))
    # The same images through the same transforms, now in worker processes.
    lab_workers = make_datamodule("torchvision", args, num_workers=args.workers)
    results.append(time_one_epoch(f"torchvision, {args.workers} workers", lab_workers, cpu))
    del lab, lab_workers
    results.append(time_one_epoch("tensor, 0 workers", make_datamodule("tensor", args, 0), cpu))
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        results.append(time_one_epoch("gpu (on CUDA)", make_datamodule("gpu", args, 0), cuda))
    else:
        print("gpu pipeline: skipped, CUDA is not available.")
    return results


def print_results(results: list[Result]) -> None:
    baseline = results[0].images_per_s
    print(f"\n{'pipeline':<28}{'images':>8}{'seconds':>10}{'images/s':>12}{'vs torchvision/0':>18}")
    for result in results:
        ratio = result.images_per_s / baseline
        print(
            f"{result.name:<28}{result.images:>8}{result.seconds:>10.3f}"
            f"{result.images_per_s:>12,.0f}{ratio:>17.1f}x"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=positive_int, default=50_000, help="synthetic training images")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="the lab's 128 by default")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="workers of the second torchvision run"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(
        f"{args.images} synthetic images, batch {args.batch_size}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    )
    print_results(run(args))


if __name__ == "__main__":
    main()

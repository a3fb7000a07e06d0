"""One full training epoch of ResNet-18 per configuration, on CUDA, measured side by side in one process.

    python benchmarks/epoch.py [--images 50000] [--epochs 2] [--peak-tflops 790]

Configurations, each run through the one fit path (cifarbench's LightningCLI), training only:
- lab: torchvision pipeline, fp32, batch 128, 4 workers (the lab's recipe);
- lab + gpu pipeline: the same with --data.pipeline gpu;
- fast: --config fast (gpu pipeline, bf16-mixed, channels_last, compile,
  batch 512).

The last epoch is reported: the first one carries worker start-up, cuDNN autotuning and torch.compile.
Every config trains the same epochs from the same seed, so the last column compares their training
accuracy: run --epochs 5 (the lab's count) for the 2-point parity check, since the fast config spends its
first 2 epochs warming up. Times come from EpochTimer (data
loading = the loop waiting for the next batch, including the host-to-device copy and the gpu pipeline's
on-device augmentation). MFU = measured FLOPs per training image x images/s over
--peak-tflops. Without CUDA it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from cifarbench.benchmarking import positive_float, positive_int, training_only_fit
from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.flops import training_flops_per_sample
from cifarbench.callbacks.timing import EpochTiming
from cifarbench.model import ResNet18Classifier

CONFIGS: dict[str, list[str]] = {
    "lab": ["--data.pipeline", "torchvision", "--data.num_workers", "4", "--data.batch_size", "128"],
    "lab + gpu pipeline": ["--data.pipeline", "gpu", "--data.num_workers", "4", "--data.batch_size", "128"],
    "fast": ["--config", "fast"],
}


@dataclass(frozen=True)
class Row:
    name: str
    timing: EpochTiming  # its mfu uses --peak-tflops and the FLOP count measured once in main()
    train_acc: float  # the last epoch's, over its augmented batches


def fit_one(name: str, options: list[str], args: argparse.Namespace, root: Path) -> Row:
    trainer = training_only_fit(options, args.images, args.epochs, root / name.replace(" ", "_"))
    timer = next(callback for callback in trainer.callbacks if isinstance(callback, EpochTimer))
    return Row(name, timer.history[-1], float(trainer.callback_metrics["train/acc_epoch"]))


def print_rows(rows: list[Row], flops_per_image: float, peak_flops: float) -> None:
    baseline = rows[0].timing.epoch_s
    print(
        f"\n{'config':<22}{'s/epoch':>9}{'images/s':>11}{'data %':>8}{'transfer s':>12}{'MFU':>7}"
        f"{'speed-up':>10}{'train acc':>11}"
    )
    for row in rows:
        timing = row.timing
        data_share = 100 * timing.data_loading_s / timing.epoch_s
        print(
            f"{row.name:<22}{timing.epoch_s:>9.2f}{timing.samples_per_s:>11,.0f}{data_share:>7.1f}%"
            f"{timing.transfer_s:>12.3f}{100 * (timing.mfu or 0.0):>6.1f}%{baseline / timing.epoch_s:>9.1f}x"
            f"{100 * row.train_acc:>10.1f}%"
        )
    floor_s = flops_per_image * rows[0].timing.samples / peak_flops
    gflops = flops_per_image / 1e9
    print(f"\ncompute floor at the given peak: {floor_s:.2f} s/epoch ({gflops:.2f} GFLOP per training image)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=positive_int, default=50_000, help="synthetic training images")
    parser.add_argument("--epochs", type=positive_int, default=2, help="the last one is reported (default 2)")
    parser.add_argument(
        "--peak-tflops", type=positive_float, default=790.0, help="the device's dense bf16 peak (default 790)"
    )
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append", help="run only these configs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/epoch.py needs a CUDA GPU; none is available here, so there is nothing to measure.")
        return 0
    # Counted once here and handed to every fit's EpochTimer, which would otherwise count it per fit and use
    # Lightning's peak for the device instead of --peak-tflops.
    flops, peak = training_flops_per_sample(ResNet18Classifier()), args.peak_tflops * 1e12
    timer_options = ["--timer.flops_per_sample", str(flops), "--timer.peak_flops", str(peak)]
    print(f"{torch.cuda.get_device_name()}, {args.images} synthetic images, last of {args.epochs} epochs")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for name, options in CONFIGS.items():
            if args.only and name not in args.only:
                continue
            rows.append(fit_one(name, options + timer_options, args, Path(root)))
    print_rows(rows, flops, peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training epochs of ResNet-18 per configuration, on CUDA, measured side by side in one process.

    python benchmarks/epoch.py [--images 50000] [--epochs 5] [--peak-tflops N] [--json FILE] [--only NAME]

Configurations, each run through the one fit path (cifarbench's LightningCLI), training only, same seed:
- lab: torchvision pipeline, fp32, batch 128, 4 workers (the lab's recipe);
- lab + gpu pipeline: the same with --data.pipeline gpu;
- fast: --config fast (gpu pipeline, bf16-mixed, channels_last, torch.compile reduce-overhead, batch 512);
- fast, no EpochTimer: the same without the callback, timed by an outside clock: EpochTimer's own cost.

The last epoch is reported: the first carries worker start-up, cuDNN autotuning and torch.compile. Every
config trains the same epochs from the same seed, so the last column compares their training accuracy: with
--epochs 5 (the lab's count) it is the parity check of the fast config. Times come from EpochTimer (data
loading: the loop waiting for the next batch, with the copy and the gpu pipeline's augmentation); the wall
column is an outside clock (epoch start to end, synchronized). MFU = training FLOPs per image x images/s over
the peak; the compute floor is an epoch's FLOPs over the device's bf16 peak (Lightning's table, or
--peak-tflops). Without CUDA it prints why and exits 0 (--accelerator cpu runs it anyway, for its tests).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from lightning.fabric.utilities.throughput import get_available_flops

from cifarbench.benchmarking import positive_float, positive_int, training_only_fit, wall_clock
from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.flops import training_flops_per_sample
from cifarbench.model import ResNet18Classifier

CONFIGS: dict[str, list[str]] = {
    "lab": ["--data.pipeline", "torchvision", "--data.num_workers", "4", "--data.batch_size", "128"],
    "lab + gpu pipeline": ["--data.pipeline", "gpu", "--data.num_workers", "4", "--data.batch_size", "128"],
    "fast": ["--config", "fast"],
    "fast, no EpochTimer": ["--config", "fast"],
}
UNTIMED = {"fast, no EpochTimer"}


@dataclass(frozen=True)
class Row:
    """One configuration's last epoch (EpochTimer's figures are absent without it)."""

    name: str
    wall_s: float  # the outside clock's
    epoch_s: float | None = None
    images_per_s: float | None = None
    data_loading_s: float | None = None
    transfer_s: float | None = None
    forward_s: float | None = None
    backward_s: float | None = None
    optimizer_s: float | None = None
    mfu: float | None = None
    train_acc: float | None = None
    peak_memory_bytes: int | None = None


def fit_one(name: str, options: list[str], args: argparse.Namespace, root: Path) -> Row:
    timed = name not in UNTIMED
    folder = root / name.replace(" ", "_").replace(",", "")
    trainer = training_only_fit(options, args.images, args.epochs, folder, args.accelerator, timed=timed)
    wall_s = wall_clock(trainer).seconds[-1]
    train_acc = float(trainer.callback_metrics["train/acc_epoch"])
    if not timed:
        return Row(name, wall_s, train_acc=train_acc)
    timing = next(c for c in trainer.callbacks if isinstance(c, EpochTimer)).history[-1]
    return Row(
        name,
        wall_s,
        timing.epoch_s,
        timing.samples_per_s,
        timing.data_loading_s,
        timing.transfer_s,
        timing.forward_s,
        timing.backward_s,
        timing.optimizer_s,
        timing.mfu,
        train_acc,
        timing.peak_memory_bytes,
    )


def summary(
    rows: list[Row], images: int, flops_per_image: float, peak_flops: float | None
) -> dict[str, float]:
    """What the GPU check judges: speed-up, data share, EpochTimer's cost, accuracy gap, compute floor."""
    by_name = {row.name: row for row in rows}
    out: dict[str, float] = {}
    if peak_flops:
        out["compute_floor_s"] = flops_per_image * images / peak_flops
    lab, fast, untimed = by_name.get("lab"), by_name.get("fast"), by_name.get("fast, no EpochTimer")
    if lab and fast and lab.epoch_s and fast.epoch_s:
        out["fast_speedup_over_lab"] = lab.epoch_s / fast.epoch_s
    if lab and fast and lab.train_acc is not None and fast.train_acc is not None:
        out["fast_minus_lab_train_acc_points"] = 100 * (fast.train_acc - lab.train_acc)
    if fast and fast.epoch_s:
        out["fast_epoch_s"] = fast.epoch_s
        if "compute_floor_s" in out:
            out["fast_over_compute_floor"] = fast.epoch_s / out["compute_floor_s"]
    gpu = by_name.get("lab + gpu pipeline")
    if gpu and gpu.epoch_s and gpu.data_loading_s is not None:
        out["gpu_pipeline_data_share"] = gpu.data_loading_s / gpu.epoch_s
    if fast and untimed:
        out["epoch_timer_overhead"] = fast.wall_s / untimed.wall_s - 1
    return out


def print_rows(rows: list[Row], figures: dict[str, float]) -> None:
    print(
        f"\n{'config':<22}{'s/epoch':>9}{'wall s':>8}{'images/s':>11}{'data %':>8}{'transfer s':>12}"
        f"{'MFU':>7}{'train acc':>11}"
    )
    for row in rows:
        if row.epoch_s is None:
            print(f"{row.name:<22}{'':>9}{row.wall_s:>8.2f}{'':>38}{100 * (row.train_acc or 0.0):>10.1f}%")
            continue
        share = 100 * (row.data_loading_s or 0.0) / row.epoch_s
        print(
            f"{row.name:<22}{row.epoch_s:>9.2f}{row.wall_s:>8.2f}{row.images_per_s:>11,.0f}{share:>7.1f}%"
            f"{row.transfer_s:>12.3f}{100 * (row.mfu or 0.0):>6.1f}%{100 * (row.train_acc or 0.0):>10.1f}%"
        )
    print()
    for name, value in figures.items():
        print(f"{name}: {value:.4g}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=positive_int, default=50_000, help="synthetic training images")
    parser.add_argument("--epochs", type=positive_int, default=5, help="the last one is reported (default 5)")
    parser.add_argument(
        "--peak-tflops", type=positive_float, help="the device's dense bf16 peak (default: Lightning's table)"
    )
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append", help="run only these configs")
    parser.add_argument("--json", type=Path, help="also write the rows and figures to this JSON file")
    parser.add_argument(
        "--accelerator", choices=("gpu", "cpu"), default="gpu", help="cpu: for the tests only"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print("benchmarks/epoch.py needs a CUDA GPU; none is available here, so there is nothing to measure.")
        return 0
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    # The compute floor is against the bf16 peak; each fit's MFU against the peak of its own precision
    # (Lightning's table, as EpochTimer reads it: TF32 for the fp32 lab configs), unless --peak-tflops.
    peak = args.peak_tflops * 1e12 if args.peak_tflops else get_available_flops(device, torch.bfloat16)
    # Counted once here and handed to every fit's EpochTimer, which would otherwise count it per fit.
    flops = training_flops_per_sample(ResNet18Classifier())
    timer_options = ["--timer.flops_per_sample", str(flops)]
    if args.peak_tflops:
        timer_options += ["--timer.peak_flops", str(peak)]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    known = f"bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else "bf16 peak unknown (give --peak-tflops)"
    print(f"{name}, {args.images} synthetic images, last of {args.epochs} epochs, {known}")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for config, options in CONFIGS.items():
            if args.only and config not in args.only:
                continue
            extra = timer_options if config not in UNTIMED else []
            rows.append(fit_one(config, options + extra, args, Path(root)))
            print(f"  {config}: done", flush=True)
    figures = summary(rows, args.images, flops, float(peak) if peak else None)
    print_rows(rows, figures)
    if args.json:
        args.json.write_text(
            json.dumps({"rows": [asdict(row) for row in rows], "figures": figures}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training epochs of ResNet-18 per configuration, on CUDA, measured side by side in one process.

    python benchmarks/epoch.py [--images 50000] [--epochs 5] [--lab-epochs N] [--warmup-epochs 1]
                               [--only NAME ...] [--peak-tflops N] [--json FILE]

Configurations, each run through the one fit path (cifarbench's LightningCLI), training only, same seed, in
the order given with --only (default: the order below):
- fast: --config fast (gpu pipeline, bf16-mixed, channels_last, torch.compile reduce-overhead, batch 512);
- lab: torchvision pipeline, fp32, batch 128, 4 workers (the lab's recipe);
- lab + gpu pipeline: the same with --data.pipeline gpu;
- fast, no EpochTimer: the fast config without the callback, timed by an outside clock: EpochTimer's own cost.

Each figure is the median of the steady epochs: those after the first --warmup-epochs, which carry worker
start-up, cuDNN autotuning, torch.compile and CUDA-graph recording. That first epochs' extra time (the first
epoch's wall time over the steady median) is reported apart, as the compile time for a compiled config.
--lab-epochs gives the eager lab configs fewer epochs than the fast ones (their epochs are ~6x longer). Times
come from EpochTimer (data loading: the loop waiting for the next batch, with the copy and the gpu pipeline's
augmentation); the wall column is an outside clock (epoch start to end, synchronized), the one that compares
the fast config with and without EpochTimer. MFU = training FLOPs per image x images/s over the peak of the
run's precision; the compute floor is an epoch's FLOPs over the device's bf16 peak (cifarbench's table, then
Lightning's, or --peak-tflops). With --json, the rows and figures are written after every configuration, so a
run cut short keeps the configurations it finished. Without CUDA it prints why and exits 0 (--accelerator cpu
runs it anyway, for its tests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from cifarbench.benchmarking import positive_float, positive_int, training_only_fit, wall_clock
from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.compile_watch import CompileWatch
from cifarbench.callbacks.flops import device_peak_flops, training_flops_per_sample
from cifarbench.model import ResNet18Classifier

CONFIGS: dict[str, list[str]] = {
    "fast": ["--config", "fast"],
    "lab": ["--data.pipeline", "torchvision", "--data.num_workers", "4", "--data.batch_size", "128"],
    "lab + gpu pipeline": ["--data.pipeline", "gpu", "--data.num_workers", "4", "--data.batch_size", "128"],
    "fast, no EpochTimer": ["--config", "fast"],
}
UNTIMED = {"fast, no EpochTimer"}
EAGER = {"lab", "lab + gpu pipeline"}  # --lab-epochs applies to these


@dataclass(frozen=True)
class Row:
    """One configuration: the medians of its steady epochs (EpochTimer's figures are absent without it)."""

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
    train_acc: float | None = None  # after the last epoch
    peak_memory_bytes: int | None = None
    epochs: int = 0
    steady_epochs: int = 0
    wall_per_epoch_s: list[float] = field(default_factory=list)  # every epoch, the outside clock
    wall_spread: float = 0.0  # the steady epochs' half interquartile range over their median
    first_epoch_extra_s: float = 0.0  # the first epoch over the steady median: compile, recording, warm-up
    graphs_per_epoch: list[int] | None = None  # CompileWatch: dynamo graphs compiled in each epoch
    cudagraph_skips: int | None = None  # CompileWatch: CUDA graphs skipped (reduce-overhead)


def median(values: list[float]) -> float:
    return statistics.median(values)


def relative_spread(values: list[float]) -> float:
    """Half the interquartile range over the median: the noise a difference between medians must beat."""
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return (quartiles[2] - quartiles[0]) / 2 / statistics.median(values)


def fit_one(name: str, options: list[str], args: argparse.Namespace, root: Path) -> Row:
    timed = name not in UNTIMED
    epochs = args.lab_epochs if name in EAGER and args.lab_epochs else args.epochs
    folder = root / name.replace(" ", "_").replace(",", "").replace("+", "plus")
    trainer = training_only_fit(options, args.images, epochs, folder, args.accelerator, timed=timed)
    walls = wall_clock(trainer).seconds
    warmup = min(args.warmup_epochs, len(walls) - 1)  # at least one epoch counts
    steady_walls = walls[warmup:]
    watch = next((c for c in trainer.callbacks if isinstance(c, CompileWatch)), None)
    common = {
        "train_acc": float(trainer.callback_metrics["train/acc_epoch"]),
        "epochs": len(walls),
        "steady_epochs": len(steady_walls),
        "wall_per_epoch_s": walls,
        "wall_spread": relative_spread(steady_walls),
        "first_epoch_extra_s": walls[0] - median(steady_walls) if warmup else 0.0,
        "graphs_per_epoch": list(watch.graphs_per_epoch) if watch else None,
        "cudagraph_skips": watch.skips if watch else None,
    }
    if not timed:
        return Row(name, median(steady_walls), **common)
    steady = next(c for c in trainer.callbacks if isinstance(c, EpochTimer)).history[warmup:]

    def of(attribute: str) -> float | None:
        values = [getattr(epoch, attribute) for epoch in steady]
        return None if any(value is None for value in values) else median(values)

    peak_memory = of("peak_memory_bytes")
    return Row(
        name,
        median(steady_walls),
        of("epoch_s"),
        of("samples_per_s"),
        of("data_loading_s"),
        of("transfer_s"),
        of("forward_s"),
        of("backward_s"),
        of("optimizer_s"),
        of("mfu"),
        peak_memory_bytes=None if peak_memory is None else int(peak_memory),
        **common,
    )


def summary(
    rows: list[Row], images: int, flops_per_image: float, peak_flops: float | None
) -> dict[str, float]:
    """What the GPU check judges: speed-up, data share, EpochTimer's cost, compile, CUDA graphs, floor."""
    by_name = {row.name: row for row in rows}
    out: dict[str, float] = {}
    if peak_flops:
        out["compute_floor_s"] = flops_per_image * images / peak_flops
    lab, fast, untimed = by_name.get("lab"), by_name.get("fast"), by_name.get("fast, no EpochTimer")
    if lab and fast and lab.epoch_s and fast.epoch_s:
        out["fast_speedup_over_lab"] = lab.epoch_s / fast.epoch_s
    if lab and lab.epoch_s:
        out["lab_epoch_s"] = lab.epoch_s
        if lab.data_loading_s is not None:
            out["lab_data_share"] = lab.data_loading_s / lab.epoch_s
    if fast and fast.epoch_s:
        out["fast_epoch_s"] = fast.epoch_s
        out["fast_first_epoch_extra_s"] = fast.first_epoch_extra_s
        if fast.images_per_s:
            out["fast_images_per_s"] = fast.images_per_s
        if fast.data_loading_s is not None:
            out["fast_data_share"] = fast.data_loading_s / fast.epoch_s
        if fast.mfu is not None:
            out["fast_mfu"] = fast.mfu
        if "compute_floor_s" in out:
            out["fast_over_compute_floor"] = fast.epoch_s / out["compute_floor_s"]
    if fast and fast.cudagraph_skips is not None:
        out["fast_cudagraph_skips"] = fast.cudagraph_skips
    if fast and fast.graphs_per_epoch is not None:
        out["fast_graphs_after_first_epoch"] = sum(fast.graphs_per_epoch[1:])
    gpu = by_name.get("lab + gpu pipeline")
    if gpu and gpu.epoch_s and gpu.data_loading_s is not None:
        out["gpu_pipeline_data_share"] = gpu.data_loading_s / gpu.epoch_s
    if fast and untimed:
        out["epoch_timer_overhead"] = fast.wall_s / untimed.wall_s - 1
        # The noise of that difference: a cost smaller than this cannot be told from zero.
        out["epoch_timer_overhead_noise"] = max(fast.wall_spread, untimed.wall_spread)
    return out


def print_rows(rows: list[Row], figures: dict[str, float]) -> None:
    print(
        f"\n{'config':<22}{'s/epoch':>9}{'wall s':>8}{'images/s':>11}{'data %':>8}{'transfer s':>12}"
        f"{'MFU':>7}{'train acc':>11}{'1st extra s':>13}"
    )
    for row in rows:
        accuracy, extra = f"{100 * (row.train_acc or 0.0):>10.1f}%", f"{row.first_epoch_extra_s:>13.1f}"
        if row.epoch_s is None:
            print(f"{row.name:<22}{'':>9}{row.wall_s:>8.2f}{'':>38}{accuracy}{extra}")
            continue
        share = 100 * (row.data_loading_s or 0.0) / row.epoch_s
        print(
            f"{row.name:<22}{row.epoch_s:>9.2f}{row.wall_s:>8.2f}{row.images_per_s:>11,.0f}{share:>7.1f}%"
            f"{row.transfer_s:>12.3f}{100 * (row.mfu or 0.0):>6.1f}%{accuracy}{extra}"
        )
    print()
    for name, value in figures.items():
        print(f"{name}: {value:.4g}")


def write_json(path: Path, rows: list[Row], figures: dict[str, float], header: dict[str, object]) -> None:
    """The rows and figures so far, replaced whole (written beside, then renamed: never half a file)."""
    partial = path.with_name(path.name + ".partial")
    document = {**header, "rows": [asdict(row) for row in rows], "figures": figures}
    partial.write_text(json.dumps(document, indent=2))
    partial.replace(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=positive_int, default=50_000, help="synthetic training images")
    parser.add_argument("--epochs", type=positive_int, default=5, help="epochs per config (default 5)")
    parser.add_argument("--lab-epochs", type=positive_int, help="epochs of the eager lab configs (--epochs)")
    parser.add_argument(
        "--warmup-epochs", type=int, default=1, help="first epochs left out of the medians (default 1)"
    )
    parser.add_argument(
        "--peak-tflops", type=positive_float, help="the device's dense bf16 peak (default: the peak table)"
    )
    parser.add_argument(
        "--only", choices=list(CONFIGS), action="append", help="run only these configs, in this order"
    )
    parser.add_argument("--json", type=Path, help="write the rows and figures here, after every config")
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
    # The compute floor is against the bf16 peak; each fit's MFU against the peak of its own precision (as
    # EpochTimer reads it: TF32 for the fp32 lab configs), unless --peak-tflops.
    peak = args.peak_tflops * 1e12 if args.peak_tflops else device_peak_flops(device, torch.bfloat16)
    # Counted once here and handed to every fit's EpochTimer, which would otherwise count it per fit.
    flops = training_flops_per_sample(ResNet18Classifier())
    timer_options = ["--timer.flops_per_sample", str(flops)]
    if args.peak_tflops:
        timer_options += ["--timer.peak_flops", str(peak)]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    known = f"bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else "bf16 peak unknown (give --peak-tflops)"
    print(
        f"{name}, {args.images} synthetic images, {args.epochs} epochs "
        f"({args.warmup_epochs} warm-up), {known}"
    )
    header = {"device": name, "images": args.images, "flops_per_image": flops, "bf16_peak_flops": peak}
    rows: list[Row] = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        for config in args.only or list(CONFIGS):
            extra = timer_options if config not in UNTIMED else []
            rows.append(fit_one(config, CONFIGS[config] + extra, args, Path(root)))
            figures = summary(rows, args.images, flops, float(peak) if peak else None)
            if args.json:
                write_json(args.json, rows, figures, header)
            print(f"  {config}: done", flush=True)
    print_rows(rows, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

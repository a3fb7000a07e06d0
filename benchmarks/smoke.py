"""The GPU check's first step: does a fit run on CUDA, and do EpochTimer's two CUDA clocks agree on it?

    python benchmarks/smoke.py [--images 8192] [--batches 30] [--epochs 3] [--batch-size 128] [--json FILE]

Two short fits of ResNet-18 (eager, fp32, the gpu pipeline, batch 128), one timed with CUDA events (one
synchronize per epoch, EpochTimer's default) and one with a synchronize at every boundary (the lab's method,
``--timer.sync true``). Their totals over the epochs after the first (which carries cuDNN's and CUDA's lazy
start-up) should agree within 5%: training and the epoch as such, data loading as a share of the epoch (it is
small with the gpu pipeline, so a relative difference of it says little). It also records what torch sees of
the device, and whether the peak table knows it (MFU). With --json the figures are written after each fit.
Without CUDA it prints why and exits 0 (--accelerator cpu runs it anyway, for its tests).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import torch

from cifarbench.benchmarking import positive_int, training_only_fit
from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.flops import device_peak_flops
from cifarbench.callbacks.records import EpochTiming

OPTIONS = ["--data.pipeline", "gpu", "--data.num_workers", "0"]
TOTALS = ("training_s", "data_loading_s", "epoch_s")


def device_facts(device: torch.device) -> dict[str, object]:
    """What torch and the installed packages say about this machine."""
    facts: dict[str, object] = {
        "torch": torch.__version__,
        "lightning": metadata.version("lightning"),
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        facts |= {
            "gpu": properties.name,
            "capability": f"{properties.major}.{properties.minor}",
            "memory_gib": round(properties.total_memory / 2**30, 1),
            "multiprocessors": properties.multi_processor_count,
        }
    for label, dtype in (("bf16", torch.bfloat16), ("tf32", "tfloat32"), ("fp32", torch.float32)):
        peak = device_peak_flops(device, dtype)
        facts[f"peak_tflops_{label}"] = None if peak is None else peak / 1e12
    return facts


def steady_totals(history: list[EpochTiming]) -> dict[str, float]:
    steady = history[1:] or history
    return {name: sum(getattr(epoch, name) for epoch in steady) for name in TOTALS}


def agreement(events: dict[str, float], synced: dict[str, float]) -> dict[str, float]:
    """Relative differences of the event clock's totals from the synchronized clock's."""
    return {
        "events_vs_sync_training": events["training_s"] / synced["training_s"] - 1,
        "events_vs_sync_epoch": events["epoch_s"] / synced["epoch_s"] - 1,
        # data loading is near zero with the gpu pipeline: its difference is judged against the epoch
        "events_vs_sync_data_loading_of_epoch": (events["data_loading_s"] - synced["data_loading_s"])
        / synced["epoch_s"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=positive_int, default=8192, help="synthetic images (default 8192)")
    parser.add_argument("--batches", type=positive_int, default=30, help="batches per epoch (default 30)")
    parser.add_argument("--epochs", type=positive_int, default=3, help="epochs per fit (default 3)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="default 128 (the lab's)")
    parser.add_argument("--json", type=Path, help="write the figures here, after each fit")
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu", help="cpu: for the tests")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print("benchmarks/smoke.py needs a CUDA GPU; none is available here, so there is nothing to measure.")
        return 0
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    document: dict[str, object] = {"machine": device_facts(device), "fits": {}, "figures": {}}
    print(json.dumps(document["machine"]), flush=True)
    options = [
        *OPTIONS,
        "--data.batch_size",
        str(args.batch_size),
        "--trainer.limit_train_batches",
        str(args.batches),
    ]
    with tempfile.TemporaryDirectory() as root:
        for sync in (False, True):
            trainer = training_only_fit(
                [*options, "--timer.sync", str(sync).lower()],
                args.images,
                args.epochs,
                Path(root) / f"sync_{sync}",
                args.accelerator,
            )
            timer = next(c for c in trainer.callbacks if isinstance(c, EpochTimer))
            label = "sync" if sync else "events"
            document["fits"][label] = {
                "clock": timer.history[-1].clock,
                "epochs": [asdict(epoch) for epoch in timer.history],
                "steady_totals": steady_totals(timer.history),
            }
            fits = document["fits"]
            if "events" in fits and "sync" in fits:
                document["figures"] = agreement(
                    fits["events"]["steady_totals"], fits["sync"]["steady_totals"]
                )
            if args.json:
                partial = args.json.with_name(args.json.name + ".partial")
                partial.write_text(json.dumps(document, indent=2))
                partial.replace(args.json)
            print(
                f"  {label} ({timer.history[-1].clock}): {document['fits'][label]['steady_totals']}",
                flush=True,
            )
    for name, value in document["figures"].items():
        print(f"{name}: {100 * value:+.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

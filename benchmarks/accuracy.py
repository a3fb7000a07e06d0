"""Training accuracy per epoch of the lab config and the fast config, trained side by side from one seed.

    python benchmarks/accuracy.py [--images 4096] [--epochs 4] [--accelerator cpu]

Configurations (each through the one fit path, on the same synthetic images, training only):
- lab: the CLI's defaults (torchvision pipeline, fp32, SGD lr 0.1, batch 128), 0 workers;
- fast: --config fast (batch 512, lr 0.4 after a 2-epoch warm-up);
- fast, no warm-up: the same with --lr_scheduler null.
On a CPU, torch.compile is left out of the fast configs (minutes to compile; it does not change the maths).

The fast config must reach the lab's training accuracy after the same epochs (within 2 points). With
batch 512 it takes 4x fewer steps per epoch, so a small set (a few steps per epoch) shows the lag of
fewer steps rather than the parity of the full 50k-image epoch; run it with --images 50000 on a GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cifarbench.benchmarking import positive_int, training_only_fit
from cifarbench.run_folder import ACC_TAG, read_scalars

CONFIGS: dict[str, list[str]] = {
    "lab": ["--data.num_workers", "0"],
    "fast": ["--config", "fast"],
    "fast, no warm-up": ["--config", "fast", "--lr_scheduler", "null"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=positive_int, default=4096, help="synthetic images (default 4096)")
    parser.add_argument("--epochs", type=positive_int, default=4, help="epochs per config (default 4)")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="default cpu")
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append", help="run only these configs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    compile_off = ["--model.compile", "null"] if args.accelerator == "cpu" else []
    print(f"{args.images} synthetic images, {args.epochs} epochs, {args.accelerator}")
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as root:
        for name, options in CONFIGS.items():
            if args.only and name not in args.only:
                continue
            run_dir = Path(root) / name.replace(" ", "_").replace(",", "")
            trainer = training_only_fit(
                options + compile_off, args.images, args.epochs, run_dir, args.accelerator
            )
            results[name] = [value for _, value in read_scalars(Path(trainer.logger.log_dir))[ACC_TAG]]
            print(f"{name:<18}" + "".join(f"{100 * acc:>8.1f}%" for acc in results[name]), flush=True)
    if "lab" in results:
        for name, accuracies in results.items():
            if name != "lab":
                gap = 100 * (accuracies[-1] - results["lab"][-1])
                print(f"{name} vs lab after {args.epochs} epochs: {gap:+.1f} points (target: within 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

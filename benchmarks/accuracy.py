"""Training accuracy per epoch of the lab config and the fast config, trained side by side from one seed.

    python benchmarks/accuracy.py [--images 4096] [--epochs 4] [--accelerator cpu] [--workers 0] [--json FILE]

Configurations (each through the one fit path, on the same synthetic images, training only):
- lab: the CLI's defaults (torchvision pipeline, fp32, SGD lr 0.1, batch 128), --workers workers (default 0);
- fast: --config fast (batch 512, lr 0.4 after a 2-epoch warm-up);
- fast, no warm-up: the same with --lr_scheduler null.
On a CPU, torch.compile is left out of the fast configs (minutes to compile; it does not change the maths).

The fast config must reach the lab's training accuracy after the same epochs (within 2 points). With
batch 512 it takes 4x fewer steps per epoch, so a small set (a few steps per epoch) shows the lag of
fewer steps rather than the parity of the full 50k-image epoch; run it with --images 50000 on a GPU (`make
gpu-accuracy`: the lab and fast configs, 5 epochs, 4 workers for the lab's). With --json, each config's
accuracies and the gap are written as soon as that config ends.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from cifarbench.benchmarking import positive_int, training_only_fit
from cifarbench.run_folder import ACC_TAG, read_scalars

CONFIGS: dict[str, list[str]] = {
    "lab": [],  # its --data.num_workers is --workers
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
    parser.add_argument("--workers", type=int, default=0, help="the lab config's DataLoader workers")
    parser.add_argument("--json", type=Path, help="write the accuracies and the gap here after every config")
    return parser.parse_args(argv)


def gaps(results: dict[str, list[float]]) -> dict[str, float]:
    """Each config's last-epoch training accuracy minus the lab's, in points."""
    if "lab" not in results:
        return {}
    return {
        f"{name}_minus_lab_train_acc_points".replace(", ", "_").replace(" ", "_").replace("-", "_"): 100
        * (accuracies[-1] - results["lab"][-1])
        for name, accuracies in results.items()
        if name != "lab"
    }


def write_json(path: Path, args: argparse.Namespace, results: dict[str, list[float]]) -> None:
    document = {"images": args.images, "epochs": args.epochs, "train_acc": results, "figures": gaps(results)}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2))
    partial.replace(path)  # never half a file, even when the run is stopped


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
            workers = ["--data.num_workers", str(args.workers)] if name == "lab" else []
            trainer = training_only_fit(
                options + workers + compile_off, args.images, args.epochs, run_dir, args.accelerator
            )
            results[name] = [value for _, value in read_scalars(Path(trainer.logger.log_dir))[ACC_TAG]]
            print(f"{name:<18}" + "".join(f"{100 * acc:>8.1f}%" for acc in results[name]), flush=True)
            if args.json:
                write_json(args.json, args, results)
    for name, gap in zip([name for name in results if name != "lab"], gaps(results).values(), strict=True):
        print(f"{name} vs lab after {args.epochs} epochs: {gap:+.1f} points (target: within 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

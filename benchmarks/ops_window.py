"""The operator window on the fast config and on the lab config: GPU busy, launches per step, top operations.

One short fit per config with ``--timer.ops true`` (the window in the second epoch: 1 step waited, 2 warm-up
steps, 3 recorded), training only. For each it reports how busy the GPU was in the window, the kernel launches
per step, the mean kernel, whether that is launch-bound (the verdict's ``launch_bound`` finding), and the top
operations of forward and backward. The JSON is rewritten after each config, so a run cut short keeps what it
measured.

    python benchmarks/ops_window.py [--images 4096] [--only fast|lab] [--json FILE] [--accelerator gpu]
                                    [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from cifarbench.benchmarking import positive_int, training_only_fit
from cifarbench.callbacks.opwindow import OpWindow

CONFIGS: dict[str, list[str]] = {
    "fast": ["--config", "fast"],
    "lab": ["--data.pipeline", "torchvision", "--data.num_workers", "4", "--data.batch_size", "128"],
}
WINDOW = ["--timer.ops", "true", "--trainer.limit_train_batches", "12"]


def window_figures(
    name: str, options: list[str], images: int, accelerator: str, root: Path
) -> dict[str, Any]:
    trainer = training_only_fit([*options, *WINDOW], images, 2, root / name, accelerator=accelerator)
    window = next(callback for callback in trainer.callbacks if isinstance(callback, OpWindow))
    summary = window.summary
    if summary is None:
        return {"figures": {f"{name}_ops_recorded_steps": 0.0}, "top": {}}
    top = {phase: [row.operation for row in summary.top(phase)] for phase in ("forward", "backward")}
    figures: dict[str, Any] = {f"{name}_ops_recorded_steps": float(summary.recorded_steps)}
    if summary.gpu_busy is not None:
        figures |= {
            f"{name}_gpu_busy": summary.gpu_busy,
            f"{name}_launches_per_step": summary.launches_per_step,
            f"{name}_mean_kernel_us": summary.mean_kernel_us,
            f"{name}_launch_bound": float(summary.launch_bound),
        }
    return {"figures": figures, "top": top}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=positive_int, default=4096)
    parser.add_argument(
        "--only", action="append", choices=sorted(CONFIGS), help="configs to run (default all)"
    )
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--json", help="write the figures here after each config")
    parser.add_argument(
        "--batch-size", type=positive_int, help="override each config's batch (a CPU trial run)"
    )
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"figures": {}, "top": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only or list(CONFIGS):
            options = [
                *CONFIGS[name],
                *(["--data.batch_size", str(args.batch_size)] if args.batch_size else []),
            ]
            found = window_figures(name, options, args.images, args.accelerator, Path(folder))
            result["figures"] |= found.get("figures", {})
            result["top"][name] = found.get("top", {})
            print(f"[ops_window] {name}: {json.dumps(found)}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

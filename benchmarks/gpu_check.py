"""Every GPU claim of cifarbench checked in one command, with the figures written to benchmarks/results/.

    python3 benchmarks/gpu_check.py [--lab] [--quick]        # `make gpu-check`, `make gpu-lab`

It runs, one after the other, streaming their output and keeping it:
1. the CUDA tests: CUDA-event and synchronize-based timing agree within 5%, the phases too;
2. benchmarks/epoch.py on 50,000 images for 5 epochs: the lab config, the lab config with the gpu pipeline,
   the fast config, and the fast config without EpochTimer (its cost on a GPU epoch); s/epoch, images/s, data
   share, MFU, speed-up, the compute floor, and the training accuracy after 5 epochs (the parity check);
3. benchmarks/dataloading.py on 50,000 images: the pipelines' throughput, the gpu pipeline on the device;
4. benchmarks/overhead.py on CUDA: EpochTimer's cost per step, side by side.
Then it judges the targets and writes benchmarks/results/<gpu name>.md: the machine line, every command, its
output, and each target met or missed. With --lab it runs `lab all` on the 50,000 synthetic images instead,
sized to finish in under 10 minutes (2 epochs of 100 batches per run, compile modes default and
reduce-overhead), and keeps report.md, the parts' tables and PNGs in benchmarks/results/lab-<gpu name>/.

It runs with the machine's own python, no venv: it needs torch, torchvision, lightning, torchmetrics,
tensorboard, rich, pytest and jsonargparse (matplotlib too for --lab). On a machine without a package
registry, put jsonargparse's wheels on PYTHONPATH first (README, "Checking the GPU claims"). Without CUDA it
says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# The targets (issue "Prove it on a GPU"): figure in epoch.py's summary -> (test, what it means).
TARGETS: dict[str, tuple[str, float, str]] = {
    "fast_epoch_s": ("<=", 1.0, "the fast config's 50,000-image epoch takes at most 1.0 s"),
    "fast_speedup_over_lab": (">=", 5.0, "the fast config is at least 5x the lab config on the same GPU"),
    "gpu_pipeline_data_share": ("<", 0.01, "data loading is under 1% of the epoch with the gpu pipeline"),
    "epoch_timer_overhead": ("<", 0.01, "EpochTimer costs under 1% of the fast config's epoch"),
    "fast_minus_lab_train_acc_points": (
        "abs<=",
        2.0,
        "the fast config's training accuracy after 5 epochs is within 2 points of the lab config's",
    ),
}


@dataclass
class Step:
    title: str
    command: list[str]
    seconds: float = 0.0
    returncode: int = 0
    output: str = ""


def run(step: Step, timeout_s: float) -> Step:
    """Run ``step.command`` from the repository, streaming its output while keeping it."""
    print(f"\n[gpu-check] {step.title}: {' '.join(step.command)}", flush=True)
    start = time.perf_counter()
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        step.command,
        cwd=REPO,
        env=environment,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a kill reaches its loader and compile workers
    )
    # A command past its time is killed (its output so far is kept), so the check always ends and reports.
    watchdog = threading.Timer(timeout_s, lambda: os.killpg(process.pid, signal.SIGKILL))
    watchdog.start()
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    watchdog.cancel()
    step.returncode = process.wait()
    if step.returncode < 0:
        lines.append(f"\n[gpu-check] stopped after {timeout_s:.0f} s (signal {-step.returncode})\n")
    step.seconds = time.perf_counter() - start
    step.output = "".join(lines)
    print(f"[gpu-check] {step.title}: exit {step.returncode} in {step.seconds:.1f} s", flush=True)
    return step


def judge(figures: dict[str, float], cuda_tests: Step) -> list[tuple[str, str, str]]:
    """(target, measured, met?) for each target; a target whose figure is missing is reported as missing."""
    verdicts = [
        (
            "CUDA event- and sync-based timing agree within 5% (phases too)",
            f"pytest exit {cuda_tests.returncode}",
            "met" if cuda_tests.returncode == 0 and "passed" in cuda_tests.output else "missed",
        )
    ]
    for key, (test, bound, meaning) in TARGETS.items():
        value = figures.get(key)
        if value is None:
            verdicts.append((meaning, "not measured", "missed"))
            continue
        met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound, "abs<=": abs(value) <= bound}[
            test
        ]
        verdicts.append((meaning, f"{key} = {value:.4g}", "met" if met else "missed"))
    return verdicts


def machine_line(gpu: str) -> str:
    return (
        f"{gpu}; {os.cpu_count()} CPUs; torch {torch.__version__}; CUDA {torch.version.cuda}; "
        f"Python {platform.python_version()}"
    )


def write_results(
    path: Path, gpu: str, steps: list[Step], verdicts: list[tuple[str, str, str]], total_s: float
) -> Path:
    lines = [
        f"# GPU check: {gpu}",
        "",
        f"Machine: {machine_line(gpu)}",
        f"Measured {time.strftime('%Y-%m-%d')}: `python3 benchmarks/gpu_check.py` ({total_s / 60:.1f} min).",
        "",
        "| target | measured | |",
        "| --- | --- | --- |",
        *(f"| {target} | {measured} | {met} |" for target, measured, met in verdicts),
    ]
    for step in steps:
        lines += [
            "",
            f"## {step.title}",
            "",
            f"`{' '.join(step.command)}` (exit {step.returncode}, {step.seconds:.1f} s)",
            "",
            "```",
            step.output.rstrip(),
            "```",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def keep_lab_report(out: Path, keep: Path) -> None:
    """report.md and each part's markdown, CSV and PNGs (not the runs: event files and logs)."""
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    shutil.copy2(out / "report.md", keep / "report.md")
    for path in out.glob("*/*"):
        if path.suffix in {".md", ".csv", ".png"}:
            (keep / path.parent.name).mkdir(exist_ok=True)
            shutil.copy2(path, keep / path.parent.name / path.name)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def check_steps(
    python: str, images: str, epochs: str, epoch_json: Path
) -> list[tuple[str, list[str], float]]:
    """(title, command, seconds it may take): together under 9.5 minutes, the device's limit being 10."""
    return [
        ("CUDA tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "-k", "cuda",
                        "tests/test_timing.py", "tests/test_anatomy.py"], 120),
        ("Epochs per configuration", [python, "benchmarks/epoch.py", "--images", images, "--epochs", epochs,
                                      "--json", str(epoch_json)], 330),
        ("Data pipelines", [python, "benchmarks/dataloading.py", "--images", images, "--workers", "4"], 60),
        ("EpochTimer's cost per step", [python, "benchmarks/overhead.py", "--device", "cuda", "--rounds", "3",
                                        "--resnet-steps", "0"], 60),
    ]  # fmt: skip


def lab_step(python: str, images: str, out: Path) -> tuple[str, list[str], float]:
    """`lab all` on the synthetic set, sized for one 10-minute command: 2 epochs of 100 batches per run."""
    return (
        "The lab, all parts",
        [python, "-m", "cifarbench", "lab", "all", "--out", str(out), "--modes", "default,reduce-overhead",
         "--trainer.accelerator", "gpu", "--data.synthetic", images, "--trainer.max_epochs", "2",
         "--trainer.limit_train_batches", "100", "--trainer.limit_val_batches", "20"],
        570,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", action="store_true", help="run `lab all` instead and keep its report")
    parser.add_argument(
        "--quick", action="store_true", help="5,000 images and 2 epochs: to try the command out"
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to check.")
        return 0
    gpu = torch.cuda.get_device_name(0)
    images, epochs = ("5000", "2") if args.quick else ("50000", "5")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        if args.lab:
            out, keep = Path(scratch) / "lab", RESULTS / f"lab-{slug(gpu)}"
            title, command, limit_s = lab_step(sys.executable, images, out)
            step = run(Step(title, command), limit_s)
            if (out / "report.md").is_file():
                keep_lab_report(out, keep)
                print(f"[gpu-check] the lab's report -> {keep / 'report.md'}")
            return step.returncode
        epoch_json = Path(scratch) / "epoch.json"
        path = RESULTS / f"{slug(gpu)}{'-quick' if args.quick else ''}.md"
        steps: list[Step] = []
        for title, command, limit_s in check_steps(sys.executable, images, epochs, epoch_json):
            steps.append(run(Step(title, command), limit_s))
            figures = json.loads(epoch_json.read_text())["figures"] if epoch_json.is_file() else {}
            # Written after every step: a run cut short still leaves what it measured.
            write_results(path, gpu, steps, judge(figures, steps[0]), time.perf_counter() - start)
    verdicts = judge(figures, steps[0])
    print(f"\n[gpu-check] {sum(met == 'met' for *_, met in verdicts)}/{len(verdicts)} targets met -> {path}")
    return 0 if all(step.returncode == 0 for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Every GPU claim of cifarbench checked in one command, most decisive first, inside a lent GPU's minutes.

    python3 benchmarks/gpu_check.py [--accuracy | --lab] [--results-dir DIR] [--watchdog-s S] [--quick]

`make gpu-check` (5 minutes on one H200, stopped by a watchdog at 5.5) runs, in this order, so that a run cut
short still answers the most important questions:
1. smoke (~30 s): a short fit on CUDA timed by CUDA events and by a synchronize per boundary, compared;
2. lab vs fast: the lab config against the fast config on 50,000 images (s/epoch, images/s, speed-up, data
   share, MFU), medians of the steady epochs, the fast config's compile time reported apart;
3. EpochTimer's cost: the fast config without and with EpochTimer, medians of several steady epochs each;
4. the gpu pipeline's data share (the lab config with --data.pipeline gpu);
5. the operator window on the fast and the lab config (GPU busy, launches per step, launch-bound or not);
6. EpochTimer's cost per step, and 7. the CUDA timing tests.
`make gpu-accuracy` (--accuracy, 5 minutes): the fast config's training accuracy after 5 epochs on 50,000
images against the lab config's, then the data pipelines' throughput. `make gpu-lab` (--lab, 8 minutes):
`lab all` on 50,000 synthetic images; its report.md, tables and PNGs are kept.

Each step is a child process with a time limit (its estimate beside it below); the watchdog stops the whole
check at its limit, whatever it is doing. Results go to --results-dir (default $OUT/gpu-check when $OUT is
set, else benchmarks/results/): <gpu>[-accuracy|-lab].md (the machine, the targets, every step's estimate
against its measured time, every command and its output) and .json (the same figures), rewritten as each step
ends, with each step's own JSON in <gpu>[-...]/. It runs with the machine's own python, no venv: it needs
torch, torchvision, lightning, torchmetrics, tensorboard, rich, pytest and jsonargparse (matplotlib too for
--lab). On a machine without a package registry, put jsonargparse's wheels on PYTHONPATH first (README,
"Checking the GPU claims"). Without CUDA it says so in one line and exits 0.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# What the estimates are made of (the figures for one H200; the results file shows how they held up).
FLOP_PER_IMAGE = 3.33e9  # one training step (forward and backward) of ResNet-18 on a 32x32 image
H200_BF16_FLOPS = 790e12  # a large bf16 matrix product measured on one H200 (the datasheet's dense peak: 989)
IMAGES = 50_000
COMPUTE_FLOOR_S = IMAGES * FLOP_PER_IMAGE / H200_BF16_FLOPS  # 0.21 s: an epoch at the matmul rate
FAST_EPOCH_S = 0.8  # the fast config's target, about 26% of that rate
LAB_EPOCH_S = 6 * FAST_EPOCH_S  # the target ratio: eager fp32 (TF32 convolutions), batch 128, 391 steps
START_S = 10.0  # a child process: python, torch, lightning and jsonargparse imported, CUDA started
FIT_START_S = 4.0  # one fit: the Trainer, 50,000 synthetic images made, the first batches
COMPILE_COLD_S = 60.0  # torch.compile reduce-overhead of ResNet-18, forward and backward, empty caches
COMPILE_WARM_S = 15.0  # the same again, inductor's on-disk caches filled by an earlier step

CHECK_BUDGET_S = 300.0  # make gpu-check
ACCURACY_BUDGET_S = 300.0  # make gpu-accuracy
LAB_BUDGET_S = 480.0  # make gpu-lab
WATCHDOG_MARGIN_S = 30.0  # the watchdog stops a check this long after its budget

# (figure, test, bound, what it means): judged on the figures the steps wrote.
TARGETS: list[tuple[str, str, float, str]] = [
    ("events_vs_sync_training", "abs<=", 0.05, "CUDA-event and synchronize-based training totals within 5%"),
    ("events_vs_sync_epoch", "abs<=", 0.05, "CUDA-event and synchronize-based epoch totals within 5%"),
    ("fast_epoch_s", "<=", FAST_EPOCH_S, "the fast config's 50,000-image epoch takes at most 0.8 s"),
    ("fast_speedup_over_lab", ">=", 6.0, "the fast config is at least 6x the lab config on the same GPU"),
    ("fast_cudagraph_skips", "==", 0, "CUDA graphs kept with reduce-overhead (CompileWatch counts 0 skips)"),
    ("epoch_timer_overhead", "<", 0.01, "EpochTimer costs under 1% of the fast config's epoch"),
    ("gpu_pipeline_data_share", "<", 0.01, "data loading is under 1% of the epoch with the gpu pipeline"),
]
ACCURACY_TARGETS: list[tuple[str, str, float, str]] = [
    (
        "fast_minus_lab_train_acc_points",
        "abs<=",
        2.0,
        "the fast config's training accuracy after 5 epochs is within 2 points of the lab config's",
    ),
]


@dataclass
class Step:
    """One child process of a check: what it runs, what it was expected to take, and what it did."""

    title: str
    command: list[str]
    limit_s: float  # killed past this (or at the watchdog, if that comes first)
    estimate_s: float = 0.0
    basis: str = ""  # how the estimate was made
    figures_json: str | None = None  # the file its figures are in (a path in the results folder)
    provides: tuple[str, ...] = ()  # the figures taken from that file: a later step never overwrites them
    seconds: float = 0.0
    returncode: int | None = None  # None: not run
    status: str = "not run"
    output: str = ""


@dataclass
class Check:
    name: str  # "check", "accuracy", "lab"
    budget_s: float
    steps: list[Step]
    targets: list[tuple[str, str, float, str]] = field(default_factory=list)


def python_step(title: str, script: list[str], estimate_s: float, limit_s: float, basis: str,
                figures_json: str | None = None, provides: tuple[str, ...] = ()) -> Step:  # fmt: skip
    return Step(title, [sys.executable, *script], limit_s, estimate_s, basis, figures_json, provides)


def check_plan(folder: Path, images: int = IMAGES, quick: bool = False) -> Check:
    """The 5-minute check, most decisive first. Each estimate is written beside its limit."""
    scale = images / IMAGES
    fast, lab = FAST_EPOCH_S * scale, LAB_EPOCH_S * scale
    n = str(images)
    fast_epochs, lab_epochs, timer_epochs = ("2", "2", "3") if quick else ("5", "3", "8")
    steps = [
        python_step(
            "1. Smoke: a fit on CUDA, CUDA events against synchronize",
            ["benchmarks/smoke.py", "--json", str(folder / "1-smoke.json")],
            estimate_s=START_S + 2 * (FIT_START_S + 3 * 30 * 0.012),
            limit_s=45,
            basis="start 10 s + 2 fits x (4 s + 3 epochs x 30 steps x 12 ms, eager fp32 batch 128)",
            figures_json="1-smoke.json",
            provides=("events_vs_sync_training", "events_vs_sync_epoch",
                      "events_vs_sync_data_loading_of_epoch"),
        ),
        python_step(
            "2. The lab config against the fast config",
            ["benchmarks/epoch.py", "--images", n, "--epochs", fast_epochs, "--lab-epochs", lab_epochs,
             "--only", "fast", "--only", "lab", "--json", str(folder / "2-lab-vs-fast.json")],
            estimate_s=START_S + FIT_START_S + COMPILE_COLD_S + int(fast_epochs) * fast
            + FIT_START_S + int(lab_epochs) * lab,
            limit_s=150,
            basis=f"start 10 s + fast (4 s + compile 60 s + {fast_epochs} x {fast:.2f} s) "
            f"+ lab (4 s + {lab_epochs} x {lab:.1f} s)",
            figures_json="2-lab-vs-fast.json",
            provides=("fast_epoch_s", "fast_speedup_over_lab", "lab_epoch_s", "lab_data_share",
                      "fast_images_per_s",
                      "fast_data_share", "fast_mfu", "fast_first_epoch_extra_s", "fast_cudagraph_skips",
                      "fast_graphs_after_first_epoch", "compute_floor_s", "fast_over_compute_floor"),
        ),
        python_step(
            "3. EpochTimer's cost on the fast config's epoch, off and on",
            ["benchmarks/epoch.py", "--images", n, "--epochs", timer_epochs, "--warmup-epochs", "2",
             "--only", "fast, no EpochTimer", "--only", "fast", "--json", str(folder / "3-epoch-timer.json")],
            estimate_s=START_S + 2 * (FIT_START_S + COMPILE_WARM_S + int(timer_epochs) * fast),
            limit_s=80,
            basis=f"start 10 s + 2 fits x (4 s + compile from cache 15 s + {timer_epochs} x {fast:.2f} s)",
            figures_json="3-epoch-timer.json",
            provides=("epoch_timer_overhead", "epoch_timer_overhead_noise"),
        ),
        python_step(
            "4. The gpu pipeline's data share",
            ["benchmarks/epoch.py", "--images", n, "--epochs", "2", "--only", "lab + gpu pipeline",
             "--json", str(folder / "4-gpu-pipeline.json")],
            estimate_s=START_S + FIT_START_S + 2 * lab,
            limit_s=40,
            basis=f"start 10 s + 4 s + 2 x {lab:.1f} s (eager fp32, batch 128, the gpu pipeline)",
            figures_json="4-gpu-pipeline.json",
            provides=("gpu_pipeline_data_share",),
        ),
        python_step(
            "5. The operator window on the fast and the lab config: GPU busy, launches per step",
            ["benchmarks/ops_window.py", "--images", "4096", "--json", str(folder / "5-ops-window.json")],
            estimate_s=START_S + 2 * FIT_START_S + COMPILE_WARM_S + 20,
            limit_s=60,
            basis="start 10 s + 2 fits x 4 s + compile from cache 15 s + 2 x 24 steps and profiling (20 s)",
            figures_json="5-ops-window.json",
            provides=("fast_gpu_busy", "fast_launches_per_step", "lab_gpu_busy", "lab_launches_per_step",
                      "lab_launch_bound", "fast_launch_bound"),
        ),
        python_step(
            "6. EpochTimer's cost per step",
            ["benchmarks/overhead.py", "--device", "cuda", "--rounds", "3", "--resnet-steps", "0"],
            estimate_s=START_S + 15,
            limit_s=35,
            basis="start 10 s + 3 rounds x 5 variants x 1000 steps of ~1 ms",
        ),
        python_step(
            "7. CUDA timing tests (events and synchronize, phases too)",
            ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", "-k", "cuda",
             "tests/test_timing.py", "tests/test_anatomy.py"],
            estimate_s=START_S + 10,
            limit_s=40,
            basis="start 10 s + 2 tests of a few short fits",
        ),
    ]  # fmt: skip
    return Check("check", CHECK_BUDGET_S, steps, TARGETS)


def accuracy_plan(folder: Path, images: int = IMAGES, quick: bool = False) -> Check:
    epochs = "2" if quick else "5"
    scale = images / IMAGES
    step = python_step(
        "Accuracy parity: the fast config against the lab config",
        ["benchmarks/accuracy.py", "--images", str(images), "--epochs", epochs, "--accelerator", "gpu",
         "--workers", "4", "--only", "lab", "--only", "fast", "--json", str(folder / "accuracy.json")],
        estimate_s=START_S + FIT_START_S + int(epochs) * LAB_EPOCH_S * scale
        + FIT_START_S + COMPILE_COLD_S + int(epochs) * FAST_EPOCH_S * scale,
        limit_s=ACCURACY_BUDGET_S,
        basis=f"start 10 s + lab (4 s + {epochs} x {LAB_EPOCH_S * scale:.1f} s) "
        f"+ fast (4 s + compile 60 s + {epochs} x {FAST_EPOCH_S * scale:.2f} s)",
        figures_json="accuracy.json",
        provides=("fast_minus_lab_train_acc_points",),
    )  # fmt: skip
    pipelines = python_step(
        "The data pipelines' throughput (after the accuracy, if time is left)",
        ["benchmarks/dataloading.py", "--images", str(images), "--workers", "4"],
        estimate_s=START_S + 20 * scale,
        limit_s=40,
        basis="start 10 s + 50,000 images through 4 pipelines (torchvision at ~7,000 images/s: 7 s)",
    )
    return Check("accuracy", ACCURACY_BUDGET_S, [step, pipelines], ACCURACY_TARGETS)


def lab_plan(out: Path, images: int = IMAGES) -> Check:
    """`lab all` on the synthetic set: 2 epochs of 60 batches a run, to fit 8 minutes."""
    runs = 16  # c2 1, c3 ~4, c4 2, c5 2 (one on the CPU), c6 3, c7 2, c8 3 (eager and two compile modes)
    step = python_step(
        "The lab, all parts",
        ["-m", "cifarbench", "lab", "all", "--out", str(out), "--modes", "default,reduce-overhead",
         "--trainer.accelerator", "gpu", "--data.synthetic", str(images), "--trainer.max_epochs", "2",
         "--trainer.limit_train_batches", "60", "--trainer.limit_val_batches", "10"],
        estimate_s=START_S + runs * (FIT_START_S + 2 * 60 * 0.015) + 2 * COMPILE_COLD_S + 60,
        limit_s=LAB_BUDGET_S - 15,
        basis=f"start 10 s + {runs} runs x (4 s + 2 x 60 steps x 15 ms) + 2 cold compiles x 60 s "
        "+ c5's CPU run ~60 s",
    )  # fmt: skip
    return Check("lab", LAB_BUDGET_S, [step])


class Watchdog:
    """Stops a check at its time limit, whatever it is doing.

    At the limit it kills the running step's process group; the check then marks the steps left as not run and
    writes its results. Should the check itself not end within ``grace_s`` after that (stuck outside a step),
    the watchdog calls ``on_hang`` (the last results) and ends the process with exit status 124, as `timeout`
    does.
    """

    def __init__(self, limit_s: float, on_hang: Callable[[], None] = lambda: None, grace_s: float = 10.0):
        self.limit_s = limit_s
        self.on_hang = on_hang
        self.grace_s = grace_s
        self.expired = False
        self._start = time.monotonic()
        self._process: subprocess.Popen[str] | None = None
        self._done = threading.Event()
        self._timer = threading.Timer(limit_s, self._expire)
        self._timer.daemon = True

    def start(self) -> Watchdog:
        self._start = time.monotonic()
        self._timer.start()
        return self

    def remaining(self) -> float:
        return self.limit_s - (time.monotonic() - self._start)

    def watch(self, process: subprocess.Popen[str] | None) -> None:
        self._process = process

    def finish(self) -> None:
        self._done.set()
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        print(f"\n[gpu-check] watchdog: {self.limit_s:.0f} s are up, stopping", flush=True)
        kill(self._process)
        if not self._done.wait(self.grace_s):
            self.on_hang()
            print("[gpu-check] watchdog: the check did not stop by itself; exiting", flush=True)
            os._exit(124)


def kill(process: subprocess.Popen[str] | None) -> None:
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its loader and compile workers too
        except ProcessLookupError:
            pass


def run_step(step: Step, watchdog: Watchdog) -> Step:
    """Run ``step.command`` from the repository, streaming its output while keeping it."""
    limit_s = min(step.limit_s, watchdog.remaining())
    # When the watchdog's time left is the tighter limit, a stop at it is the watchdog's (whichever timer
    # fires first: they are due together).
    capped_by_watchdog = limit_s < step.limit_s
    if limit_s <= 1:
        step.status = "not run: the watchdog's time was spent"
        return step
    print(f"\n[gpu-check] {step.title} (estimate {step.estimate_s:.0f} s, limit {limit_s:.0f} s): "
          f"{' '.join(step.command)}", flush=True)  # fmt: skip
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
    watchdog.watch(process)
    timer = threading.Timer(limit_s, kill, [process])
    timer.start()
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    timer.cancel()
    step.returncode = process.wait()
    watchdog.watch(None)
    step.seconds = time.perf_counter() - start
    if step.returncode < 0:
        why = "the watchdog" if watchdog.expired or capped_by_watchdog else f"its limit of {limit_s:.0f} s"
        step.status = f"stopped by {why} (signal {-step.returncode})"
        lines.append(f"\n[gpu-check] {step.status}\n")
    else:
        step.status = "passed" if step.returncode == 0 else f"failed (exit {step.returncode})"
    step.output = "".join(lines)
    print(f"[gpu-check] {step.title}: {step.status} in {step.seconds:.1f} s", flush=True)
    return step


def collect_figures(check: Check, folder: Path) -> dict[str, float]:
    """Each step's own figures, from the JSON it wrote (even a step that was stopped: it wrote as it went)."""
    figures: dict[str, float] = {}
    for step in check.steps:
        path = folder / step.figures_json if step.figures_json else None
        if path is None or not path.is_file():
            continue
        try:
            written = json.loads(path.read_text()).get("figures", {})
        except ValueError:
            continue
        figures |= {key: written[key] for key in step.provides if key in written}
    return figures


def judge(
    targets: list[tuple[str, str, float, str]], figures: dict[str, float]
) -> list[tuple[str, str, str]]:
    """(target, measured, met?) for each target; one whose figure is missing is "not measured"."""
    verdicts = []
    for key, test, bound, meaning in targets:
        value = figures.get(key)
        if value is None:
            verdicts.append((meaning, "not measured", "missed"))
            continue
        met = {
            "<=": value <= bound,
            ">=": value >= bound,
            "<": value < bound,
            "==": value == bound,
            "abs<=": abs(value) <= bound,
        }[test]
        verdicts.append((meaning, f"{key} = {value:.4g}", "met" if met else "missed"))
    return verdicts


def driver_version() -> str:
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=15,
        )  # fmt: skip
        return (
            result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else "?"
        )
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_line(gpu: str) -> str:
    import torch

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"{gpu}; driver {driver_version()}; torch {torch.__version__} (CUDA {torch.version.cuda}); lightning "
        f"{version('lightning')}; {os.cpu_count()} CPUs; Python {platform.python_version()}"
    )


def estimate_table(check: Check) -> list[str]:
    rows = [
        "| step | estimate s | measured s | limit s | status | estimate made of |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for step in check.steps:
        measured = f"{step.seconds:.1f}" if step.returncode is not None else "-"
        rows.append(
            f"| {step.title} | {step.estimate_s:.0f} | {measured} | {step.limit_s:.0f} | {step.status} | "
            f"{step.basis} |"
        )
    total = sum(step.estimate_s for step in check.steps)
    spent = sum(step.seconds for step in check.steps)
    rows.append(f"| all | {total:.0f} | {spent:.1f} | {check.budget_s:.0f} | | |")
    return rows


def write_results(path: Path, check: Check, machine: str, figures: dict[str, float], total_s: float,
                  stopped: bool = False) -> Path:  # fmt: skip
    """<path>.md for people and <path>.json for scripts; rewritten whole after every step."""
    verdicts = judge(check.targets, figures)
    command = (
        "python3 benchmarks/gpu_check.py"
        + {"check": "", "accuracy": " --accuracy", "lab": " --lab"}[check.name]
    )
    lines = [
        f"# GPU {check.name}: {machine.split(';')[0]}",
        "",
        f"Machine: {machine}",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')}: `{command}` ({total_s / 60:.1f} min"
        + (", stopped by the watchdog)" if stopped else ")"),
        "",
    ]
    if verdicts:
        lines += ["| target | measured | |", "| --- | --- | --- |"]
        lines += [f"| {target} | {measured} | {met} |" for target, measured, met in verdicts]
        lines.append("")
    lines += ["## Time: estimate against measurement", "", *estimate_table(check), ""]
    if figures:
        lines += ["## Figures", "", *(f"- {key}: {value:.4g}" for key, value in figures.items()), ""]
    for step in check.steps:
        lines += [
            f"## {step.title}",
            "",
            f"`{' '.join(step.command)}` ({step.status}, {step.seconds:.1f} s)",
            "",
        ]
        if step.output:
            lines += ["```", step.output.rstrip(), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".md").write_text("\n".join(lines))
    document = {
        "check": check.name,
        "machine": machine,
        "total_s": total_s,
        "stopped_by_watchdog": stopped,
        "figures": figures,
        "targets": [{"target": t, "measured": m, "verdict": v} for t, m, v in verdicts],
        "steps": [
            {key: value for key, value in asdict(step).items() if key != "output"} for step in check.steps
        ],
    }
    path.with_suffix(".json").write_text(json.dumps(document, indent=2))
    return path.with_suffix(".md")


def run_check(check: Check, results: Path, machine: str, watchdog_s: float,
              after_step: Callable[[Step], None] = lambda step: None) -> bool:  # fmt: skip
    """Runs the steps in order under one watchdog, writing the results after each; True if all passed."""
    folder = results.parent / results.name  # each step's own JSON lies in <results>/
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    lock = threading.Lock()

    def write(stopped: bool = False) -> None:
        with lock:
            figures = collect_figures(check, folder)
            write_results(results, check, machine, figures, time.perf_counter() - start, stopped)

    watchdog = Watchdog(watchdog_s, on_hang=lambda: write(stopped=True)).start()
    write()  # the machine line and the plan, before anything can go wrong
    try:
        for step in check.steps:
            run_step(step, watchdog)
            after_step(step)
            write(stopped=watchdog.expired)
    finally:
        watchdog.finish()
    write(stopped=watchdog.expired)
    return all(step.returncode == 0 for step in check.steps)


def keep_lab_report(out: Path, keep: Path) -> None:
    """report.md and each part's markdown, CSV and PNGs (not the runs: event files and logs); what exists."""
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    if (out / "report.md").is_file():
        shutil.copy2(out / "report.md", keep / "report.md")
    for path in out.glob("*/*"):
        if path.suffix in {".md", ".csv", ".png"}:
            (keep / path.parent.name).mkdir(exist_ok=True)
            shutil.copy2(path, keep / path.parent.name / path.name)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def default_results_dir() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu-check" if out else RESULTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--accuracy", action="store_true", help="the accuracy parity check (make gpu-accuracy)"
    )
    which.add_argument("--lab", action="store_true", help="run `lab all` and keep its report (make gpu-lab)")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="default: $OUT/gpu-check if $OUT is set, else benchmarks/results",
    )
    parser.add_argument(
        "--watchdog-s",
        type=float,
        help="stop the whole check after this many seconds (default: budget + 30 s)",
    )
    parser.add_argument("--quick", action="store_true", help="5,000 images and fewer epochs: to try it out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch  # after the arguments: --help needs no torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to check.")
        return 0
    gpu = torch.cuda.get_device_name(0)
    machine = machine_line(gpu)
    results_dir = args.results_dir or default_results_dir()
    images = 5000 if args.quick else IMAGES
    suffix = ("-accuracy" if args.accuracy else "-lab" if args.lab else "") + ("-quick" if args.quick else "")
    results = results_dir / f"{slug(gpu)}{suffix}"
    with tempfile.TemporaryDirectory() as scratch:
        if args.lab:
            out = Path(scratch) / "lab"
            check = lab_plan(out, images)
        elif args.accuracy:
            check = accuracy_plan(results, images, args.quick)
        else:
            check = check_plan(results, images, args.quick)
        watchdog_s = args.watchdog_s or check.budget_s + WATCHDOG_MARGIN_S
        print(f"[gpu-check] {machine}\n[gpu-check] results -> {results}.md (watchdog {watchdog_s:.0f} s)")
        passed = run_check(check, results, machine, watchdog_s)
        if args.lab:
            keep_lab_report(out, results)
            print(f"[gpu-check] the lab's report -> {results}/")
    verdicts = judge(check.targets, collect_figures(check, results))
    met = sum(verdict == "met" for *_, verdict in verdicts)
    print(f"\n[gpu-check] {met}/{len(verdicts)} targets met -> {results}.md")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

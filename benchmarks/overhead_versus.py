"""EpochTimer's cost per step in this checkout against another git revision's, side by side.

Each round runs ``benchmarks/overhead.py --rounds N`` (``--inner``: its own interleaved, paired rounds, whose
median it reports) once with this checkout's ``src`` and once with the revision's (exported with
``git archive``), in alternating order. It prints every round, the median of each side, the median of the
paired differences, and the spread of each side over rounds (the round-to-round noise the difference should
be judged against).

    python benchmarks/overhead_versus.py REV [--rounds 3] [--inner 7] [--steps 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def export_src(revision: str, into: Path) -> Path:
    """The revision's ``src`` folder, extracted under ``into``."""
    archive = into / "src.tar"
    with open(archive, "wb") as file:
        subprocess.run(["git", "-C", str(REPO), "archive", revision, "src"], stdout=file, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def one_round(src: Path, steps: int, inner: int, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    script = str(REPO / "benchmarks" / "overhead.py")
    command = [sys.executable, script, "--rounds", str(inner), "--steps", str(steps), "--resnet-steps", "0",
               "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"overhead.py failed with {src} ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("revision", help="the git revision to compare with (e.g. a commit before a change)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sides")
    parser.add_argument("--inner", type=int, default=7, help="overhead.py's own rounds in each run")
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    if args.rounds < 2 or args.inner < 1 or args.steps < 10:
        parser.error(
            f"--rounds {args.rounds} must be >= 2, --inner {args.inner} >= 1, --steps {args.steps} >= 10"
        )
    with tempfile.TemporaryDirectory() as folder:
        sides = {"this checkout": REPO / "src", args.revision: export_src(args.revision, Path(folder))}
        costs: dict[str, list[float]] = {name: [] for name in sides}
        for index in range(args.rounds):
            order = list(sides) if index % 2 == 0 else list(reversed(sides))  # neither side always goes first
            for name in order:
                figures = one_round(sides[name], args.steps, args.inner, Path(folder) / "figures.json")
                costs[name].append(figures["epochtimer_us"])
            print(
                f"round {index + 1}/{args.rounds}: " + ", ".join(f"{n} {costs[n][-1]:+.1f} us" for n in sides)
            )
    mine, theirs = costs["this checkout"], costs[args.revision]
    differences = [a - b for a, b in zip(mine, theirs, strict=True)]
    print(
        f"\nEpochTimer's cost per step ({args.steps} steps of overhead.py's 1 ms MLP step; "
        f"{args.rounds} runs of each, each the median of {args.inner} paired rounds):"
    )
    for name, values in costs.items():
        print(f"  {name:<24} median {statistics.median(values):+.1f} us, rounds from {min(values):+.1f} to "
              f"{max(values):+.1f} us")  # fmt: skip
    median = statistics.median(differences)
    print(f"  paired difference (this checkout - {args.revision}): median {median:+.1f} us, "
          f"from {min(differences):+.1f} to {max(differences):+.1f} us")  # fmt: skip


if __name__ == "__main__":
    main()

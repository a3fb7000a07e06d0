"""What a run prints: the lines a user needs, none of Lightning's advertising or unactionable warnings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import fit_args

# Lines no run should print: advertising, a seed warning, an absent TPU, third-party deprecations.
NOISE = ("💡 Tip", "No seed found", "TPU available: False", "deprecated", "LightningCLI's args parameter")


def cifarbench(root: Path, *args: str) -> list[str]:
    """``python -m cifarbench ARGS`` as a user runs it; its output lines (stdout and stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "cifarbench", *args], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return (result.stdout + result.stderr).splitlines()


@pytest.mark.slow
def test_fit_prints_no_noise_and_keeps_the_synthetic_data_notice(tmp_path):
    lines = cifarbench(tmp_path, "fit", *fit_args(tmp_path, "--trainer.max_epochs", "1"))
    assert [line for line in lines if any(noise in line for noise in NOISE)] == []
    assert "Using 64 synthetic train images (--data.synthetic), not CIFAR-10." in lines
    assert any("EpochTimer" in line for line in lines)  # the table is there


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_the_lab_prints_one_line_per_run_unless_verbose(tmp_path, verbose):
    args = ["lab", "c7", "--out", str(tmp_path / "lab"), *(["--verbose"] if verbose else []), *fit_args(None)]
    lines = cifarbench(tmp_path, *args)
    runs = [line for line in lines if line.startswith("[lab c7] run ")]
    assert len(runs) == 2 and all("-> " in line and "python -m cifarbench fit " in line for line in runs)
    assert [line for line in lines if any(noise in line for noise in NOISE)] == []
    if verbose:
        assert sum(line.startswith("GPU available") for line in lines) == 2  # Lightning's banner, per run
    else:
        # The part's two lines, one per run, and the synthetic-data notices once each (not once per run).
        assert [line for line in lines if not line.startswith("[lab")] == [
            "Using 64 synthetic train images (--data.synthetic), not CIFAR-10.",
            "Using 12 synthetic test images (--data.synthetic), not CIFAR-10.",
        ]
        assert len(lines) == 6

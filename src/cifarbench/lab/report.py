"""``report.md`` of ``lab all``: every part's section in the seed report's order, with a machine line."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path

import lightning
import torch

from cifarbench.lab.result import PartResult, section_body

# Relative image and data links of a part's section point into its folder; in report.md they need the folder.
_RELATIVE_LINK = re.compile(r"\]\((?![a-z]+://)([^)/]+\.(?:png|csv))\)")


def machine_line() -> str:
    if torch.cuda.is_available():
        device = f"GPU {torch.cuda.get_device_name(0)}"
    else:
        device = f"CPU only ({_cpu_name()})"
    return (
        f"Machine: {device}; {os.cpu_count()} CPUs; torch {torch.__version__}; lightning "
        f"{lightning.__version__}; Python {platform.python_version()}"
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_report(
    out_dir: Path,
    parts: Sequence[tuple[PartResult, str]],
    questions_markdown: str,
    questions_command: str,
    command: str,
    quick: bool,
) -> Path:
    """``<out_dir>/report.md`` from ``(part result, the command that makes that part alone)`` pairs."""
    header = [
        "# Lab 2 report, reproduced with cifarbench",
        machine_line(),
        f"Whole report: `{command}`",
    ]
    if quick:
        header.append(
            "**Quick profile**: synthetic images, a few small batches, two epochs. The numbers show the "
            "method and the shape of each result, not CIFAR-10 speeds or accuracies."
        )
    sections = []
    for result, part_command in parts:
        body = _RELATIVE_LINK.sub(rf"]({result.part}/\1)", section_body(result, part_command))
        sections.append(f"## {result.title}\n\n{body}")
    sections.append(f"Command for Q1-Q4: `{questions_command}`\n\n{questions_markdown}")
    path = out_dir / "report.md"
    path.write_text("\n\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n")
    return path

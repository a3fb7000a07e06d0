"""PNG plots of lab results: matplotlib with the Agg backend (no display needed), titles and units."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

_DPI = 120


def _finish(
    fig: plt.Figure,
    ax: plt.Axes,
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    grid_axis: str,
    legend: bool,
) -> Path:
    """Every plot's title, axis labels (with units), grid and legend; then save and release the figure."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis=grid_axis, alpha=0.3)
    if legend:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def line_plot(
    path: Path,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    integer_x: bool = True,
) -> Path:
    """One line per series name: ``{name: (x values, y values)}``."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", label=name)
    if integer_x:
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _finish(fig, ax, path, title, xlabel, ylabel, grid_axis="both", legend=len(series) > 1)


def stacked_bars(
    path: Path,
    labels: Sequence[str],
    stacks: dict[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """One bar per label, split into the named parts (e.g. data loading, training, other)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bottoms = [0.0] * len(labels)
    for name, values in stacks.items():
        ax.bar(list(labels), list(values), bottom=bottoms, label=name)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    return _finish(fig, ax, path, title, xlabel, ylabel, grid_axis="y", legend=True)


def grouped_bars(
    path: Path,
    labels: Sequence[str],
    groups: dict[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """Bars side by side per label, one colour per group."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / max(1, len(groups))
    for index, (name, values) in enumerate(groups.items()):
        xs = [i + (index - (len(groups) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, list(values), width=width, label=name)
    ax.set_xticks(range(len(labels)), list(labels))
    return _finish(fig, ax, path, title, xlabel, ylabel, grid_axis="y", legend=True)

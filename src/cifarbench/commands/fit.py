"""``python -m cifarbench fit`` (and validate, test, predict): the fit verb over :mod:`cifarbench.fitting`."""

from __future__ import annotations

from cifarbench.fitting import run_cli

SUMMARY = "train (or validate, test, predict) with the timing callbacks; LightningCLI options"


def main(argv: list[str]) -> None:
    """``fit ARGS``: see :func:`cifarbench.fitting.run_cli`."""
    run_cli(["fit", *argv])

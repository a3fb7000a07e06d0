"""A run's outputs made safe to share a folder and a disk: its version folder claimed atomically, its
logger's failed writes turned from crashes into one warning, and its checkpoints written atomically.

- Lightning's loggers choose ``version_N`` by listing the folder; two fits started together both saw N free
  and both wrote ``version_N``. :func:`claim_version` creates the folder exclusively (``mkdir`` fails if it
  exists) and moves on to the next number until one is its own.
- A logger whose writes fail (a full disk; TensorBoard then says "you tried to log ...") would end the fit.
  Training does not need it: :func:`guard_loggers` makes each logger's writing methods warn once and then
  do nothing, so the fit, its timings and its checkpoints go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from cifarbench.checkpointing import AtomicCheckpointIO
from cifarbench.quiet import notice

_VERSION = re.compile(r"version_(\d+)$")
# What a logger writes through; each is wrapped so that a failure warns once and disables the logger.
_WRITING_METHODS = (
    "log_metrics",
    "log_hyperparams",
    "log_graph",
    "save",
    "finalize",
    "after_save_checkpoint",
)


def make_outputs_durable(trainer: L.Trainer) -> None:
    """Before a fit: a version folder of the run's own, loggers that cannot end the fit, and checkpoints that
    are whole or absent (:class:`~cifarbench.checkpointing.AtomicCheckpointIO`)."""
    claim_logger_versions(trainer)
    guard_loggers(trainer)
    trainer.strategy.checkpoint_io = AtomicCheckpointIO(trainer.strategy.checkpoint_io)


def claim_version(root: str | os.PathLike[str]) -> int:
    """Create ``root/version_N`` for the lowest free N, exclusively; N. Concurrent callers get distinct N."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    version = max(_listed_versions(root), default=-1) + 1
    while True:
        try:
            (root / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1


def _listed_versions(root: Path) -> list[int]:
    """The versions in ``root`` now; another run may create the next one right after (claim_version)."""
    return [int(match[1]) for entry in os.listdir(root) if (match := _VERSION.match(entry))]


def claim_logger_versions(trainer: L.Trainer) -> None:
    """Give each TensorBoard or CSV logger that would pick its version by listing a folder of its own.

    Rank zero only: the other ranks of a distributed run do not write logs, and Lightning hands rank zero's
    log dir to them where it is needed (checkpoints, config).
    """
    if rank_zero_only.rank != 0:
        return
    for logger in trainer.loggers:
        if isinstance(logger, (TensorBoardLogger, CSVLogger)) and logger._version is None:
            logger._version = claim_version(logger.root_dir)


def guard_loggers(trainer: L.Trainer) -> None:
    """Make every logger of ``trainer`` warn once and go quiet when a write fails, instead of raising."""
    for logger in trainer.loggers:
        _guard(logger)


def _guard(logger: Logger) -> None:
    if getattr(logger, "_cifarbench_guarded", False):
        return
    state = _GuardState()
    for name in _WRITING_METHODS:
        if callable(getattr(logger, name, None)):
            setattr(logger, name, _GuardedWrite(logger, name, state))
    logger._cifarbench_guarded = True  # type: ignore[attr-defined]


class _GuardState:
    """Shared by one logger's guarded methods: after the first failure, none of them writes again."""

    failed = False


class _GuardedWrite:
    """One writing method of a logger, called through its class (a picklable stand-in, unlike a closure)."""

    def __init__(self, logger: Logger, name: str, state: _GuardState) -> None:
        self.logger, self.name, self.state = logger, name, state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.state.failed:
            return None
        try:
            return getattr(type(self.logger), self.name)(self.logger, *args, **kwargs)
        except Exception as error:
            self.state.failed = True
            self._warn(error.__cause__ or error)  # TensorBoardLogger rewraps a write's error in a ValueError
            return None

    def _warn(self, cause: BaseException) -> None:
        logger = self.logger
        where = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or "its folder"
        notice(
            f"{type(logger).__name__} could not write to {where} ({type(cause).__name__}: "
            f"{' '.join(str(cause).split())}); training goes on without it (timings.csv and checkpoints are "
            f"written apart).",
            logging.WARNING,
        )


@contextlib.contextmanager
def quiet_writer_threads() -> Iterator[None]:
    """While a fit runs: a logger's background writer that fails on I/O (TensorBoard's event writer thread
    re-raises, and Python prints a traceback) stays quiet; the guarded logger warns once instead, when the
    fit next writes through it. Every other thread's error is reported as before."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous

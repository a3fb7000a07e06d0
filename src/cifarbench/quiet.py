"""What a run prints: cifarbench's own notices, and none of the noise a user cannot act on.

- cifarbench's notices (synthetic data in use, a pipeline that ignores ``--data.num_workers``, ...) go to the
  ``cifarbench`` logger; :func:`configure_console` shows them on stderr.
- Dropped everywhere: Lightning's advertising tips (litlogger, litmodels), its report of a TPU that is not
  there, and a deprecation warning that Lightning triggers inside torch (none is the user's to act on).
- :func:`lab_run_output` hides Lightning's own per-run output in the lab (the banner, the model summary,
  worker-count advice for the counts a sweep tries on purpose) unless ``--verbose``, and shows each of
  cifarbench's notices once instead of once per run.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger("cifarbench")

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
# Every info line Lightning prints goes through these (rank_zero_info): the tips among them.
_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
# Info lines nobody can act on: advertising, and the report of an accelerator that is not there.
_NOISE_PREFIXES = ("💡 Tip:", "TPU available: False")
# Warnings raised in third-party code about third-party code (matched on their text).
_THIRD_PARTY_NOISE = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # torch, called by Lightning
    r"\s*.*was deprecated in v4\.",  # jsonargparse's own API, called by LightningCLI
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE_PREFIXES)


class _OncePerMessage(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


@rank_zero_only
def notice(message: str, level: int = logging.WARNING) -> None:
    """One of cifarbench's notices, from rank 0 only. Warnings show even where logging is not configured."""
    log.log(level, message)


class _StderrNow(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a message comes, not as it was when the handler was made: a
    stderr redirected later (pytest's capture, a notebook, ``redirect_stderr``) gets the notices."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr


def configure_console() -> None:
    """Show cifarbench's notices on stderr and drop the noise; safe to call more than once."""
    if not any(getattr(handler, "_cifarbench", False) for handler in log.handlers):
        handler = _StderrNow()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._cifarbench = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropNoise) for existing in logger.filters):
            logger.addFilter(_DropNoise())
    for pattern in _THIRD_PARTY_NOISE:
        warnings.filterwarnings("ignore", message=pattern)


@contextmanager
def lab_run_output(verbose: bool) -> Iterator[None]:
    """Around one lab command's fits: Lightning's output only with ``verbose``; each notice once."""
    if verbose:
        yield
        return
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    once = _OncePerMessage()
    log.addFilter(once)
    try:
        for name in LIGHTNING_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # A sweep runs few workers on purpose; the advice would repeat for every run.
            warnings.filterwarnings("ignore", message=r"The '\w+_dataloader' does not have many workers")
            yield
    finally:
        log.removeFilter(once)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

"""Checkpoints that are whole or absent, and resuming from one that loads.

- :class:`AtomicCheckpointIO` writes each checkpoint to a hidden temporary name in its own folder, fsyncs it,
  and renames it into place. A save cut short (a kill, a full disk) never leaves a file at the final name.
  Lightning's own save stages the file in the system's temporary folder and, when that is on another file
  system than the log dir, copies it into place, which is not atomic.
- A save that fails for lack of space (any OSError) is :class:`CheckpointWriteError`: one line, the last
  good checkpoint named and kept (ModelCheckpoint removes the previous one only after a save succeeds).
- :func:`newest_loadable` picks the checkpoint ``--ckpt_path last`` resumes from: the newest that is a whole
  archive, skipping (with a warning) any that is not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.pytorch.plugins.io.wrapper import _WrappingCheckpointIO

from cifarbench.errors import CifarbenchError, ConfigError
from cifarbench.quiet import notice

PARTIAL_SUFFIX = ".partial"


class CheckpointWriteError(CifarbenchError):
    """A checkpoint the run was asked to save could not be written (a full disk, a lost mount)."""


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it is whole: hidden, in the same folder (so the rename is atomic),
    and not ending in ``.ckpt`` (so nothing that looks for checkpoints finds it)."""
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")


class AtomicCheckpointIO(_WrappingCheckpointIO):
    """Wraps a Trainer's checkpoint IO so that a checkpoint is visible at its name only once it is whole.

    Lightning's default (``TorchCheckpointIO``) is replaced by a direct ``torch.save`` into the temporary
    file; any other local checkpoint IO writes the temporary file its own way. Remote paths (``s3://``, ...)
    and asynchronous IO are passed through unchanged.
    """

    def __init__(self, checkpoint_io: CheckpointIO | None = None) -> None:
        super().__init__(checkpoint_io or TorchCheckpointIO())

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        inner = self.checkpoint_io
        assert inner is not None
        if "://" in str(path) or isinstance(inner, _WrappingCheckpointIO):
            inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        final = Path(path)
        partial = partial_path(final)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if type(inner) is TorchCheckpointIO and storage_options is None:
                with open(partial, "wb") as file:
                    torch.save(checkpoint, file)
            else:
                inner.save_checkpoint(checkpoint, partial, storage_options=storage_options)
            _fsync(partial)
            os.replace(partial, final)
            _fsync_folder(final.parent)
        except OSError as error:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise CheckpointWriteError(_write_failure(final, error)) from None
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise


def _fsync(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    # The rename itself is durable once the folder's entry is on disk; not every platform can open a folder.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _write_failure(path: Path, error: OSError) -> str:
    kept = [other for other in _by_age(path.parent.glob("*.ckpt")) if other != path]
    last = f"the last good one, {kept[-1]}, is kept" if kept else "there is no earlier one in that folder"
    return (
        f"cannot save the checkpoint {path} ({error.strerror or error}); nothing was left at that name and "
        f"{last}. Free space (or fix the folder) and resume with --ckpt_path last."
    )


def _by_age(paths: Iterable[Path]) -> list[Path]:
    """Oldest first; a file that vanishes meanwhile (another run's rotation) is left out."""
    dated = []
    for path in paths:
        with contextlib.suppress(OSError):
            dated.append((path.stat().st_mtime, str(path), path))
    return [path for _, _, path in sorted(dated)]


def why_unloadable(path: Path) -> str | None:
    """None when ``path`` is a whole checkpoint archive (every member's CRC checked), else the reason.

    torch.save writes a zip archive; a save cut short has no central directory, and a damaged one fails its
    CRC. Nothing is unpickled here.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError) as error:
        return f"{type(error).__name__}: {' '.join(str(error).split())}"
    return None if bad is None else f"its member {bad} fails its CRC check"


def newest_loadable(root: Path) -> Path:
    """The newest whole checkpoint under ``root``; each newer one that is not whole is skipped with a warning.

    Raises ConfigError when there is none.
    """
    found = _by_age(root.glob("**/checkpoints/*.ckpt"))
    for path in reversed(found):
        reason = why_unloadable(path)
        if reason is None:
            return path
        notice(
            f"--ckpt_path last: skipping {path}, which does not load ({reason}); trying the next newest.",
            logging.WARNING,
        )
    if found:
        raise ConfigError(
            f"--ckpt_path last: none of the {len(found)} checkpoints under {root} loads (each was skipped "
            f"above). Run fit without --ckpt_path to start afresh."
        )
    raise ConfigError(
        f"--ckpt_path last: there is no checkpoint under {root} to resume from. Run fit without "
        f"--ckpt_path to start afresh, or pass a checkpoint file (--ckpt_path path/to/file.ckpt)."
    )


def check_loadable(path: str | os.PathLike[str]) -> None:
    """A checkpoint named by ``--ckpt_path`` must be a whole archive; ConfigError naming it otherwise."""
    if not Path(path).is_file():
        raise ConfigError(f"--ckpt_path {path}: no such file. Pass a checkpoint file, or --ckpt_path last")
    reason = why_unloadable(Path(path))
    if reason is not None:
        raise ConfigError(
            f"--ckpt_path {path} does not load ({reason}): it is truncated or corrupt. Pass another "
            f"checkpoint, or --ckpt_path last to resume from the newest that loads."
        )

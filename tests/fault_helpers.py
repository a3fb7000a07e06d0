"""Real faults injected into a fit (named in --trainer.* options of subprocess fits, so importable)."""

from __future__ import annotations

import io
import resource
import signal
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class StallingCheckpointIO(TorchCheckpointIO):
    """The first save is whole; the second writes half the file, touches ``marker`` and stalls for a
    minute, so that a test can kill the process in the middle of writing a checkpoint."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)
        self.saves = 0

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.saves += 1
        if self.saves == 1:
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        with open(path, "wb") as file:
            file.write(data[: len(data) // 2])
            file.flush()
            self.marker.write_text(str(path))
            time.sleep(60)
            file.write(data[len(data) // 2 :])


class FillDiskAtEpoch(L.Callback):
    """From the start of ``epoch`` on, no file of this process can grow (RLIMIT_FSIZE at 1 byte): writes fail
    with EFBIG, as they would with ENOSPC on a full disk. Pipes (stdout, stderr) are not files: they still
    work."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))

"""Ctrl-C that stops a fit between steps, never inside a logger's or writer's critical section."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override


class StopOnInterrupt(Callback):
    """The first Ctrl-C (SIGINT) is raised as KeyboardInterrupt at the end of the current batch.

    Python raises KeyboardInterrupt wherever the main thread happens to be. Inside TensorBoard's event
    writer queue that leaves its writer thread waiting forever, so the run never exits (seen at epoch
    ends, where metrics are written). Deferring the interrupt to a batch boundary avoids that; Lightning
    then shuts down as usual (finished epochs and checkpoints kept, exit status 1). A second Ctrl-C
    interrupts at once, for a run stuck elsewhere.
    """

    def __init__(self) -> None:
        super().__init__()
        self._requested = False
        self._previous_handler: Any = None

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            self._requested = False
            self._previous_handler = signal.signal(signal.SIGINT, self._request_stop)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._raise_if_requested()

    @override
    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._raise_if_requested()

    @override
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handler()

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_handler()

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True
        rank_zero_info("\nInterrupt received: stopping after this batch (Ctrl-C again to stop at once).")

    def _raise_if_requested(self) -> None:
        if self._requested:
            self._restore_handler()
            raise KeyboardInterrupt

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

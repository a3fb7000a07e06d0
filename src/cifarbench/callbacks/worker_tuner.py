"""WorkerTuner: pick DataLoader ``num_workers`` before training by timing the real train loader.

The sweep rule (:func:`sweep_until_no_improvement`) is a pure function of a cost callable, so the lab's
worker sweep (``lab c3``) and this callback share it, and tests drive it with injected costs instead of
wall-clock luck.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override


@dataclass
class SweepResult:
    """Costs measured in sweep order, the best candidate, and why the sweep stopped."""

    costs: dict[int, float] = field(default_factory=dict)
    best: int | None = None
    stopped_early: bool = False

    @property
    def best_cost(self) -> float | None:
        return None if self.best is None else self.costs[self.best]


def sweep_until_no_improvement(
    candidates: Iterable[int], cost: Callable[[int], float], patience: int = 1
) -> SweepResult:
    """Measure ``cost(candidate)`` in order until ``patience`` candidates in a row fail to beat the best.

    This is the lab's rule (C3: "0, 4, 8, ... until the data-loading time stops improving"). The best is the
    cheapest candidate measured, so a count measured as slower than another is never chosen; ties keep the
    earlier (fewer workers, fewer processes) candidate.
    """
    if patience < 1:
        raise ValueError(f"sweep_until_no_improvement(patience={patience!r}) must be >= 1")
    result = SweepResult()
    misses = 0
    for candidate in candidates:
        value = float(cost(candidate))
        result.costs[candidate] = value
        if result.best is None or value < result.costs[result.best]:
            result.best, misses = candidate, 0
            continue
        misses += 1
        if misses >= patience:
            result.stopped_early = True
            break
    return result


def default_worker_candidates(cpu_count: int | None = None) -> list[int]:
    """0, 1, 2, 4, ... up to the CPU count: doubling steps, since the useful range is logarithmic."""
    limit = max(1, cpu_count if cpu_count is not None else (os.cpu_count() or 1))
    candidates, workers = [0, 1], 2
    while workers <= limit:
        candidates.append(workers)
        workers *= 2
    return candidates


def time_loader(loader: Iterable[Any], num_batches: int, skip_batches: int = 1) -> float:
    """Seconds to draw ``num_batches`` batches after skipping ``skip_batches``, per batch.

    The skipped batches absorb worker start-up, so the number is steady-state loading, which is what a
    multi-epoch run (or ``persistent_workers``) sees. A loader shorter than asked is timed over what it has,
    skipping fewer batches if it must keep one to time.
    """
    if isinstance(loader, Sized):
        skip_batches = max(0, min(skip_batches, len(loader) - 1))
    iterator = iter(loader)
    start, drawn = time.perf_counter(), 0
    try:
        for _ in range(skip_batches):
            next(iterator)
        start = time.perf_counter()
        for _ in range(num_batches):
            next(iterator)
            drawn += 1
    except StopIteration:
        pass
    finally:
        # Shuts worker processes down now, not when the garbage collector gets to it.
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    if drawn == 0:
        raise ValueError(
            f"time_loader: the loader gave no batch to time after skipping {skip_batches}; use a longer "
            f"loader or WorkerTuner(skip_batches=0)"
        )
    return (time.perf_counter() - start) / drawn


class WorkerTuner(Callback):
    """Sets ``trainer.datamodule.num_workers`` at fit start to the fastest of the candidates it measures.

    For each candidate (in order) it builds the real train loader with that many workers, skips the first
    batch (worker start-up) and times the next ``num_batches``. It stops when a candidate is not faster than
    the best so far (:func:`sweep_until_no_improvement`) and keeps the fastest measured count.

    The datamodule must have a ``num_workers`` attribute read by its ``train_dataloader()``.

    Args:
        candidates: worker counts to try, in order; ``None``: 0, 1, 2, 4, ... up to the CPU count.
        num_batches: batches timed per candidate.
        skip_batches: batches drawn before timing starts (they include worker start-up).
        patience: candidates in a row that may fail to improve before the sweep stops.
        measure: ``measure(num_workers) -> seconds per batch``; replaces loader timing (tests inject costs).
    """

    def __init__(
        self,
        candidates: Sequence[int] | None = None,
        num_batches: int = 5,
        skip_batches: int = 1,
        patience: int = 1,
        measure: Callable[[int], float] | None = None,
    ) -> None:
        super().__init__()
        if candidates is not None and (not candidates or any(c < 0 for c in candidates)):
            raise ValueError(
                f"WorkerTuner(candidates={candidates!r}) must be a non-empty list of counts >= 0"
            )
        if num_batches < 1:
            raise ValueError(f"WorkerTuner(num_batches={num_batches!r}) must be >= 1")
        if skip_batches < 0:
            raise ValueError(f"WorkerTuner(skip_batches={skip_batches!r}) must be >= 0")
        if patience < 1:
            raise ValueError(f"WorkerTuner(patience={patience!r}) must be >= 1")
        self.candidates = list(candidates) if candidates is not None else None
        self.num_batches = num_batches
        self.skip_batches = skip_batches
        self.patience = patience
        self._measure = measure
        self._result: SweepResult | None = None

    @property
    def result(self) -> SweepResult | None:
        """The sweep of the last fit (seconds per batch for each measured count), ``None`` before one."""
        return self._result

    @property
    def best(self) -> int | None:
        return None if self._result is None else self._result.best

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_fit_start runs after setup() and before any dataloader of the fit is built.
        datamodule = self._datamodule(trainer)
        measure = self._measure or (lambda workers: self._time_workers(datamodule, workers))
        candidates = self.candidates if self.candidates is not None else default_worker_candidates()
        self._result = sweep_until_no_improvement(candidates, measure, self.patience)
        datamodule.num_workers = self._result.best
        self._report()

    def _time_workers(self, datamodule: Any, workers: int) -> float:
        datamodule.num_workers = workers
        return time_loader(datamodule.train_dataloader(), self.num_batches, self.skip_batches)

    @staticmethod
    def _datamodule(trainer: L.Trainer) -> Any:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "num_workers"):
            raise ValueError(
                "WorkerTuner needs a datamodule with a `num_workers` attribute used by train_dataloader(); "
                "pass one to trainer.fit(model, datamodule=...), or remove WorkerTuner and set num_workers "
                "yourself"
            )
        return datamodule

    def _report(self) -> None:
        assert self._result is not None
        measured = ", ".join(f"{w}: {s * 1000:.1f} ms" for w, s in self._result.costs.items())
        rank_zero_info(f"WorkerTuner: num_workers={self._result.best} (loading per batch: {measured})")

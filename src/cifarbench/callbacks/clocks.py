"""Clocks that put marks on a timeline and read the gaps between them later.

EpochTimer marks every step boundary and phase, but reads a step's marks only once they are done: a host
clock's at once, a CUDA clock's when ``ready`` says the GPU has passed them (a non-blocking query), and all
of an epoch's after the one ``settle`` at its end. So a CUDA clock never synchronizes per step, and marks
that have been read go back to a pool, which keeps memory flat however long the epoch.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch


class Clock(Protocol):
    """Marks points on a timeline; ``seconds`` reads ready marks (all made before the last ``settle``)."""

    name: str
    reuses_marks: bool  # whether release() gives marks back for reuse (else it need not be called)

    def mark(self) -> Any: ...

    def ready(self, mark: Any) -> bool:
        """Whether ``mark`` can be read now, without waiting."""
        ...

    def settle(self) -> None: ...

    def seconds(self, start: Any, end: Any) -> float: ...

    def release(self, marks: list[Any]) -> None:
        """Marks that were read and will not be read again (a CUDA clock reuses their events)."""
        ...


class HostClock:
    """``time.perf_counter`` marks: exact for work the host does itself (CPU training)."""

    name = "host"
    reuses_marks = False  # a mark is a float: nothing to give back
    # The C function itself: a mark is taken several times a step, and a Python frame around it costs more.
    mark = staticmethod(time.perf_counter)

    def ready(self, mark: float) -> bool:
        return True

    def settle(self) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start

    def release(self, marks: list[Any]) -> None:
        pass


class CudaSyncClock(HostClock):
    """The lab's method: ``torch.cuda.synchronize()`` before every ``perf_counter`` mark.

    Exact on the host's timeline, but each mark stalls the CPU until the GPU drains, which slows the run.
    """

    name = "cuda_sync"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def mark(self) -> float:
        return wall_time(self.device)


class CudaEventClock:
    """``torch.cuda.Event`` marks on the current stream, read after one synchronize in ``settle``.

    The gaps are measured on the GPU's own timeline, so a gap between two steps is time the GPU spent not
    training (waiting for data, a copy, augmentation), and the CPU is never stalled by a mark.
    """

    name = "cuda_events"
    reuses_marks = True

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._free: list[torch.cuda.Event] = []

    def mark(self) -> torch.cuda.Event:
        event = self._free.pop() if self._free else torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def ready(self, mark: torch.cuda.Event) -> bool:
        return mark.query()

    def settle(self) -> None:
        torch.cuda.synchronize(self.device)

    def seconds(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        return start.elapsed_time(end) / 1000.0

    def release(self, marks: list[torch.cuda.Event]) -> None:
        self._free.extend(marks)


def make_clock(device: torch.device, sync: bool = False) -> Clock:
    """The clock for work running on ``device``: CUDA events (or lab-style syncs), else the host clock."""
    if device.type == "cuda":
        return CudaSyncClock(device) if sync else CudaEventClock(device)
    return HostClock()


def wall_time(device: torch.device) -> float:
    """``perf_counter`` after the device has finished its queued work, for wall-clock epoch boundaries."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()

"""Clocks that put marks on a timeline and read the gaps between them later.

EpochTimer marks every batch boundary, but reads the marks only once per epoch. That lets a CUDA clock
record events asynchronously (no per-step synchronize) and a host clock read ``perf_counter`` values.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch


class Clock(Protocol):
    """Marks points on a timeline; ``seconds`` is valid for marks made before the last ``settle``."""

    name: str

    def mark(self) -> Any: ...

    def settle(self) -> None: ...

    def seconds(self, start: Any, end: Any) -> float: ...


class HostClock:
    """``time.perf_counter`` marks: exact for work the host does itself (CPU training)."""

    name = "host"

    def mark(self) -> float:
        return time.perf_counter()

    def settle(self) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start


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

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def settle(self) -> None:
        torch.cuda.synchronize(self.device)

    def seconds(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        return start.elapsed_time(end) / 1000.0


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

"""Reusable Lightning callbacks: they import only torch, lightning and the stdlib (rich, optionally)."""

from cifarbench.callbacks.timing import EpochTimer, EpochTiming
from cifarbench.callbacks.worker_tuner import WorkerTuner

__all__ = ["EpochTimer", "EpochTiming", "WorkerTuner"]

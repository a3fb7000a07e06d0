"""Reusable Lightning callbacks.

They import only torch, lightning (with typing_extensions, which lightning requires), the stdlib, and rich
when it is installed, so they can be copied into any Lightning project.
"""

from cifarbench.callbacks.opwindow import OpWindow
from cifarbench.callbacks.records import EpochTiming
from cifarbench.callbacks.timing import EpochTimer
from cifarbench.callbacks.worker_tuner import WorkerTuner

__all__ = ["EpochTimer", "EpochTiming", "OpWindow", "WorkerTuner"]

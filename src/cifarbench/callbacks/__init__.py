"""Reusable Lightning callbacks. They import only torch, lightning and the standard library (rich optional)."""

from cifarbench.callbacks.timing import EpochTimer, EpochTiming

__all__ = ["EpochTimer", "EpochTiming"]

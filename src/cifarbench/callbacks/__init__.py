"""Reusable Lightning callbacks: they import only torch, lightning and the stdlib (rich, optionally)."""

from cifarbench.callbacks.timing import EpochTimer, EpochTiming

__all__ = ["EpochTimer", "EpochTiming"]

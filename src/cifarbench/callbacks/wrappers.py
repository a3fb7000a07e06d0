"""What has no hook of its own, seen by wrapping it: the copy of each training batch to the device, the user's
``training_step``, the end of every optimizer step, and every checkpoint save.

Each wrapper is an instance attribute over the Strategy's or the Trainer's method, installed and removed as
one unit (:func:`install`, :func:`remove`); removing one exposes the method again. Each counts its own time
(less the wrapped call) as EpochTimer's cost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from time import perf_counter
from typing import Any

import lightning as L

from cifarbench.callbacks.session import FitSession
from cifarbench.callbacks.steps import Phase

# (owner, method): the owner is the trainer or its strategy.
WRAPPED = (
    ("strategy", "batch_to_device"),
    ("strategy", "training_step"),
    ("strategy", "optimizer_step"),
    ("trainer", "save_checkpoint"),
)
_ORIGINAL = "__cifarbench_wraps__"  # set on each wrapper: what it wraps, and that it is ours to remove


def install(trainer: L.Trainer, session: FitSession) -> None:
    """Wrap the methods of :data:`WRAPPED` for ``session`` (replacing wrappers left by an earlier fit)."""
    remove(trainer)
    makers: dict[str, Callable[[FitSession, Callable[..., Any]], Callable[..., Any]]] = {
        "batch_to_device": _timed_transfer,
        "training_step": _marked_training_step,
        "optimizer_step": _marked_optimizer_step,
        "save_checkpoint": _timed_save,
    }
    for owner, method in WRAPPED:
        target = _owner(trainer, owner)
        original = getattr(target, method, None)
        if original is None:  # a strategy of another shape: that part is not seen, the rest still is
            continue
        wrapper = functools.wraps(original)(makers[method](session, original))
        setattr(wrapper, _ORIGINAL, original)
        setattr(target, method, wrapper)


def remove(trainer: L.Trainer) -> None:
    """Remove EpochTimer's wrappers, and only those."""
    for owner, method in WRAPPED:
        target = _owner(trainer, owner)
        if hasattr(vars(target).get(method), _ORIGINAL):
            delattr(target, method)


def _owner(trainer: L.Trainer, owner: str) -> Any:
    return trainer if owner == "trainer" else trainer.strategy


def _timed_transfer(session: FitSession, original: Callable[..., Any]) -> Callable[..., Any]:
    steps, clock = session.steps, session.clock

    def timed_batch_to_device(*args: Any, **kwargs: Any) -> Any:
        if not session.times_transfers:  # validation's batches, or no fit
            return original(*args, **kwargs)
        start = clock.mark()
        batch = original(*args, **kwargs)
        before = perf_counter()
        steps.add_transfer(start, clock.mark())
        session.spent(perf_counter() - before)
        return batch

    return timed_batch_to_device


def _marked_training_step(session: FitSession, original: Callable[..., Any]) -> Callable[..., Any]:
    steps = session.steps

    def marked_training_step(*args: Any, **kwargs: Any) -> Any:
        before = perf_counter()
        steps.mark(Phase.TRAINING_STEP_START)
        cost = perf_counter() - before
        try:
            return original(*args, **kwargs)
        finally:
            before = perf_counter()
            steps.mark(Phase.TRAINING_STEP_END)
            session.spent(cost + perf_counter() - before)

    return marked_training_step


def _marked_optimizer_step(session: FitSession, original: Callable[..., Any]) -> Callable[..., Any]:
    steps = session.steps

    def marked_optimizer_step(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        before = perf_counter()
        steps.mark(Phase.AFTER_OPTIMIZER)
        session.spent(perf_counter() - before)
        return result

    return marked_optimizer_step


def _timed_save(session: FitSession, original: Callable[..., Any]) -> Callable[..., Any]:
    def timed_save_checkpoint(*args: Any, **kwargs: Any) -> Any:
        if session.steps.in_step or not session.stage.fit_started:
            # A callback saving inside a step (before EpochTimer's on_train_batch_end): the save is that
            # step's time, counted once, there. Before the fit starts (a Tuner's own save), nothing is timed.
            return original(*args, **kwargs)
        paused = session.start_save()
        try:
            return original(*args, **kwargs)
        finally:
            session.end_save(paused)

    return timed_save_checkpoint

"""What bounds a run, and what to try next: rules over the fit budget, each with a named threshold.

A verdict is a summary line (where the fit's time went) and one to three findings, the largest first; when no
rule fires, the run is compute-bound. Each finding names its evidence (seconds and share), the most that
removing its cause can save, and the fix: the generic advice here, or, in cifarbench's own CLI, the option to
change.

The saving is a bound read off the budget: the wait for data (not the copy: hidden loading still copies) per
training epoch; the copies per epoch; all of validation (validating every N epochs saves (N-1)/N of it); all
of checkpointing; the first step beyond an ordinary one. None is claimed where the advice changes the step
itself (compute, the optimizer, Lightning's per-step work) or where the cost is paid once per fit (start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Waiting for data (beyond the copy) >= 20% of the training epochs: at that level a faster pipeline shortens
# the epoch by a fifth or more, more than any step setting would, and timing noise on a 2-core machine
# (1-3% here) cannot fake it.
INPUT_BOUND_SHARE = 0.20
# Copies to the device >= 10% of the training epochs: a copy is pure overhead (no work is done), so a tenth is
# worth removing; pinned memory or a device-resident set removes most of it.
TRANSFER_BOUND_SHARE = 0.10
# Validation >= 25% of the fit: a quarter of the wall time not training means validating less often is the
# cheapest speed-up there is, at no cost to what is learned.
VALIDATION_HEAVY_SHARE = 0.25
# Checkpointing >= 10% of the fit: saving is I/O that trains nothing; a tenth is more than a run needs.
CHECKPOINT_HEAVY_SHARE = 0.10
# The first step >= 20% of the fit: compilation and autotuning, paid once; in a run this short, the other
# steps cannot be judged against it, and a longer run (or no compile) changes the picture.
FIRST_STEP_HEAVY_SHARE = 0.20
# Start-up >= 30% of the fit: reading data, moving the model, starting workers, paid once per fit; above a
# third, the run is too short for its epochs to say much.
STARTUP_HEAVY_SHARE = 0.30
# The optimizer >= 30% of the training steps: for ResNet-18 it is a few percent (one pass over the weights
# against many over the activations); a third means per-parameter Python loops or a heavy optimizer.
OPTIMIZER_HEAVY_SHARE = 0.30
# Lightning's own per-step work (its closure, zero_grad, hook dispatch, logging) >= 25% of the training steps:
# it is a fixed cost per step (about 1 ms on a 2-core CPU), so a quarter means the step's own work is small;
# fewer, larger steps (a larger batch) or fewer per-step self.log calls shrink it, and no other tool names it.
FRAMEWORK_HEAVY_SHARE = 0.25

GENERIC_ADVICE: dict[str, str] = {
    "input_bound": "more DataLoader workers (num_workers), persistent_workers=True, or batched augmentation "
    "on the GPU",
    "transfer_bound": "pin_memory=True in the DataLoader, or keep the dataset on the GPU",
    "validation_heavy": "validate less often: Trainer(check_val_every_n_epoch=N) or limit_val_batches",
    "checkpoint_heavy": "save less often (ModelCheckpoint(every_n_epochs=N)) or weights only",
    "first_step_heavy": "judging speed on a longer run (it is paid once); no torch.compile in short runs",
    "startup_heavy": "a longer run, which amortises it (it is paid once per fit); fewer workers start faster",
    "optimizer_heavy": "a fused or foreach optimizer (e.g. torch.optim.AdamW(..., fused=True) on CUDA)",
    "framework_heavy": "a larger batch (fewer steps per epoch), fewer per-step self.log calls "
    "(on_step=False), or torch.compile",
    "compute_bound": "bf16-mixed precision, channels_last, torch.compile, or a larger batch",
    "launch_bound": "CUDA graphs (torch.compile(mode='reduce-overhead')) or a larger batch",
    "straggler": "that host: for data loading, its disk and CPU (more DataLoader workers, the data on a "
    "local disk); for compute, what else runs on its device or CPU, and its clocks; or leave it out",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    text: str
    saving_s: float | None = None  # the most that removing the cause saves, in seconds of ...
    share: float | None = None  # ... this share of the epoch or the fit (see the text)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Saving:
    seconds: float
    whole_s: float
    label: str  # "per epoch" or "of the fit"

    def text(self) -> str:
        share = self.seconds / self.whole_s if self.whole_s > 0 else 0.0
        return (
            f"; removing it saves at most {self.seconds:.2f} s of {self.whole_s:.2f} s {self.label} "
            f"({share:.0%}), leaving about {self.whole_s - self.seconds:.2f} s"
        )


def verdict(
    budget: Any,
    transfer_s: float,
    advice: Mapping[str, str] | None = None,
    epochs: int = 1,
    steps: int = 1,
    operators: Any = None,
) -> list[Finding]:
    """Two to four findings for a fit budget (:class:`cifarbench.callbacks.quantities.Budget`).

    ``transfer_s`` is the time in host-to-device copies (part of data loading); ``advice`` replaces
    :data:`GENERIC_ADVICE` per kind; ``epochs`` and ``steps`` (the fit's) turn totals into per-epoch savings
    and an ordinary step; ``operators`` (OpWindow's ``ops.OpSummary``) names the top operations in a
    compute-bound finding, and adds its own (launch-bound).
    """
    fit_s = budget.fit_s
    if fit_s <= 0:
        return []
    tips = {**GENERIC_ADVICE, **(advice or {})}
    epochs_s, training_s = budget.epochs_s, budget.training_s
    waiting_s = max(0.0, budget.data_loading - transfer_s)
    share = budget.share
    epochs = max(1, epochs)
    per_epoch = epochs_s / epochs
    ordinary_step_s = training_s / (steps - 1) if steps > 1 else 0.0
    candidates: list[tuple[str, float, float, float, Callable[[float, float], str], _Saving | None]] = [
        # kind, seconds, share, threshold, what the evidence says, the most removing it saves
        ("input_bound", waiting_s, share(waiting_s, epochs_s), INPUT_BOUND_SHARE,
         lambda s, p: f"input-bound: the loop waited {s:.2f} s for data, {p:.0%} of the training epochs",
         _Saving(waiting_s / epochs, per_epoch, "per epoch")),
        ("transfer_bound", transfer_s, share(transfer_s, epochs_s), TRANSFER_BOUND_SHARE,
         lambda s, p: f"transfer-bound: copies to the device took {s:.2f} s, {p:.0%} of the training epochs",
         _Saving(transfer_s / epochs, per_epoch, "per epoch")),
        ("validation_heavy", budget.validation, share(budget.validation), VALIDATION_HEAVY_SHARE,
         lambda s, p: f"validation-heavy: validation took {s:.2f} s, {p:.0%} of the fit",
         _Saving(budget.validation, fit_s, "of the fit")),
        ("checkpoint_heavy", budget.checkpointing, share(budget.checkpointing), CHECKPOINT_HEAVY_SHARE,
         lambda s, p: f"checkpoint-heavy: saving took {s:.2f} s, {p:.0%} of the fit",
         _Saving(budget.checkpointing, fit_s, "of the fit")),
        ("first_step_heavy", budget.first_step, share(budget.first_step), FIRST_STEP_HEAVY_SHARE,
         lambda s, p: f"first-step-heavy: the first training step (compilation, autotuning) took {s:.2f} s, "
         f"{p:.0%} of the fit",
         _Saving(max(0.0, budget.first_step - ordinary_step_s), fit_s, "of the fit")),
        ("startup_heavy", budget.startup, share(budget.startup), STARTUP_HEAVY_SHARE,
         lambda s, p: f"start-up-heavy: start-up (setup, device moves, loader start) took {s:.2f} s, "
         f"{p:.0%} of the fit (paid once per fit: no saving claimed)", None),
        ("optimizer_heavy", budget.optimizer, share(budget.optimizer, training_s), OPTIMIZER_HEAVY_SHARE,
         lambda s, p: f"optimizer-heavy: optimizer steps took {s:.2f} s, {p:.0%} of the training steps",
         None),
        ("framework_heavy", budget.framework, share(budget.framework, training_s), FRAMEWORK_HEAVY_SHARE,
         lambda s, p: f"framework-heavy: Lightning's own per-step work (closure, zero_grad, hooks, logging) "
         f"took {s:.2f} s, {p:.0%} of the training steps", None),
    ]  # fmt: skip
    fired = sorted(
        (candidate for candidate in candidates if candidate[2] >= candidate[3]),
        key=lambda c: c[1],
        reverse=True,
    )
    findings = [Finding("summary", _summary(budget))]
    for kind, seconds, part, _, evidence, saving in fired[:3]:
        bound = saving.text() if saving else ""
        findings.append(
            Finding(
                kind,
                f"{evidence(seconds, part)}{bound}. Try {tips[kind]}.",
                saving.seconds if saving else None,
                share(saving.seconds, saving.whole_s) if saving else None,
            )
        )
    if not fired:
        step_share = share(training_s + budget.first_step)
        forward, backward = share(budget.forward, training_s), share(budget.backward, training_s)
        findings.append(
            Finding(
                "compute_bound",
                f"compute-bound: training steps are {step_share:.0%} of the fit (forward {forward:.0%}, "
                f"backward {backward:.0%} of them) and nothing else stands out; nothing to fix in the input "
                f"pipeline. To make the step itself faster (no saving is claimed: it changes the step), try "
                f"{tips['compute_bound']}.",
            )
        )
    if operators is not None:
        findings = operators.amend(findings, tips)
    return findings


def _summary(budget: Any) -> str:
    fit_s = budget.fit_s
    largest = sorted(budget.items(), key=lambda item: item[1], reverse=True)[:3]
    parts = ", ".join(
        f"{name.replace('_', ' ')} {seconds:.2f} s ({seconds / fit_s:.0%})" for name, seconds in largest
    )
    return f"fit {fit_s:.2f} s; largest: {parts}"


def divergence(callbacks: Sequence[Any]) -> Finding | None:
    """A ``diverged`` finding when a callback of the fit saw the training loss stop being finite.

    Any callback with a ``diverged_at_step`` attribute counts (cifarbench's ``StopOnDivergence`` has one):
    a profile of a run that diverged would mislead, so this finding comes first.
    """
    for callback in callbacks:
        step = getattr(callback, "diverged_at_step", None)
        if step is not None:
            value = getattr(callback, "diverged_value", None)
            return Finding(
                "diverged",
                f"diverged: the training loss was {value} at step {step}; the timings after it profile a "
                f"broken run. Lower the learning rate (or add warm-up or gradient clipping) before tuning "
                f"speed.",
            )
    return None

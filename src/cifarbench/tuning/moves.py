"""What ``tune`` may try for each finding, in order, and whether a move keeps training's results the same.

Same results: the model sees the same batches from the same augmentation distribution and takes the same
steps (workers, pipelines, pinned memory, channels_last, a foreach or fused optimizer). Changes training:
anything else (validating or saving less often, a larger batch, bf16); ``tune`` applies those only when
allowed, and lists them with their predicted saving otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SAME_RESULTS = "same results"
CHANGES_TRAINING = "changes training"


@dataclass(frozen=True)
class Move:
    name: str
    overrides: tuple[str, ...]  # fit options, in the order they are given
    effect: str  # SAME_RESULTS or CHANGES_TRAINING
    needs_cuda: bool = False
    doubles_batch: bool = False  # the overrides are computed: twice the batch, the lr scaled with it

    def options(self, config: dict[str, Any]) -> tuple[str, ...]:
        """The fit options of this move from ``config`` (the run's options by name, ``data.batch_size``)."""
        if not self.doubles_batch:
            return self.overrides
        batch, lr = int(config["data.batch_size"]), float(config["optimizer.lr"])
        # The README's rule: the lr scales linearly with the batch.
        return ("--data.batch_size", str(2 * batch), "--optimizer.lr", repr(2 * lr))

    def applies_to(self, config: dict[str, Any], on_cuda: bool) -> bool:
        """Whether the move changes anything in ``config`` on this device."""
        if self.needs_cuda and not on_cuda:
            return False
        options = self.options(config)
        pairs = zip(options[::2], options[1::2], strict=True)
        return any(str(config.get(option.removeprefix("--"), "")).lower() != value for option, value in pairs)


# The measure each kind is judged on: steady-state samples/s ("throughput") or the fit's time per epoch.
THROUGHPUT, FIT_TIME = "samples/s", "fit time per epoch"
MEASURE = {
    "input_bound": THROUGHPUT,
    "transfer_bound": THROUGHPUT,
    "optimizer_heavy": THROUGHPUT,
    "framework_heavy": THROUGHPUT,
    "validation_heavy": FIT_TIME,
    "checkpoint_heavy": FIT_TIME,
}

MOVES: dict[str, tuple[Move, ...]] = {
    "input_bound": (
        Move("workers found by WorkerTuner", ("--data.num_workers", "auto"), SAME_RESULTS),
        Move("persistent workers", ("--data.persistent_workers", "true"), SAME_RESULTS),
        Move("tensor pipeline", ("--data.pipeline", "tensor"), SAME_RESULTS),
        Move("gpu pipeline", ("--data.pipeline", "gpu"), SAME_RESULTS, needs_cuda=True),
    ),
    "transfer_bound": (
        Move("pinned memory", ("--data.pin_memory", "true"), SAME_RESULTS, needs_cuda=True),
        Move("gpu pipeline", ("--data.pipeline", "gpu"), SAME_RESULTS, needs_cuda=True),
    ),
    "optimizer_heavy": (
        Move("foreach optimizer", ("--optimizer.foreach", "true"), SAME_RESULTS),
        Move("fused optimizer", ("--optimizer.fused", "true"), SAME_RESULTS, needs_cuda=True),
    ),
    "framework_heavy": (Move("twice the batch, lr scaled", (), CHANGES_TRAINING, doubles_batch=True),),
    "validation_heavy": (
        Move("validate once per epoch", ("--trainer.val_check_interval", "1.0"), CHANGES_TRAINING),
        Move("validate every 2 epochs", ("--trainer.check_val_every_n_epoch", "2"), CHANGES_TRAINING),
    ),
    "checkpoint_heavy": (
        Move("no checkpoints while tuning", ("--trainer.enable_checkpointing", "false"), CHANGES_TRAINING),
    ),
}

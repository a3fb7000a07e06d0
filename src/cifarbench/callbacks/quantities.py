"""Every timing quantity, declared once: its name, unit, meaning, kinds and TensorBoard tag.

The records (``StepTimes``, ``Totals``, ``Budget``, ``EpochTiming``), the CSV columns, the metric names, the
custom-scalars layout, the table's labels and ``compare``'s columns are all derived from :data:`QUANTITIES`,
as torchmetrics derives a metric's state from its ``add_state`` calls. Adding a quantity is one entry here and
its measurement.

Kinds:

- ``column``: a column of ``timings.csv`` and a field of ``EpochTiming`` (in declaration order: scripts read
  columns by name, and new quantities only ever come last);
- ``step``: measured per training step and summed over steps (``StepTimes``, ``Totals``);
- ``part``: one of the parts that add up to a step's training time;
- ``bucket``: a bucket of the fit budget (every second of the fit, in ``BUCKET_ORDER``);
- ``tag`` / ``step_tag``: logged to TensorBoard per epoch (``time/<name>``, ...) / per sampled step
  (``time/step_<name>``);
- ``compared``: a steady-state column of ``compare``'s table; ``required``: a column every ``timings.csv`` has
  had since the first version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class Quantity:
    name: str
    unit: str  # "s", "bytes", or a word for counts and ratios
    meaning: str  # one line: the budget table prints it, so it stays under 37 characters for buckets
    column: bool = True
    step: bool = False
    part: bool = False
    bucket: bool = False
    tag: str | None = None
    step_tag: bool = False
    compared: bool = False
    required: bool = False
    type: Any = float
    # Columns added after the first version have a default, so that a checkpoint written before them loads.
    default: Any = NO_DEFAULT
    csv: str | None = None  # the column's name, when it is not the name with its unit

    @property
    def column_name(self) -> str:
        """``data_loading_s``, ``peak_memory_bytes``, ``samples``: the name with its unit when it has one."""
        if self.csv is not None:
            return self.csv
        return f"{self.name}_{self.unit}" if self.unit in ("s", "bytes") else self.name

    @property
    def step_tag_name(self) -> str:
        return f"time/step_{self.name}"


def _time(name: str, meaning: str, **kinds: Any) -> Quantity:
    return Quantity(name, "s", meaning, tag=kinds.pop("tag", f"time/{name}"), **kinds)


_PART = {"column": True, "step": True, "part": True, "bucket": True, "compared": True}

QUANTITIES: tuple[Quantity, ...] = (
    # ----- timings.csv's first columns, in their historical order
    Quantity("index", "index", "the epoch's number", type=int, required=True, csv="epoch"),
    _time("data_loading", "waiting for batches, with the copy", step=True, bucket=True, step_tag=True,
          compared=True, required=True),
    _time("training", "the training steps", step=True, step_tag=True, compared=True, required=True),
    _time("epoch", "train-epoch wall time, pauses out", compared=True, required=True),
    _time("transfer", "copies of batches to the device", step=True),
    Quantity("steps", "count", "training steps in the epoch", type=int),
    Quantity("samples", "count", "samples, summed over ranks", type=int, required=True),
    Quantity("samples_per_s", "ratio", "samples per second of the epoch", tag="throughput/samples_per_s"),
    _time("data_loading_mean", "mean over ranks", tag="time/data_loading_mean"),
    _time("training_mean", "mean over ranks", tag="time/training_mean"),
    _time("epoch_mean", "mean over ranks", tag="time/epoch_mean"),
    Quantity("world_size", "count", "processes in the run", type=int),
    Quantity("clock", "name", "host, cuda_events or cuda_sync", type=str),
    Quantity("mfu", "ratio", "model FLOP utilization", type=float | None, default=None, tag="throughput/mfu"),
    # ----- the step's anatomy
    _time("forward", "the user's training_step", default=0.0, step_tag=True, **_PART),
    _time("backward", "every backward pass", default=0.0, step_tag=True, **_PART),
    _time("optimizer", "optimizer steps", default=0.0, step_tag=True, **_PART),
    _time("step_other", "user code between the above", default=0.0, **_PART),
    _time("step_p50", "the median step", default=0.0, tag=None),
    _time("step_p90", "the 90th-percentile step", default=0.0, compared=True),
    _time("step_max", "the slowest step", default=0.0, tag=None),
    Quantity("peak_memory", "bytes", "CUDA peak memory in the epoch", type=int | None, default=None,
             tag="memory/peak_bytes"),
    # ----- added with the one schema
    _time("framework", "Lightning's own per-step work", default=0.0, step_tag=True, **_PART),
    _time("profiler", "EpochTimer's own hooks and marks", default=0.0, step=True, bucket=True, compared=True),
    # ----- the operator window (OpWindow): its steps are left out of the step columns above
    Quantity("op_window_steps", "count", "steps left out for OpWindow", type=int, default=0),
    _time("op_window", "OpWindow's profiled steps (slowed)", default=0.0, bucket=True, tag=None),
    # ----- every rank's figures: the slowest rank's own time over the median rank's (empty with one rank)
    Quantity("rank_spread", "ratio", "slowest rank's own time / median's", type=float | None, default=None,
             tag="time/rank_spread", compared=True),
    # ----- fit-budget buckets that are not epoch columns
    _time("startup", "setup, device moves, loader start-up", column=False, bucket=True, tag=None),
    _time("sanity_check", "validation batches before training", column=False, bucket=True, tag=None),
    _time("first_step", "the first step (compile, autotune)", column=False, bucket=True, tag=None),
    _time("validation", "validation runs", column=False, bucket=True, tag=None),
    _time("checkpointing", "checkpoint saves", column=False, bucket=True, tag=None),
    _time("other", "logging, callbacks, epoch ends", column=False, bucket=True, tag=None),
    # ----- per rank only (timings_ranks.csv): a rank's backward beyond the least of any rank's, the wait for
    # a slower rank in the gradient all-reduce
    _time("backward_wait", "backward spent waiting for other ranks", column=False, tag=None),
)  # fmt: skip

#: Every quantity by name, as attributes: ``Q.data_loading.column_name`` is ``"data_loading_s"``.
Q = SimpleNamespace(**{quantity.name: quantity for quantity in QUANTITIES})

COLUMNS: tuple[Quantity, ...] = tuple(quantity for quantity in QUANTITIES if quantity.column)
#: timings.csv's header, in order.
CSV_FIELDS: tuple[str, ...] = tuple(quantity.column_name for quantity in COLUMNS)
#: The parts of a step's training time, in the order tables show them; they add up to ``training``.
PARTS: tuple[Quantity, ...] = (Q.forward, Q.backward, Q.optimizer, Q.framework, Q.step_other)
#: Summed per step (StepTimes' and Totals' seconds).
STEP_SECONDS: tuple[Quantity, ...] = tuple(quantity for quantity in QUANTITIES if quantity.step)
#: The fit budget's buckets, in the order the table and fit_budget.json show them (``other`` is the rest).
BUCKET_ORDER: tuple[Quantity, ...] = (
    Q.startup, Q.sanity_check, Q.first_step, Q.data_loading, *PARTS, Q.validation, Q.checkpointing,
    Q.profiler, Q.op_window, Q.other,
)  # fmt: skip
#: The buckets that hold the training epochs' time (the share of the epochs that input-bound is judged on).
EPOCH_BUCKETS: tuple[Quantity, ...] = (Q.first_step, Q.data_loading, *PARTS)
assert {q.name for q in BUCKET_ORDER} == {q.name for q in QUANTITIES if q.bucket}, "a bucket has no place"


def _record(name: str, fields: list[tuple[str, Any, Any]], doc: str, **options: Any) -> type:
    specs = [(field, kind, dataclasses.field(default=default)) for field, kind, default in fields]
    record = dataclasses.make_dataclass(name, specs, **options)
    record.__module__, record.__doc__ = __name__, doc  # (make_dataclass takes module= only from 3.12)
    return record


_STEP_FIELDS = [(quantity.column_name, float, 0.0) for quantity in STEP_SECONDS]

#: One finished training step (seconds), read off its marks.
StepTimes = _record(
    "StepTimes",
    [("global_step", int, 0), ("samples", int, 0), *_STEP_FIELDS],
    "One finished training step, read off its marks (seconds; see quantities.QUANTITIES).",
    slots=True,
)


class TotalsBase:
    """Running sums of :data:`STEP_SECONDS` over steps: an epoch's, or a fit's."""

    steps: int
    samples: int

    def add(self, step: Any) -> None:
        self.steps += 1
        self.samples += step.samples
        for name in STEP_FIELD_NAMES:
            setattr(self, name, getattr(self, name) + getattr(step, name))

    def merge(self, other: TotalsBase) -> None:
        for name in ("steps", "samples", *STEP_FIELD_NAMES):
            setattr(self, name, getattr(self, name) + getattr(other, name))


STEP_FIELD_NAMES: tuple[str, ...] = tuple(field for field, _, _ in _STEP_FIELDS)
Totals = _record(
    "Totals",
    [("steps", int, 0), ("samples", int, 0), *_STEP_FIELDS],
    "Running sums over steps: an epoch's, or a fit's (seconds; see quantities.QUANTITIES).",
    bases=(TotalsBase,),
)


class BudgetBase(Mapping):
    """Every second of a fit by bucket (:data:`BUCKET_ORDER`), read by attribute (``budget.validation``) or,
    as a read-only mapping in bucket order, by name (``budget["validation"]``, ``dict(budget)``)."""

    def __getitem__(self, name: str) -> float:
        if name not in _BUCKET_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(_BUCKET_NAMES)

    def __len__(self) -> int:
        return len(_BUCKET_NAMES)

    def as_dict(self) -> dict[str, float]:
        return dict(self.items())

    @property
    def fit_s(self) -> float:
        return sum(self.values())

    def share(self, seconds: float, of: float | None = None) -> float:
        whole = self.fit_s if of is None else of
        return seconds / whole if whole > 0 else 0.0

    @property
    def training_s(self) -> float:
        """The training steps after the first (the parts summed)."""
        return sum(getattr(self, quantity.name) for quantity in PARTS)

    @property
    def epochs_s(self) -> float:
        """The training epochs: every step with its wait for data, the first step included."""
        return sum(getattr(self, quantity.name) for quantity in EPOCH_BUCKETS)


_BUCKET_NAMES = tuple(quantity.name for quantity in BUCKET_ORDER)
Budget = _record(
    "Budget",
    [(quantity.name, float, 0.0) for quantity in BUCKET_ORDER],
    "Every second of a fit by bucket (seconds; see quantities.BUCKET_ORDER); they add up to the fit.",
    bases=(BudgetBase,),
    frozen=True,
)


def epoch_columns_record(name: str, methods: type, doc: str) -> type:
    """The per-epoch record's class: one field per :data:`COLUMNS` entry, in order."""
    specs = [
        (quantity.column_name, quantity.type)
        if quantity.default is NO_DEFAULT
        else (quantity.column_name, quantity.type, dataclasses.field(default=quantity.default))
        for quantity in COLUMNS
    ]
    record = dataclasses.make_dataclass(name, specs, bases=(methods,), frozen=True)
    record.__module__, record.__doc__ = methods.__module__, doc
    return record


def epoch_metric_tags() -> dict[str, str]:
    """column name -> TensorBoard tag, for the columns logged once per epoch."""
    return {quantity.column_name: quantity.tag for quantity in COLUMNS if quantity.tag}


#: Column names by quantity name: ``COLUMN.data_loading`` is ``"data_loading_s"`` (for timings.csv readers).
COLUMN = SimpleNamespace(**{quantity.name: quantity.column_name for quantity in COLUMNS})
#: What every timings.csv has had since the first version; without these a file is not EpochTimer's.
REQUIRED_COLUMNS: tuple[str, ...] = tuple(quantity.column_name for quantity in COLUMNS if quantity.required)
#: Added later: a CSV from an older version is compared on what it has.
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(
    quantity.column_name for quantity in COLUMNS if quantity.compared and not quantity.required
)
#: ``compare``'s steady-state columns, in the order its table shows them.
COMPARED: tuple[Quantity, ...] = (Q.epoch, Q.data_loading, Q.training, *PARTS, Q.profiler, Q.rank_spread)
#: Each rank's own figures per epoch (timings_ranks.csv after its epoch, rank and host; fit_budget.json's
#: ``ranks`` block summed over the epochs).
RANK_FIGURES: tuple[Quantity, ...] = (Q.epoch, Q.data_loading, Q.training, *PARTS, Q.backward_wait)

#: The per-step curves' quantities (``time/step_<name>``).
STEP_CURVES: tuple[Quantity, ...] = tuple(quantity for quantity in QUANTITIES if quantity.step_tag)
#: Shown only when the run has more than one rank.
RANK_MEANS: tuple[Quantity, ...] = (Q.data_loading_mean, Q.training_mean, Q.epoch_mean)


def tensorboard_layout() -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars charts (TensorBoard's CUSTOM SCALARS tab)."""

    def chart(quantities: tuple[Quantity, ...], per_step: bool = False) -> list[Any]:
        tags = [quantity.step_tag_name if per_step else quantity.tag for quantity in quantities]
        return ["Multiline", [f"^{tag}$" for tag in tags]]

    return {
        "cifarbench timing": {
            "data loading vs training per epoch (s)": chart((Q.data_loading, Q.training, Q.epoch)),
            "inside the step, per epoch (s)": chart((*PARTS, Q.profiler)),
            "per step (s)": chart(STEP_CURVES, per_step=True),
        }
    }

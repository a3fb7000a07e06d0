"""The one schema: each timing quantity is declared once, and everything that names one is derived from it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from cifarbench.callbacks import EpochTiming
from cifarbench.callbacks.outputs import epoch_metrics, step_metrics
from cifarbench.callbacks.quantities import (
    BUCKET_ORDER,
    COLUMNS,
    CSV_FIELDS,
    QUANTITIES,
    Budget,
    StepTimes,
    Totals,
    tensorboard_layout,
)
from cifarbench.callbacks.table import budget_rows
from cifarbench.comparison import COLUMNS as COMPARE_COLUMNS
from cifarbench.comparison import OPTIONAL, PLOT_PARTS, REQUIRED

SRC = Path(__file__).resolve().parents[1] / "src" / "cifarbench"
DECLARATION = SRC / "callbacks" / "quantities.py"
# What a quantity is spelled as: its timings.csv column (with its unit) and its TensorBoard tags.
SPELLINGS = {q.column_name for q in QUANTITIES if q.column and q.unit in ("s", "bytes")}
SPELLINGS |= {q.tag for q in QUANTITIES if q.tag} | {q.step_tag_name for q in QUANTITIES if q.step_tag}


def spelled_quantities(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in SPELLINGS
    )


def test_no_module_but_the_declaration_spells_a_quantitys_column_or_tag():
    found = {
        str(path.relative_to(SRC)): hits
        for path in sorted(SRC.rglob("*.py"))
        if path != DECLARATION and (hits := spelled_quantities(path))
    }
    assert found == {}


def test_the_scan_finds_a_spelled_column(tmp_path):
    module = tmp_path / "module.py"
    module.write_text('ROW = {"data_loading_s": 1.0}\nTAG = "time/step_training"\n')
    assert spelled_quantities(module) == [(1, "data_loading_s"), (2, "time/step_training")]


def test_records_csv_metrics_layout_table_and_compare_come_from_the_declaration():
    assert [field.name for field in dataclasses.fields(EpochTiming)] == list(CSV_FIELDS)
    assert CSV_FIELDS == tuple(q.column_name for q in COLUMNS)
    step_fields = {q.column_name for q in QUANTITIES if q.step}
    assert step_fields <= {field.name for field in dataclasses.fields(StepTimes)}
    assert step_fields <= {field.name for field in dataclasses.fields(Totals)}
    assert [field.name for field in dataclasses.fields(Budget)] == [q.name for q in BUCKET_ORDER]

    row = EpochTiming(**{name: 1 if name != "clock" else "host" for name in CSV_FIELDS})
    declared_tags = {q.tag for q in QUANTITIES if q.tag}
    assert set(epoch_metrics(row)) <= declared_tags
    assert {q.tag for q in COLUMNS if q.tag and not q.name.endswith("_mean")} <= set(epoch_metrics(row))
    assert set(step_metrics(StepTimes())) == {q.step_tag_name for q in QUANTITIES if q.step_tag}
    charted = {
        tag.strip("^$") for chart in tensorboard_layout()["cifarbench timing"].values() for tag in chart[1]
    }
    assert charted <= declared_tags | {q.step_tag_name for q in QUANTITIES if q.step_tag}

    meanings = {cells[0]: cells[3] for cells in budget_rows(Budget())}
    assert all(meanings[q.name] == q.meaning for q in BUCKET_ORDER)
    assert set(REQUIRED) | set(OPTIONAL) <= set(CSV_FIELDS)
    assert {q.column_name for q in QUANTITIES if q.compared} <= set(COMPARE_COLUMNS) | set(OPTIONAL)
    assert set(PLOT_PARTS.values()) <= set(CSV_FIELDS)


def test_the_profiler_and_framework_quantities_are_everywhere_a_part_or_bucket_is():
    profiler = next(q for q in QUANTITIES if q.name == "profiler")
    framework = next(q for q in QUANTITIES if q.name == "framework")
    for quantity in (profiler, framework):
        assert quantity in BUCKET_ORDER and quantity.column_name in CSV_FIELDS
        assert quantity.column_name in COMPARE_COLUMNS
        assert quantity.tag in {tag.strip("^$") for tag in tensorboard_layout()["cifarbench timing"][
            "inside the step, per epoch (s)"][1]}  # fmt: skip

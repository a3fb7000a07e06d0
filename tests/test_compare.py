"""`python -m cifarbench compare`: runs written by real short fits, side by side, and its bad input."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest

from cifarbench.__main__ import main
from cifarbench.comparison import config_differences, find_runs

from helpers import fit_args

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two short fits (3 epochs of one batch) that differ in exactly two options: the batch size and the
    learning rate."""
    root = tmp_path_factory.mktemp("compare")
    small = (
        "--trainer.max_epochs",
        "3",
        "--trainer.limit_train_batches",
        "1",
        "--timer.print_table",
        "false",
    )
    main(["fit", *fit_args(root, *small)])
    main(["fit", *fit_args(root, *small, "--data.batch_size", "8", "--optimizer.lr", "0.05")])
    return root / "lightning_logs" / "version_0", root / "lightning_logs" / "version_1"


def steady(run: Path, column: str) -> float:
    """The mean over epochs after the first, straight from the run's CSV."""
    with open(run / "timings.csv") as file:
        values = [float(row[column]) for row in csv.DictReader(file)][1:]
    return sum(values) / len(values)


def test_the_table_holds_each_runs_steady_epoch_and_the_speedup_from_the_csvs(two_runs, tmp_path, capsys):
    baseline, other = two_runs
    table = tmp_path / "table.csv"
    main(["compare", str(baseline), str(other), "--csv", str(table)])
    out = capsys.readouterr().out
    assert f"A: {baseline}" in out and f"B: {other}" in out
    with open(table) as file:
        rows = list(csv.DictReader(file))
    assert [row["run"] for row in rows] == [str(baseline), str(other)]
    for row, run in zip(rows, two_runs, strict=True):
        assert int(row["epochs"]) == 3
        for column in ("epoch_s", "data_loading_s", "training_s", "forward_s", "backward_s", "optimizer_s"):
            assert float(row[column]) == pytest.approx(steady(run, column)), column
        assert float(row["samples_per_s"]) == pytest.approx(steady(run, "samples") / steady(run, "epoch_s"))
        assert float(row["fit_s"]) == pytest.approx(
            json.loads((run / "fit_budget.json").read_text())["fit_s"]
        )
    speedup = (steady(other, "samples") / steady(other, "epoch_s")) / (
        steady(baseline, "samples") / steady(baseline, "epoch_s")
    )
    assert float(rows[1]["speedup"]) == pytest.approx(speedup) and float(rows[0]["speedup"]) == 1.0
    assert f"{speedup:.2f}x" in out  # the printed table shows the same ratio


def test_the_options_that_differ_are_exactly_the_two_changed(two_runs, capsys):
    runs, _ = find_runs([str(run) for run in two_runs])
    assert config_differences(runs) == [
        ("--data.batch_size", ["16", "8"]),
        ("--optimizer.lr", ["0.1", "0.05"]),
    ]
    main(["compare", *map(str, two_runs)])
    out = capsys.readouterr().out
    assert "--data.batch_size: A 16, B 8" in out and "--optimizer.lr: A 0.1, B 0.05" in out


def test_a_folder_of_runs_is_searched_and_a_plot_drawn(two_runs, tmp_path, capsys):
    plot = tmp_path / "runs.png"
    main(["compare", str(two_runs[0].parent), "--plot", str(plot)])
    out = capsys.readouterr().out
    assert "version_0" in out.split("\n")[0] and "version_1" in out.split("\n")[1]  # both runs, in order
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_runs_of_other_clocks_or_world_sizes_are_compared_with_a_warning(two_runs, tmp_path, capsys):
    elsewhere = tmp_path / "gpu_run"
    shutil.copytree(two_runs[1], elsewhere)
    path = elsewhere / "timings.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row["clock"], row["world_size"] = "cuda_events", "2"
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    main(["compare", str(two_runs[0]), str(elsewhere)])
    out = capsys.readouterr().out
    assert "different clocks" in out and "cuda_events" in out and "host" in out
    assert "different world sizes" in out


def test_a_csv_from_an_older_version_is_compared_on_what_it_has(two_runs, tmp_path, capsys):
    older = tmp_path / "older"
    older.mkdir()
    keep = ["epoch", "data_loading_s", "training_s", "epoch_s", "transfer_s", "steps", "samples", "clock"]
    rows = list(csv.DictReader((two_runs[0] / "timings.csv").open()))
    with open(older / "timings.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keep, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    table = tmp_path / "t.csv"
    main(["compare", str(older), str(two_runs[0]), "--csv", str(table), "--plot", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert f"{older / 'timings.csv'} was written by an older cifarbench" in out and "forward_s" in out
    first = next(csv.DictReader(table.open()))
    assert first["forward_s"] == "" and float(first["epoch_s"]) == pytest.approx(steady(older, "epoch_s"))


def test_the_rank_spread_is_a_row_when_the_runs_have_one(two_runs, tmp_path, capsys):
    main(["compare", *map(str, two_runs)])
    assert "rank spread" not in capsys.readouterr().out  # one rank each: nothing to show
    copies = []
    for index, (run, spread) in enumerate(zip(two_runs, ("1.5", "3.0"), strict=True)):
        copy = tmp_path / f"ranks{index}"
        shutil.copytree(run, copy)
        rows = list(csv.DictReader((copy / "timings.csv").open()))
        for row in rows:
            row["rank_spread"], row["world_size"] = spread, "2"
        with open(copy / "timings.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        copies.append(copy)
    table = tmp_path / "t.csv"
    main(["compare", *map(str, copies), "--csv", str(table)])
    out = capsys.readouterr().out
    assert "rank spread" in out and "1.50x" in out and "3.00x" in out
    assert [row["rank_spread"] for row in csv.DictReader(table.open())] == ["1.5", "3.0"]


def make_empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "nothing").mkdir()
    return tmp_path / "nothing"


def make_unfinished_run(tmp_path: Path) -> Path:
    run = tmp_path / "unfinished"
    run.mkdir()
    (run / "timings.csv").write_text("epoch,data_loading_s,training_s,epoch_s,samples\n")
    return run / "timings.csv"


def make_unreadable_csv(tmp_path: Path) -> Path:
    run = tmp_path / "garbled"
    run.mkdir()
    (run / "timings.csv").write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    return run / "timings.csv"


def make_foreign_csv(tmp_path: Path) -> Path:
    run = tmp_path / "foreign"
    run.mkdir()
    (run / "timings.csv").write_text("name,score\na,1\n")
    return run / "timings.csv"


def make_half_written_row(tmp_path: Path) -> Path:
    run = tmp_path / "half"
    run.mkdir()
    (run / "timings.csv").write_text("epoch,data_loading_s,training_s,epoch_s,samples\n0,1,2,3,4\n1,0.5,\n")
    return run / "timings.csv"


def make_bad_budget(tmp_path: Path) -> Path:
    run = tmp_path / "badjson"
    run.mkdir()
    (run / "timings.csv").write_text("epoch,data_loading_s,training_s,epoch_s,samples\n0,1,2,3,4\n")
    (run / "fit_budget.json").write_text("{not json")
    return run / "fit_budget.json"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (make_empty_folder, "no run in it"),
        (lambda tmp_path: tmp_path / "missing", "no such folder"),
        (make_unfinished_run, "finished no epoch"),
        (make_unreadable_csv, "cannot be read"),
        (make_foreign_csv, "not an EpochTimer timings.csv"),
        (make_half_written_row, "line 3 has no number for training_s, epoch_s, samples"),
        (make_bad_budget, "not valid JSON (Expecting property name enclosed in double quotes"),
    ],
    ids=[
        "no-runs",
        "no-folder",
        "no-finished-epoch",
        "unreadable",
        "foreign-csv",
        "half-row",
        "bad-budget-json",
    ],
)
def test_bad_input_is_one_line_naming_the_folder_or_file(two_runs, tmp_path, capsys, make, expected):
    bad = make(tmp_path)
    given = bad if bad.is_dir() or not bad.exists() else bad.parent
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(two_runs[0]), str(given)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert str(bad) in line and expected in line and "Traceback" not in err


def test_a_plot_that_is_not_a_png_is_refused(two_runs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(two_runs[0]), "--plot", "runs.pdf"])
    assert exit_info.value.code == 2 and "--plot 'runs.pdf' must name a .png file" in capsys.readouterr().err


def test_an_output_that_cannot_be_written_is_one_line(two_runs, tmp_path, capsys):
    (tmp_path / "table.csv").mkdir()  # a folder where the file would go
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(two_runs[0]), "--csv", str(tmp_path / "table.csv")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert f"--csv '{tmp_path / 'table.csv'}' cannot be written" in line


# ----------------------------------------------------------------------------------- hostile run folders
def edit_csv(column: str, value: str):
    def edit(run: Path) -> Path:
        path = run / "timings.csv"
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        rows[-1][column] = value
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return path

    return edit


def edit_budget(field: str, value):
    def edit(run: Path) -> Path:
        path = run / "fit_budget.json"
        budget = json.loads(path.read_text())
        budget[field] = value
        path.write_text(json.dumps(budget))
        return path

    return edit


def budget_text(text: str):
    def edit(run: Path) -> Path:
        (run / "fit_budget.json").write_text(text)
        return run / "fit_budget.json"

    return edit


def alias_bomb_config(run: Path) -> Path:
    """~600 bytes of nested aliases: 10**8 values once expanded (compare hung past 300 s at 6 GB)."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]"
        for prev, name in zip("abcdefg", "bcdefgh", strict=True)
    ]
    (run / "config.yaml").write_text("\n".join(lines) + "\n")
    return run / "config.yaml"


def huge_budget(run: Path) -> Path:
    """50 MB of valid JSON (pure-Python YAML took 92 s to read it)."""
    (run / "fit_budget.json").write_text('{"fit_s": 1.0, "pad": "' + "x" * 50_000_000 + '"}')
    return run / "fit_budget.json"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (alias_bomb_config, "its aliases expand to more than 100,000 values"),
        (edit_csv("world_size", "nan"), "line 4: world_size is nan, not a finite number >= 0"),
        (edit_csv("world_size", "inf"), "line 4: world_size is inf, not a finite number >= 0"),
        (edit_csv("world_size", "1.5"), "line 4: world_size is 1.5, not a whole number >= 1"),
        (edit_csv("epoch_s", "nan"), "line 4: epoch_s is nan, not a finite number >= 0"),
        (edit_csv("training_s", "-2.5"), "line 4: training_s is -2.5, not a finite number >= 0"),
        (edit_csv("forward_s", "fast"), "line 4: forward_s is 'fast', not a number"),
        (edit_budget("fit_s", "12 s"), "fit_s is a str ('12 s'), not a finite number of seconds >= 0"),
        (edit_budget("fit_s", float("inf")), "fit_s is a float (inf), not a finite number of seconds >= 0"),
        (edit_budget("machine", ["vm", "cpu"]), "machine is a list, not a mapping (host, device)"),
        (edit_budget("machine", {"host": 7}), "machine.host is a int (7), not a string"),
        (budget_text("[" * 100_000 + "]" * 100_000), "nested too deep to be EpochTimer's fit budget"),
        (budget_text('["a list"]'), "must be EpochTimer's fit budget (a JSON object), not a list"),
        (huge_budget, "47.7 MiB is too large to read (more than 16 MiB"),
    ],
    ids=["alias-bomb", "world-size-nan", "world-size-inf", "world-size-fraction", "epoch-nan",
         "negative-time", "text-time", "fit-s-text", "fit-s-inf", "machine-list", "host-number",
         "budget-deep", "budget-list", "budget-50MB"],
)  # fmt: skip
def test_a_hostile_run_folder_is_one_line_naming_the_file_and_field_in_bounded_time(
    two_runs, tmp_path, capsys, damage, expected
):
    run = tmp_path / "run"
    shutil.copytree(two_runs[1], run)
    bad = damage(run)
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(two_runs[0]), str(run)])
    assert time.monotonic() - start < 5
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"cifarbench: error: {bad}: {expected}"), line


def test_a_large_budget_under_the_limit_is_read_as_json_in_seconds(two_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(two_runs[1], run)
    budget = json.loads((run / "fit_budget.json").read_text())
    (run / "fit_budget.json").write_text(json.dumps({**budget, "pad": ["x" * 100] * 120_000}))  # 12 MB
    start = time.monotonic()
    main(["compare", str(two_runs[0]), str(run)])
    assert time.monotonic() - start < 5
    assert f"B: {run}" in capsys.readouterr().out

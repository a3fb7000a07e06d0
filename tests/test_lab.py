"""`python -m cifarbench lab ...`: each part writes CSV, PNG and markdown that agree; c3's rule; report.md."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from cifarbench.__main__ import main
from cifarbench.commands.lab import parse_lab_args
from cifarbench.errors import ConfigError
from cifarbench.lab.context import LabContext
from cifarbench.lab.parts import c3, c4, c8
from cifarbench.run_folder import Run
from cifarbench.tables import parse_markdown_table

from helpers import fit_args

TINY_FIT = fit_args(None)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def assert_markdown_matches_csv(markdown_path: Path, csv_path: Path) -> None:
    table = parse_markdown_table(markdown_path.read_text())
    rows = read_csv(csv_path)
    assert len(table) == len(rows) > 0
    for shown, stored in zip(table, rows, strict=True):
        assert list(shown) == list(stored)  # same columns, same order
        for column, text in stored.items():
            try:
                value = float(text)
            except ValueError:
                assert shown[column] == text, column
                continue
            if math.isnan(value):
                assert shown[column] == "nan", column
            else:
                assert float(shown[column]) == pytest.approx(value, abs=5.1e-5), column


def assert_part_outputs(folder: Path, part: str) -> None:
    csv_path, md_path = folder / f"{part}.csv", folder / f"{part}.md"
    assert csv_path.is_file() and md_path.is_file()
    pngs = sorted(folder.glob("*.png"))
    assert pngs, f"no PNG in {folder}"
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert f"]({png.name})" in md_path.read_text()  # each plot is embedded
    assert_markdown_matches_csv(md_path, csv_path)


# ------------------------------------------------------------------ injected runs (no training, fast)
def fake_run(name: str, data_loading: list[float], training: float = 1.0) -> Run:
    epochs = [
        {"epoch": float(i), "data_loading_s": d, "training_s": training, "epoch_s": d + training + 0.01}
        for i, d in enumerate(data_loading)
    ]
    return Run(name=name, folder=Path(name), epochs=epochs, command=f"fit {name}")


def test_c3_stops_where_steady_loading_stops_improving_and_reports_epoch_zero_apart(tmp_path, monkeypatch):
    # Epoch 0 carries worker start-up (large for many workers); the rule must use the later epochs.
    steady = {0: 9.0, 4: 2.0, 8: 1.0, 12: 1.5, 16: 0.1}
    asked: list[list[str]] = []

    def fake_fit(ctx, part, run, extra):
        asked.append(extra)
        workers = int(extra[extra.index("--data.num_workers") + 1])
        return fake_run(run, [steady[workers] + 5.0 * workers, steady[workers], steady[workers]])

    monkeypatch.setattr(c3, "fit_once", fake_fit)
    result = c3.run(LabContext(out_dir=tmp_path), workers=[0, 4, 8, 12, 16])
    rows = read_csv(result.csv_path)
    assert [int(r["workers"]) for r in rows] == [0, 4, 8, 12]  # 16 never runs
    assert [r["workers"] for r in rows if r["best"] == "yes"] == ["8"]
    assert float(rows[2]["data_loading_first_epoch_s"]) == pytest.approx(41.0)
    # Worker runs keep their processes across epochs; 0 workers cannot.
    persistent = [extra[extra.index("--data.persistent_workers") + 1] for extra in asked]
    assert persistent == ["false", "true", "true", "true"]
    assert c3.best_workers_from_csv(result.csv_path) == 8
    assert "**8 workers**" in result.markdown


def test_c4_compares_one_worker_with_c3s_best(tmp_path, monkeypatch):
    (tmp_path / "c3").mkdir()
    (tmp_path / "c3" / "c3.csv").write_text("workers,best\n0,\n6,yes\n")
    runs: list[str] = []

    def fake_fit(ctx, part, run, extra):
        runs.append(run)
        return fake_run(run, [3.0, 1.0, 1.0] if run == "workers_1" else [3.0, 0.2, 0.2])

    monkeypatch.setattr(c4, "fit_once", fake_fit)
    result = c4.run(LabContext(out_dir=tmp_path))
    assert runs == ["workers_1", "workers_6"]
    rows = read_csv(result.csv_path)
    assert [float(r["data_loading_s"]) for r in rows] == [1.0, 0.2]  # steady state: epoch 0 left out


def test_c8_reports_why_a_compile_mode_could_not_run(tmp_path, monkeypatch):
    def fake_fit(ctx, part, run, extra):
        if "--model.compile" in extra:
            raise RuntimeError("inductor needs a C++ compiler\nmore detail")
        return fake_run(run, [0.1, 0.1])

    monkeypatch.setattr(c8, "fit_once", fake_fit)
    result = c8.run(LabContext(out_dir=tmp_path), modes=["default"])
    rows = read_csv(result.csv_path)
    assert [(r["mode"], r["status"]) for r in rows] == [("eager", "ok"), ("default", "failed")]
    assert rows[1]["note"] == "RuntimeError: inductor needs a C++ compiler"


def test_c8_stops_when_eager_fails_rather_than_reporting_every_mode_failed(tmp_path, monkeypatch):
    def bad_options_fit(ctx, part, run, extra):
        raise ConfigError("--data.batch_size 0 must be >= 1")  # what fit raises on an invalid fit option

    monkeypatch.setattr(c8, "fit_once", bad_options_fit)
    with pytest.raises(ConfigError):
        c8.run(LabContext(out_dir=tmp_path), modes=["default"])


def test_unwritable_out_folder_is_rejected_before_any_run(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the results would go")
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "c2", "--out", str(not_a_folder / "results"), *TINY_FIT])
    assert exit_info.value.code == 2
    output = capsys.readouterr()
    assert str(not_a_folder / "results") in output.err and "--out" in output.err
    assert "[lab c2] run" not in output.out  # no fit started


def test_lab_options_are_split_from_fit_overrides_in_order():
    call = parse_lab_args(
        ["c3", "--trainer.max_epochs", "3", "--workers", "0,2", "--out=x", "--quick", "--data.synthetic=64"]
    )
    options = call.options
    assert list(options.workers) == [0, 2] and options.out == "x" and options.quick
    assert call.fit_overrides == ["--trainer.max_epochs", "3", "--data.synthetic=64"]
    assert parse_lab_args(["c4", "--best", "0"]).options.best == 0  # c3 can find 0 workers best


@pytest.mark.parametrize(
    "argv, message",
    [
        (["lab", "c9"], "'c9'"),
        (["lab", "c3", "--workers", "0,four"], "--workers '0,four'"),
        (["lab", "c8", "--modes", "fastest"], "--modes 'fastest'"),
        (["lab", "c4", "--best", "-1"], "--best '-1' must be a whole number >= 0"),
        (["lab", "c3", "--patience", "0"], "--patience '0' must be a whole number >= 1"),
        (["lab", "c2", "--quick", "1"], "--quick is a flag: give it alone or with true or false, not '1'"),
    ],
)
def test_bad_lab_arguments_name_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ real runs through the fit path
PARTS = ("c2", "c3", "c4", "c5", "c6", "c7", "c8")


@pytest.fixture(scope="module")
def lab_all_out(tmp_path_factory) -> Path:
    """`lab all --quick` once, with tiny fits: every part runs through `lab <part>`'s own code path."""
    out = tmp_path_factory.mktemp("lab")
    main(["lab", "all", "--quick", "--out", str(out), "--workers", "0,1,2", *TINY_FIT])
    return out


@pytest.mark.slow
def test_a_single_part_command_writes_its_outputs(tmp_path):
    main(["lab", "c2", "--out", str(tmp_path), *TINY_FIT])
    assert_part_outputs(tmp_path / "c2", "c2")
    rows = read_csv(tmp_path / "c2" / "c2.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # TINY_FIT's two epochs, numbered like the lab's
    timings = read_csv(tmp_path / "c2" / "runs" / "default" / "timings.csv")
    assert [float(r["data_loading_s"]) for r in rows] == [float(r["data_loading_s"]) for r in timings]
    assert not (tmp_path / "report.md").exists()  # only `lab all` writes the report


@pytest.mark.slow
@pytest.mark.parametrize("part", PARTS)
def test_each_lab_part_writes_csv_png_and_markdown_that_agree(lab_all_out, part):
    assert_part_outputs(lab_all_out / part, part)


@pytest.mark.slow
def test_lab_runs_are_normal_tensorboard_runs_with_the_parts_overrides(lab_all_out):
    runs = sorted(p.name for p in (lab_all_out / "c6" / "runs").iterdir())
    assert runs == ["adadelta", "adagrad", "adam", "sgd", "sgd_nesterov"]
    for run in runs:
        assert list((lab_all_out / "c6" / "runs" / run).glob("events.out.tfevents.*"))
    rows = read_csv(lab_all_out / "c6" / "c6.csv")
    settings = {r["run"]: r["settings"] for r in rows}
    assert settings["SGD nesterov"] == "SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0005)"
    assert settings["Adam"] == "Adam(lr=0.1, weight_decay=0.0005)"
    assert all(r["loss"] and r["acc"] for r in rows)  # read back from TensorBoard
    norms = {r["run"] for r in read_csv(lab_all_out / "c7" / "c7.csv")}
    assert norms == {"norm=none", "norm=batch"}


@pytest.mark.slow
def test_c3_sweep_follows_its_own_rule_and_c4_uses_its_best(lab_all_out):
    rows = read_csv(lab_all_out / "c3" / "c3.csv")
    counts = [int(r["workers"]) for r in rows]
    steady = [float(r["data_loading_steady_s"]) for r in rows]
    assert counts == [0, 1, 2][: len(counts)]
    (best,) = [int(r["workers"]) for r in rows if r["best"] == "yes"]
    assert steady[counts.index(best)] == min(steady)
    if len(rows) < 3:  # stopped early: the last count measured did not beat the best before it
        assert steady[-1] >= min(steady[:-1])
    c4_workers = [int(r["workers"]) for r in read_csv(lab_all_out / "c4" / "c4.csv")]
    assert c4_workers == ([1] if best == 1 else [1, best])


@pytest.mark.slow
def test_lab_all_quick_writes_a_report_with_every_section(lab_all_out):
    report = (lab_all_out / "report.md").read_text()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    names = [heading.split()[1].rstrip(":") for heading in headings]
    assert names == ["C2", "C3", "C4", "C5", "C6", "C7", "C8", "Q1", "Q2", "Q3", "Q4"]
    assert report.startswith("# ") and "Machine: " in report and "CPUs; torch " in report
    assert report.count("Command: `python -m cifarbench lab ") == 7
    for part in PARTS:
        for png in (lab_all_out / part).glob("*.png"):
            assert f"]({part}/{png.name})" in report  # figures embedded with paths relative to report.md
    assert report.count("**11,173,962**") == 4

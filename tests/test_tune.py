"""`cifarbench tune`: real short fits, from a verdict to a kept (or refused) move."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from cifarbench.__main__ import main
from cifarbench.commands import tune as tune_command
from cifarbench.data.datasets import ImageArrayDataset
from cifarbench.tuning import search as search_module
from cifarbench.tuning.moves import SAME_RESULTS, Move

from helpers import fit_args

pytestmark = pytest.mark.slow


def slow_images(monkeypatch, seconds: float) -> None:
    """The torchvision pipeline's dataset sleeps per image (the tensor pipeline does not use it)."""
    original = ImageArrayDataset.__getitem__

    def slow_getitem(self, index):
        time.sleep(seconds)
        return original(self, index)

    monkeypatch.setattr(ImageArrayDataset, "__getitem__", slow_getitem)


def tune(out: Path, *extra: str) -> None:
    main(["tune", *fit_args(None, "--data.batch_size", "2"), "--steps", "3", "--out", str(out), *extra])


def table(out: Path) -> str:
    return (out / "tune.md").read_text()


def test_an_input_bound_run_ends_faster_and_tuned_yaml_reproduces_the_best_config(tmp_path, monkeypatch):
    slow_images(monkeypatch, 0.2)
    out = tmp_path / "tune"
    tune(out, "--trials", "3")
    text = table(out)
    assert "# cifarbench tune (finished)" in text and "input-bound" in text
    assert "| kept |" in text and "tensor pipeline" in text
    assert "x the baseline's" in text
    speedup = float(text.split("x the baseline's")[0].rsplit(" ", 1)[1])
    assert speedup > 1.2
    tuned = yaml.safe_load((out / "tuned.yaml").read_text())
    assert tuned["data"]["pipeline"] == "tensor"
    kept = [folder for folder in sorted((out / "trials").iterdir()) if "tensor" in folder.name]
    saved = yaml.safe_load((kept[0] / "config.yaml").read_text())
    for section in ("data", "model", "optimizer"):
        assert tuned[section] == saved[section]
    assert (out / "tune.png").stat().st_size > 0


def test_validation_heavy_lists_the_training_changing_move_and_applies_it_only_when_allowed(tmp_path):
    options = ("--trainer.val_check_interval", "0.25", "--trainer.limit_val_batches", "6", "--trials", "2")
    tune(tmp_path / "default", *options)
    text = table(tmp_path / "default")
    assert "validation-heavy" in text and "not applied" in text and "validate once per epoch" in text
    assert not any("validate" in folder.name for folder in (tmp_path / "default" / "trials").iterdir())

    tune(tmp_path / "allowed", *options, "--allow", "changes-training")
    text = table(tmp_path / "allowed")
    (row,) = [line for line in text.splitlines() if "validate once per epoch" in line and "| kept |" in line]
    assert "changes training" in row and "fit time per epoch" in row


def test_a_move_that_makes_the_run_slower_is_not_kept(tmp_path, monkeypatch):
    slow_images(monkeypatch, 0.2)
    slower = Move("batch of one", ("--data.batch_size", "1"), SAME_RESULTS)
    monkeypatch.setitem(search_module.MOVES, "input_bound", (slower,))
    out = tmp_path / "tune"
    tune(out, "--trials", "2")
    (row,) = [line for line in table(out).splitlines() if "batch of one" in line]
    assert "| not kept |" in row and "-" in row.split("|")[6]  # a negative gain
    assert yaml.safe_load((out / "tuned.yaml").read_text())["data"]["batch_size"] == 2
    assert "No move was kept" in table(out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--data.no_such_option", "1"), "no_such_option"),
        (("--trials", "0"), "--trials 0 must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        tune(tmp_path / "out", *extra)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out" / "trials").exists()


def test_an_unwritable_output_folder_is_one_line_and_status_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        tune(blocker / "out")
    assert exit_info.value.code == 2 and "--out" in capsys.readouterr().err


def test_an_interrupted_tune_keeps_the_finished_trials_and_says_so(tmp_path, monkeypatch):
    calls = []
    real_fit = tune_command.run_fit

    def fit_then_interrupt(args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(args)

    monkeypatch.setattr(tune_command, "run_fit", fit_then_interrupt)
    out = tmp_path / "tune"
    with pytest.raises(KeyboardInterrupt):
        tune(out)
    assert "# cifarbench tune (interrupted)" in table(out) and "01-baseline" in table(out)
    assert (out / "trials" / "01-baseline" / "timings.csv").is_file()
    assert not (out / "tuned.yaml").exists()

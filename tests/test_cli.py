"""The CLI, called in-process as users call it: `python -m cifarbench fit ...`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifarbench.__main__ import main
from cifarbench.callbacks import EpochTimer
from cifarbench.data import CIFAR10DataModule
from cifarbench.fitting import CifarbenchCLI
from cifarbench.model import ResNet18Classifier

from helpers import fit_args, read_scalars, short_learning_fit


def small_fit_args(root: Path, *extra: str) -> list[str]:
    """``fit`` and the small fit, validating one batch per epoch."""
    return ["fit", *fit_args(root, "--trainer.limit_val_batches", "1", *extra)]


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory) -> Path:
    """One small CLI fit shared by the end-to-end checks: its log dir."""
    root = tmp_path_factory.mktemp("cli")
    main(small_fit_args(root))
    return root / "lightning_logs" / "version_0"


def test_fit_writes_one_csv_row_per_epoch(fitted_run):
    with open(fitted_run / "timings.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert [int(row["steps"]) for row in rows] == [2, 2]
    assert [int(row["samples"]) for row in rows] == [32, 32]


def test_tensorboard_has_the_timing_tags_once_per_epoch(fitted_run):
    scalars = read_scalars(fitted_run)
    for tag in ("time/data_loading", "time/training", "time/epoch"):
        assert [step for step, _ in scalars[tag]] == [2, 4], tag  # the global step at each epoch's end
    with open(fitted_run / "timings.csv") as file:
        csv_epoch_s = [float(row["epoch_s"]) for row in csv.DictReader(file)]
    assert [value for _, value in scalars["time/epoch"]] == pytest.approx(csv_epoch_s, rel=1e-6)
    # Per-step curves, at the global step of each training step.
    assert [step for step, _ in scalars["time/step_training"]] == [1, 2, 3, 4]
    assert len(scalars["train/loss_epoch"]) == 2 and len(scalars["train/acc_epoch"]) == 2
    assert len(scalars["train/loss_step"]) == 4 and len(scalars["train/acc_step"]) == 4


def test_the_step_anatomy_is_in_tensorboard_and_the_csv_after_the_older_columns(fitted_run):
    scalars = read_scalars(fitted_run)
    with open(fitted_run / "timings.csv") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    for tag, column in (
        ("time/forward", "forward_s"),
        ("time/backward", "backward_s"),
        ("time/optimizer", "optimizer_s"),
        ("time/step_other", "step_other_s"),
        ("time/step_p90", "step_p90_s"),
        ("time/framework", "framework_s"),
        ("time/profiler", "profiler_s"),
    ):
        assert [step for step, _ in scalars[tag]] == [2, 4], tag
        assert [value for _, value in scalars[tag]] == pytest.approx([float(row[column]) for row in rows])
    for tag in ("time/step_forward", "time/step_backward", "time/step_optimizer", "time/step_framework"):
        assert [step for step, _ in scalars[tag]] == [1, 2, 3, 4], tag
    assert "memory/peak_bytes" not in scalars  # no honest per-epoch measure on a CPU
    older = ["epoch", "data_loading_s", "training_s", "epoch_s", "transfer_s", "steps", "samples",
             "samples_per_s", "data_loading_mean_s", "training_mean_s", "epoch_mean_s", "world_size", "clock",
             "mfu"]  # fmt: skip
    newer = ["forward_s", "backward_s", "optimizer_s", "step_other_s", "step_p50_s", "step_p90_s",
             "step_max_s", "peak_memory_bytes"]  # fmt: skip
    newest = ["framework_s", "profiler_s"]  # with the one schema
    operator_window = ["op_window_steps", "op_window_s"]  # with OpWindow
    ranks = ["rank_spread"]  # with every rank's figures (empty with one rank)
    assert reader.fieldnames == older + newer + newest + operator_window + ranks
    assert all(row["rank_spread"] == "" for row in rows) and "time/rank_spread" not in scalars
    for row in rows:  # the parts add up to the training time, and a step's spread is ordered
        names = ("forward_s", "backward_s", "optimizer_s", "framework_s", "step_other_s")
        parts = sum(float(row[name]) for name in names)
        assert parts == pytest.approx(float(row["training_s"]))
        assert float(row["step_p50_s"]) <= float(row["step_p90_s"]) <= float(row["step_max_s"])


def test_the_fit_budget_is_written_and_shown_in_tensorboard(fitted_run):
    budget = json.loads((fitted_run / "fit_budget.json").read_text())
    assert sum(budget["buckets"].values()) == pytest.approx(budget["fit_s"])
    assert 2 <= len(budget["verdict"]) <= 4 and budget["status"] == "finished"
    (event_file,) = fitted_run.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file), size_guidance={"tensors": 0})
    events.Reload()
    (text,) = events.Tensors("cifarbench/fit_budget/text_summary")
    markdown = text.tensor_proto.string_val[0].decode()
    assert "| startup |" in markdown and budget["verdict"][-1]["text"] in markdown


def test_tensorboard_has_a_custom_scalars_layout_with_data_and_training_on_one_chart(fitted_run):
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    (event_file,) = fitted_run.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file), size_guidance={"tensors": 0})
    events.Reload()
    (layout_tensor,) = events.Tensors(metadata.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout.FromString(layout_tensor.tensor_proto.string_val[0])
    charts = {
        chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart
    }
    tags = charts["data loading vs training per epoch (s)"]
    assert "^time/data_loading$" in tags and "^time/training$" in tags
    assert charts["inside the step, per epoch (s)"] == [
        "^time/forward$", "^time/backward$", "^time/optimizer$", "^time/framework$", "^time/step_other$",
        "^time/profiler$",
    ]  # fmt: skip


def test_hparams_record_synthetic_data_and_the_config(fitted_run):
    hparams = (fitted_run / "hparams.yaml").read_text()
    assert "synthetic: 64" in hparams
    assert (fitted_run / "config.yaml").is_file()


def test_defaults_are_the_lab_recipe():
    cli = CifarbenchCLI(ResNet18Classifier, CIFAR10DataModule, run=False, args=["--data.synthetic", "16"])
    optimizer = cli.model.configure_optimizers()
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 5e-4)
    assert cli.trainer.max_epochs == 5
    assert cli.datamodule.batch_size == 128
    assert any(isinstance(callback, EpochTimer) for callback in cli.trainer.callbacks)
    assert type(cli.trainer.logger).__name__ == "TensorBoardLogger"


def test_optimizer_is_chosen_on_the_command_line():
    args = ["--data.synthetic", "16", "--optimizer", "Adam", "--optimizer.lr", "0.001"]
    cli = CifarbenchCLI(ResNet18Classifier, CIFAR10DataModule, run=False, args=args)
    optimizer = cli.model.configure_optimizers()
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.param_groups[0]["lr"] == 0.001


def test_timer_options_are_on_the_command_line():
    args = ["--data.synthetic", "16", "--timer.sync", "true", "--timer.log_every_n_steps", "5"]
    cli = CifarbenchCLI(ResNet18Classifier, CIFAR10DataModule, run=False, args=args)
    (timer,) = [c for c in cli.trainer.callbacks if isinstance(c, EpochTimer)]
    assert timer.sync is True and timer.log_every_n_steps == 5


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    assert "--data.synthetic" in output and "--optimizer" in output and "--timer.sync" in output


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--data.num_workers", "-1", "num_workers=-1"),
        ("--data.batch_size", "0", "batch_size=0"),
        ("--timer.log_every_n_steps", "0", "log_every_n_steps=0"),
        ("--data.pipeline", "pil", "pipeline='pil'"),
    ],
)
def test_bad_option_values_exit_with_a_clear_message(tmp_path, capsys, option, value, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(small_fit_args(tmp_path, option, value))
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()  # rejected before any training started


def test_missing_cifar10_exits_with_path_url_and_synthetic_hint(tmp_path, capsys):
    args = fit_args(tmp_path, "--data.data_dir", str(tmp_path / "no-data"), "--data.download", "false",
                    without=("--data.synthetic",))  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert (
        str(tmp_path / "no-data") in error
        and "cifar-10-python.tar.gz" in error
        and "--data.synthetic" in error
    )
    assert "Traceback" not in error


@pytest.mark.slow
def test_a_short_fit_learns_the_synthetic_classes(tmp_path):
    scalars = short_learning_fit(tmp_path)
    losses = [value for _, value in scalars["train/loss_epoch"]]
    accuracies = [value for _, value in scalars["train/acc_epoch"]]
    assert losses[-1] < 0.8 * losses[0]
    assert accuracies[-1] > 0.4  # chance is 0.1

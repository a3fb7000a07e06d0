"""Faults a profiling run must survive: interrupts, failing workers, bad data and bad options.

Each test backs a row of the README's fault table.
"""

from __future__ import annotations

import csv
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import get_worker_info

from cifarbench.__main__ import main
from cifarbench.data.datasets import ImageArrayDataset

from helpers import RunsCode, SleepyModule, fit_args, loader, quiet_trainer, read_scalars, use_checksums_of


def csv_epochs(run: Path) -> list[int]:
    with open(run / "timings.csv") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def run_cli(root: Path, *args: str) -> subprocess.Popen:
    """A small fit in its own process, saving a checkpoint every epoch (to resume from)."""
    command = [
        sys.executable,
        "-m",
        "cifarbench",
        "fit",
        *fit_args(root, "--trainer.enable_checkpointing", "true", *args),
    ]
    return subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# ----------------------------------------------------------------------------------------------- interrupt
@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_keeps_finished_epochs_and_resume_continues_without_gaps(tmp_path, signal_number):
    run0 = tmp_path / "lightning_logs" / "version_0"
    process = run_cli(tmp_path, "--trainer.max_epochs", "50", "--trainer.limit_train_batches", "4")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        # Interrupt early in an epoch whose predecessor is both in the CSV and checkpointed.
        finished = csv_epochs(run0) if (run0 / "timings.csv").exists() else []
        if finished and list(run0.glob(f"checkpoints/epoch={finished[-1]}-*.ckpt")):
            break
        time.sleep(0.05)
    # Right at an epoch's end, while metrics are written: the moment a raw KeyboardInterrupt used to leave
    # TensorBoard's writer thread waiting forever (StopOnInterrupt defers it to the batch's end).
    process.send_signal(signal_number)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == {signal.SIGINT: 1, signal.SIGTERM: 128 + signal.SIGTERM}[signal_number], (
        output[-2000:]
    )
    kept = csv_epochs(run0)
    assert kept == list(range(len(kept))) and 1 <= len(kept) < 50  # every finished epoch, in order
    assert "EpochTimer" in output  # the table of finished epochs is still printed

    total = len(kept) + 2
    resumed = run_cli(tmp_path, "--trainer.max_epochs", str(total), "--trainer.limit_train_batches", "4",
                      "--ckpt_path", "last")  # fmt: skip
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output[-3000:]
    run1 = tmp_path / "lightning_logs" / "version_1"
    assert csv_epochs(run1) == list(range(total))  # history restored, interrupted epoch re-run once
    # TensorBoard, at the global step (4 per epoch): the old run has the kept epochs, the new one the rest.
    first_tb = [step for step, _ in read_scalars(run0)["time/epoch"]]
    second_tb = [step for step, _ in read_scalars(run1)["time/epoch"]]
    assert first_tb == [4 * (epoch + 1) for epoch in kept]
    assert second_tb == [4 * (epoch + 1) for epoch in range(len(kept), total)]


def test_ctrl_c_stops_at_the_end_of_the_current_batch(tmp_path):
    from cifarbench.callbacks.interrupt import StopOnInterrupt

    class CtrlCDuringSecondBatch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 1:
                os.kill(os.getpid(), signal.SIGINT)

    class CountSteps(SleepyModule):
        steps = 0

        def training_step(self, batch, batch_idx):
            CountSteps.steps += 1
            return super().training_step(batch, batch_idx)

    handler = signal.getsignal(signal.SIGINT)
    callbacks = [StopOnInterrupt(), CtrlCDuringSecondBatch()]
    trainer = quiet_trainer(tmp_path, *callbacks)
    try:
        with pytest.raises(SystemExit) as exit_info:  # Lightning's Ctrl-C handling exits with status 1
            trainer.fit(CountSteps(), loader(0.0, steps=6))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning leaves SIGINT ignored after an interrupt
    assert exit_info.value.code == 1
    assert CountSteps.steps == 2  # the batch that was running finished; no further batch started


def test_resume_last_without_a_checkpoint_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args(tmp_path, "--ckpt_path", "last")])
    assert exit_info.value.code == 2
    assert "no checkpoint under" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- DataLoader workers
def failing_item(self, index):
    raise OSError(f"disk read failed for image {index}")


def killed_worker_item(self, index):
    if get_worker_info() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return ORIGINAL_GETITEM(self, index)


ORIGINAL_GETITEM = ImageArrayDataset.__getitem__


@pytest.mark.parametrize(
    ("getitem", "reported"),
    [(failing_item, "disk read failed for image"), (killed_worker_item, "exited unexpectedly")],
    ids=["worker-raises", "worker-killed"],
)
def test_worker_failure_is_a_clear_error_within_seconds(tmp_path, capsys, monkeypatch, getitem, reported):
    monkeypatch.setattr(ImageArrayDataset, "__getitem__", getitem)  # inherited by the forked workers
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args(tmp_path, "--data.num_workers", "2")])
    assert time.monotonic() - start < 60
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "a DataLoader worker failed" in error and reported in error and "--data.num_workers 0" in error


class FailFromEpoch(torch.utils.data.Dataset):
    """Loads fine during epoch 0; every worker of a later epoch fails (it sees the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        if self.marker.exists():
            raise RuntimeError("the dataset broke in epoch 1")
        return torch.randn(8), torch.tensor(index % 2)


def test_worker_failure_keeps_the_finished_epochs(tmp_path):
    from cifarbench.callbacks import EpochTimer

    from helpers import SleepyModule

    marker = tmp_path / "broken"

    class BreakAfterEpoch0(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            marker.touch()

    timer = EpochTimer(print_table=False)
    loader = torch.utils.data.DataLoader(FailFromEpoch(marker), batch_size=4, num_workers=2)
    trainer = quiet_trainer(tmp_path, timer, BreakAfterEpoch0(), max_epochs=3)
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        trainer.fit(SleepyModule(), loader)
    assert [row.epoch for row in timer.history] == [0]
    with open(timer.csv_path) as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == [0]


# ---------------------------------------------------------------------------------------------- bad data
def missing(path: Path) -> None:
    path.unlink()


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:3000])


def flipped_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def wrong_shape(path: Path) -> None:
    path.write_bytes(pickle.dumps({"data": np.zeros((6, 1000), np.uint8), "labels": [0] * 6}, protocol=2))


def ragged_labels(path: Path) -> None:
    path.write_bytes(
        pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [[0], [1, 2]]}, protocol=2)
    )


def no_images(path: Path) -> None:
    path.write_bytes(pickle.dumps({"data": np.zeros((0, 3072), np.uint8), "labels": []}, protocol=4))


def runs_code(path: Path) -> None:
    # The test runs in tmp_path (chdir), whose "code-ran" file would prove that the pickle ran code.
    path.write_bytes(pickle.dumps({"data": RunsCode(Path("code-ran")), "labels": [0]}, protocol=2))


@pytest.mark.parametrize(
    ("damage", "verify", "expected"),
    [
        (missing, "true", "is missing"),
        (truncated, "false", "truncated"),
        (flipped_byte, "true", "does not match the official CIFAR-10 checksum"),
        (wrong_shape, "false", "(6, 1000)"),
        (ragged_labels, "false", "'labels' is not a flat list of ints"),
        (no_images, "false", "it holds 0 images"),
        (runs_code, "false", "Refused to read"),
        (runs_code, "true", "does not match the official CIFAR-10 checksum"),
    ],
)
def test_bad_data_files_stop_the_cli_with_the_file_and_the_fix(
    tmp_path, cifar_files, monkeypatch, capsys, damage, verify, expected
):
    use_checksums_of(cifar_files.folder, monkeypatch)
    damaged = cifar_files.folder / "data_batch_2"
    damage(damaged)
    monkeypatch.chdir(tmp_path)
    args = ["--data.data_dir", str(cifar_files.data_dir), "--data.download", "false"]
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                *fit_args(tmp_path, *args, "--data.verify_integrity", verify, without=("--data.synthetic",)),
            ]
        )
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert str(damaged) in error and expected in error and "Traceback" not in error
    assert "--data." in error  # names the option that fixes it
    assert not (tmp_path / "code-ran").exists()
    assert not list(tmp_path.glob("**/timings.csv")) and not list(tmp_path.glob("**/fit_budget.json"))


# ------------------------------------------------------------------------------------------- bad options
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--optimizer", "NoSuchOptimizer"], "NoSuchOptimizer"),
        (["--trainer.accelerator", "gpu"], "gpu"),
        (["--data.num_workers", "100000"], "CIFAR10DataModule(num_workers=100000) is more than "),
        (
            ["--model.num_classes", "5"],
            "--model.num_classes 5 is too few for the train split, whose labels go up "
            "to 9: use --model.num_classes 10 or more",
        ),
    ],
    ids=["no-such-optimizer", "gpu", "workers-beyond-cpus", "classes-below-labels"],
)
def test_bad_options_are_rejected_before_training(tmp_path, capsys, extra, expected):
    if "gpu" in extra and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args(tmp_path, *extra)])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err
    assert not list(tmp_path.glob("**/timings.csv"))


# Nine aliases of nine aliases, seven deep: 292 bytes that stand for 9**7 (4.8 million) values; the parser
# took 44 s to walk them and reject the file.
YAML_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdef", "bcdefg", strict=True)
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('"just a string"\n', "must be a mapping of options (trainer:, model:, data:, ...), not a string"),
        ("- a\n- b\n", "must be a mapping of options (trainer:, model:, data:, ...), not a list"),
        ("data: {batch_size: [\n", "not valid YAML (line 2, column 1: expected the node content, but found"),
        (YAML_BOMB, "its aliases expand to more than 100,000 values"),
    ],
    ids=["string", "list", "broken", "alias-bomb"],
)
def test_a_config_file_that_holds_no_options_is_one_line_naming_it(tmp_path, capsys, content, expected):
    config = tmp_path / "config.yaml"
    config.write_text(content)
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args(tmp_path, config=config)])
    assert time.monotonic() - start < 5
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"cifarbench: error: {config}: {expected}") and error.count("\n") == 1, error
    assert sorted(tmp_path.iterdir()) == [config]  # nothing written


def test_synthetic_data_beyond_memory_is_refused_before_allocating_it(tmp_path, capsys):
    tracemalloc.start()  # numpy reports its arrays to tracemalloc; the first used to be 74.5 GiB of labels
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", *fit_args(tmp_path, "--data.synthetic", "10000000000")])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert re.fullmatch(
        r"cifarbench: error: --data\.synthetic 10000000000 needs 34,600\.5 GiB of memory for its images "
        r"\(train and test splits, 3096 bytes each\) but [\d,.]+ GiB is available: ask for fewer images "
        r"\(CIFAR-10 has 50000\)",
        error,
    ), error
    assert peak < 200 << 20
    assert not list(tmp_path.glob("**/*.*"))  # nothing written: refused when the options are read


def test_unwritable_log_dir_is_rejected_before_training(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the log dir would go")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args(not_a_folder / "logs")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert str(not_a_folder / "logs") in error and "--trainer.default_root_dir" in error


# ------------------------------------------------------------------------------------------- determinism
@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_same_seed_gives_identical_per_step_losses(tmp_path, workers):
    losses = []
    for attempt in ("a", "b"):
        root = tmp_path / attempt
        main(["fit", *fit_args(root, "--seed_everything", "42", "--data.num_workers", workers,
                               "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
                               "--trainer.log_every_n_steps", "1")])  # fmt: skip
        scalars = read_scalars(root / "lightning_logs" / "version_0")
        losses.append([value for _, value in scalars["train/loss_step"]])
    assert len(losses[0]) == 3
    assert losses[0] == losses[1]

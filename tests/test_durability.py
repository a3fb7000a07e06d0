"""Nothing lost, nothing hangs: checkpoints cut short, a full disk, two runs in one folder, a diverging loss.

Each test backs a row of the README's fault table.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from cifarbench.__main__ import main
from cifarbench.callbacks.divergence import StopOnDivergence, TrainingDiverged
from cifarbench.checkpointing import why_unloadable
from cifarbench.run_logging import claim_version

from helpers import fit_args, loader

TESTS = Path(__file__).resolve().parent

# The small fit, smaller still (what these tests prove does not depend on how much a step computes), and
# checkpointing, which they are about.
SMALLER = ("--data.batch_size", "4", "--timer.print_table", "false", "--trainer.enable_checkpointing", "true")


def fit_process(root: Path, *args: str) -> subprocess.Popen:
    """``python -m cifarbench fit`` (the small fit, logging under ``root``) in a process of its own; its
    output goes to a pipe, which a file-size limit does not touch."""
    command = [sys.executable, "-m", "cifarbench", "fit", *fit_args(root, *SMALLER, *args)]
    # The faults are classes in tests/fault_helpers.py, named in --trainer.* options: the tests folder on the
    # path, as pytest has it, whatever PYTHONPATH the suite was started with.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def checkpoints(run: Path) -> list[str]:
    """Every file in the run's checkpoints folder, hidden ones too."""
    return sorted(path.name for path in (run / "checkpoints").iterdir())


# ------------------------------------------------------------------------------------ checkpoints cut short
@pytest.mark.slow
def test_a_fit_killed_while_saving_leaves_no_checkpoint_at_its_name_and_resume_skips_what_does_not_load(
    tmp_path, capsys
):
    run0 = tmp_path / "lightning_logs" / "version_0"
    marker = tmp_path / "saving"
    config = tmp_path / "stall.yaml"
    config.write_text(
        f"trainer:\n  plugins:\n    - class_path: fault_helpers.StallingCheckpointIO\n"
        f"      init_args:\n        marker: {marker}\n"
    )
    process = fit_process(tmp_path, "--config", str(config), "--trainer.max_epochs", "3")
    deadline = time.monotonic() + 180
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), process.communicate()[0][-3000:]
    process.send_signal(signal.SIGKILL)  # half of epoch 1's checkpoint is written
    process.communicate(timeout=60)
    written = Path(marker.read_text())
    assert written.parent == run0 / "checkpoints" and not written.name.endswith(".ckpt")  # a hidden name
    assert written.stat().st_size > 0
    assert checkpoints(run0) == sorted(["epoch=0-step=2.ckpt", written.name])  # epoch 1's never appeared
    assert why_unloadable(run0 / "checkpoints" / "epoch=0-step=2.ckpt") is None

    # A checkpoint cut short by an older version (or another tool) at a final name, newer than the good one.
    cut_short = run0 / "checkpoints" / "epoch=1-step=4.ckpt"
    cut_short.write_bytes((run0 / "checkpoints" / "epoch=0-step=2.ckpt").read_bytes()[:100_000])
    main(["fit", *fit_args(tmp_path, *SMALLER, "--ckpt_path", "last")])
    error = capsys.readouterr().err
    assert f"--ckpt_path last: skipping {cut_short}, which does not load (BadZipFile: " in error
    assert f"resuming from {run0 / 'checkpoints' / 'epoch=0-step=2.ckpt'}" in error
    run1 = tmp_path / "lightning_logs" / "version_1"
    assert (run1 / "timings.csv").read_text().count("\n") == 3  # the header, epoch 0 (restored), epoch 1
    assert (
        checkpoints(run1) == ["epoch=1-step=4.ckpt"]
        and why_unloadable(run1 / "checkpoints" / "epoch=1-step=4.ckpt") is None
    )


def test_a_ckpt_path_that_does_not_load_is_one_line_before_training(tmp_path, capsys):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args(tmp_path, "--ckpt_path", str(broken))])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"cifarbench: error: --ckpt_path {broken} does not load (BadZipFile: ")
    assert error.count("\n") == 1 and "--ckpt_path last" in error
    assert not list(tmp_path.glob("**/timings.csv"))


# --------------------------------------------------------------------------------------------- a full disk
@pytest.mark.slow
def test_a_full_disk_warns_for_the_logs_and_stops_at_the_checkpoint_keeping_the_last_good_one(tmp_path):
    run0 = tmp_path / "lightning_logs" / "version_0"
    process = fit_process(
        tmp_path, "--trainer.max_epochs", "3", "--trainer.callbacks+=fault_helpers.FillDiskAtEpoch"
    )
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith(
        f"cifarbench: error: cannot save the checkpoint {run0 / 'checkpoints' / 'epoch=1-step=4.ckpt'} (File "
        f"too large); nothing was left at that name and the last good one, "
        f"{run0 / 'checkpoints' / 'epoch=0-step=2.ckpt'}, is kept."
    ), output[-3000:]
    # The logger and EpochTimer's files are not needed to train: a warning each, and the fit went on.
    assert (
        f"TensorBoardLogger could not write to {run0} (OSError: [Errno 27] File too large); training goes on"
        in output
    )
    assert "could not write" in output and "timings.csv" in output
    assert "Traceback" not in output and "you tried to log" not in output
    assert checkpoints(run0) == ["epoch=0-step=2.ckpt"]  # no partial file, the good one kept
    assert why_unloadable(run0 / "checkpoints" / "epoch=0-step=2.ckpt") is None


def test_a_log_dir_on_a_full_disk_is_rejected_before_training(tmp_path, capsys, monkeypatch):
    """check_writable writes and syncs bytes: creating an empty file still works on a full disk."""
    from cifarbench import fitting

    real_check = fitting.check_writable

    def on_a_full_disk(*args, **kwargs):
        # No file of this process can grow while the check runs (only then: pytest's own log files must).
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
        try:
            real_check(*args, **kwargs)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, handler)

    monkeypatch.setattr(fitting, "check_writable", on_a_full_disk)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args(tmp_path / "logs")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"cifarbench: error: Cannot write to {tmp_path / 'logs'} (File too large). Pass a writable folder "
        f"with --trainer.default_root_dir.\n"
    )
    assert list((tmp_path / "logs").iterdir()) == []


# ------------------------------------------------------------------------------------- two runs, one folder
def _claim(root: Path, barrier, results) -> None:
    barrier.wait()
    results.put(claim_version(root))


def test_runs_started_together_claim_distinct_version_folders(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    workers = [context.Process(target=_claim, args=(tmp_path, barrier, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    claimed = sorted(results.get(timeout=5) for _ in workers)
    assert claimed == list(range(6))
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"version_{n}" for n in range(6)]


@pytest.mark.slow
def test_a_fit_that_lists_the_folder_before_another_run_creates_version_0_takes_version_1(
    tmp_path, monkeypatch
):
    other = tmp_path / "lightning_logs" / "version_0"
    other.mkdir(parents=True)
    (other / "config.yaml").write_text("the other run's config\n")
    # The race: this run listed lightning_logs/ just before the other run created version_0.
    monkeypatch.setattr("cifarbench.run_logging._listed_versions", lambda root: [])
    main(
        [
            "fit",
            *fit_args(
                tmp_path,
                *SMALLER,
                "--trainer.limit_train_batches",
                "1",
                "--trainer.max_epochs",
                "1",
                "--trainer.enable_checkpointing",
                "false",
            ),
        ]
    )
    assert (other / "config.yaml").read_text() == "the other run's config\n"
    assert sorted(path.name for path in other.iterdir()) == ["config.yaml"]
    assert (tmp_path / "lightning_logs" / "version_1" / "timings.csv").is_file()


# ------------------------------------------------------------------------------------------ a diverging loss
class LossTurnsNaN(L.LightningModule):
    """A linear classifier whose loss is NaN from global step ``nan_from`` on; counts its steps."""

    def __init__(self, nan_from: int) -> None:
        super().__init__()
        self.layer, self.nan_from, self.steps = nn.Linear(8, 2), nan_from, 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        inputs, targets = batch
        loss = nn.functional.cross_entropy(self.layer(inputs), targets)
        return loss * torch.nan if self.global_step >= self.nan_from else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_non_finite_loss_is_found_at_the_next_sampled_step_and_stops_the_fit(tmp_path, keep_going):
    guard = StopOnDivergence(check_every_n_steps=4, keep_going=keep_going)
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[guard], logger=False,
                        enable_progress_bar=False, enable_checkpointing=False)  # fmt: skip
    module = LossTurnsNaN(nan_from=5)  # NaN from the 6th step; the steps checked are the 4th, 8th, 12th...
    if keep_going:
        with pytest.warns(UserWarning, match=r"the training loss became nan at step 8: training diverged"):
            trainer.fit(module, loader(0.0, steps=16))
        assert module.steps == 16
    else:
        with pytest.raises(TrainingDiverged, match=r"became nan at step 8: .*Stopped before saving"):
            trainer.fit(module, loader(0.0, steps=16))
        assert module.steps == 8
    assert guard.diverged_at_step == 8 and guard.diverged_value != guard.diverged_value  # NaN


@pytest.mark.slow
def test_a_huge_learning_rate_stops_the_fit_in_one_line_before_a_nan_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *fit_args(tmp_path, *SMALLER, "--optimizer.lr", "1e6", "--trainer.max_epochs", "3",
                               "--trainer.limit_train_batches", "4")])  # fmt: skip
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("cifarbench: error: the training loss became nan in epoch 0 (its logged mean): "
                            "training diverged; lower --optimizer.lr")  # fmt: skip
    assert "--divergence.keep_going true" in error
    assert not list(tmp_path.glob("**/*.ckpt"))  # no NaN weights saved
    (budget_file,) = tmp_path.glob("**/fit_budget.json")
    verdict = json.loads(budget_file.read_text())["verdict"]
    assert verdict[1]["kind"] == "diverged" and "nan" in verdict[1]["text"]  # first, after the summary

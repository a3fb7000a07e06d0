"""``python -m cifarbench``: LightningCLI with EpochTimer, TensorBoard and the lab's defaults."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.optim import Optimizer

from cifarbench.callbacks import EpochTimer
from cifarbench.callbacks.interrupt import StopOnInterrupt
from cifarbench.data import CIFAR10DataModule
from cifarbench.errors import CifarbenchError, ConfigError
from cifarbench.model import LAB_SGD, ResNet18Classifier

LAB_MAX_EPOCHS = 5


class CifarbenchCLI(LightningCLI):
    """LightningCLI whose defaults are the lab's recipe, with EpochTimer always attached (``--timer.*``)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(EpochTimer, "timer")
        # Registering the optimizer group here (instead of LightningCLI's automatic one) lets it have a
        # default: the lab's SGD, replaced by e.g. `--optimizer Adam --optimizer.lr 0.001`.
        parser.add_optimizer_args((Optimizer,))
        parser.set_defaults(
            {
                "trainer.max_epochs": LAB_MAX_EPOCHS,
                "optimizer": {"class_path": "torch.optim.SGD", "init_args": dict(LAB_SGD)},
            }
        )

    def instantiate_classes(self) -> None:
        # Constructors validate their arguments with ValueError (EpochTimer(log_every_n_steps=0) must be >= 1,
        # ...). Here, before anything runs, such an error is about an option the user gave.
        try:
            super().instantiate_classes()
        except ValueError as error:
            raise ConfigError(str(error)) from error

    def before_fit(self) -> None:
        check_writable(self.trainer.default_root_dir, option="--trainer.default_root_dir")
        self.trainer.callbacks.append(StopOnInterrupt())

    def fit(self, model: L.LightningModule, **kwargs: Any) -> None:
        # Lightning looks for `last` only in this run's new version folder; a resumed run wants the
        # newest checkpoint of the runs before it.
        if kwargs.get("ckpt_path") == "last":
            root = _runs_root(self.trainer)
            kwargs["ckpt_path"] = str(_newest_checkpoint(root))
            # Said aloud: the newest checkpoint under the root may belong to a run with another config.
            rank_zero_info(f"--ckpt_path last: resuming from {kwargs['ckpt_path']}, the newest under {root}")
        self.trainer.fit(model, **kwargs)


def check_writable(folder: str | os.PathLike[str], option: str) -> None:
    """Make ``folder`` if needed and prove it writable, or raise a ConfigError that names ``option``."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(
            f"Cannot write to {os.path.abspath(folder)} ({error.strerror or error}). "
            f"Pass a writable folder with {option}."
        ) from None


def _runs_root(trainer: L.Trainer) -> Path:
    """The folder that holds every run's version folder (lightning_logs/ by default)."""
    logger = trainer.logger
    root = getattr(logger, "root_dir", None) if logger is not None else None
    return Path(root or trainer.default_root_dir)


def _newest_checkpoint(root: Path) -> Path:
    checkpoints = sorted(root.glob("**/checkpoints/*.ckpt"), key=lambda path: path.stat().st_mtime)
    if not checkpoints:
        raise ConfigError(
            f"--ckpt_path last: there is no checkpoint under {root} to resume from. Run fit without "
            f"--ckpt_path to start afresh, or pass a checkpoint file (--ckpt_path path/to/file.ckpt)."
        )
    return checkpoints[-1]


def _is_dataloader_worker_failure(error: BaseException) -> bool:
    # torch re-raises a worker's exception in the main process ("Caught X in DataLoader worker process N"),
    # and reports a worker that died as "DataLoader worker (pid(s) N) exited unexpectedly".
    return "DataLoader worker" in str(error)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``python -m cifarbench`` and the ``cifarbench`` script; ``args`` for in-process use.

    Besides LightningCLI's subcommands (fit, validate, ...): ``lab <part>`` runs lab experiments through
    ``fit`` (cifarbench.lab), and ``inspect`` answers the lab's model questions (cifarbench.inspection).
    """
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv[:1] == ["lab"]:
            from cifarbench.lab.cli import lab_main

            return lab_main(argv[1:])
        if argv[:1] == ["inspect"]:
            from cifarbench.inspection import inspect_main

            return inspect_main(argv[1:])
        with warnings.catch_warnings():
            # The CLI always supplies the optimizer, so replacing the model's own default is intended.
            warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden")
            CifarbenchCLI(
                ResNet18Classifier,
                CIFAR10DataModule,
                args=args,
                save_config_kwargs={"overwrite": True},
            )
    except SIGTERMException:
        # Lightning stops at the next step boundary and exits with status 0; a stopped run should not
        # look like a finished one to a scheduler or a shell script.
        print(
            "cifarbench: stopped by SIGTERM. Finished epochs are kept (timings.csv, checkpoints); resume "
            "with --ckpt_path last.",
            file=sys.stderr,
        )
        raise SystemExit(128 + signal.SIGTERM) from None
    except (CifarbenchError, MisconfigurationException) as error:
        print(f"cifarbench: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as error:
        if not _is_dataloader_worker_failure(error):
            raise
        print(
            f"cifarbench: error: a DataLoader worker failed, so training stopped. Epochs that finished are "
            f"kept in the run's timings.csv and checkpoints. To see the failure in the main process, run "
            f"with --data.num_workers 0. The worker reported:\n{type(error).__name__}: {error}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None

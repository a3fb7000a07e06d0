"""The one way into a fit: LightningCLI with EpochTimer, TensorBoard and the lab's defaults.

:func:`run_fit` (and :func:`run_cli`, for validate, test, predict) serve every caller: the ``fit`` verb
(:mod:`cifarbench.commands.fit`), the lab, the benchmarks and the tests. It sits below the verbs, as
lightning-hydra-template's ``train(cfg)`` does, so that no library module imports a verb. It raises on bad
input; turning errors into messages and exit statuses is ``cifarbench.__main__``'s.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from torch.optim import Optimizer

from cifarbench import configs
from cifarbench.callbacks import EpochTimer, OpWindow, WorkerTuner
from cifarbench.callbacks.compile_watch import CompileWatch
from cifarbench.callbacks.divergence import StopOnDivergence
from cifarbench.callbacks.interrupt import StopOnInterrupt
from cifarbench.checkpointing import check_loadable, newest_loadable
from cifarbench.data import CIFAR10DataModule
from cifarbench.errors import ConfigError
from cifarbench.model import CUDA_GRAPH_MODES, LAB_SGD, ResNet18Classifier
from cifarbench.quiet import notice
from cifarbench.run_logging import make_outputs_durable, quiet_writer_threads

LAB_MAX_EPOCHS = 5
# LightningCLI's `seed_everything: true` draws a seed and warns "No seed found"; the lab's runs are seeded.
DEFAULT_SEED = 0


# What each verdict suggests, in this CLI's options (EpochTimer's defaults are generic Lightning advice).
ADVICE: dict[str, str] = {
    "input_bound": "more workers (--data.num_workers N, or auto), --data.persistent_workers true, or batches "
    "built whole: --data.pipeline tensor, or gpu",
    "transfer_bound": "--data.pipeline gpu (the training set goes to the GPU once) or --data.pin_memory true",
    "validation_heavy": "--trainer.check_val_every_n_epoch N or --trainer.limit_val_batches",
    "checkpoint_heavy": "--trainer.enable_checkpointing false for profiling runs, or a ModelCheckpoint that "
    "saves less often (--trainer.callbacks)",
    "first_step_heavy": "more epochs (--trainer.max_epochs), which amortise it, or --model.compile null",
    "startup_heavy": "more epochs (--trainer.max_epochs), which amortise it; fewer --data.num_workers",
    "optimizer_heavy": "a fused optimizer: --optimizer.fused true (CUDA), or --optimizer.foreach true",
    "framework_heavy": "a larger batch (--data.batch_size, with --optimizer.lr scaled by the README's rule) "
    "for fewer steps, or --model.compile default",
    "compute_bound": "--config fast (bf16-mixed, channels_last, torch.compile, batch 512) on a GPU, or "
    "--trainer.precision bf16-mixed --model.channels_last true",
    "launch_bound": "--model.compile reduce-overhead (CUDA graphs: one launch per step) or a larger batch "
    "(--data.batch_size)",
    "straggler": "that host: for data loading, more --data.num_workers, --data.data_dir on a local disk, "
    "or --data.pipeline gpu; for compute, what else runs there (nvidia-smi, top) and its clocks; or a job "
    "without that node",
}


class CliEpochTimer(EpochTimer):
    """EpochTimer with the operator window's options: ``--timer.ops true`` adds an :class:`OpWindow`.

    Args:
        ops: profile a few training steps operation by operation (OpWindow): ops.csv and a table at fit end.
        ops_epoch: the epoch to profile (default: the second, or the first when there is one).
        ops_wait: steps of that epoch before the window.
        ops_warmup: steps profiled but not recorded (the profiler's start-up).
        ops_steps: steps recorded.
        ops_device_times: record CUDA kernels too (default: on CUDA).
        ops_trace: also write trace.json.gz (Chrome/Perfetto format) in the log dir.
    """

    def __init__(
        self,
        *args: Any,
        ops: bool = False,
        ops_epoch: int | None = None,
        ops_wait: int = 1,
        ops_warmup: int = 2,
        ops_steps: int = 3,
        ops_device_times: bool | None = None,
        ops_trace: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        limits = (("ops_wait", ops_wait, 0), ("ops_warmup", ops_warmup, 1), ("ops_steps", ops_steps, 1),
                  ("ops_epoch", ops_epoch or 0, 0))  # fmt: skip
        for option, value, least in limits:
            if value < least:  # OpWindow would say it too, in its own argument's name
                raise ValueError(f"--timer.{option} {value!r}: must be >= {least}")
        window = OpWindow(ops_epoch, ops_wait, ops_warmup, ops_steps, ops_device_times, ops_trace)
        self.ops_window: OpWindow | None = window if ops else None

    @property
    def state_key(self) -> str:
        return EpochTimer.__qualname__  # checkpoints stay EpochTimer's, whichever class wrote them


DIVERGENCE_ADVICE = (
    "lower --optimizer.lr (the lab's SGD uses 0.1), or warm it up (--lr_scheduler LinearLR); the checkpoints "
    "before it are kept. To train on anyway: --divergence.keep_going true"
)


class CifarbenchCLI(LightningCLI):
    """LightningCLI whose defaults are the lab's recipe, with EpochTimer always attached (``--timer.*``)."""

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        parser = super().init_parser(**kwargs)
        parser._option_string_actions[
            "--config"
        ].help = f"A YAML (or JSON) config file, or a shipped config by name: {', '.join(configs.names())}."
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(CliEpochTimer, "timer")
        parser.add_lightning_class_args(StopOnDivergence, "divergence")
        # Registering the optimizer group here (instead of LightningCLI's automatic one) lets it have a
        # default: the lab's SGD, replaced by e.g. `--optimizer Adam --optimizer.lr 0.001`.
        parser.add_optimizer_args((Optimizer,))
        parser.set_defaults(
            {
                "seed_everything": DEFAULT_SEED,
                "trainer.max_epochs": LAB_MAX_EPOCHS,
                "optimizer": {"class_path": "torch.optim.SGD", "init_args": dict(LAB_SGD)},
            }
        )

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the hyperparameters of a --ckpt_path file while parsing; one cut short would fail
        # there with torch's "PytorchStreamReader failed reading zip archive".
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            check_loadable(ckpt_path)
        super()._parse_ckpt_path()

    def instantiate_classes(self) -> None:
        # Constructors validate their arguments with ValueError (EpochTimer(log_every_n_steps=0) must be >= 1,
        # ...). Here, before anything runs, such an error is about an option the user gave.
        try:
            super().instantiate_classes()
        except ValueError as error:
            raise ConfigError(str(error)) from error

    def before_fit(self) -> None:
        check_writable(self.trainer.default_root_dir, option="--trainer.default_root_dir")
        make_outputs_durable(self.trainer)
        self.trainer.callbacks.append(StopOnInterrupt())
        if self._wants_worker_tuner():
            self.trainer.callbacks.append(WorkerTuner())
        for timer in self._timers():
            timer.advice.update(ADVICE)
            window = getattr(timer, "ops_window", None)
            if window is not None and window not in self.trainer.callbacks:
                self.trainer.callbacks.append(window)
        for callback in self.trainer.callbacks:
            if isinstance(callback, StopOnDivergence):
                callback.advice = DIVERGENCE_ADVICE
        self._prepare_compile()

    def _prepare_compile(self) -> None:
        """A compiled network wants one batch shape, and a watch on what torch.compile does."""
        mode = getattr(self.model, "compile_mode", None)
        if mode is None:
            return
        if isinstance(self.datamodule, CIFAR10DataModule) and not self.datamodule.drop_last:
            self.datamodule.drop_last = True
            # So that the run's config.yaml (written later, in setup) says what ran.
            (self.config[self.subcommand] if self.subcommand else self.config)["data.drop_last"] = True
            notice(
                f"--model.compile {mode}: the smaller last training batch of each epoch is dropped "
                f"(--data.drop_last true): its shape would be a second compile.",
                logging.INFO,
            )
        self.trainer.callbacks.append(CompileWatch(cuda_graphs=mode in CUDA_GRAPH_MODES))

    def _timers(self) -> list[EpochTimer]:
        return [callback for callback in self.trainer.callbacks if isinstance(callback, EpochTimer)]

    def _wants_worker_tuner(self) -> bool:
        datamodule = self.datamodule
        return (
            isinstance(datamodule, CIFAR10DataModule)
            and datamodule.num_workers == "auto"
            and datamodule.training_pipeline.trains_in_workers
            and not any(isinstance(callback, WorkerTuner) for callback in self.trainer.callbacks)
        )

    def fit(self, model: L.LightningModule, **kwargs: Any) -> None:
        # Lightning looks for `last` only in this run's new version folder; a resumed run wants the
        # newest checkpoint of the runs before it.
        if kwargs.get("ckpt_path") == "last":
            root = _runs_root(self.trainer)
            kwargs["ckpt_path"] = str(newest_loadable(root))
            # Said aloud: the newest checkpoint under the root may belong to a run with another config.
            notice(
                f"--ckpt_path last: resuming from {kwargs['ckpt_path']}, the newest that loads under {root}",
                logging.INFO,
            )
        with warnings.catch_warnings():
            if (
                isinstance(self.datamodule, CIFAR10DataModule)
                and not self.datamodule.training_pipeline.needs_workers
            ):
                # Lightning suggests workers for every loader with few; this pipeline builds whole batches in
                # the main process on purpose, so the advice does not apply to its training loader.
                warnings.filterwarnings(
                    "ignore", message=r"The 'train_dataloader' does not have many workers"
                )
            for timer in self._timers():
                timer.mark_fit_start()  # the budget then holds the DataModule's setup and the logger's start
            with quiet_writer_threads():
                self.trainer.fit(model, **kwargs)


def run_cli(args: list[str], cli_class: type[CifarbenchCLI] | None = None) -> CifarbenchCLI:
    """``python -m cifarbench ARGS`` in this process (a LightningCLI subcommand first: fit, validate, ...).

    Raises :class:`~cifarbench.errors.CifarbenchError` for bad options and data, and jsonargparse's
    ``ArgumentError`` for options the parser rejects; ``--help`` and ``--print_config`` exit with status 0.
    """
    with warnings.catch_warnings():
        # The CLI always supplies the optimizer, so replacing the model's own default is intended.
        warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden")
        # Arguments are always passed in (from sys.argv by __main__, or by the lab, benchmarks and tests).
        warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter")
        expanded = configs.expand_names(list(args))
        configs.check_files(expanded)
        return (cli_class or CifarbenchCLI)(
            ResNet18Classifier,
            CIFAR10DataModule,
            args=expanded,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
        )


def run_fit(args: list[str]) -> L.Trainer:
    """Fit with the ``python -m cifarbench fit`` options ``args``; the Trainer after it (see run_cli)."""
    return run_cli(["fit", *args]).trainer


# Enough to need a data block on any file system.
_WRITABLE_PROBE_BYTES = 64 * 1024


def check_writable(folder: str | os.PathLike[str], option: str) -> None:
    """Make ``folder`` if needed and prove it writable, or raise a ConfigError that names ``option``.

    Bytes are written and synced: a disk that is already full fails here, not in the fit."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * _WRITABLE_PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
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

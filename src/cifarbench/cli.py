"""``python -m cifarbench``: LightningCLI with EpochTimer, TensorBoard and the lab's defaults."""

from __future__ import annotations

import sys
import warnings

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from torch.optim import Optimizer

from cifarbench.callbacks import EpochTimer
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


def main(args: list[str] | None = None) -> None:
    """Entry point of ``python -m cifarbench`` and the ``cifarbench`` script; ``args`` for in-process use."""
    try:
        with warnings.catch_warnings():
            # The CLI always supplies the optimizer, so replacing the model's own default is intended.
            warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden")
            CifarbenchCLI(
                ResNet18Classifier,
                CIFAR10DataModule,
                args=args,
                save_config_kwargs={"overwrite": True},
            )
    except (CifarbenchError, MisconfigurationException) as error:
        print(f"cifarbench: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None

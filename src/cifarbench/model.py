"""ResNet-18 for CIFAR-10 and the LightningModule that trains it."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy
from torchvision.models.resnet import BasicBlock, ResNet

from cifarbench.errors import ConfigError

Norm = Literal["batch", "none"]

# torch.compile modes offered as --model.compile (None: eager, the default).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes that record CUDA graphs

# The lab's recipe (lab2-report.txt, Q3): used when no optimizer is configured.
LAB_SGD: dict[str, float] = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


def _norm_layer(norm: Norm) -> type[nn.Module]:
    if norm == "batch":
        return nn.BatchNorm2d
    if norm == "none":
        # Identity accepts (and ignores) the channel count that ResNet passes to every norm layer.
        return nn.Identity
    raise ValueError(f"resnet18(norm={norm!r}) is not supported: use norm='batch' or norm='none'")


def resnet18(norm: Norm = "batch", num_classes: int = 10) -> nn.Module:
    """ResNet-18, CIFAR variant: 3x3 stride-1 stem and no max-pool, so 32x32 inputs keep their resolution.

    It is torchvision's ResNet with the stem swapped, so blocks, init and the ``norm_layer`` plumbing are
    torchvision's own.

    Args:
        norm: ``batch`` (batch norm after every convolution) or ``none`` (every batch-norm layer removed,
            lab C7).
        num_classes: outputs of the last linear layer.
    """
    if num_classes < 1:
        raise ValueError(f"resnet18(num_classes={num_classes!r}) must be >= 1")
    net = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, norm_layer=_norm_layer(norm))
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    return net


class ResNet18Classifier(L.LightningModule):
    """Cross-entropy training of :func:`resnet18` with top-1 accuracy per stage.

    The optimizer is the lab's SGD unless one is configured (``--optimizer Adam`` on the CLI replaces it).

    Args:
        norm: ``"batch"`` or ``"none"`` (lab C7), see :func:`resnet18`.
        num_classes: outputs of the last layer.
        channels_last: keep weights and input batches in NHWC memory order, which cuDNN's tensor-core
            convolutions use natively (no layout transposes per layer). Usually a win on CUDA with bf16/fp16.
        compile: ``torch.compile`` the network (not this LightningModule, whose ``self.log`` would break
            the graph) with this mode: ``default``, ``reduce-overhead`` (CUDA graphs) or ``max-autotune``;
            ``None`` runs eagerly. It compiles during the first training steps, one static graph per batch
            shape: ``python -m cifarbench fit`` then drops the smaller last training batch
            (``--data.drop_last``), which would be a second graph. Validation, test and prediction run the
            eager network: their batch sizes and eval-mode batch norm would each compile graphs of their own.
    """

    def __init__(
        self,
        norm: Norm = "batch",
        num_classes: int = 10,
        channels_last: bool = False,
        compile: str | None = None,
    ) -> None:
        super().__init__()
        if compile is not None and compile not in COMPILE_MODES:
            raise ConfigError(
                f"ResNet18Classifier(compile={compile!r}) is not a torch.compile mode: use --model.compile "
                f"default, reduce-overhead or max-autotune, or leave it out to run eagerly"
            )
        # channels_last and compile change how the network runs, not what it is: they stay out of the
        # hyperparameters, so a checkpoint loads into an eager, default-layout model unless asked otherwise.
        # (LightningCLI's config.yaml in the run's log dir still records them.)
        self.save_hyperparameters(ignore=["channels_last", "compile"])
        self.num_classes = num_classes  # the DataModule checks its labels against it
        self.channels_last = channels_last
        self.compile_mode = compile
        self.net = resnet18(norm=norm, num_classes=num_classes)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile is not None:
            # Module.compile compiles in place: parameter names and checkpoints stay those of the eager net.
            # dynamic=False: one static graph per batch shape, so that full batches always run their own graph
            # (automatic dynamic shapes would move them onto a slower dynamic one after a smaller batch).
            self.net.compile(mode=compile, dynamic=False)
        self.loss_fn = nn.CrossEntropyLoss()
        # One CIFAR image: Lightning's model summary and EpochTimer's FLOP count (for MFU) run it.
        self.example_input_array = torch.zeros(1, 3, 32, 32)
        # One metric object per stage, so their states never mix.
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.compile_mode is not None and not self.training:
            # Only the training path is compiled: net.forward is the eager network, in place compile or not.
            return self.net.forward(images)
        return self.net(images)

    def _shared_step(self, batch: Any, stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.loss_fn(logits, targets)
        accuracy(logits, targets)
        on_step = stage == "train"
        # Not on the progress bar: Lightning reads progress-bar values with .item() after every step, a
        # host sync per step on CUDA. Logged values are read only every log_every_n_steps.
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True)
        self.log(f"{stage}/acc", accuracy, on_step=on_step, on_epoch=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train", self.train_acc)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), **LAB_SGD)

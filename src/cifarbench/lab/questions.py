"""The lab's Q1-Q4 (``python -m cifarbench inspect``), answered from the model itself, not from constants."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jsonargparse.typing import PositiveInt
from torch import nn

from cifarbench.data import CIFAR10DataModule
from cifarbench.model import LAB_SGD, Norm, ResNet18Classifier

# Q4 compares Adam with SGD; Adam gets the lab's lr and weight decay (it has no momentum).
OPTIMIZERS = {
    "SGD": lambda params: torch.optim.SGD(params, **LAB_SGD),
    "Adam": lambda params: torch.optim.Adam(params, lr=LAB_SGD["lr"], weight_decay=LAB_SGD["weight_decay"]),
}


@dataclass(frozen=True)
class StepCounts:
    optimizer: str
    trainable_parameters: int
    gradients: int


@dataclass(frozen=True)
class Inspection:
    norm: str
    conv_layers_main_path: int
    conv_layers_with_shortcuts: int
    last_linear_in_features: int
    steps: tuple[StepCounts, ...]


def count_conv_layers(net: nn.Module) -> tuple[int, int]:
    """(convs on the main path, all convs). torchvision names the 1x1 shortcut convs ``...downsample.0``."""
    convs = [name for name, module in net.named_modules() if isinstance(module, nn.Conv2d)]
    main_path = [name for name in convs if ".downsample." not in name]
    return len(main_path), len(convs)


def last_linear_in_features(net: nn.Module) -> int:
    linears = [module for module in net.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(net).__name__} has no nn.Linear layer")
    return linears[-1].in_features


def counts_after_one_step(norm: str, optimizer: str, batch_size: int = 16, seed: int = 0) -> StepCounts:
    """Trainable parameters and gradient elements after one real SGD/Adam step on a training batch.

    The batch comes from CIFAR10DataModule's own training pipeline (synthetic images, so no download).
    """
    torch.manual_seed(seed)
    model = ResNet18Classifier(norm=norm)  # type: ignore[arg-type]
    data = CIFAR10DataModule(synthetic=batch_size, batch_size=batch_size, num_workers=0)
    data.setup("fit")
    images, targets = next(iter(data.train_dataloader()))
    opt = OPTIMIZERS[optimizer](model.parameters())
    model.train()
    opt.zero_grad()
    loss = model.loss_fn(model(images), targets)
    loss.backward()
    opt.step()
    trainable = [p for p in model.parameters() if p.requires_grad]
    return StepCounts(
        optimizer=optimizer,
        trainable_parameters=sum(p.numel() for p in trainable),
        # A parameter that got no gradient (unused in forward) would show up here as a difference.
        gradients=sum(p.grad.numel() for p in trainable if p.grad is not None),
    )


def inspect_model(norm: Norm = "batch", batch_size: PositiveInt = 16) -> Inspection:
    """Q1-Q4 for ResNet-18 with ``norm``.

    Args:
        norm: see :func:`cifarbench.model.resnet18`.
        batch_size: images in the one real training step (the counts do not depend on it).
    """
    net = ResNet18Classifier(norm=norm).net  # type: ignore[arg-type]
    main_path, with_shortcuts = count_conv_layers(net)
    return Inspection(
        norm=norm,
        conv_layers_main_path=main_path,
        conv_layers_with_shortcuts=with_shortcuts,
        last_linear_in_features=last_linear_in_features(net),
        steps=tuple(counts_after_one_step(norm, name, batch_size) for name in OPTIMIZERS),
    )


def to_markdown(result: Inspection, heading: str = "##") -> str:
    """Q1-Q4 in the seed report's order, one heading each."""
    sgd, adam = (next(s for s in result.steps if s.optimizer == name) for name in ("SGD", "Adam"))
    return "\n\n".join(
        [
            f"{heading} Q1\n\nResNet-18 (norm={result.norm}) has **{result.conv_layers_main_path}** "
            f"convolutional layers on the main path (stem + 16 in the residual blocks), "
            f"**{result.conv_layers_with_shortcuts}** counting the 1x1 shortcut convolutions.",
            f"{heading} Q2\n\nThe input dimension of the last linear layer is "
            f"**{result.last_linear_in_features}**.",
            f"{heading} Q3\n\nAfter one training step with SGD: **{sgd.trainable_parameters:,}** trainable "
            f"parameters and **{sgd.gradients:,}** gradients.",
            f"{heading} Q4\n\nAfter one training step with Adam: **{adam.trainable_parameters:,}** trainable "
            f"parameters and **{adam.gradients:,}** gradients, the same as SGD: the optimizer keeps its "
            f"state (moments) apart and does not change what is trainable.",
        ]
    )

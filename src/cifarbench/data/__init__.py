"""CIFAR-10 for cifarbench: the official files, synthetic images, batched augmentation, the datasets and
training pipelines, and the DataModule that puts them together."""

from cifarbench.data.datamodule import CIFAR10DataModule
from cifarbench.data.pipelines import CIFAR10_MEAN, CIFAR10_STD, PIPELINES, Pipeline, register_pipeline

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "PIPELINES", "CIFAR10DataModule", "Pipeline", "register_pipeline"]

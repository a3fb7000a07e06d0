"""The README's code runs as written: the reuse example on a module and loader that are not cifarbench's, and
the example of a fourth training pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from cifarbench.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    PIPELINES,
    CIFAR10DataModule,
    Pipeline,
    register_pipeline,
)
from cifarbench.data.datasets import NormalizedTensorDataset, images_to_tensor, keep_batch, labels_to_tensor

from helpers import SleepyModule, loader

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block_after(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text()
    return re.findall(r"```python\n(.*?)```", text[text.index(heading) :], flags=re.DOTALL)[0]


def test_reuse_example_runs_and_prints_each_epoch(tmp_path, monkeypatch, capsys):
    example = python_block_after("## Use EpochTimer in your own project")
    assert len(example.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)  # the example's Trainer writes lightning_logs/ into the working directory
    exec(example, {"my_module": SleepyModule(step_delay=0.01), "my_loader": loader(0.0, steps=3)})
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in printed] == ["epoch 0", "epoch 1", "epoch 2"]
    assert (tmp_path / "lightning_logs" / "version_0" / "timings.csv").is_file()


def test_a_fourth_pipeline_is_one_class_and_its_registration(monkeypatch):
    # Registered in a copy of the registry, for this test only.
    monkeypatch.setattr("cifarbench.data.pipelines.PIPELINES", dict(PIPELINES))
    names = {
        "register_pipeline": register_pipeline,
        "Pipeline": Pipeline,
        "keep_batch": keep_batch,
        "NormalizedTensorDataset": NormalizedTensorDataset,
        "images_to_tensor": images_to_tensor,
        "labels_to_tensor": labels_to_tensor,
        "CIFAR10_MEAN": CIFAR10_MEAN,
        "CIFAR10_STD": CIFAR10_STD,
    }
    exec(python_block_after("A fourth training pipeline"), names)
    datamodule = CIFAR10DataModule(synthetic=20, batch_size=8, num_workers=0, pipeline="uint8")
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (8,)
    # Unaugmented and normalised: the first batch holds the seeded order's images exactly.
    first = list(datamodule.train_dataloader().sampler)[:8]
    expected = datamodule.train_set.__getitems__(first)[0]
    torch.testing.assert_close(images, expected)

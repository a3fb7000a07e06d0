"""The known torch.compile traps, handled: one batch shape for training, eager evaluation, the network
compiled (not the LightningModule), and a warning when graphs compile again or CUDA graphs are skipped."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

import cifarbench.callbacks.compile_watch as compile_watch
from cifarbench.callbacks.compile_watch import CompileWatch, compile_counters
from cifarbench.data import CIFAR10DataModule
from cifarbench.errors import ConfigError
from cifarbench.fitting import CifarbenchCLI
from cifarbench.model import ResNet18Classifier

from helpers import fit_args, loader, quiet_trainer


def cli(tmp_path, *extra: str) -> CifarbenchCLI:
    return CifarbenchCLI(ResNet18Classifier, CIFAR10DataModule, run=False, args=fit_args(tmp_path, *extra))


def test_compiling_drops_the_smaller_last_batch_and_watches_the_compiler(tmp_path):
    compiled = cli(tmp_path, "--model.compile", "reduce-overhead", "--data.synthetic", "40")
    assert compiled.datamodule.drop_last is False  # as configured; fit decides
    compiled.before_fit()
    assert compiled.datamodule.drop_last is True
    assert compiled.config["data.drop_last"] is True  # what config.yaml will record
    (watch,) = [callback for callback in compiled.trainer.callbacks if isinstance(callback, CompileWatch)]
    assert watch.cuda_graphs is True
    compiled.datamodule.setup("fit")
    assert [len(labels) for _, labels in compiled.datamodule.train_dataloader()] == [16, 16]  # 40: no 8

    eager = cli(tmp_path, "--data.synthetic", "40")
    eager.before_fit()
    assert eager.datamodule.drop_last is False
    assert not any(isinstance(callback, CompileWatch) for callback in eager.trainer.callbacks)


def test_drop_last_that_would_leave_no_batch_names_both_values():
    data = CIFAR10DataModule(synthetic=10, batch_size=16, num_workers=0, drop_last=True)
    data.setup("fit")
    with pytest.raises(ConfigError, match=r"drop_last=True\) with 10 training images and batch_size=16"):
        data.train_dataloader()


def test_the_network_is_compiled_not_the_lightning_module_and_evaluation_stays_eager():
    model = ResNet18Classifier(compile="default")
    assert model.net._compiled_call_impl is not None  # the network: self.log stays outside the graph
    assert model._compiled_call_impl is None
    before = compile_counters()[0]
    model.eval()
    with torch.no_grad():
        model(torch.randn(3, 3, 32, 32))  # a batch size and a mode that training never sees
    assert compile_counters()[0] == before  # nothing compiled: validation runs the eager network


class TinyNet(nn.Module):
    """A linear layer inside a module of one's own, as the compiled ResNet-18 is: torch 2.11 builds no graph
    for a bare ``nn.Linear`` (its forward is torch's own code, which dynamo skips), torch 2.14 does."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs)


class TinyCompiled(L.LightningModule):
    """A small network compiled with dynamo's eager backend: guards and graphs as usual, no slow codegen."""

    def __init__(self, shrink_in_epoch: int | None = None) -> None:
        super().__init__()
        self.layer = TinyNet()
        self.layer.compile(backend="eager", dynamic=False)
        self.shrink_in_epoch = shrink_in_epoch

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        if self.current_epoch == self.shrink_in_epoch:
            inputs, targets = inputs[:3], targets[:3]  # a shape the first epoch never had
        return nn.functional.cross_entropy(self.layer(inputs), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_watched(tmp_path, module: L.LightningModule) -> tuple[CompileWatch, list[str]]:
    torch._dynamo.reset()
    watch = CompileWatch()
    trainer = quiet_trainer(tmp_path, watch, max_epochs=3)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        trainer.fit(module, loader(0.0, steps=4))
    return watch, [str(r.message) for r in records if "torch.compile compiled" in str(r.message)]


def test_a_fixed_batch_shape_compiles_once(tmp_path):
    watch, messages = fit_watched(tmp_path, TinyCompiled())
    assert watch.graphs_per_epoch == [1, 0, 0] and messages == []


def test_a_new_shape_after_the_first_epoch_is_reported(tmp_path):
    watch, messages = fit_watched(tmp_path, TinyCompiled(shrink_in_epoch=1))
    assert watch.graphs_per_epoch == [1, 1, 0]
    (message,) = messages
    assert "1 new graph(s) in epoch 1" in message and "drop_last=True" in message


def test_skipped_cuda_graphs_are_reported_with_the_reason(monkeypatch):
    """No CUDA here: the counts torch keeps are injected; the reason comes through torch's own logger."""
    counts = iter([(1, 0), (1, 0), (1, 2)])
    monkeypatch.setattr(compile_watch, "compile_counters", lambda: next(counts))
    watch = CompileWatch(cuda_graphs=True)
    trainer = SimpleNamespace(current_epoch=0, strategy=SimpleNamespace(root_device=torch.device("cuda")))
    watch.on_fit_start(trainer, None)
    watch.on_train_epoch_end(trainer, None)
    logging.getLogger("torch._inductor.cudagraph_utils.__cudagraphs").warning(
        "skipping cudagraphs due to mutated inputs (2 instances). Found from : \n stack"
    )
    trainer.current_epoch = 1
    expected = r"skipped CUDA graphs 2 time\(s\) in epoch 1 \(skipping cudagraphs due to mutated inputs \(2"
    with pytest.warns(UserWarning, match=expected + r" instances\)\. Found from :\)"):
        watch.on_train_epoch_end(trainer, None)
    watch.teardown(trainer, None, "fit")
    assert watch.skips == 2

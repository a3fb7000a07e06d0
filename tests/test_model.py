import pytest
import torch
from torch import nn

from cifarbench.model import LAB_SGD, ResNet18Classifier, resnet18


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_resnet18_has_the_cifar_variant_parameter_count():
    assert count_trainable(resnet18()) == 11_173_962


def test_stem_is_3x3_stride_1_without_max_pool():
    net = resnet18()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)


def test_norm_none_removes_every_batch_norm():
    with_bn = resnet18(norm="batch")
    without = resnet18(norm="none")
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in without.modules())
    batch_norm_params = sum(count_trainable(m) for m in with_bn.modules() if isinstance(m, nn.BatchNorm2d))
    assert count_trainable(without) == 11_173_962 - batch_norm_params


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_forward_shapes(norm):
    net = resnet18(norm=norm, num_classes=7).eval()
    features = {}
    net.avgpool.register_forward_hook(lambda m, i, out: features.setdefault("pooled", out))
    logits = net(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 7)
    assert features["pooled"].shape == (3, 512, 1, 1)  # the 512-wide input of the last linear layer


def test_bad_norm_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"norm='group'.*'batch'.*'none'"):
        resnet18(norm="group")


def test_default_optimizer_is_the_lab_sgd():
    optimizer = ResNet18Classifier().configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert {k: group[k] for k in LAB_SGD} == {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


def test_classifier_saves_its_hyperparameters():
    assert dict(ResNet18Classifier(norm="none").hparams) == {"norm": "none", "num_classes": 10}

import pytest
import torch
from torch import nn

from cifarbench.errors import ConfigError
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


def _train_step(model: ResNet18Classifier, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = model(images)
    model.loss_fn(logits, labels).backward()
    return logits


def test_channels_last_is_the_same_network_in_nhwc_memory():
    torch.manual_seed(0)
    eager = ResNet18Classifier()
    nhwc = ResNet18Classifier(channels_last=True)
    nhwc.load_state_dict(eager.state_dict())
    assert nhwc.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not eager.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    features = {}
    nhwc.net.layer1.register_forward_hook(lambda m, i, out: features.setdefault("layer1", out))
    logits = _train_step(nhwc, images, labels)
    assert features["layer1"].is_contiguous(memory_format=torch.channels_last)  # inputs converted too
    torch.testing.assert_close(logits, _train_step(eager, images, labels), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(nhwc.net.fc.weight.grad, eager.net.fc.weight.grad, rtol=1e-3, atol=1e-4)


def test_step_options_stay_out_of_the_hyperparameters_and_checkpoint_keys():
    model = ResNet18Classifier(channels_last=True, compile="default")
    assert dict(model.hparams) == {"norm": "batch", "num_classes": 10}
    assert model.state_dict().keys() == ResNet18Classifier().state_dict().keys()  # no "_orig_mod." prefix


@pytest.mark.parametrize("mode", ["fast", "max_autotune", ""])
def test_unknown_compile_mode_names_the_value_and_the_modes(mode):
    with pytest.raises(ConfigError, match=rf"compile={mode!r}.*default, reduce-overhead or max-autotune"):
        ResNet18Classifier(compile=mode)


@pytest.mark.slow
def test_compiled_model_matches_eager_forward_and_backward():
    # Inductor compiles forward and backward to C++ on the CPU: about 30 s on 2 cores, hence slow.
    torch.manual_seed(0)
    eager = ResNet18Classifier()
    compiled = ResNet18Classifier(channels_last=True, compile="default")
    compiled.load_state_dict(eager.state_dict())
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    logits = _train_step(compiled, images, labels)
    torch.testing.assert_close(logits, _train_step(eager, images, labels), rtol=1e-3, atol=1e-3)
    gradient, expected = compiled.net.conv1.weight.grad, eager.net.conv1.weight.grad
    torch.testing.assert_close(gradient, expected, rtol=1e-2, atol=1e-3)


def test_training_flops_per_image_are_measured_from_the_model():
    from cifarbench.callbacks.flops import training_flops_per_sample

    flops = training_flops_per_sample(ResNet18Classifier())
    # Forward ~1.11 GFLOP (0.56 G multiply-adds) and backward about twice that: ~3.3 GFLOP per image.
    assert 3.2e9 < flops < 3.45e9
    # 90 more classes: the last linear layer's forward, input-gradient and weight-gradient matmuls grow.
    wider = training_flops_per_sample(ResNet18Classifier(num_classes=100))
    assert wider - flops == 3 * 2 * 512 * 90

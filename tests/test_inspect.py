"""`python -m cifarbench inspect`: Q1-Q4 counted from the model and one real training step."""

from __future__ import annotations

import pytest
from torch import nn

from cifarbench.__main__ import main
from cifarbench.lab.questions import (
    count_conv_layers,
    counts_after_one_step,
    inspect_model,
    last_linear_in_features,
)
from cifarbench.model import resnet18


def test_conv_counter_separates_shortcut_convs_by_structure():
    # Not ResNet-18: proves the counts come from walking the modules, not from constants.
    block = nn.Module()
    block.conv1 = nn.Conv2d(3, 4, 3)
    block.downsample = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Identity())
    net = nn.Sequential(nn.Conv2d(3, 3, 3), block, nn.Flatten(), nn.Linear(7, 2), nn.Linear(2, 5))
    assert count_conv_layers(net) == (2, 3)
    assert last_linear_in_features(net) == 2


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_resnet18_has_17_main_path_convs_20_with_shortcuts_and_a_512_input_linear(norm):
    net = resnet18(norm=norm)
    assert count_conv_layers(net) == (17, 20)
    assert last_linear_in_features(net) == 512


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_one_real_step_leaves_11173962_parameters_and_as_many_gradients(optimizer):
    counts = counts_after_one_step("batch", optimizer, batch_size=2)
    assert counts.trainable_parameters == 11_173_962
    assert counts.gradients == 11_173_962


def test_without_batch_norm_the_counts_drop_by_exactly_the_batch_norm_parameters():
    batch_norm_params = sum(
        p.numel()
        for m in resnet18("batch").modules()
        if isinstance(m, nn.BatchNorm2d)
        for p in m.parameters()
    )
    counts = counts_after_one_step("none", "Adam", batch_size=2)
    assert counts.trainable_parameters == 11_173_962 - batch_norm_params
    assert counts.gradients == counts.trainable_parameters


def test_inspect_command_prints_every_answer(capsys):
    main(["inspect", "--batch_size", "2"])
    out = capsys.readouterr().out
    for heading in ("## Q1", "## Q2", "## Q3", "## Q4"):
        assert heading in out
    assert "**17**" in out and "**20**" in out and "**512**" in out
    assert out.count("**11,173,962**") == 4  # parameters and gradients, SGD and Adam


def test_inspect_command_accepts_norm_none(capsys):
    main(["inspect", "--model.norm", "none", "--batch_size", "2"])
    out = capsys.readouterr().out
    expected = inspect_model("none", batch_size=2).steps[0].trainable_parameters
    assert f"**{expected:,}**" in out and "norm=none" in out


def test_inspect_rejects_an_unknown_norm_and_names_it(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "--model.norm", "layer"])
    assert exit_info.value.code == 2
    assert "'layer'" in capsys.readouterr().err

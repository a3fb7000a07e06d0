"""The device peak behind MFU: the project's own dense figures for the Hopper parts Lightning's table misses,
Lightning's table for the rest, and the precision a run computes in."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.utilities.throughput import get_available_flops

from cifarbench.callbacks import flops
from cifarbench.callbacks.flops import compute_dtype, device_peak_flops, peak_flops

CUDA = torch.device("cuda")


@pytest.fixture
def device_named(monkeypatch):
    """Makes torch.cuda.get_device_name answer ``name``, as torch names the part."""

    def name(device_name: str) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: device_name)

    return name


@pytest.mark.parametrize(
    ("device_name", "bf16_tflops", "tf32_tflops"),
    [
        ("NVIDIA H200", 989.4, 494.7),  # the SXM part, as torch names it
        ("NVIDIA H200 NVL", 835.5, 417.5),
        ("NVIDIA H100 NVL", 835.5, 417.5),
    ],
)
def test_the_hopper_parts_lightning_misses_have_their_dense_peaks(device_named, device_name, bf16_tflops,
                                                                   tf32_tflops):  # fmt: skip
    device_named(device_name)
    assert device_peak_flops(CUDA, torch.bfloat16) == pytest.approx(bf16_tflops * 1e12)
    assert device_peak_flops(CUDA, torch.float16) == pytest.approx(bf16_tflops * 1e12)
    assert device_peak_flops(CUDA, "tfloat32") == pytest.approx(tf32_tflops * 1e12)
    assert device_peak_flops(CUDA, torch.float8_e4m3fn) == pytest.approx(2 * bf16_tflops * 1e12, rel=1e-3)
    assert device_peak_flops(CUDA, torch.float32) < tf32_tflops * 1e12 / 5  # plain fp32, no tensor cores


def test_lightning_alone_has_no_peak_for_the_h200_which_is_why_the_table_is_here(device_named):
    device_named("NVIDIA H200")
    with pytest.warns(UserWarning, match="FLOPs not found for 'NVIDIA H200'"):
        assert get_available_flops(CUDA, torch.bfloat16) is None  # MFU would print as 0.0%


def test_other_gpus_come_from_lightnings_table(device_named):
    device_named("NVIDIA H100 80GB HBM3")  # the H100 SXM
    assert device_peak_flops(CUDA, torch.bfloat16) == pytest.approx(989.4e12)
    assert flops._own_chip("NVIDIA A100-SXM4-80GB") is None
    assert device_peak_flops(torch.device("cpu"), torch.float32) is None


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("bf16-mixed", torch.bfloat16), ("bf16-true", torch.bfloat16), ("16-mixed", torch.float16),
     ("64-true", torch.float64)],
)  # fmt: skip
def test_the_compute_dtype_follows_the_precision(precision, expected):
    assert compute_dtype(precision, CUDA) == expected


def test_fp32_convolutions_on_cuda_count_against_tf32_unless_both_switches_are_off(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert compute_dtype("32-true", CUDA) == "tfloat32"  # cuDNN's default: TF32 convolutions
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert compute_dtype("32-true", CUDA) == torch.float32
    torch.set_float32_matmul_precision("high")
    try:
        assert compute_dtype("32-true", CUDA) == "tfloat32"
    finally:
        torch.set_float32_matmul_precision("highest")
    assert compute_dtype("32-true", torch.device("cpu")) == torch.float32


def test_a_trainer_on_an_h200_gets_the_peak_of_its_precision(device_named):
    device_named("NVIDIA H200")
    trainer = SimpleNamespace(precision="bf16-mixed", strategy=SimpleNamespace(root_device=CUDA))
    assert peak_flops(trainer) == pytest.approx(989.4e12)

"""Model FLOP utilization (MFU): measured training FLOPs per sample against the device's peak."""

from __future__ import annotations

import copy

import lightning as L
import torch
from lightning.fabric.utilities.throughput import get_available_flops, measure_flops


def training_flops_per_sample(pl_module: L.LightningModule) -> float | None:
    """FLOPs of one forward and backward pass per sample, counted on a meta-device copy of the module.

    Uses the module's ``example_input_array`` (a Lightning convention); ``None`` when it has none or the
    module cannot be copied. Nothing runs on the real module, so its weights and statistics are untouched.
    """
    example = getattr(pl_module, "example_input_array", None)
    if not isinstance(example, torch.Tensor) or example.ndim == 0 or len(example) == 0:
        return None
    try:
        meta_module = copy.deepcopy(pl_module).to("meta")
        meta_input = example.to("meta")
        flops = measure_flops(
            meta_module, lambda: meta_module(meta_input), loss_fn=lambda output: output.sum()
        )
    except Exception:  # an uncopyable module, or no forward(): no MFU rather than a failed fit
        return None
    return flops / len(example)


# Dense peak FLOP/s per precision for GPUs whose entry Lightning's table lacks or gets wrong; consulted before
# Lightning's. Lightning 2.6.6 maps only names containing "sxm1" or "nvl1" to its H200 rows, so the SXM part,
# which torch names plainly "NVIDIA H200", gets no peak (and MFU would print as 0.0%); its H200 and H100 NVL
# rows also hold the with-sparsity figures, twice the dense rate that training reaches for. Every figure below
# is the datasheet's dense one: half its with-sparsity figure for TF32, BF16, FP16, FP8 and INT8. Measured on
# one H200 of this workplace, a large bf16 matrix product ran at about 790 TFLOP/s (80% of the peak below): an
# MFU near 80% is the ceiling in practice.
_DENSE_PEAK_FLOPS: dict[str, dict[torch.dtype | str, float]] = {
    # NVIDIA H200 Tensor Core GPU datasheet (nvdam.widen.net/s/nb5zzzsjdf, Nov 2024), column H200 SXM: FP64
    # 34, FP64 Tensor Core 67, FP32 67, TF32 989*, BF16 1,979*, FP16 1,979*, FP8 3,958*, INT8 3,958* (*
    # sparse). The GH200 Grace Hopper datasheet gives its GPU the same rates.
    "h200": {
        torch.float64: 67e12,  # on the tensor cores (FP64 Tensor Core); plain FP64 is 34
        torch.float32: 67e12,
        "tfloat32": 494.7e12,
        torch.bfloat16: 989.4e12,
        torch.float16: 989.4e12,
        torch.float8_e4m3fn: 1978.9e12,
        torch.int8: 1978.9e12,
    },
    # The same datasheet, column H200 NVL: FP64 30, FP64 Tensor Core 60, FP32 60, TF32 835*, BF16 1,671*,
    # FP16 1,671*, FP8 3,341*, INT8 3,341* (* sparse).
    "h200 nvl": {
        torch.float64: 60e12,
        torch.float32: 60e12,
        "tfloat32": 417.5e12,
        torch.bfloat16: 835.5e12,
        torch.float16: 835.5e12,
        torch.float8_e4m3fn: 1670.5e12,
        torch.int8: 1670.5e12,
    },
    # NVIDIA H100 Tensor Core GPU datasheet (resources.nvidia.com/en-us-tensor-core, 2024), column H100 NVL,
    # one GPU: FP64 30, FP64 Tensor Core 60, FP32 60, TF32 835*, BF16 1,671*, FP16 1,671*, FP8 3,341*, INT8
    # 3,341* (* sparse). Lightning's "h100 nvl" row (1,979 TFLOP/s bf16) is the earlier datasheet's pair of
    # GPUs.
    # The same figures as the H200 NVL, datasheet for datasheet: one row, not a copy that could drift.
    "h100 nvl": {},
}
_DENSE_PEAK_FLOPS["h100 nvl"] = _DENSE_PEAK_FLOPS["h200 nvl"]


def _own_chip(device_name: str) -> str | None:
    """The key of ``_DENSE_PEAK_FLOPS`` for a CUDA device name (``torch.cuda.get_device_name``), if any."""
    name = device_name.lower()
    if "h200" in name:
        return "h200 nvl" if "nvl" in name else "h200"
    if "h100" in name and "nvl" in name:
        return "h100 nvl"
    return None


def device_peak_flops(device: torch.device, dtype: torch.dtype | str) -> float | None:
    """Peak FLOP/s of ``device`` at ``dtype`` ("tfloat32" for TF32): this module's table, then Lightning's."""
    if device.type == "cuda":
        chip = _own_chip(torch.cuda.get_device_name(device))
        if chip is not None:
            return _DENSE_PEAK_FLOPS[chip].get(dtype)
    available = get_available_flops(device, dtype)
    return float(available) if available else None


def compute_dtype(precision: str, device: torch.device) -> torch.dtype | str:
    """The dtype a run of Lightning ``precision`` computes its convolutions and matmuls in on ``device``."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    if precision.startswith("64"):
        return torch.float64
    # fp32: on a CUDA device cuDNN runs convolutions on TF32 tensor cores unless
    # torch.backends.cudnn.allow_tf32 is off (it is on by default), and matmuls unless the float32 matmul
    # precision is "highest" (the default). A convolutional network's FLOPs are nearly all convolutions, so
    # either switch makes the peak TF32's.
    if device.type == "cuda" and (
        torch.backends.cudnn.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    ):
        return "tfloat32"
    return torch.float32


def peak_flops(trainer: L.Trainer) -> float | None:
    """The device's theoretical dense peak FLOP/s at the run's compute precision, if known."""
    device = trainer.strategy.root_device
    return device_peak_flops(device, compute_dtype(str(trainer.precision), device))


def mfu_flops(
    trainer: L.Trainer, pl_module: L.LightningModule, peak: float | None, per_sample: float | None
) -> tuple[float, float] | None:
    """(training FLOPs per sample, the device's peak FLOP/s) for MFU, each the given value or found here;
    ``None`` when either is unknown (the FLOPs are measured only when the peak is known)."""
    peak = peak or peak_flops(trainer)
    if peak is None:
        return None  # measuring FLOPs would be wasted work
    per_sample = per_sample or training_flops_per_sample(pl_module)
    return (per_sample, peak) if per_sample else None

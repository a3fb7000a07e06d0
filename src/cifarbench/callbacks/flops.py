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


def peak_flops(trainer: L.Trainer) -> float | None:
    """The device's theoretical peak FLOP/s at the run's compute precision (Lightning's table), if known."""
    precision = str(trainer.precision)
    if precision.startswith("bf16"):
        dtype: torch.dtype | str = torch.bfloat16
    elif precision.startswith("16"):
        dtype = torch.float16
    elif precision.startswith("64"):
        dtype = torch.float64
    else:
        # fp32 matmuls run on TF32 tensor cores unless the matmul precision is "highest".
        dtype = "tfloat32" if torch.get_float32_matmul_precision() != "highest" else torch.float32
    available = get_available_flops(trainer.strategy.root_device, dtype)
    return float(available) if available else None


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

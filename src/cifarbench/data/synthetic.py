"""Learnable synthetic images in CIFAR-10's shape, made in memory (for tests, the demo and benchmarks)."""

from __future__ import annotations

import colorsys

import numpy as np

# Class identity lives in a hue and a stripe pattern; both survive random crops and flips, so a model can
# learn them, while per-pixel noise keeps the task from being trivial for one step.
_PROTOTYPE_SEED = 1234
_NOISE_STD = 40.0
# Noise is drawn in float64 a chunk at a time: one draw for 50,000 images would need ~1.2 GB at once. A
# Generator's stream does not depend on how it is split, so chunking gives the same images.
_CHUNK_IMAGES = 4096


def _class_prototypes(num_classes: int) -> np.ndarray:
    """One float32 32x32x3 image per class: an evenly spaced hue modulated by class-specific stripes."""
    rng = np.random.default_rng(_PROTOTYPE_SEED)
    y, x = np.mgrid[0:32, 0:32].astype(np.float32)
    prototypes = np.empty((num_classes, 32, 32, 3), dtype=np.float32)
    for label in range(num_classes):
        color = np.array(colorsys.hsv_to_rgb(label / num_classes, 0.7, 0.8), dtype=np.float32) * 255.0
        angle = rng.uniform(0.0, np.pi)
        frequency = 1.0 + label % 4
        stripes = np.sin(2 * np.pi * frequency * (np.cos(angle) * x + np.sin(angle) * y) / 32.0)
        prototypes[label] = color + 30.0 * stripes[..., None]
    return prototypes


def make_synthetic(num_images: int, seed: int = 0, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``num_images`` uint8 images (N x 32 x 32 x 3, CIFAR's HWC order) and balanced int64 labels.

    The same ``seed`` gives the same images; the class prototypes are shared by every seed, so a train set
    and a test set made with different seeds are drawn from one distribution.
    """
    if num_images < 1:
        raise ValueError(f"make_synthetic(num_images={num_images!r}) must be >= 1")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_images) % num_classes).astype(np.int64)
    prototypes = _class_prototypes(num_classes)
    images = np.empty((num_images, 32, 32, 3), dtype=np.uint8)
    for start in range(0, num_images, _CHUNK_IMAGES):
        chunk = labels[start : start + _CHUNK_IMAGES]
        noise = rng.normal(0.0, _NOISE_STD, size=(len(chunk), 32, 32, 3)).astype(np.float32)
        images[start : start + len(chunk)] = np.clip(prototypes[chunk] + noise, 0, 255)
    return images, labels

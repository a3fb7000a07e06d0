"""Helpers shared by the tests (importable, unlike conftest)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

IMAGES_PER_FILE = 6


def write_batch(path: Path, images_hwc: np.ndarray, labels: np.ndarray) -> None:
    """Write one batch the way the official files are laid out: rows of R, G, B planes, protocol 2."""
    data = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)
    batch = {
        "batch_label": f"{path.name} written by the tests",
        "labels": [int(label) for label in labels],
        "data": np.ascontiguousarray(data),
        "filenames": [f"image_{i}.png" for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    (event_file,) = log_dir.glob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}

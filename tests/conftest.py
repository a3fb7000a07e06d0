"""Shared fixtures: CIFAR-10-layout files written into tmp_path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarbench.data import cifar10_files

from helpers import IMAGES_PER_FILE, write_batch


@dataclass
class CifarFiles:
    data_dir: Path
    expected: dict[str, tuple[np.ndarray, np.ndarray]]  # file name -> (images HWC, labels)

    @property
    def folder(self) -> Path:
        return self.data_dir / cifar10_files.BASE_FOLDER


@pytest.fixture
def cifar_files(tmp_path: Path) -> CifarFiles:
    """Every CIFAR-10 batch file in the official layout, IMAGES_PER_FILE random images each."""
    files = CifarFiles(tmp_path / "data", {})
    files.folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for name in [*cifar10_files.TRAIN_FILES, *cifar10_files.TEST_FILES]:
        images = rng.integers(0, 256, size=(IMAGES_PER_FILE, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=IMAGES_PER_FILE)
        write_batch(files.folder / name, images, labels)
        files.expected[name] = (images, labels)
    return files


@pytest.fixture
def one_torch_thread():
    """Idle intra-op threads take ~10 ms to wake on a 2-core machine: real, but noise next to a delay."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

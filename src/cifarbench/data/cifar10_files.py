"""CIFAR-10 on disk: the official python layout, its checksums, download, and safe reading of the batches."""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cifarbench.errors import DataError

BASE_FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
# The official checksums (the same ones torchvision's CIFAR10 dataset checks).
TRAIN_FILES: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}
TEST_FILES: dict[str, str] = {"test_batch": "40351d587109b95175f43aff81a1287e"}

_IMAGE_BYTES = 3 * 32 * 32


def _numpy_reconstruct() -> Any:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    return core.multiarray._reconstruct


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something a CIFAR-10 batch never needs."""


class _NdarrayType:
    """Stands in for numpy.ndarray: numpy's pickles only pass the type to _reconstruct, never call it.

    Calling it would let a tiny file allocate an array of any size, so that is refused.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _Refused("it calls numpy.ndarray directly, which numpy's own pickles never do")


_NDARRAY = _NdarrayType()


def _reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') and then sets its state from the bytes in
    # the file, whose length numpy checks against the shape: memory stays bounded by the file's size.
    if subtype is not _NDARRAY or tuple(shape) != (0,):
        raise _Refused("it builds a numpy array in a way numpy's own pickles never do")
    return _numpy_reconstruct()(np.ndarray, (0,), dtype_code)


def _dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise _Refused("it asks for a numpy object array, which could hold arbitrary objects")
    return dtype


# Exactly the globals a CIFAR-10 batch pickle names: Python 2's cPickle wrote numpy.core.*; Python 3 with
# numpy 2 writes numpy._core.* and encodes bytes through _codecs.encode. Anything else is refused, so a
# pickle cannot run code while being read.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"it names the global {module}.{name}, which could run code") from None


def _missing_data_message(folder: Path, detail: str) -> str:
    return (
        f"CIFAR-10 was not found: {detail} (looked in {folder}). Download it with --data.download true "
        f"(fetches {URL} into --data.data_dir and checks it), or place the extracted '{BASE_FOLDER}' folder "
        f"in --data.data_dir. To run without CIFAR-10, ask for synthetic images explicitly: "
        f"--data.synthetic 50000."
    )


def split_files(train: bool) -> dict[str, str]:
    """Batch file names of a split and their official md5 checksums."""
    return TRAIN_FILES if train else TEST_FILES


def has_all_files(data_dir: str | os.PathLike[str]) -> bool:
    """True when every batch file is present. Their checksums are read_split's to check (or not)."""
    folder = Path(data_dir) / BASE_FOLDER
    return all((folder / name).is_file() for name in {**TRAIN_FILES, **TEST_FILES})


def download(data_dir: str | os.PathLike[str]) -> None:
    """Fetch and extract the official archive into ``data_dir`` (torchvision's downloader checks its md5)."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(URL, download_root=str(data_dir), filename=ARCHIVE, md5=ARCHIVE_MD5)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad archive md5 a RuntimeError
        raise DataError(
            f"Downloading CIFAR-10 from {URL} into {data_dir} failed ({error}). Check the network, or "
            f"download the archive by hand and extract it into {data_dir}, so that "
            f"{Path(data_dir) / BASE_FOLDER} exists. To run without CIFAR-10: --data.synthetic 50000."
        ) from error


def read_split(
    data_dir: str | os.PathLike[str], train: bool, verify_integrity: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 32 x 32 x 3 uint8, HWC) and int64 labels of the train or test split."""
    folder = Path(data_dir) / BASE_FOLDER
    if not folder.is_dir():
        raise DataError(_missing_data_message(folder, f"the folder {folder} does not exist"))
    images, labels = [], []
    for name, md5 in split_files(train).items():
        path = folder / name
        if not path.is_file():
            raise DataError(_missing_data_message(folder, f"the batch file {path} is missing"))
        if verify_integrity:
            _verify_checksum(path, md5)
        batch_images, batch_labels = read_batch_file(path)
        images.append(batch_images)
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def _verify_checksum(path: Path, expected_md5: str) -> None:
    from torchvision.datasets.utils import calculate_md5

    actual = calculate_md5(path)
    if actual != expected_md5:
        raise DataError(
            f"{path} does not match the official CIFAR-10 checksum (md5 {actual}, expected {expected_md5}): "
            f"it is corrupt, truncated or different data. Delete it and download again "
            f"(--data.download true), or, to read other data in the CIFAR-10 layout on purpose, pass "
            f"--data.verify_integrity false."
        )


def read_batch_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One batch pickle, read without executing code, checked for shape, as (images HWC, labels)."""
    try:
        with open(path, "rb") as file:
            batch = _BatchUnpickler(file, encoding="latin1").load()
    except _Refused as error:
        raise DataError(
            f"Refused to read {path}: {error}. A CIFAR-10 batch never needs that. Replace the file with the "
            f"official one (--data.download true)."
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        MemoryError,
        AttributeError,
    ) as error:
        raise _unreadable(path, error) from None
    return _check_batch(path, batch)


def _unreadable(path: str | os.PathLike[str], error: BaseException) -> DataError:
    return DataError(
        f"Cannot read {path}: it is truncated or not a CIFAR-10 batch pickle ({type(error).__name__}: "
        f"{error}). Delete it and download again (--data.download true)."
    )


def _check_batch(path: str | os.PathLike[str], batch: Any) -> tuple[np.ndarray, np.ndarray]:
    def bad(detail: str) -> DataError:
        return DataError(
            f"{path} is not a CIFAR-10 batch: {detail}. Each batch is a dict with 'data' (uint8, N x 3072, "
            f"rows of R, G and B planes) and 'labels' (N ints in 0..9). Delete it and download the official "
            f"file again (--data.download true)."
        )

    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise bad("it is not a dict with the keys 'data' and 'labels'")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _IMAGE_BYTES
    ):
        shape = getattr(data, "shape", None)
        raise bad(f"'data' has shape {shape} and dtype {getattr(data, 'dtype', type(data).__name__)}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise bad(f"'labels' has shape {labels.shape} and dtype {labels.dtype} for {len(data)} images")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise bad(f"'labels' range from {labels.min()} to {labels.max()}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes -> HWC, as PIL expects
    return np.ascontiguousarray(images), labels.astype(np.int64)

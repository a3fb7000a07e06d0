"""CIFAR-10 on disk: the official python layout, its checksums, download, and safe reading of the batches."""

from __future__ import annotations

import codecs
import math
import os
import pickle
import tarfile
import tempfile
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


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something a CIFAR-10 batch never needs."""


# What reading one batch file may build, beyond the file's own bytes: numpy's pickles hold each array's bytes
# once (a Python 3 file also as the text they are encoded from), so an honest file needs about twice its size.
# A file that asks for more builds copies from references (a few bytes each), so it is refused as soon as
# the total passes this budget, before the copy is made: memory stays a small multiple of the file's size.
_BUDGET_PER_FILE_BYTE = 3
_BUDGET_SLACK_BYTES = 1 << 20
# numpy 2 pickles an array's bytes as _codecs.encode(text, "latin1"): one byte per character, nothing else.
_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1"}


class _Budget:
    """The bytes one file's reading may still build; charged before each array or bytes object is made."""

    def __init__(self, file_bytes: int) -> None:
        self.file_bytes = file_bytes
        self.left = _BUDGET_PER_FILE_BYTE * file_bytes + _BUDGET_SLACK_BYTES

    def charge(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise _Refused(
                f"it builds more than {_BUDGET_PER_FILE_BYTE}x its own size ({self.file_bytes:,} bytes) in "
                f"memory, from references to the same data"
            )


class _NdarrayType:
    """Stands in for numpy.ndarray: numpy's pickles only pass the type to _reconstruct, never call it.

    Calling it would let a tiny file allocate an array of any size, so that is refused.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _Refused("it calls numpy.ndarray directly, which numpy's own pickles never do")


_NDARRAY = _NdarrayType()


class _BudgetedArray(np.ndarray):
    """An array being unpickled: its state (the bytes) is charged to the file's budget before numpy copies it.

    The same empty array can be filled again and again from one memoized string; each fill is charged.
    """

    def __setstate__(self, state: Any) -> None:
        budget: _Budget = self.__dict__["_budget"]
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("it sets an array's state in a way numpy's own pickles never do")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        if (
            not isinstance(shape, tuple)
            or not all(type(size) is int and size >= 0 for size in shape)
            or not isinstance(dtype, np.dtype)
            or not isinstance(raw, (bytes, str))
        ):
            raise _Refused("it sets an array's state in a way numpy's own pickles never do")
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise _Refused(f"an array of shape {shape} comes with {len(raw):,} bytes, not its size")
        budget.charge(len(raw))
        super().__setstate__(state)


def _numpy_reconstruct() -> Any:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    return core.multiarray._reconstruct


def _dtype(*args: Any) -> np.dtype:
    # numpy pickles a dtype as dtype("u1", False, True): a type code, never a structure or a sub-array.
    if not args or not isinstance(args[0], str):
        raise _Refused("it builds a numpy dtype in a way numpy's own pickles never do")
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise _Refused("it asks for a numpy object array, which could hold arbitrary objects")
    return dtype


class _BatchUnpickler(pickle.Unpickler):
    """Exactly the globals a CIFAR-10 batch pickle names, each as narrow as numpy's own pickles use it.

    Python 2's cPickle wrote numpy.core.*; Python 3 with numpy 2 writes numpy._core.* and encodes bytes
    through _codecs.encode. Anything else is refused, so a pickle cannot run code while being read, and what
    the allowed calls build is charged to a budget proportional to the file's size.
    """

    def __init__(self, file: Any, file_bytes: int) -> None:
        super().__init__(file, encoding="latin1")
        self._budget = _Budget(file_bytes)
        self._allowed: dict[tuple[str, str], Any] = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): _dtype,
            ("_codecs", "encode"): self._encode,
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"it names the global {module}.{name}, which could run code") from None

    def _reconstruct(self, subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
        # numpy pickles an array as _reconstruct(ndarray, (0,), b'b') and then sets its state from the bytes
        # in the file (see _BudgetedArray).
        if subtype is not _NDARRAY or shape != (0,) or not isinstance(dtype_code, bytes):
            raise _Refused("it builds a numpy array in a way numpy's own pickles never do")
        array = _numpy_reconstruct()(_BudgetedArray, (0,), dtype_code)
        array.__dict__["_budget"] = self._budget
        return array

    def _encode(self, text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        # Other codecs grow their input (hex doubles it, utf-32 quadruples it) and chain: a few hundred bytes
        # could ask for gigabytes.
        if type(text) is not str or not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
            raise _Refused("it calls _codecs.encode other than to turn text into bytes with latin1")
        self._budget.charge(len(text))
        return codecs.encode(text, "latin1", "strict")


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
    """Fetch the official archive into ``data_dir`` (md5 checked); extract the batch files missing there.

    Only the expected members are extracted, with tarfile's ``data`` filter, and never over a file that is
    there: a user's own batch file stays as it is when another one is missing.
    """
    from torchvision.datasets.utils import download_url

    try:
        download_url(URL, root=str(data_dir), filename=ARCHIVE, md5=ARCHIVE_MD5)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad archive md5 a RuntimeError
        raise DataError(
            f"Downloading CIFAR-10 from {URL} into {data_dir} failed ({error}). Check the network, or "
            f"download the archive by hand and extract it into {data_dir}, so that "
            f"{Path(data_dir) / BASE_FOLDER} exists. To run without CIFAR-10: --data.synthetic 50000."
        ) from error
    extract_missing(Path(data_dir) / ARCHIVE, data_dir)


# The archive's members that cifarbench extracts (batches.meta holds the class names; readme.html is left).
EXPECTED_MEMBERS = (*TRAIN_FILES, *TEST_FILES, "batches.meta")


def extract_missing(archive: str | os.PathLike[str], data_dir: str | os.PathLike[str]) -> list[Path]:
    """Extract from ``archive`` the batch files missing in ``data_dir``/cifar-10-batches-py; return those.

    Each expected member must be a regular file; it is extracted (``data`` filter) into a temporary folder
    beside its destination, then linked into place, which fails rather than replace a file that is there.
    """
    folder = Path(data_dir) / BASE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    missing = [name for name in EXPECTED_MEMBERS if not (folder / name).exists()]
    extracted: list[Path] = []
    if not missing:
        return extracted
    try:
        with tarfile.open(archive, "r:gz") as tar, tempfile.TemporaryDirectory(dir=folder) as staging:
            for name in missing:
                member = _member(tar, f"{BASE_FOLDER}/{name}")
                if member is None:
                    if name in TRAIN_FILES or name in TEST_FILES:
                        raise DataError(f"{archive} has no regular file {BASE_FOLDER}/{name}")
                    continue
                tar.extract(member, path=staging, filter="data")
                if _place(Path(staging) / member.name, folder / name):
                    extracted.append(folder / name)
    except (OSError, tarfile.TarError, EOFError) as error:
        raise DataError(
            f"Extracting {archive} into {folder} failed ({type(error).__name__}: {error}). Delete the "
            f"archive and download again (--data.download true)."
        ) from None
    return extracted


def _member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo | None:
    try:
        member = tar.getmember(name)
    except KeyError:
        return None
    return member if member.isfile() else None


def _place(staged: Path, destination: Path) -> bool:
    """Move ``staged`` to ``destination`` unless a file is there; False when one is (it is kept)."""
    try:
        os.link(staged, destination)  # atomic, and never replaces
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        if destination.exists():
            return False
        os.replace(staged, destination)
    return True


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
            batch = _BatchUnpickler(file, os.fstat(file.fileno()).st_size).load()
    except _Refused as error:
        raise DataError(
            f"Refused to read {path}: {error}. A CIFAR-10 batch never needs that. Replace the file with the "
            f"official one (--data.download true)."
        ) from None
    except (Exception, RecursionError) as error:  # whatever a malformed pickle makes the unpickler raise
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
    data = batch["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _IMAGE_BYTES
    ):
        shape = getattr(data, "shape", None)
        raise bad(f"'data' has shape {shape} and dtype {getattr(data, 'dtype', type(data).__name__)}")
    if len(data) == 0:
        raise bad("it holds 0 images")
    labels = batch["labels"]
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        labels = labels.view(np.ndarray).tolist()
    # Checked before numpy sees them: np.asarray of nested or ragged lists raises, or, for a list that repeats
    # references to one long list, builds an array far larger than the file.
    if not isinstance(labels, (list, tuple)) or not all(type(label) is int for label in labels):
        raise bad(f"'labels' is not a flat list of ints (it is a {type(labels).__name__})")
    if len(labels) != len(data):
        raise bad(f"'labels' has {len(labels)} entries for {len(data)} images")
    if min(labels) < 0 or max(labels) > 9:
        raise bad(f"'labels' range from {min(labels)} to {max(labels)}")
    images = (
        data.view(np.ndarray).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )  # planes -> HWC, as PIL expects
    return np.ascontiguousarray(images), np.array(labels, dtype=np.int64)

import io
import pickle
import re
import shutil
import struct
import tarfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarbench.data import CIFAR10_MEAN, CIFAR10_STD, CIFAR10DataModule, cifar10_files
from cifarbench.data.synthetic import make_synthetic
from cifarbench.errors import ConfigError, DataError

from helpers import IMAGES_PER_FILE, RunsCode, use_checksums_of, write_batch


def test_reads_the_cifar_layout_into_hwc_images(cifar_files):
    images, labels = cifar10_files.read_split(cifar_files.data_dir, train=True, verify_integrity=False)
    expected = cifar_files.expected
    assert images.shape == (5 * IMAGES_PER_FILE, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:IMAGES_PER_FILE], expected["data_batch_1"][0])
    np.testing.assert_array_equal(images[-IMAGES_PER_FILE:], expected["data_batch_5"][0])
    np.testing.assert_array_equal(labels[IMAGES_PER_FILE : 2 * IMAGES_PER_FILE], expected["data_batch_2"][1])
    test_split = cifar10_files.read_split(cifar_files.data_dir, train=False, verify_integrity=False)
    test_images, test_labels = test_split
    np.testing.assert_array_equal(test_images, expected["test_batch"][0])
    np.testing.assert_array_equal(test_labels, expected["test_batch"][1])


def test_plane_order_is_red_green_blue(tmp_path):
    image = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    image[0, 0, 0] = (10, 20, 30)
    write_batch(tmp_path / "b", image, np.array([3]))
    raw = pickle.loads((tmp_path / "b").read_bytes())["data"][0]
    assert (raw[0], raw[1024], raw[2048]) == (10, 20, 30)  # the official layout: R plane, G plane, B plane
    images, labels = cifar10_files.read_batch_file(tmp_path / "b")
    assert tuple(images[0, 0, 0]) == (10, 20, 30) and labels.tolist() == [3]


def test_reads_python2_cpickle_globals(tmp_path):
    """The official files name numpy.core.multiarray (numpy 1 / Python 2), not numpy._core."""
    images = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 32, 32, 3)
    write_batch(tmp_path / "b", images, np.array([1, 2]))
    py3_bytes = (tmp_path / "b").read_bytes()
    assert b"numpy._core.multiarray" in py3_bytes
    (tmp_path / "py2").write_bytes(py3_bytes.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    read, labels = cifar10_files.read_batch_file(tmp_path / "py2")
    np.testing.assert_array_equal(read, images)


def test_verified_files_pass_with_matching_checksums(cifar_files, monkeypatch):
    use_checksums_of(cifar_files.folder, monkeypatch)
    assert cifar10_files.has_all_files(cifar_files.data_dir)
    images, _ = cifar10_files.read_split(cifar_files.data_dir, train=True, verify_integrity=True)
    assert len(images) == 5 * IMAGES_PER_FILE


def test_download_fetches_only_missing_files_and_never_overwrites_the_users(cifar_files, monkeypatch):
    downloads = []
    monkeypatch.setattr(cifar10_files, "download", downloads.append)
    before = (cifar_files.folder / "data_batch_1").read_bytes()
    # Not the official files (their checksums differ), read on purpose with verification off.
    data = CIFAR10DataModule(data_dir=str(cifar_files.data_dir), download=True, verify_integrity=False)
    data.prepare_data()
    assert downloads == [] and (cifar_files.folder / "data_batch_1").read_bytes() == before
    (cifar_files.folder / "test_batch").unlink()
    data.prepare_data()
    assert downloads == [str(cifar_files.data_dir)]


def test_checksum_mismatch_names_the_file_and_both_fixes(cifar_files):
    # The test files are not the official ones, so their md5 differs from the official checksums.
    with pytest.raises(DataError) as error:
        cifar10_files.read_split(cifar_files.data_dir, train=True, verify_integrity=True)
    message = str(error.value)
    assert "data_batch_1" in message and cifar10_files.TRAIN_FILES["data_batch_1"] in message
    assert "--data.verify_integrity false" in message and "--data.download true" in message


def test_truncated_file_names_the_file(cifar_files):
    path = cifar_files.folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"data_batch_3.*truncated"):
        cifar10_files.read_split(cifar_files.data_dir, train=True, verify_integrity=False)


@pytest.mark.parametrize("verify_integrity", [True, False])
def test_pickle_that_runs_code_is_refused_and_never_runs(cifar_files, tmp_path, verify_integrity):
    marker = tmp_path / "code-ran"
    path = cifar_files.folder / "test_batch"
    path.write_bytes(pickle.dumps({"data": RunsCode(marker), "labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="test_batch") as error:
        cifar10_files.read_split(cifar_files.data_dir, train=False, verify_integrity=verify_integrity)
    if not verify_integrity:
        assert "Refused" in str(error.value) and "system" in str(error.value)
    assert not marker.exists()


def test_wrong_shaped_array_names_the_file_and_shape(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1.*\(4, 100\)"):
        cifar10_files.read_batch_file(path)


def test_labels_out_of_range_are_rejected(tmp_path):
    write_batch(tmp_path / "b", np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 12]))
    with pytest.raises(DataError, match="0 to 12"):
        cifar10_files.read_batch_file(tmp_path / "b")


def test_missing_data_without_download_names_path_url_and_synthetic(tmp_path):
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    datamodule.prepare_data()
    with pytest.raises(DataError) as error:
        datamodule.setup("fit")
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and cifar10_files.URL in message
    assert "--data.synthetic" in message


def test_failed_download_names_the_url_and_synthetic(tmp_path, monkeypatch):
    # A reserved, unresolvable host: the real download code runs and fails fast without any traffic.
    monkeypatch.setattr(cifar10_files, "URL", "https://cifar10.invalid/cifar-10-python.tar.gz")
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(DataError, match=r"cifar10\.invalid.*--data\.synthetic"):
        datamodule.prepare_data()


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"batch_size": 0}, r"batch_size=0\) must be >= 1"),
        ({"num_workers": -1}, r"num_workers=-1\) must be >= 0"),
        ({"synthetic": 0}, r"synthetic=0\) must be"),
        ({"persistent_workers": True, "num_workers": 0}, r"persistent_workers=True.*num_workers >= 1"),
    ],
)
def test_bad_options_are_rejected_with_the_value(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        CIFAR10DataModule(**kwargs)


def test_synthetic_data_is_seeded_balanced_and_class_dependent():
    images, labels = make_synthetic(200, seed=3)
    again, again_labels = make_synthetic(200, seed=3)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [20] * 10
    other, _ = make_synthetic(200, seed=4)
    assert not np.array_equal(images, other)
    # Class-dependent: the mean colours of two classes differ far more than those of two halves of one class.
    class_zero = images[labels == 0]
    within = np.abs(class_zero[:10].mean((0, 1, 2)) - class_zero[10:].mean((0, 1, 2))).sum()
    across = np.abs(class_zero.mean((0, 1, 2)) - images[labels == 5].mean((0, 1, 2))).sum()
    assert across > 10 * within


def test_synthetic_images_do_not_depend_on_the_chunk_they_are_drawn_in(monkeypatch):
    """The noise is drawn a chunk at a time to bound memory; the images must be those of one draw."""
    import cifarbench.data.synthetic

    whole, whole_labels = make_synthetic(23, seed=5)
    monkeypatch.setattr(cifarbench.data.synthetic, "_CHUNK_IMAGES", 4)  # 5 full chunks and a partial one
    chunked, chunked_labels = make_synthetic(23, seed=5)
    assert np.array_equal(chunked, whole) and np.array_equal(chunked_labels, whole_labels)


def test_synthetic_flows_through_the_lab_transforms_and_loader(cifar_files):
    datamodule = CIFAR10DataModule(synthetic=64, batch_size=16, num_workers=0)
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (16,) and labels.dtype == torch.int64
    assert len(datamodule.train_set) == 64 and len(datamodule.test_set) == 12
    assert datamodule.hparams.synthetic == 64


def test_eval_split_is_normalised_with_the_lab_constants(cifar_files):
    datamodule = CIFAR10DataModule(
        data_dir=str(cifar_files.data_dir), verify_integrity=False, download=False, num_workers=0
    )
    datamodule.setup("test")
    image, label = datamodule.test_set[0]
    raw, raw_label = cifar_files.expected["test_batch"][0][0], cifar_files.expected["test_batch"][1][0]
    mean, std = torch.tensor(CIFAR10_MEAN)[:, None, None], torch.tensor(CIFAR10_STD)[:, None, None]
    expected = (torch.from_numpy(raw).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(image, expected)
    assert label == raw_label


class HugeArray:
    """A 91-byte pickle that would make numpy allocate a 3 GB array: ndarray called with a shape."""

    def __reduce__(self):
        return (np.ndarray, ((1_000_000, 3072), "u1"))


class ObjectArray:
    def __reduce__(self):
        return (np.dtype, ("O8",))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(HugeArray(), "calls numpy.ndarray directly"), (ObjectArray(), "object array")],
    ids=["huge-array", "object-dtype"],
)
def test_pickle_that_allocates_or_holds_objects_is_refused(tmp_path, payload, reason):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": payload, "labels": [0]}, protocol=2))
    assert path.stat().st_size < 200
    with pytest.raises(DataError, match=f"Refused to read .*data_batch_1.*{reason}"):
        cifar10_files.read_batch_file(path)


# ------------------------------------------------------------- files that would allocate beyond their size
# Hand-assembled pickles: each is small, and reading it with an unbounded unpickler (or np.asarray on its
# labels) would build far more than the file holds, from repeated references.
def _text(value: str) -> bytes:  # BINUNICODE
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def chained_codecs() -> bytes:
    """_codecs.encode(... _codecs.encode(_codecs.encode("abcd", "latin1"), "hex") ..., "hex"): 4 x 2**28
    bytes (1 GiB) from 381 bytes; each codec call doubles what the previous one built."""
    call = b"h\x01" + _text("abcd") + _text("latin1") + b"\x86R"
    for _ in range(28):
        call = b"h\x01" + call + _text("hex") + b"\x86R"
    return b"\x80\x02c_codecs\nencode\nq\x01" + call + b"."


def array_copies(copies: int = 1000, nbytes: int = 40_000) -> bytes:
    """A list of ``copies`` arrays, each filled from one memoized latin1 string of ``nbytes`` characters,
    which numpy encodes into an array of its own: 40 MB from 68 KB."""
    head = b"\x80\x02](cnumpy._core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02"
    head += b"cnumpy\ndtype\nq\x03" + _text("u1") + b"\x89\x88\x87Rq\x04"
    head += _text("\x00" * nbytes) + b"q\x05"
    one = b"h\x01h\x02K\x00\x85C\x01b\x87R(K\x01J" + struct.pack("<i", nbytes) + b"\x85h\x04\x89h\x05tb"
    return head + one * copies + b"e."


def _batch_with_labels(labels_ops: bytes) -> bytes:
    """A dict with one valid image and 'labels' built by ``labels_ops`` (which leave one object)."""
    image = pickle.dumps(np.zeros((1, 3072), np.uint8), protocol=2)[2:-1]  # without PROTO and STOP
    return b"\x80\x02}(" + _text("data") + image + _text("labels") + labels_ops + b"u."


def labels_repeating_a_long_list() -> bytes:
    """labels = [L, L, ..., L] (2,000 references to one list L of 10,000 ints): np.asarray made 160 MB."""
    long_list = b"](" + b"K\x00" * 10_000 + b"e" + b"r\xff\x00\x00\x00"  # LONG_BINPUT 255
    return _batch_with_labels(long_list + b"0](" + b"j\xff\x00\x00\x00" * 2_000 + b"e")


def labels_nested_deep() -> bytes:
    """labels = [[[...[0]...]]], 100,000 deep."""
    return _batch_with_labels(b"]" * 100_000 + b"K\x00a" + b"a" * 99_999)


def labels_ragged() -> bytes:
    return _batch_with_labels(b"](]K\x00a](K\x00K\x01ee")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (chained_codecs, "calls _codecs.encode other than to turn text into bytes with latin1"),
        (array_copies, "builds more than 3x its own size"),
        (labels_repeating_a_long_list, "'labels' is not a flat list of ints"),
        (labels_nested_deep, "'labels' is not a flat list of ints"),
        (labels_ragged, "'labels' is not a flat list of ints"),
    ],
)
def test_a_small_file_cannot_make_the_reader_build_more_than_a_few_times_its_size(tmp_path, payload, reason):
    path = tmp_path / "data_batch_1"
    path.write_bytes(payload())
    size = path.stat().st_size
    assert size < 250_000
    tracemalloc.start()  # numpy reports its array buffers to tracemalloc too
    start = time.perf_counter()
    try:
        with pytest.raises(DataError, match=re.escape(reason)) as error:
            cifar10_files.read_batch_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2.0
    # A pickle's own objects cost up to ~100 bytes per byte of the file (one byte makes an empty list: 56
    # bytes of Python, plus the unpickler's stack); before, these files built 600x to 3,000,000x their size.
    assert peak < 100 * size + (2 << 20), f"{peak:,} bytes traced for a {size:,}-byte file"
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_the_budget_leaves_room_for_official_files_written_by_python_3(tmp_path):
    """A Python 3 pickle holds the bytes twice (as text, then as the array): the largest honest case."""
    images = np.random.default_rng(0).integers(0, 256, (2000, 32, 32, 3), dtype=np.uint8)
    write_batch(tmp_path / "b", images, np.arange(2000) % 10)
    read, labels = cifar10_files.read_batch_file(tmp_path / "b")
    np.testing.assert_array_equal(read, images)
    assert type(read) is np.ndarray and labels.dtype == np.int64


def test_a_batch_with_no_images_is_refused(tmp_path):
    empty = {"data": np.zeros((0, 3072), np.uint8), "labels": [], "batch_label": "", "filenames": []}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(empty, protocol=4))
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR-10 batch: it holds 0 images"):
        cifar10_files.read_batch_file(tmp_path / "data_batch_1")


# ------------------------------------------------------------------------------------- extracting the archive
def official_like_archive(path: Path, source: Path) -> None:
    """A tar.gz laid out as the official one (the batch files of ``source``), plus members that must never be
    extracted: a path out of the folder, an absolute path, a link, and a member cifarbench does not need."""
    with tarfile.open(path, "w:gz") as tar:
        for name in [*cifar10_files.TRAIN_FILES, *cifar10_files.TEST_FILES]:
            tar.add(source / name, arcname=f"{cifar10_files.BASE_FOLDER}/{name}")
        for hostile in ("../escaped", "/tmp/cifarbench-absolute", f"{cifar10_files.BASE_FOLDER}/readme.html"):
            info = tarfile.TarInfo(hostile)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        link = tarfile.TarInfo(f"{cifar10_files.BASE_FOLDER}/batches.meta")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)


def test_download_extracts_only_the_missing_batch_files_and_never_over_the_users(
    cifar_files, tmp_path, monkeypatch
):
    official = tmp_path / "official"
    official.mkdir()
    for name in [*cifar10_files.TRAIN_FILES, *cifar10_files.TEST_FILES]:
        write_batch(official / name, np.full((2, 32, 32, 3), 9, np.uint8), np.array([9, 9]))
    archive = tmp_path / "archive.tar.gz"
    official_like_archive(archive, official)
    fetched = []

    def fake_download_url(url, root, filename, md5):  # the network is the only thing not real here
        fetched.append(url)
        shutil.copy(archive, Path(root) / filename)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download_url)
    users_own = (cifar_files.folder / "data_batch_1").read_bytes()
    (cifar_files.folder / "test_batch").unlink()
    data = CIFAR10DataModule(data_dir=str(cifar_files.data_dir), download=True, verify_integrity=False)
    data.prepare_data()
    assert fetched == [cifar10_files.URL]
    assert (cifar_files.folder / "data_batch_1").read_bytes() == users_own  # not overwritten
    assert (cifar_files.folder / "test_batch").read_bytes() == (official / "test_batch").read_bytes()
    leftovers = sorted(path.name for path in cifar_files.folder.iterdir())
    assert leftovers == sorted([*cifar10_files.TRAIN_FILES, *cifar10_files.TEST_FILES])  # no link, no staging
    assert not (cifar_files.data_dir / "escaped").exists() and not Path("/tmp/cifarbench-absolute").exists()

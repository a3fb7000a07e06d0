import pickle

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

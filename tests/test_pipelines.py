"""The three training pipelines: same augmentation distribution, exact normalisation, seeded shuffling."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision import transforms

from cifarbench import configs
from cifarbench.callbacks import EpochTimer
from cifarbench.data import CIFAR10_MEAN, CIFAR10_STD, PIPELINES, CIFAR10DataModule, cifar10_files
from cifarbench.data.augment import CROP_OFFSETS, crop_flip, normalization_affine, normalize, pad_and_mirror
from cifarbench.data.datasets import IndexBatch, SeededShuffleSampler
from cifarbench.errors import ConfigError
from cifarbench.fitting import CifarbenchCLI, run_fit
from cifarbench.model import COMPILE_MODES, LAB_SGD, ResNet18Classifier

from helpers import RecordLearningRate, fit_args, learning_fit_args, write_batch

PROBES_PER_FILE = 1000  # 5 train files: 5000 augmentations, about 31 per (offset_y, offset_x, flip) cell
CELLS = CROP_OFFSETS * CROP_OFFSETS * 2
# Seeded draws make the p-values fixed numbers (no flakiness); a bias of a few percent drives them far below.
P_VALUE_FLOOR = 1e-3


def probe_image() -> np.ndarray:
    """HWC uint8 image whose pixels tell where they came from: red = column + 1, green = row + 1.

    Nothing in it is 0, so the zero padding is recognisable, and the crop offset and flip of any augmented
    copy can be read off its pixels.
    """
    rows, cols = np.mgrid[0:32, 0:32]
    return np.stack([cols + 1, rows + 1, 100 + (rows * 3 + cols * 5) % 150], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    """CIFAR-10 layout whose train files hold only the probe image; the test file holds random images."""
    data_dir = tmp_path_factory.mktemp("probe")
    folder = data_dir / cifar10_files.BASE_FOLDER
    folder.mkdir()
    probes = np.repeat(probe_image()[None], PROBES_PER_FILE, axis=0)
    labels = np.arange(PROBES_PER_FILE) % 10
    for name in cifar10_files.TRAIN_FILES:
        write_batch(folder / name, probes, labels)
    rng = np.random.default_rng(5)
    write_batch(folder / "test_batch", rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), labels[:40])
    return data_dir


def probe_datamodule(data_dir: Path, pipeline: str, **kwargs) -> CIFAR10DataModule:
    options = {"batch_size": 250, "num_workers": 0, "download": False, "verify_integrity": False} | kwargs
    datamodule = CIFAR10DataModule(data_dir=str(data_dir), pipeline=pipeline, **options)
    datamodule.setup("fit")
    return datamodule


def training_batches(datamodule: CIFAR10DataModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of training batches as the training step sees them (the gpu pipeline's hook applied)."""
    return [datamodule.on_after_batch_transfer(batch, 0) for batch in datamodule.train_dataloader()]


def reference_candidates() -> torch.Tensor:
    """All 162 (offset_y, offset_x, flip) augmentations of the probe, through torchvision's own transforms.

    Index: (offset_y * 9 + offset_x) * 2 + flip. Cropping is done by hand on the zero-padded image (exactly
    what RandomCrop(32, padding=4) does for a given offset); ToTensor and Normalize are torchvision's.
    """
    padded = np.pad(probe_image(), ((4, 4), (4, 4), (0, 0)))
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    candidates = []
    for offset_y in range(CROP_OFFSETS):
        for offset_x in range(CROP_OFFSETS):
            crop = padded[offset_y : offset_y + 32, offset_x : offset_x + 32]
            for flip in (False, True):
                image = crop[:, ::-1] if flip else crop
                candidates.append(to_tensor(Image.fromarray(np.ascontiguousarray(image))))
    return torch.stack(candidates)


def decode_cells(images: torch.Tensor) -> torch.Tensor:
    """The (offset_y, offset_x, flip) cell of each augmented probe, read from its centre pixels."""
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    pixels = ((images * std + mean) * 255).round().to(torch.int64)
    red, green = pixels[:, 0], pixels[:, 1]
    # The centre pixel is never padding: red there is column + 1 of the source pixel, green its row + 1.
    flip = (red[:, 16, 17] < red[:, 16, 16]).to(torch.int64)
    offset_x = red[:, 16, 16] - 13 + flip  # mirrored, output column 16 shows crop column 15
    offset_y = green[:, 16, 16] - 13
    return (offset_y * CROP_OFFSETS + offset_x) * 2 + flip


def chi_square_p_value(counts: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test of ``counts`` against the uniform distribution over its cells."""
    counts = counts.to(torch.float64)
    expected = counts.sum() / len(counts)
    statistic = ((counts - expected) ** 2 / expected).sum()
    degrees_of_freedom = torch.tensor(len(counts) - 1, dtype=torch.float64)
    return float(torch.special.gammaincc(degrees_of_freedom / 2, statistic / 2))


@pytest.fixture(scope="module")
def augmented_probes(probe_dir) -> dict[str, torch.Tensor]:
    """One seeded epoch of augmented probes (5000 images) from every pipeline."""
    probes = {}
    for pipeline in PIPELINES:
        datamodule = probe_datamodule(probe_dir, pipeline)
        torch.manual_seed(0)  # the augmentation draws of all three use torch's default generator
        probes[pipeline] = torch.cat([images for images, _ in training_batches(datamodule)])
    return probes


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_augmented_image_is_a_crop_and_flip_normalised_like_torchvision(augmented_probes, pipeline):
    images = augmented_probes[pipeline]
    assert images.shape == (5 * PROBES_PER_FILE, 3, 32, 32) and images.dtype == torch.float32
    candidates = reference_candidates()
    # The 162 augmentations differ from each other, so the decoded cell identifies each image.
    assert torch.cdist(candidates.flatten(1), candidates.flatten(1)).add(torch.eye(CELLS)).min() > 0.5
    cells = decode_cells(images)
    assert cells.min() >= 0 and cells.max() < CELLS
    torch.testing.assert_close(images, candidates[cells], rtol=0, atol=1e-6)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_crop_offset_and_flip_is_equally_likely(augmented_probes, pipeline):
    cells = decode_cells(augmented_probes[pipeline])
    counts = torch.bincount(cells, minlength=CELLS)
    assert chi_square_p_value(counts) > P_VALUE_FLOOR
    # The marginals on their own: 81 offsets, and 2 flips.
    assert chi_square_p_value(counts.view(CROP_OFFSETS * CROP_OFFSETS, 2).sum(1)) > P_VALUE_FLOOR
    assert chi_square_p_value(counts.view(-1, 2).sum(0)) > P_VALUE_FLOOR


def test_the_chi_square_check_catches_a_never_drawn_offset(augmented_probes):
    """The check has power: an off-by-one that never draws offset 8 on one axis fails it."""
    cells = decode_cells(augmented_probes["tensor"])
    offset_x = (cells // 2) % CROP_OFFSETS
    biased = torch.where(offset_x == 8, cells - 2, cells)  # offset 8 becomes offset 7
    assert chi_square_p_value(torch.bincount(biased, minlength=CELLS)) < 1e-12
    # A 10% lean towards unflipped images fails too.
    flips = (cells % 2)[:4000]
    leaning = torch.cat([flips, torch.zeros(400, dtype=torch.int64)])
    assert chi_square_p_value(torch.bincount(leaning, minlength=2)) < P_VALUE_FLOOR


def test_crop_flip_matches_slicing_at_the_edges():
    images = torch.randint(1, 256, (4, 3, 32, 32), dtype=torch.uint8)
    padded = pad_and_mirror(images)
    offset_y, offset_x = torch.tensor([0, 8, 0, 8]), torch.tensor([0, 8, 8, 0])
    flip = torch.tensor([False, True, False, True])
    indices = torch.tensor([3, 0, 2, 1])
    assert padded.shape == (8, 3, 40, 40)  # the padded images, then their mirror images
    out = crop_flip(padded, indices, offset_y, offset_x, flip)
    reference = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for row, index in enumerate(indices.tolist()):
        y, x = int(offset_y[row]), int(offset_x[row])
        expected = reference[index, :, y : y + 32, x : x + 32]
        expected = expected.flip(-1) if flip[row] else expected
        torch.testing.assert_close(out[row], expected, rtol=0, atol=0)
    assert (out[0, :, :4, :] == 0).all() and (out[0, :, :, :4] == 0).all()  # zero padding, as RandomCrop
    assert (out[1, :, -4:, :] == 0).all() and (out[1, :, :, :4] == 0).all()  # crop at (8, 8), mirrored


def test_normalize_matches_to_tensor_and_normalize_for_every_pixel_value():
    values = torch.arange(256, dtype=torch.uint8).view(16, 16)
    image = values[None].expand(3, 16, 16).permute(1, 2, 0).numpy().copy()  # HWC: all values, all channels
    reference = transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)(transforms.ToTensor()(image))
    scale, shift = normalization_affine(CIFAR10_MEAN, CIFAR10_STD)
    ours = normalize(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(), scale, shift)[0]
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_validation_batches_are_normalised_only(probe_dir, pipeline):
    datamodule = probe_datamodule(probe_dir, pipeline, batch_size=16)
    raw, raw_labels = cifar10_files.read_split(probe_dir, train=False, verify_integrity=False)
    lab = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    expected = torch.stack([lab(image) for image in raw])
    batches = [datamodule.on_after_batch_transfer(batch, 0) for batch in datamodule.val_dataloader()]
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-6)
    assert labels.tolist() == raw_labels.tolist()


def test_seeded_shuffle_is_reproducible_per_epoch_and_covers_every_index_once():
    sampler = SeededShuffleSampler(500, seed=3)
    first = list(sampler)
    assert list(SeededShuffleSampler(500, seed=3)) == first
    assert sorted(first) == list(range(500)) and len(sampler) == 500
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(second) == list(range(500)) and second != first
    assert list(SeededShuffleSampler(500, seed=4)) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


@pytest.mark.parametrize("pipeline", ["tensor", "gpu"])
def test_an_epoch_serves_every_image_once_in_the_seeded_order(pipeline):
    datamodule = CIFAR10DataModule(synthetic=300, batch_size=64, num_workers=0, pipeline=pipeline, seed=7)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    order = seeded_order(300, seed=7, epoch=0)
    all_labels = datamodule.train_set.labels
    if pipeline == "gpu":
        batches = list(loader)
        assert all(isinstance(batch, IndexBatch) for batch in batches)
        indices = torch.cat([batch.indices for batch in batches])
        assert indices.tolist() == order  # every image once, in the seeded order
        labels = torch.cat([batch.labels for batch in batches])
    else:
        labels = torch.cat([labels for _, labels in loader])
    assert [len(batch[1]) for batch in loader] == [64, 64, 64, 64, 44]
    assert labels.tolist() == all_labels[order].tolist()
    loader.sampler.set_epoch(1)  # Lightning calls this at every epoch start
    next_epoch = torch.cat([batch[1] for batch in loader])
    assert next_epoch.tolist() == all_labels[seeded_order(300, seed=7, epoch=1)].tolist()
    assert next_epoch.tolist() != labels.tolist()


def seeded_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    sampler = SeededShuffleSampler(num_samples, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_gpu_pipeline_copies_the_set_to_the_device_once(probe_dir):
    datamodule = probe_datamodule(probe_dir, "gpu", batch_size=100)
    pipeline = datamodule.training_pipeline
    batches = iter(datamodule.train_dataloader())
    images, labels = datamodule.on_after_batch_transfer(next(batches), 0)
    resident = pipeline.device_set[0]
    datamodule.on_after_batch_transfer(next(batches), 0)
    assert pipeline.device_set[0] is resident
    assert images.shape == (100, 3, 32, 32) and labels.shape == (100,)
    datamodule.teardown("fit")
    assert pipeline.device_set is None


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"pipeline": "pil"}, r"pipeline='pil'\) is not a pipeline: use --data.pipeline torchvision"),
        ({"pipeline": "GPU"}, r"pipeline='GPU'.*tensor or gpu"),
    ],
)
def test_unknown_pipeline_names_the_value_and_the_choices(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        CIFAR10DataModule(**kwargs)


def test_tensor_and_gpu_pipelines_make_identical_batches_from_the_same_seed(augmented_probes):
    # On the CPU both draw from torch's default generator in the same order: the same images, bit for bit.
    assert torch.equal(augmented_probes["tensor"], augmented_probes["gpu"])
    assert not torch.equal(augmented_probes["tensor"], augmented_probes["torchvision"])


FAST_CONFIG = configs.path("fast")


def test_fast_config_is_shipped_and_scales_the_lab_lr_linearly():
    cli = CifarbenchCLI(
        ResNet18Classifier, CIFAR10DataModule, run=False,
        args=["--config", str(FAST_CONFIG), "--data.synthetic", "16", "--trainer.accelerator", "cpu"],
    )  # fmt: skip
    assert cli.datamodule.pipeline == "gpu" and cli.trainer.precision == "bf16-mixed"
    assert cli.model.channels_last and cli.model.compile_mode in COMPILE_MODES
    batch_size, lr = cli.datamodule.batch_size, cli.config.optimizer.init_args.lr
    assert batch_size > 128 and lr == pytest.approx(LAB_SGD["lr"] * batch_size / 128)


def test_fast_config_trains_on_the_cpu_and_warms_up_from_the_lab_lr(tmp_path):
    """bf16-mixed, channels_last and the gpu pipeline through real fit steps (compile left out: slow).

    The warm-up is stepped per epoch: the lab's lr first, then linearly up to the scaled lr.
    """
    args = fit_args(
        tmp_path,
        "--model.compile", "null",
        "--data.synthetic", "16",
        "--data.batch_size", "8",
        "--trainer.max_epochs", "4",
        "--trainer.limit_train_batches", "1",
        "--trainer.limit_val_batches", "1",
        "--trainer.callbacks+", "helpers.RecordLearningRate",
        config=FAST_CONFIG,
    )  # fmt: skip
    trainer = run_fit(args)
    learning_rate = next(
        callback for callback in trainer.callbacks if isinstance(callback, RecordLearningRate)
    )
    timer = next(callback for callback in trainer.callbacks if isinstance(callback, EpochTimer))
    assert [(epoch.steps, epoch.samples) for epoch in timer.history] == [(1, 8)] * 4
    assert torch.isfinite(trainer.callback_metrics["train/loss_epoch"])
    # Torn down after fit; it was built for the step.
    assert trainer.datamodule.training_pipeline.device_set is None
    lab_lr, fast_lr = LAB_SGD["lr"], yaml.safe_load(FAST_CONFIG.read_text())["optimizer"]["init_args"]["lr"]
    assert learning_rate.per_epoch == pytest.approx([lab_lr, (lab_lr + fast_lr) / 2, fast_lr, fast_lr])


PARITY_EPOCHS = 10  # Adam fits the 256 images in this many epochs on 2 CPU cores (~1 min per fit)
# The lr falls linearly toward 5% (14.5% in the last epoch), so that the weights and BatchNorm's running
# statistics settle: without it, single fits of either config ended anywhere between 88% and 100% (seeds 0-2).
ANNEAL = [
    "--lr_scheduler", "LinearLR",
    "--lr_scheduler.start_factor", "1.0",
    "--lr_scheduler.end_factor", "0.05",
    "--lr_scheduler.total_iters", str(PARITY_EPOCHS),
]  # fmt: skip


def trained(root: Path, *extra: str, config: Path | None = None) -> L.Trainer:
    return run_fit(learning_fit_args(root, *extra, *ANNEAL, epochs=PARITY_EPOCHS, config=config))


def training_set_accuracy(model: ResNet18Classifier, images_hwc: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy on every training image, unaugmented, in eval mode and fp32: what the fit learned."""
    scale, shift = normalization_affine(CIFAR10_MEAN, CIFAR10_STD)
    images = normalize(torch.from_numpy(images_hwc).permute(0, 3, 1, 2), scale, shift)
    model.eval()
    with torch.no_grad():
        predictions = model(images).argmax(dim=1)
    return (predictions == torch.from_numpy(labels)).float().mean().item()


@pytest.mark.slow
def test_fast_step_settings_fit_the_training_set_as_well_as_the_lab_config(tmp_path):
    """The fast config's step (gpu pipeline, bf16-mixed, channels_last) against the lab's (torchvision, fp32).

    Both fits share the seed, the 256 synthetic images, the epochs, the batch size and the optimizer (Adam,
    annealed), so only what the fast config changes in the step differs. Left out on a 2-core CPU:
    torch.compile (minutes to compile; it does not change the maths), and the fast config's batch 512 with its
    lr and warm-up (256 images would be one batch; README, "Accuracy of the fast config"). Adam fits the 256
    images in 10 epochs, where a 2-point comparison is not seed noise: unfinished fits of this size differ by
    5-10 points between seeds. Training accuracy is measured on the unaugmented training images, normalised
    the lab's way, so a pipeline that normalised differently would show here too.

    Both fits saturate (100.0% for seeds 0, 1 and 2), so this catches settings that stop or slow learning (a
    wrong label, normalisation or augmentation, a bf16 step that diverges), not a loss of a few points.
    """
    lab = trained(tmp_path / "lab", "--data.pipeline", "torchvision")
    fast = trained(tmp_path / "fast", "--model.compile", "null", config=FAST_CONFIG)
    assert (fast.datamodule.pipeline, fast.precision, fast.lightning_module.channels_last) == (
        "gpu",
        "bf16-mixed",
        True,
    )
    train_set = lab.datamodule.train_set  # the same synthetic images feed both fits
    lab_accuracy, fast_accuracy = (
        training_set_accuracy(trainer.lightning_module, train_set.images, train_set.labels)
        for trainer in (lab, fast)
    )
    assert lab_accuracy >= 0.98  # the lab fit saturates (chance is 0.1), which makes 2 points meaningful
    assert abs(fast_accuracy - lab_accuracy) <= 0.02, f"fast {fast_accuracy:.3f} vs lab {lab_accuracy:.3f}"

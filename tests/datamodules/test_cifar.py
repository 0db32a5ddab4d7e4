"""CIFAR DataModules: the exponential split (docs/definitions.md), both on-disk layouts, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dm_files import (
    class_major_labels,
    encode,
    random_images,
    write_cifar10_pickles,
    write_cifar100_pickles,
    write_hf_parquet,
)

from datamodules import CIFAR10DataModule, CIFAR100DataModule
from datamodules.cifar import load_cifar_split

PAPER_CIFAR10 = [5000, 3333, 2222, 1481, 987, 658, 438, 292, 195, 130]


@pytest.mark.data
def test_exponential_split_on_real_cifar10(shared_data, decode_cache, real_cifar10):
    dm = CIFAR10DataModule(
        str(shared_data), imbalance="exponential", num_workers=0, cache_dir=decode_cache
    )
    dm.setup("fit")
    assert dm.class_counts == PAPER_CIFAR10
    assert sum(dm.class_counts) == 14_736 == len(dm.bank_dataset)
    # The selected images are the first n_i of each class, in dataset order.
    full = real_cifar10["train"]
    labels = full.labels.numpy()
    expected = np.sort(
        np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(PAPER_CIFAR10)])
    )
    bank = dm.bank_dataset.base
    assert torch.equal(bank.labels, full.labels[expected])
    assert torch.equal(bank.images, full.images[expected])
    # The test split is untouched: all 10,000 images, 1,000 per class, in file order.
    test = dm.eval_dataset.base
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert torch.equal(test.images, real_cifar10["test"].images)


@pytest.mark.data
def test_real_cifar10_balanced_and_subset(shared_data, decode_cache, real_cifar10):
    dm = CIFAR10DataModule(str(shared_data / "cifar10"), num_workers=0, cache_dir=decode_cache,
                           imbalance="exponential", train_subset=200, eval_subset=3)  # fmt: skip
    dm.setup()
    # train_subset applies after the imbalance: min(n_i, 200).
    assert dm.class_counts == [min(n, 200) for n in PAPER_CIFAR10]
    assert len(dm.eval_dataset) == 30
    assert dm.class_names[0] == "airplane" and dm.num_classes == 10
    assert real_cifar10["train"].images.shape == (50_000, 3, 32, 32)
    assert real_cifar10["train"].images.dtype == torch.uint8


def test_torchvision_pickles_and_exponential_counts(tmp_path):
    train_labels = class_major_labels([12] * 10)
    train, test = write_cifar10_pickles(tmp_path, train_labels, class_major_labels([2] * 10))
    dm = CIFAR10DataModule(
        str(tmp_path), batch_size=4, num_workers=0, imbalance="exponential", imbalance_factor=1.3
    )
    dm.setup()
    counts = [int(np.floor(12 * 1.3**-i)) for i in range(10)]
    assert dm.class_counts == counts
    expected = np.sort(
        np.concatenate([np.flatnonzero(train_labels == c)[:n] for c, n in enumerate(counts)])
    )
    assert np.array_equal(dm.bank_dataset.base.images.numpy(), train[expected])
    assert np.array_equal(dm.eval_dataset.base.images.numpy(), test)
    assert dm.hparams["imbalance_factor"] == 1.3 and dm.hparams["imbalance"] == "exponential"


def test_cifar100_counts_follow_formula(tmp_path):
    # 30 per class: floor(30 * 1.034^-i) >= 1 for all 100 classes (the real data has 500).
    labels = class_major_labels([30] * 100)
    write_cifar100_pickles(
        tmp_path, random_images(3000, seed=3), labels, random_images(100, seed=4), np.arange(100)
    )
    dm = CIFAR100DataModule(str(tmp_path), num_workers=0, imbalance="exponential")
    dm.setup()
    assert dm.imbalance_factor == 1.034
    assert dm.class_counts == [int(np.floor(30 * 1.034**-i)) for i in range(100)]
    assert dm.class_counts[0] == 30 and dm.class_counts[-1] == 1
    assert dm.class_names[7] == "fine7" and len(dm.eval_dataset) == 100


@pytest.mark.data
def test_cifar100_bit_exact_images_parquet_equals_pickle(shared_data, tmp_path):
    """The 20 bit-exact CIFAR-100 test images: the parquet path decodes them exactly as the pickles hold them."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    src = shared_data / "cifar100" / "test_first20.parquet"
    table = pq.read_table(src).to_pylist()
    images = np.stack(
        [
            np.asarray(Image.open(io.BytesIO(r["img"]["bytes"])).convert("RGB")).transpose(2, 0, 1)
            for r in table
        ]
    )
    labels = np.array([r["fine_label"] for r in table])
    write_cifar100_pickles(tmp_path / "tv", images, labels, images, labels)
    (tmp_path / "pq" / "cifar100").mkdir(parents=True)
    (tmp_path / "pq" / "cifar100" / "test.parquet").symlink_to(src)
    from_pickle = load_cifar_split("cifar100", tmp_path / "tv", "test")
    from_parquet = load_cifar_split("cifar100", tmp_path / "pq", "test")
    assert from_parquet.images.shape == (20, 3, 32, 32)
    assert torch.equal(from_parquet.images, from_pickle.images)
    assert torch.equal(from_parquet.labels, from_pickle.labels)
    assert from_parquet.class_names[from_parquet.labels[0]] == "mountain"  # CIFAR-100 test image 0


# Golden values of the 20 bit-exact CIFAR-100 test images (../shared/data), computed once
# (2026-11-25) and pasted here, so that a decode regression fails even when the reference
# above (decoded with PIL, as the parquet path) regresses with it. sha256 of the uint8
# [3, 32, 32] (C order, RGB planes) of image 0, and of the [20, 3, 32, 32] array.
CIFAR100_TEST0_SHA256 = "7dbe551ec3e5850b73a7ba8b01ef40969186d61af55c4a8150644487dbd11787"
CIFAR100_FIRST20_SHA256 = "6a46c162f8f5056dd45fa14acc5faf0d7221d61524134d13da14eff1a4820bba"
# The official fine labels of CIFAR-100 test images 0..19 (image 0: 49 = "mountain").
CIFAR100_FIRST20_LABELS = [
    49,
    33,
    72,
    51,
    71,
    92,
    15,
    14,
    23,
    0,
    71,
    75,
    81,
    69,
    40,
    43,
    92,
    97,
    70,
    53,
]
# Image 0, (R, G, B) at (row, column).
CIFAR100_TEST0_PIXELS = {(0, 0): (199, 215, 249), (15, 16): (170, 166, 183), (31, 31): (176, 164, 183),
                         (0, 31): (224, 234, 252)}  # fmt: skip


@pytest.mark.data
def test_cifar100_bit_exact_images_match_golden_checksums(shared_data, tmp_path):
    import hashlib

    (tmp_path / "cifar100").mkdir()
    (tmp_path / "cifar100" / "test.parquet").symlink_to(
        shared_data / "cifar100" / "test_first20.parquet"
    )
    s = load_cifar_split("cifar100", tmp_path, "test")
    images = s.images.numpy()
    assert images.shape == (20, 3, 32, 32) and images.dtype == np.uint8
    assert s.labels.tolist() == CIFAR100_FIRST20_LABELS
    assert s.class_names[49] == "mountain"
    for (row, col), rgb in CIFAR100_TEST0_PIXELS.items():
        assert tuple(images[0, :, row, col].tolist()) == rgb, (row, col)
    assert hashlib.sha256(np.ascontiguousarray(images[0]).tobytes()).hexdigest() == (
        CIFAR100_TEST0_SHA256
    )
    assert hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest() == (
        CIFAR100_FIRST20_SHA256
    )


def test_parquet_layout_png_and_parent_folder(tmp_path):
    imgs = random_images(20, seed=5)
    labels = class_major_labels([2] * 10)
    for split in ("train", "test"):
        write_hf_parquet(tmp_path / "cifar10" / f"{split}.parquet", [encode(i) for i in imgs], labels,
                         image_col="img", names=[f"c{i}" for i in range(10)])  # fmt: skip
    for data_dir in (tmp_path, tmp_path / "cifar10"):
        s = load_cifar_split("cifar10", data_dir, "train")
        assert np.array_equal(s.images.numpy(), imgs)  # PNG is lossless
        assert s.class_names[3] == "c3"


def test_missing_data_gives_one_clear_error(tmp_path):
    dm = CIFAR10DataModule(str(tmp_path / "nowhere"), num_workers=0)
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    msg = str(err.value)
    assert (
        "nowhere" in msg
        and "cifar-10-batches-py" in msg
        and "train.parquet" in msg
        and "download=True" in msg
    )


def test_bad_input_errors(tmp_path):
    with pytest.raises(ValueError, match=">= 1"):
        CIFAR10DataModule(str(tmp_path), imbalance="exponential", imbalance_factor=0.9)
    with pytest.raises(ValueError, match="unknown imbalance"):
        CIFAR10DataModule(str(tmp_path), imbalance="linear")
    with pytest.raises(ValueError, match="unknown cifar10 split 'val'"):
        load_cifar_split("cifar10", tmp_path, "val")
    with pytest.raises(ValueError, match="unknown CIFAR dataset"):
        load_cifar_split("cifar1000", tmp_path, "train")
    # A factor that leaves a class empty.
    write_cifar10_pickles(tmp_path, class_major_labels([5] * 10), class_major_labels([1] * 10))
    dm = CIFAR10DataModule(
        str(tmp_path), imbalance="exponential", imbalance_factor=1.5, num_workers=0
    )
    with pytest.raises(ValueError, match="class 4 .*empty"):
        dm.setup()


def test_corrupt_parquet_is_a_clear_error(tmp_path):
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "train.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match="cannot read parquet file .*train.parquet.*corrupt"):
        load_cifar_split("cifar10", tmp_path, "train")


def test_corrupt_image_bytes_name_the_row(tmp_path):
    good = encode(random_images(1)[0])
    write_hf_parquet(
        tmp_path / "train.parquet", [good, b"\xff\xd8garbage", good], [0, 1, 2], image_col="img"
    )
    with pytest.raises(ValueError, match="row 1"):
        load_cifar_split("cifar10", tmp_path, "train")


def test_download_fetches_only_what_is_missing(tmp_path, monkeypatch):
    write_cifar10_pickles(tmp_path, class_major_labels([2] * 10), class_major_labels([1] * 10))
    fetched = []
    monkeypatch.setattr(CIFAR10DataModule, "_download", lambda self: fetched.append(self.data_dir))
    monkeypatch.setattr(
        "datamodules.base.download_ood_set", lambda name, folder: fetched.append(name)
    )
    dm = CIFAR10DataModule(
        str(tmp_path), download=True, ood={"cifar10": str(tmp_path), "svhn": str(tmp_path / "s")}
    )
    dm.prepare_data()
    assert fetched == ["svhn"]  # CIFAR-10 is present (as data and as OOD set): nothing fetched
    CIFAR10DataModule(str(tmp_path / "empty"), download=True).prepare_data()
    assert fetched == ["svhn", str(tmp_path / "empty")]

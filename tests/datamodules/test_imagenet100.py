"""ImageNet-100 on a tiny parquet in the hub's schema (``clane9/imagenet-100``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dm_files import encode, random_images, write_hf_parquet

from datamodules import ImageNet100DataModule
from datamodules.imagenet100 import load_imagenet100_split

NAMES = [f"n{c:08d}" for c in range(100)]


@pytest.fixture
def hub_folder(tmp_path):
    """data/train-0000{0,1}-of-00002.parquet and data/validation-00000-of-00001.parquet."""
    root = tmp_path / "imagenet-100"
    imgs = random_images(12, size=48, seed=7)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 99, 99, 0, 1])
    jpgs = [encode(i, "JPEG") for i in imgs]
    write_hf_parquet(
        root / "data" / "train-00000-of-00002.parquet", jpgs[:6], labels[:6], names=NAMES
    )
    write_hf_parquet(
        root / "data" / "train-00001-of-00002.parquet", jpgs[6:], labels[6:], names=NAMES
    )
    write_hf_parquet(
        root / "data" / "validation-00000-of-00001.parquet", jpgs[:4], [3, 2, 1, 0], names=NAMES
    )
    return tmp_path, labels


def test_shards_read_in_order_and_served_at_128(hub_folder):
    data_dir, labels = hub_folder
    dm = ImageNet100DataModule(str(data_dir), batch_size=4, eval_batch_size=8, num_workers=0)
    dm.setup()
    assert dm.bank_dataset.base.labels.tolist() == labels.tolist()
    assert dm.num_classes == 100 and dm.class_names[99] == "n00000099"
    assert dm.class_counts[:4] == [3, 3, 2, 2] and dm.class_counts[99] == 2
    (v1, v2), y, idx = next(iter(dm.train_dataloader()))
    assert v1.shape == (4, 3, 128, 128) and not torch.equal(v1, v2)
    x, y_eval, _ = next(iter(dm.eval_dataloader()))
    assert x.shape == (4, 3, 128, 128) and y_eval.tolist() == [3, 2, 1, 0]
    assert dm.hparams["image_size"] == 128


def test_subset_and_lazy_decoding(hub_folder):
    data_dir, _ = hub_folder
    dm = ImageNet100DataModule(
        str(data_dir / "imagenet-100"), batch_size=2, num_workers=0, train_subset=1
    )
    dm.setup()
    assert sum(dm.class_counts) == 5  # one image of each of the 5 present classes
    img, _ = dm.bank_dataset.base[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 48, 48)


def test_bad_split_and_missing_data(tmp_path):
    with pytest.raises(ValueError, match="unknown ImageNet-100 split 'test'"):
        load_imagenet100_split(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="clane9/imagenet-100"):
        load_imagenet100_split(tmp_path, "train")

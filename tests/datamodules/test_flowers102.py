"""Flowers102: the long-tailed protocol (train and bank = official test, eval = val)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from dm_files import write_flowers102_folder

from datamodules import Flowers102DataModule
from datamodules.flowers import load_flowers102_split


@pytest.mark.data
def test_protocol_on_the_shared_partial_data(shared_data, decode_cache):
    dm = Flowers102DataModule(
        str(shared_data), batch_size=16, num_workers=0, cache_dir=decode_cache
    )
    dm.setup("fit")
    test_labels = (
        pq.read_table(shared_data / "flowers102" / "test.parquet").column("label").to_numpy()
    )
    val_labels = (
        pq.read_table(shared_data / "flowers102" / "validation.parquet").column("label").to_numpy()
    )
    # SSL training and the bank use the official test split; evaluation uses val.
    assert torch.equal(dm.bank_dataset.base.labels, torch.tensor(test_labels))
    assert torch.equal(dm.eval_dataset.base.labels, torch.tensor(val_labels))
    assert len(dm.train_dataset) == 4110 and len(dm.eval_dataset) == 706
    assert dm.num_classes == 102 and len(dm.class_counts) == 102
    present = [c for c in dm.class_counts if c > 0]
    assert len(present) == 90 and max(present) == 191 and min(present) == 1  # long-tailed
    (v1, v2), y, idx = next(iter(dm.train_dataloader()))
    assert v1.shape == (16, 3, 128, 128) and not torch.equal(v1, v2)
    x, _, _ = next(iter(dm.eval_dataloader()))
    assert x.shape[1:] == (3, 128, 128)


def test_torchvision_folder_with_mat_split_files(tmp_path):
    labels = np.array([0, 1, 1, 2, 2, 2, 101, 0, 1, 2, 5, 5])
    trn, val, tst = [1, 2], [3, 4, 7], [12, 5, 6, 8, 9, 10, 11]
    write_flowers102_folder(tmp_path, labels, trn, val, tst)
    dm = Flowers102DataModule(str(tmp_path), image_size=32, batch_size=2, num_workers=0)
    dm.setup()
    bank, ev = dm.bank_dataset.base, dm.eval_dataset.base
    assert bank.labels.tolist() == (labels[np.array(tst) - 1]).tolist()
    assert ev.labels.tolist() == (labels[np.array(val) - 1]).tolist()
    assert bank.images.shape == (7, 3, 32, 32)  # different sizes resized once to image_size
    # Grey level 4 * id identifies the file: the official ids in setid.mat order.
    grey = bank.images.float().mean(dim=(1, 2, 3))
    assert torch.allclose(grey, 4.0 * torch.tensor(tst, dtype=torch.float32), atol=2)
    assert dm.class_counts[5] == 2 and dm.class_counts[101] == 0 and sum(dm.class_counts) == 7
    assert len(load_flowers102_split(tmp_path / "flowers-102", "validation", 32)) == 3


def test_missing_image_and_bad_split(tmp_path):
    folder = write_flowers102_folder(tmp_path, np.array([0, 1, 2]), [1], [2], [3])
    (folder / "jpg" / "image_00003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="image_00003.jpg"):
        load_flowers102_split(tmp_path, "test", 32)
    with pytest.raises(ValueError, match="unknown Flowers102 split 'dev'"):
        load_flowers102_split(tmp_path, "dev", 32)
    with pytest.raises(FileNotFoundError, match="flowers-102/ with jpg/"):
        Flowers102DataModule(str(tmp_path / "empty"), num_workers=0).setup()

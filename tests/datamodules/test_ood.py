"""Out-of-distribution sets: any folder, un-augmented, at the host's image size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dm_files import (
    class_major_labels,
    encode,
    random_images,
    write_cifar10_pickles,
    write_hf_parquet,
)

from datamodules.ood import load_ood_set


def test_torchvision_cifar_folder_as_ood(tmp_path):
    _, test = write_cifar10_pickles(
        tmp_path, class_major_labels([1] * 10), class_major_labels([2] * 10)
    )
    s = load_ood_set("cifar10", tmp_path, image_size=32)
    assert np.array_equal(s.images.numpy(), test)
    assert load_ood_set(
        "cifar10", tmp_path / "cifar-10-batches-py", image_size=64
    ).images.shape == (20, 3, 64, 64)


def test_parquet_folder_any_split_name_greyscale(tmp_path):
    grey = random_images(3, size=28, seed=2)[:, :1]
    write_hf_parquet(tmp_path / "fm" / "test_first3.parquet", [encode(g) for g in grey], [0, 1, 2])
    s = load_ood_set("fm", tmp_path / "fm", image_size=28)
    assert s.images.shape == (3, 3, 28, 28)
    assert torch.equal(s.images[:, 0], torch.from_numpy(grey[:, 0])) and torch.equal(
        s.images[:, 2], s.images[:, 0]
    )
    assert (
        load_ood_set("fm", tmp_path / "fm" / "test_first3.parquet", image_size=32).images.shape[-1]
        == 32
    )


@pytest.mark.data
def test_shared_cifar100_golden_images_as_ood(shared_data):
    s = load_ood_set("cifar100", shared_data / "cifar100", image_size=32)
    assert s.images.shape == (20, 3, 32, 32) and s.labels.tolist()[0] == 49  # mountain


def test_missing_ood_folder(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="(?s)out-of-distribution set 'svhn'.*svhn.*point ood\\['svhn'\\]"
    ):
        load_ood_set("svhn", tmp_path / "svhn", image_size=32)

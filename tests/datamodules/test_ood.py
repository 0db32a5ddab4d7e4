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
    write_cifar100_pickles,
    write_hf_parquet,
    write_idx,
)

from datamodules.ood import load_ood_set, ood_present


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


def test_the_named_cifar_is_preferred_in_a_shared_folder(tmp_path):
    write_cifar10_pickles(tmp_path, class_major_labels([1] * 10), class_major_labels([1] * 10))
    c100 = random_images(5, seed=9)
    write_cifar100_pickles(tmp_path, c100, np.arange(5), c100, np.arange(5) + 50)
    assert load_ood_set("cifar100", tmp_path, 32).labels.tolist() == [50, 51, 52, 53, 54]
    assert len(load_ood_set("cifar10", tmp_path, 32)) == 10


def test_fashion_mnist_idx_and_svhn_mat(tmp_path):
    from scipy.io import savemat

    grey = random_images(4, size=28, seed=1)[:, 0]
    write_idx(tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte", grey)
    write_idx(tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte", np.array([9, 8, 7, 6]))
    fm = load_ood_set("fashion_mnist", tmp_path, image_size=28)
    assert fm.labels.tolist() == [9, 8, 7, 6] and torch.equal(
        fm.images[:, 1], torch.from_numpy(grey)
    )
    assert ood_present("fashion_mnist", tmp_path) and not ood_present("svhn", tmp_path / "svhn")
    rgb = random_images(3, seed=2)  # SVHN stores X as [32, 32, 3, N] and digit 0 as label 10
    (tmp_path / "svhn").mkdir()
    savemat(
        tmp_path / "svhn" / "test_32x32.mat",
        {"X": rgb.transpose(2, 3, 1, 0), "y": np.array([[10], [1], [2]])},
    )
    sv = load_ood_set("svhn", tmp_path / "svhn", image_size=32)
    assert sv.labels.tolist() == [0, 1, 2] and np.array_equal(sv.images.numpy(), rgb)

"""Human label loaders on files written in the published CIFAR-10N/100N and CIFAR-10H formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dm_files import (
    cifar10h_counts,
    cifar10n_arrays,
    cifar100n_arrays,
    write_cifar10h_raw,
    write_cifar10n,
)

from datamodules.human_labels import (
    find_human_labels,
    load_cifar10h,
    load_cifar10n,
    load_cifar100n,
    order_for_dataset,
)

# ---------------------------------------------------------------------------------------------
# CIFAR-10N / CIFAR-100N


@pytest.mark.parametrize("numpy1_names", [True, False])
def test_cifar10n_reads_the_published_format(tmp_path, numpy1_names):
    arrays = cifar10n_arrays()
    # The repository keeps the file in data/; numpy 1 names as in the published file.
    path = write_cifar10n(tmp_path / "data" / "CIFAR-10_human.pt", arrays, numpy1_names)
    module = "numpy.core" if numpy1_names else "numpy._core"
    assert (
        f"{module}.multiarray._reconstruct"
        in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    )
    out = load_cifar10n(tmp_path)
    assert out.name == "CIFAR-10N"
    assert sorted(out.arrays) == sorted(arrays)
    for key, value in arrays.items():
        assert out.arrays[key].dtype == torch.int64
        np.testing.assert_array_equal(out.arrays[key].numpy(), value)
    np.testing.assert_array_equal(out.clean.numpy(), arrays["clean_label"])
    np.testing.assert_array_equal(out.consensus.numpy(), arrays["aggre_label"])
    expected = np.stack([arrays[f"random_label{i}"] for i in (1, 2, 3)], 1)
    np.testing.assert_array_equal(out.annotators.numpy(), expected)
    np.testing.assert_array_equal(
        out.consensus_correct().numpy(), (arrays["aggre_label"] == arrays["clean_label"])
    )
    # The file itself is accepted too.
    same = load_cifar10n(tmp_path / "data" / "CIFAR-10_human.pt")
    assert torch.equal(same.annotators, out.annotators)


def test_cifar100n_reads_fine_and_coarse_labels(tmp_path):
    arrays = cifar100n_arrays()
    write_cifar10n(tmp_path / "CIFAR-100_human.pt", arrays)
    out = load_cifar100n(tmp_path)
    assert out.name == "CIFAR-100N"
    np.testing.assert_array_equal(out.clean.numpy(), arrays["clean_label"])
    np.testing.assert_array_equal(out.consensus.numpy(), arrays["noisy_label"])
    assert out.annotators.shape == (50_000, 1)
    np.testing.assert_array_equal(
        out.arrays["noisy_coarse_label"].numpy(), arrays["noisy_coarse_label"]
    )
    # An older release without the coarse keys is fine.
    del arrays["clean_coarse_label"], arrays["noisy_coarse_label"]
    write_cifar10n(tmp_path / "old" / "CIFAR-100_human.pt", arrays)
    assert sorted(load_cifar100n(tmp_path / "old").arrays) == ["clean_label", "noisy_label"]


def test_cifarn_missing_file_names_file_and_source(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_cifar10n(tmp_path)
    msg = str(err.value)
    assert "CIFAR-10_human.pt" in msg and "UCSC-REAL/cifar-10-100n" in msg and str(tmp_path) in msg
    with pytest.raises(FileNotFoundError, match="CIFAR-100_human.pt"):
        load_cifar100n(tmp_path)


def test_cifarn_malformed_files(tmp_path):
    arrays = cifar10n_arrays()
    bad = dict(arrays)
    del bad["aggre_label"]
    with pytest.raises(ValueError, match=r"lacks the CIFAR-10N keys \['aggre_label'\]"):
        load_cifar10n(write_cifar10n(tmp_path / "a" / "CIFAR-10_human.pt", bad))
    short = {k: v[:100] for k, v in arrays.items()}
    with pytest.raises(ValueError, match=r"shape \(100,\), expected \(50000,\)"):
        load_cifar10n(write_cifar10n(tmp_path / "b" / "CIFAR-10_human.pt", short))
    wide = dict(arrays, worse_label=arrays["worse_label"] + 10)
    with pytest.raises(ValueError, match="outside 0..9"):
        load_cifar10n(write_cifar10n(tmp_path / "c" / "CIFAR-10_human.pt", wide))
    floats = dict(arrays, clean_label=arrays["clean_label"].astype(np.float32))
    with pytest.raises(ValueError, match="expected integers"):
        load_cifar10n(write_cifar10n(tmp_path / "d" / "CIFAR-10_human.pt", floats))
    # CIFAR-10N's file given to the CIFAR-100N loader: the keys say so.
    with pytest.raises(ValueError, match="noisy_label"):
        load_cifar100n(tmp_path / "a" / "CIFAR-10_human.pt")
    (tmp_path / "e").mkdir()
    lfs = tmp_path / "e" / "CIFAR-10_human.pt"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 2401007\n")
    with pytest.raises(ValueError, match="Git LFS pointer"):
        load_cifar10n(lfs)
    garbage = tmp_path / "e" / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file")
    with pytest.raises(ValueError, match="not a readable CIFAR-10N file"):
        load_cifar10n(garbage)
    listing = tmp_path / "e" / "list.pt"
    torch.save([1, 2, 3], listing)
    with pytest.raises(ValueError, match="holds a list"):
        load_cifar10n(listing)


def test_loading_never_runs_pickled_code(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": Boom()}, path)
    with pytest.raises(ValueError, match="not a readable CIFAR-10N file"):
        load_cifar10n(path)


# ---------------------------------------------------------------------------------------------
# CIFAR-10H


def test_cifar10h_counts_and_probs(tmp_path):
    counts = cifar10h_counts()
    probs = counts / counts.sum(1, keepdims=True)
    np.save(tmp_path / "cifar10h-counts.npy", counts)
    np.save(tmp_path / "cifar10h-probs.npy", probs)
    out = load_cifar10h(tmp_path)
    assert out.counts.dtype == torch.int64 and out.probs.dtype == torch.float64
    np.testing.assert_array_equal(out.counts.numpy(), counts)
    np.testing.assert_array_equal(out.probs.numpy(), probs)
    assert {p.name for p in out.source} == {"cifar10h-counts.npy", "cifar10h-probs.npy"}
    # Only the probabilities: no counts, same distribution.
    only = load_cifar10h(tmp_path / "cifar10h-probs.npy")
    assert only.counts is None and torch.equal(only.probs, out.probs)
    # Only the counts: probabilities are the normalised counts.
    from_counts = load_cifar10h(tmp_path / "cifar10h-counts.npy")
    np.testing.assert_allclose(from_counts.probs.numpy(), probs, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["cifar10h-raw.csv", "cifar10h-raw.zip"])
def test_cifar10h_raw_trials_give_the_counts(tmp_path, name):
    counts = cifar10h_counts(per_image=(1, 4))  # few trials per image keep the file small
    write_cifar10h_raw(tmp_path / "cifar-10h" / "data" / name, counts)
    out = load_cifar10h(tmp_path)
    np.testing.assert_array_equal(out.counts.numpy(), counts)  # attention checks left out
    np.testing.assert_allclose(out.probs.numpy(), counts / counts.sum(1, keepdims=True))


def test_cifar10h_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_cifar10h(tmp_path)
    assert "cifar10h-probs.npy" in str(err.value) and "jcpeterson/cifar-10h" in str(err.value)
    np.save(tmp_path / "cifar10h-counts.npy", np.ones((100, 10), dtype=np.int64))
    with pytest.raises(ValueError, match=r"shape \(100, 10\), expected \(10000, 10\)"):
        load_cifar10h(tmp_path)
    counts = cifar10h_counts()
    np.save(tmp_path / "cifar10h-counts.npy", counts.astype(np.float64))
    with pytest.raises(ValueError, match="expected integer counts"):
        load_cifar10h(tmp_path)
    np.save(tmp_path / "cifar10h-counts.npy", counts)
    np.save(tmp_path / "cifar10h-probs.npy", np.roll(counts / counts.sum(1, keepdims=True), 1, 0))
    with pytest.raises(ValueError, match="not the counts divided by their row sums"):
        load_cifar10h(tmp_path)
    np.save(tmp_path / "cifar10h-probs.npy", counts.astype(np.float64))
    with pytest.raises(ValueError, match="rows must sum to 1"):
        load_cifar10h(tmp_path)
    raw = tmp_path / "raw" / "cifar10h-raw.csv"
    raw.parent.mkdir()
    raw.write_text("annotator_id,chosen_label\n0,3\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        load_cifar10h(raw)
    partial = np.zeros((10_000, 10), dtype=np.int64)
    partial[:10, 0] = 1  # only 10 images annotated
    with pytest.raises(ValueError, match="9990 of the 10000 test images have no annotation"):
        load_cifar10h(write_cifar10h_raw(tmp_path / "raw2" / "cifar10h-raw.csv", partial))


def test_find_human_labels(tmp_path):
    assert find_human_labels(tmp_path) == {}
    write_cifar10n(tmp_path / "cifar-10-100n" / "data" / "CIFAR-10_human.pt", cifar10n_arrays())
    np.save(tmp_path / "cifar10h-counts.npy", cifar10h_counts())
    found = find_human_labels(tmp_path)
    assert found == {
        "cifar10n": tmp_path / "cifar-10-100n" / "data" / "CIFAR-10_human.pt",
        "cifar10h": tmp_path / "cifar10h-counts.npy",
    }
    assert load_cifar10n(found["cifar10n"]).clean.shape == (50_000,)


# ---------------------------------------------------------------------------------------------
# Matching the human labels to a dataset's rows


def test_order_for_dataset():
    clean = torch.tensor([2, 0, 1, 0, 2, 1])
    assert order_for_dataset(clean, clean).tolist() == list(range(6))
    # A class-sorted copy (class, then original index), as the Hugging Face parquet mirrors.
    sorted_labels = torch.tensor([0, 0, 1, 1, 2, 2])
    perm = order_for_dataset(clean, sorted_labels)
    assert perm.tolist() == [1, 3, 2, 5, 0, 4]
    assert torch.equal(clean[perm], sorted_labels)
    with pytest.raises(ValueError, match="neither the original CIFAR order"):
        order_for_dataset(clean, torch.tensor([0, 0, 1, 2, 1, 2]))
    with pytest.raises(ValueError, match="same length"):
        order_for_dataset(clean, clean[:3])

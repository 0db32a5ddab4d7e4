"""``download=True`` without network: the one clear missing-data error, no partial files."""

from __future__ import annotations

import urllib.error

import pytest

from datamodules import CIFAR10DataModule, Flowers102DataModule, ImageNet100DataModule

OFFLINE = urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def _raise(err):
    def fetch(*args, **kwargs):
        raise err

    return fetch


def test_offline_download_raises_the_missing_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10DataModule, "_download", _raise(OFFLINE))
    folder = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        CIFAR10DataModule(str(folder), download=True).prepare_data()
    msg = str(err.value)
    # The usual missing-data error: folder, layouts, how to get the data ...
    assert str(folder) in msg and "cifar-10-batches-py" in msg and "train.parquet" in msg
    assert "To get the data:" in msg
    # ... plus why the download did not get it and what to do offline.
    last = msg.splitlines()[-1]
    assert last.startswith("download failed (no network?): URLError")
    assert "name resolution" in last and f"put the files in {folder}" in last
    assert "point data_dir at a local copy" in last
    assert err.value.__cause__ is OFFLINE


@pytest.mark.parametrize(
    "dm_cls, name",
    [(Flowers102DataModule, "Flowers102"), (ImageNet100DataModule, "ImageNet-100")],
)
def test_every_datamodule_guards_its_download(tmp_path, monkeypatch, dm_cls, name):
    monkeypatch.setattr(dm_cls, "_download", _raise(ConnectionResetError("reset by peer")))
    with pytest.raises(FileNotFoundError, match=rf"(?s){name} not found.*ConnectionResetError"):
        dm_cls(str(tmp_path / "x"), download=True).prepare_data()


def test_truncated_torchvision_archive_is_removed(tmp_path, monkeypatch):
    """Through torchvision's own download code: the connection drops mid-archive."""
    import torchvision.datasets.utils as tvu

    def drop_mid_transfer(url, filename, chunk_size=0):
        with open(filename, "wb") as fh:
            fh.write(b"\x1f\x8b first bytes of the archive")
        raise urllib.error.URLError("connection reset mid-transfer")

    monkeypatch.setattr(tvu, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tvu, "_urlretrieve", drop_mid_transfer)
    (tmp_path / "other.txt").write_text("kept")  # unrelated files stay
    with pytest.raises(FileNotFoundError, match="download failed") as err:
        CIFAR10DataModule(str(tmp_path), download=True).prepare_data()
    assert isinstance(err.value.__cause__, urllib.error.URLError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]
    # A data_dir the download created is removed again when left empty.
    with pytest.raises(FileNotFoundError):
        CIFAR10DataModule(str(tmp_path / "new" / "data"), download=True).prepare_data()
    assert not (tmp_path / "new" / "data").exists()


def test_partial_hub_shards_are_removed_resumable_parts_kept(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def half_snapshot(repo, repo_type, local_dir):
        from pathlib import Path

        (Path(local_dir) / "data").mkdir(parents=True)
        (Path(local_dir) / "data" / "train-00000-of-00002.parquet").write_bytes(b"PAR1")
        part = Path(local_dir) / ".cache" / "huggingface" / "download" / "x.incomplete"
        part.parent.mkdir(parents=True)
        part.write_bytes(b"half")
        raise LocalEntryNotFoundError("cannot reach the hub and no local copy")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", half_snapshot)
    dm = ImageNet100DataModule(str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError, match="LocalEntryNotFoundError"):
        dm.prepare_data()
    assert not list(tmp_path.rglob("*.parquet")) and not dm._present()
    assert list(tmp_path.rglob("*.incomplete"))  # HF resumes from these


def test_offline_ood_download_names_the_ood_set(tmp_path, monkeypatch):
    from dm_files import class_major_labels, write_cifar10_pickles

    write_cifar10_pickles(tmp_path, class_major_labels([2] * 10), class_major_labels([1] * 10))
    monkeypatch.setattr("datamodules.base.download_ood_set", _raise(OFFLINE))
    dm = CIFAR10DataModule(str(tmp_path), download=True, ood={"svhn": str(tmp_path / "svhn")})
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert "out-of-distribution set 'svhn'" in msg and "test_32x32.mat" in msg
    assert "download failed (no network?)" in msg and "point ood['svhn'] at a local copy" in msg


def test_other_errors_are_not_disguised(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10DataModule, "_download", _raise(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        CIFAR10DataModule(str(tmp_path), download=True).prepare_data()
    monkeypatch.setattr(CIFAR10DataModule, "_download", _raise(PermissionError("read-only")))
    with pytest.raises(FileNotFoundError, match="folder not writable"):
        CIFAR10DataModule(str(tmp_path), download=True).prepare_data()

"""HF parquet reading: split files, image/label columns, class names, corrupt files."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dm_files import encode, random_images, write_hf_parquet

from datamodules.io.parquet import find_split_files, read_image_parquet


def test_find_split_files_patterns(tmp_path):
    for name in (
        "data/train-00001-of-00002.parquet",
        "data/train-00000-of-00002.parquet",
        "test.parquet",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    assert [p.name for p in find_split_files(tmp_path, "train")] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    assert [p.name for p in find_split_files(tmp_path, "test")] == ["test.parquet"]
    assert find_split_files(tmp_path, "validation") == []


def test_columns_and_names(tmp_path):
    blobs = [encode(i) for i in random_images(3)]
    write_hf_parquet(tmp_path / "a.parquet", blobs, [4, 5, 6], image_col="img", label_col="fine_label",
                     names=[str(i) for i in range(10)])  # fmt: skip
    data = read_image_parquet([tmp_path / "a.parquet"])
    assert data.labels.tolist() == [4, 5, 6] and data.class_names[9] == "9"
    assert data.blobs.to_pylist() == blobs


def test_no_label_column_and_corrupt_file(tmp_path):
    pq.write_table(
        pa.table({"img": pa.array([{"bytes": b"x", "path": None}]), "other": [1]}),
        tmp_path / "b.parquet",
    )
    with pytest.raises(ValueError, match="no label column"):
        read_image_parquet([tmp_path / "b.parquet"])
    (tmp_path / "c.parquet").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="c.parquet.*corrupt"):
        read_image_parquet([tmp_path / "c.parquet"])

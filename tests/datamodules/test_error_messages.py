"""Data errors that name the file or the argument to change."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datamodules import LatentClassesDataModule
from datamodules.io.parquet import read_image_parquet


def test_a_parquet_schema_error_names_the_file(tmp_path):
    good = tmp_path / "train-00000.parquet"
    pq.write_table(pa.table({"img": [{"bytes": b"x", "path": None}], "label": [1]}), good)
    bad = tmp_path / "train-00001.parquet"
    pq.write_table(pa.table({"img": [{"bytes": b"x", "path": None}], "other": [1]}), bad)
    with pytest.raises(ValueError, match=f"parquet file {bad}: no label column"):
        read_image_parquet([good, bad])


def test_the_latent_classes_batch_size_error_names_n_train():
    """It suggested train_subset, which LatentClassesDataModule does not have."""
    dm = LatentClassesDataModule(num_classes=2, n_train=8, n_eval=4, batch_size=16)
    dm.setup("fit")
    with pytest.raises(ValueError, match="lower batch_size or raise n_train") as info:
        dm.train_dataloader()
    assert "train_subset" not in str(info.value)

"""Hugging Face ``datasets`` parquet files (the hub's schema, as in ../shared/data).

An image column is a struct ``{bytes, path}`` (HF ``Image`` feature); the label column is an
int column (``label``, ``fine_label``, ...). Class names come from the ``ClassLabel``
feature in the file's ``huggingface`` schema metadata when present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ParquetImages", "find_split_files", "read_image_parquet"]


@dataclass
class ParquetImages:
    """Encoded images (Arrow binary array), labels and the ClassLabel names (or None)."""

    blobs: pa.Array
    labels: np.ndarray
    class_names: list[str] | None
    files: list[Path]


def find_split_files(folder: Path, split: str) -> list[Path]:
    """The parquet files of ``split`` in ``folder``: ``split.parquet``, ``split-*.parquet``
    (the hub's shards, also under ``data/``) or ``split/*.parquet``; [] if none."""
    patterns = [
        f"{split}.parquet",
        f"{split}-*.parquet",
        f"data/{split}.parquet",
        f"data/{split}-*.parquet",
        f"{split}/*.parquet",
    ]
    for pattern in patterns:
        files = sorted(folder.glob(pattern))
        if files:
            return files
    return []


def _hf_features(schema: pa.Schema) -> dict:
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return {}
    try:
        return json.loads(meta).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}


def _image_column(schema: pa.Schema, features: dict) -> str:
    for name, feat in features.items():
        if isinstance(feat, dict) and feat.get("_type") == "Image" and name in schema.names:
            return name
    for field in schema:
        if pa.types.is_struct(field.type) and field.type.get_field_index("bytes") >= 0:
            return field.name
    raise ValueError(
        f"no image column (struct with 'bytes', HF Image feature) in columns {schema.names}"
    )


def _label_column(schema: pa.Schema, features: dict, preferred: tuple[str, ...]) -> str:
    for name in preferred:
        if name in schema.names:
            return name
    for name, feat in features.items():
        if isinstance(feat, dict) and feat.get("_type") == "ClassLabel" and name in schema.names:
            return name
    raise ValueError(f"no label column among {list(preferred)} in columns {schema.names}")


def read_image_parquet(
    files: list[Path], label_columns: tuple[str, ...] = ("label", "fine_label", "labels")
) -> ParquetImages:
    """Read the image bytes and labels of one split (one or several shard files, in order)."""
    blobs, labels, names = [], [], None
    for f in files:
        try:
            table = pq.read_table(f)
        except (pa.ArrowException, OSError) as err:
            raise ValueError(
                f"cannot read parquet file {f}: {err}. The file is corrupt or not parquet: "
                "download it again (download=True with internet) or point data_dir at a good copy."
            ) from err
        features = _hf_features(table.schema)
        try:
            image_col = _image_column(table.schema, features)
            label_col = _label_column(table.schema, features, label_columns)
        except ValueError as err:  # name the file: a split may have several shards
            raise ValueError(f"parquet file {f}: {err}") from err
        col = table.column(image_col).combine_chunks()
        blobs.append(col.field("bytes"))
        labels.append(table.column(label_col).to_numpy().astype(np.int64))
        if names is None:
            feat = features.get(label_col, {})
            if isinstance(feat, dict) and feat.get("names"):
                names = [str(n) for n in feat["names"]]
    return ParquetImages(
        blobs=pa.concat_arrays(blobs) if len(blobs) > 1 else blobs[0],
        labels=np.concatenate(labels),
        class_names=names,
        files=list(files),
    )

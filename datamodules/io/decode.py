"""Decoding encoded images (JPEG/PNG bytes) into uint8 tensors ``[3, H, W]``.

JPEGs go through torchvision's batched ``decode_jpeg`` (libjpeg-turbo, about 2x PIL); other
formats through ``decode_image``. Greyscale is turned into 3 channels at decode time
(``ImageReadMode.RGB``), so OOD sets such as Fashion-MNIST fit an RGB model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as F

from datamodules.threads import one_thread

__all__ = ["EncodedImages", "decode_all", "decode_one"]

_JPEG_MAGIC = b"\xff\xd8"


def _as_tensor(blob: bytes) -> torch.Tensor:
    with warnings.catch_warnings():
        # frombuffer warns on read-only buffers; the decoders never write into them.
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(blob, dtype=torch.uint8)


def decode_one(blob: bytes, where: str = "image") -> torch.Tensor:
    """Decode one JPEG/PNG into uint8 ``[3, H, W]``; corrupt bytes give a ValueError naming ``where``."""
    try:
        data = _as_tensor(blob)
        if blob[:2] == _JPEG_MAGIC:
            return decode_jpeg(data, mode=ImageReadMode.RGB)
        return decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(
            f"cannot decode {where}: {err}. The file is corrupt: fetch it again."
        ) from err


def _resize(img: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or tuple(img.shape[-2:]) == (size, size):
        return img
    return F.resize(img, [size, size], antialias=True)


def decode_all(
    blobs: Sequence[bytes], size: int | None = None, where: str = "images"
) -> torch.Tensor:
    """Decode every blob once into one uint8 tensor ``[N, 3, H, W]``.

    ``size`` resizes each image to ``size`` x ``size`` (needed when the sizes differ).
    """
    with one_thread():
        return _decode_all(blobs, size, where)


def _decode_all(blobs: Sequence[bytes], size: int | None, where: str) -> torch.Tensor:
    if len(blobs) == 0:
        return torch.zeros((0, 3, size or 1, size or 1), dtype=torch.uint8)
    out: torch.Tensor | None = None

    def put(i: int, img: torch.Tensor) -> None:
        # Copy into one preallocated tensor (torch.stack of thousands of small images was
        # slower than the decoding itself here).
        nonlocal out
        img = _resize(img, size)
        if out is None:
            out = torch.empty((len(blobs), *img.shape), dtype=torch.uint8)
        if img.shape != out.shape[1:]:
            raise ValueError(
                f"{where}: images of different sizes {tuple(out.shape[1:])} and {tuple(img.shape)} (row {i}): give a size"
            )
        # numpy, not Tensor.copy_: the latter hit 5 ms per small image with 2 intra-op threads
        # on the 2-core development machines (thread-pool start-up), 1000x the copy itself.
        out.numpy()[i] = img.numpy()

    jpeg_rows = [i for i, b in enumerate(blobs) if b[:2] == _JPEG_MAGIC]
    other_rows = [i for i, b in enumerate(blobs) if b[:2] != _JPEG_MAGIC]
    chunk = 4096
    for start in range(0, len(jpeg_rows), chunk):
        rows = jpeg_rows[start : start + chunk]
        try:
            decoded = decode_jpeg([_as_tensor(blobs[i]) for i in rows], mode=ImageReadMode.RGB)
        except RuntimeError:
            # Find the culprit for a useful message.
            decoded = [decode_one(blobs[i], f"{where}, row {i}") for i in rows]
        for i, img in zip(rows, decoded, strict=True):
            put(i, img)
    for i in other_rows:
        put(i, decode_one(blobs[i], f"{where}, row {i}"))
    return out  # type: ignore[return-value]


class EncodedImages:
    """Lazily decoded images (for ImageNet-100, too large to hold decoded in memory).

    Holds the encoded bytes (an Arrow binary array, shared copy-on-write with forked workers)
    and decodes one image per access, once per use: decoding is part of the augmentation
    cost of data sets of this size.
    """

    def __init__(self, blobs, where: str = "images"):
        self.blobs = blobs
        self.where = where

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> torch.Tensor:
        blob = self.blobs[i]
        blob = blob.as_py() if hasattr(blob, "as_py") else blob
        return decode_one(blob, f"{self.where}, row {i}")

    def take(self, indices: np.ndarray) -> EncodedImages:
        if hasattr(self.blobs, "take"):
            import pyarrow as pa

            return EncodedImages(self.blobs.take(pa.array(indices)), self.where)
        return EncodedImages([self.blobs[int(i)] for i in indices], self.where)

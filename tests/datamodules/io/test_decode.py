"""Decoding once: JPEG batches, PNG, greyscale to RGB, resizing, corrupt bytes, lazy images."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from dm_files import encode, random_images

from datamodules.io.decode import EncodedImages, decode_all, decode_one


def test_png_exact_and_jpeg_close():
    imgs = random_images(4, seed=1)
    out = decode_all([encode(i) for i in imgs])
    assert out.dtype == torch.uint8 and np.array_equal(out.numpy(), imgs)
    smooth = np.repeat(np.repeat(imgs[:, :, ::8, ::8], 8, axis=2), 8, axis=3)
    jpg = decode_all([encode(i, "JPEG") for i in smooth])
    assert (jpg.float() - torch.from_numpy(smooth).float()).abs().mean() < 20


def test_mixed_sizes_need_a_size():
    blobs = [encode(random_images(1, size=s)[0]) for s in (16, 24)]
    assert decode_all(blobs, size=8).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="different sizes"):
        decode_all(blobs)


def test_greyscale_becomes_rgb_and_corrupt_bytes():
    grey = random_images(1, size=10)[0, :1]
    rgb = decode_one(encode(grey))
    assert rgb.shape == (3, 10, 10) and torch.equal(rgb[0], rgb[2])
    with pytest.raises(ValueError, match="cannot decode my image"):
        decode_one(b"not an image", "my image")


def test_encoded_images_lazy_and_take():
    imgs = random_images(3, seed=4)
    lazy = EncodedImages(pa.array([encode(i) for i in imgs], type=pa.binary()))
    assert np.array_equal(lazy[2].numpy(), imgs[2])
    sub = lazy.take(np.array([2, 0]))
    assert len(sub) == 2 and np.array_equal(sub[1].numpy(), imgs[0])

"""The optional decoded-image cache: decode once, reuse, invalidate when the source changes."""

from __future__ import annotations

import torch

from datamodules.io.cache import cached_decode


def test_decode_once_then_reuse_and_invalidate(tmp_path):
    src = tmp_path / "train.parquet"
    src.write_bytes(b"v1")
    calls = []

    def decode():
        calls.append(1)
        return torch.arange(12, dtype=torch.uint8).view(1, 3, 2, 2)

    cache = str(tmp_path / "cache")
    a = cached_decode(cache, "x", [src], "size=2", decode)
    b = cached_decode(cache, "x", [src], "size=2", decode)
    assert len(calls) == 1 and torch.equal(a, b)
    cached_decode(cache, "x", [src], "size=4", decode)  # other options: other entry
    src.write_bytes(b"version 2")  # the source changed: decode again
    cached_decode(cache, "x", [src], "size=2", decode)
    assert len(calls) == 3
    assert cached_decode(None, "x", [src], "", decode) is not None and len(calls) == 4

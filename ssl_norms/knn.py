"""Weighted k-nearest-neighbour classifier on cosine similarity (docs/definitions.md).

For a query q and the k bank features b_j with the largest cosine similarity s_j,
``score_c = sum_j exp(s_j / T) [y_j = c]`` and the prediction is ``argmax_c score_c``
(the InstDisc / DINO / lightly formula). Two backends give the same predictions:

- ``"faiss"``: exact inner-product search: on a GPU that FAISS sees, ``faiss.knn_gpu`` on
  the features where they are (CUDA tensors: the bank never leaves the device; tiled by
  FAISS, so the similarities are never all held at once); else an ``IndexFlatIP`` of
  faiss-cpu;
- ``"torch"``: a matmul + top-k per chunk of queries, so 50,000 bank x 10,000 queries
  x 2,048 dims never holds more than ``chunk_size x bank`` similarities at once.

Deterministic tie handling (both backends):
- neighbours tied at the k-th similarity (e.g. duplicated bank samples): the lower bank
  index wins; such rows are re-scored in float64 and re-ranked with a stable sort, since
  FAISS's and ``torch.topk``'s own orders among ties are unspecified and GEMM rounding
  makes identical vectors differ in the last bit;
- classes tied on score: the smaller class index wins (``torch.argmax`` keeps the first).

``k`` larger than the bank is clamped to the bank size (every bank sample votes), with a
warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["knn_predict", "knn_accuracy", "knn_search", "faiss_available", "default_chunk_size"]

Backend = Literal["auto", "faiss", "torch"]

# Similarities held at once by the torch backend: 2**28 floats = 1 GiB in float32.
_DEFAULT_CHUNK_ELEMENTS = 2**28
# Bank entries (tied rows x bank, or band entries x dims) that the tie re-ranking holds at
# once: 2**22 = 32 MiB in float64, whatever the query chunk.
_TIE_CHUNK_ELEMENTS = 2**22


def faiss_available() -> bool:
    """Whether ``import faiss`` works (faiss-cpu or faiss-gpu installed)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss_gpus() -> int:
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None and hasattr(faiss, "StandardGpuResources") else 0


_GPU_RESOURCES = None


def _gpu_resources():
    """One ``faiss.StandardGpuResources`` per process: it holds the GPU scratch memory, so
    creating one per evaluation would re-allocate it every time."""
    global _GPU_RESOURCES
    if _GPU_RESOURCES is None:
        import faiss

        _GPU_RESOURCES = faiss.StandardGpuResources()
    return _GPU_RESOURCES


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    if backend != "auto":
        return backend
    if not faiss_available():
        return "torch"
    # Features already on a GPU that FAISS cannot use: a torch matmul there beats copying
    # them to a CPU index.
    if device.type != "cpu" and _faiss_gpus() == 0:
        return "torch"
    return "faiss"


def _duplicate_representatives(bank: torch.Tensor) -> torch.Tensor:
    """For each bank row, the lowest index of a row identical to it (its own if unique)."""
    n = bank.shape[0]
    _, inverse = torch.unique(bank, dim=0, return_inverse=True)
    first = torch.full((n,), n, dtype=torch.long, device=bank.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=bank.device), "amin")
    return first[inverse]


def _band_scores(
    q: torch.Tensor, bank: torch.Tensor, band: torch.Tensor, cache: dict
) -> torch.Tensor:
    """``[t, N]`` float64 similarities of the queries ``q`` to the bank at the ``band``
    entries (``-inf`` elsewhere), equal for identical bank vectors; at most
    ``_TIE_CHUNK_ELEMENTS`` entries x dims in flight at once.

    Few band entries (the usual case): element-wise products summed per entry, in slices;
    the reduction treats every entry alike, so identical vectors give identical values.
    Many (duplicated or collapsed features, where every bank entry can be in the band): one
    float64 GEMM ``q @ bank.T``, whose values for identical bank rows can differ in the last
    bit with their position (measured), so every bank row reads the column of its
    lowest-index duplicate.
    """
    t, (n, d) = q.shape[0], bank.shape
    q64 = q.double()
    key = torch.full((t, n), -math.inf, dtype=torch.float64, device=q.device)
    band_row, band_col = band.nonzero(as_tuple=True)
    e = band_row.numel()
    if 8 * e <= t * n:
        step = max(1, _TIE_CHUNK_ELEMENTS // d)
        for s in range(0, e, step):
            r, c = band_row[s : s + step], band_col[s : s + step]
            key[r, c] = (q64[r] * bank[c].double()).sum(dim=1)
        return key
    if "rep" not in cache:
        cache["bank64"] = bank.double()
        cache["rep"] = _duplicate_representatives(bank)
    return torch.where(band, (q64 @ cache["bank64"].T)[:, cache["rep"]], key)


def _rerank(
    kth_sims: torch.Tensor,
    rows: torch.Tensor,
    k: int,
    tol: float,
    queries: torch.Tensor,
    bank: torch.Tensor,
    full_rows: Callable[[torch.Tensor], torch.Tensor],
    cache: dict,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top k ``(similarities, bank indices)`` of the query rows ``rows`` (see ``_tie_fix``)."""
    row_sims = full_rows(rows).to(queries.device)  # [t, N], the values the search ranked by
    kth = kth_sims.to(row_sims.device, row_sims.dtype)[:, None]
    sure = row_sims > kth + tol  # in the top k whatever the tie-break (fewer than k)
    band = (row_sims >= kth - tol) & ~sure
    need = k - sure.sum(dim=1, keepdim=True)  # >= 1: the k-th itself is not sure
    key = _band_scores(queries[rows], bank, band, cache)
    # The need-th best band score v of each row: take every band entry above v and, of
    # those equal to v, the lowest bank indices; i.e. the first `need` band entries by
    # (similarity desc, bank index asc).
    v = key.topk(int(need.max()), dim=1).values.gather(1, need - 1)
    above, at = key > v, (key == v) & band  # key is -inf outside the band
    take = sure | above | (at & (at.cumsum(dim=1) <= need - above.sum(dim=1, keepdim=True)))
    cols = take.nonzero(as_tuple=True)[1].view(-1, k)  # exactly k per row, index ascending
    # Listed as before: the sure entries, then the band entries by (similarity desc, index asc).
    rank_key = torch.where(sure, math.inf, key).gather(1, cols)
    cols = cols.gather(1, torch.sort(rank_key, dim=1, descending=True, stable=True).indices)
    return row_sims.gather(1, cols), cols


def _tie_fix(
    sims: torch.Tensor,
    idx: torch.Tensor,
    k: int,
    queries: torch.Tensor,
    bank: torch.Tensor,
    full_rows: Callable[[torch.Tensor], torch.Tensor],
    cache: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the top k of ``sims``/``idx`` (top k+1 per row), re-ranking near-tied rows.

    A row whose k-th and (k+1)-th similarities are within rounding (``8 eps``) of each
    other may hold a tie: exact duplicates in the bank get slightly different GEMM results
    depending on their position (measured: at most about 1 eps for unit vectors in 512 and
    2,048 dimensions, in FAISS and torch alike; 8 eps leaves a margin). In such a row, the
    bank entries clearly above the k-th similarity are kept; the ones within the tolerance
    band around it are re-scored in float64 (identical vectors give identical values, see
    ``_band_scores``) and the best fill the k places, by (similarity desc, bank index asc).
    Other rows keep their top k: that set is unique, and its order does not matter for the
    scores.

    Tied rows are re-ranked ``_TIE_CHUNK_ELEMENTS // N`` at a time, so the work stays
    bounded even when every row is tied and every bank entry is in the band (collapsed or
    dead features: a constant or all-zero bank). ``cache`` carries what is computed once
    per bank (its float64 copy and duplicate map) across the calls of one search.
    """
    tol = 8 * torch.finfo(sims.dtype).eps
    flagged = ((sims[:, k - 1] - sims[:, k]) <= tol).nonzero().flatten()
    sims, idx = sims[:, :k].clone(), idx[:, :k].clone()
    if flagged.numel() == 0:
        return sims, idx
    cache = {} if cache is None else cache
    step = max(1, _TIE_CHUNK_ELEMENTS // bank.shape[0])
    for start in range(0, flagged.numel(), step):
        f = flagged[start : start + step]
        s, i = _rerank(
            sims[f, k - 1], f.to(queries.device), k, tol, queries, bank, full_rows, cache
        )
        sims[f] = s.to(sims.device, sims.dtype)
        idx[f] = i.to(idx.device, idx.dtype)
    return sims, idx


def _search_torch(
    bank: torch.Tensor, queries: torch.Tensor, k: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n = bank.shape[0]
    out_s, out_i = [], []
    cache: dict = {}
    for start in range(0, queries.shape[0], chunk_size):
        q = queries[start : start + chunk_size]
        sims = q @ bank.T
        if k < n:
            s, i = torch.topk(sims, k + 1, dim=1)
            s, i = _tie_fix(s, i, k, q, bank, lambda rows, sims=sims: sims[rows], cache)
        else:
            s, i = sims, torch.arange(n, device=sims.device).expand_as(sims)
        out_s.append(s)
        out_i.append(i)
        # Free this chunk before the next matmul allocates its own: one chunk at a time
        # (measured: without it the pass peaked at two chunks).
        del sims
    return torch.cat(out_s), torch.cat(out_i)


def _search_faiss_gpu(
    bank: torch.Tensor, queries: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force search on the GPU holding the CUDA tensors, without copies to the host."""
    import faiss
    import faiss.contrib.torch_utils  # noqa: F401 - faiss calls then take torch (CUDA) tensors

    n = bank.shape[0]
    b = bank.float().contiguous()
    q = queries.float().contiguous()
    with torch.cuda.device(b.device):
        s, i = faiss.knn_gpu(
            _gpu_resources(), q, b, min(k + 1, n), metric=faiss.METRIC_INNER_PRODUCT,
            device=b.device.index if b.device.index is not None else torch.cuda.current_device(),
        )  # fmt: skip
        if k < n:
            s, i = _tie_fix(s, i, k, q, b, lambda rows: q[rows] @ b.T)
    return s, i


def _search_faiss(
    bank: torch.Tensor, queries: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    import faiss
    import numpy as np

    if bank.device.type == "cuda" and _faiss_gpus() > 0:
        return _search_faiss_gpu(bank, queries, k)
    n, d = bank.shape
    b = np.ascontiguousarray(bank.detach().cpu().float().numpy())
    q = np.ascontiguousarray(queries.detach().cpu().float().numpy())
    if _faiss_gpus() > 0:
        index = faiss.GpuIndexFlatIP(_gpu_resources(), d)
    else:
        index = faiss.IndexFlatIP(d)
    index.add(b)
    kk = min(k + 1, n)
    s_np, i_np = index.search(q, kk)
    s, i = torch.from_numpy(s_np), torch.from_numpy(i_np)
    if k < n:
        bank_cpu = torch.from_numpy(b)
        q_cpu = torch.from_numpy(q)
        s, i = _tie_fix(s, i, k, q_cpu, bank_cpu, lambda rows: q_cpu[rows] @ bank_cpu.T)
    return s.to(queries.device), i.to(queries.device)


def knn_search(
    train_features: torch.Tensor,
    test_features: torch.Tensor,
    k: int = 200,
    backend: Backend = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k cosine similarities and bank indices ``([M, k'], [M, k'])``, k' = min(k, N)."""
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError("features must be 2-D [N, D] and [M, D]")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"feature dims differ: bank {train_features.shape[1]}, queries {test_features.shape[1]}"
        )
    n = train_features.shape[0]
    if n == 0:
        raise ValueError("the k-NN memory bank is empty")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        warnings.warn(f"k={k} exceeds the bank size {n}: using k={n}", stacklevel=3)
        k = n
    bank = F.normalize(train_features.detach(), dim=1)
    queries = F.normalize(test_features.detach().to(bank.device, bank.dtype), dim=1)
    resolved = _resolve_backend(backend, bank.device)
    if resolved == "faiss":
        return _search_faiss(bank, queries, k)
    if chunk_size is None:
        chunk_size = default_chunk_size(n)
    return _search_torch(bank, queries, k, int(chunk_size))


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    backend: Backend = "auto",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted k-NN predictions ``[M]`` (int64) and class scores ``[M, C]`` (docs/definitions.md).

    The returned scores are ``sum_j exp((s_j - 1) / T) [y_j = c]``: the formula's scores (docs/definitions.md) times
    the constant ``exp(-1/T)``, which keeps them finite for small temperatures (s_j <= 1)
    and changes neither the ranking nor the prediction. ``num_classes`` defaults to
    ``max(train_labels) + 1``; ``chunk_size`` (torch backend) is the number of queries per
    matmul, by default so that one chunk holds at most 2**28 similarities.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    labels = train_labels.detach().long()
    if labels.shape[0] != train_features.shape[0]:
        raise ValueError("train_labels and train_features have different lengths")
    if num_classes is None:
        num_classes = int(labels.max().item()) + 1
    sims, nn_idx = knn_search(train_features, test_features, k, backend, chunk_size)
    nn_labels = labels.to(nn_idx.device)[nn_idx]
    weights = ((sims - 1.0) / temperature).exp()
    scores = torch.zeros(sims.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    scores.scatter_add_(1, nn_labels, weights)
    return scores.argmax(dim=1), scores


def knn_accuracy(scores: torch.Tensor, labels: torch.Tensor, top_k: int = 1) -> float:
    """Top-k accuracy (in [0, 1]) of class scores; k is clamped to the number of classes."""
    from torchmetrics.functional.classification import multiclass_accuracy

    num_classes = scores.shape[1]
    top_k = max(1, min(top_k, num_classes))
    if num_classes == 1:
        return float((labels == 0).float().mean())
    acc = multiclass_accuracy(
        scores, labels.to(scores.device).long(), num_classes, top_k=top_k, average="micro"
    )
    return float(acc)


def default_chunk_size(bank_size: int) -> int:
    """Queries per chunk of the torch backend for a bank of ``bank_size``."""
    return max(1, _DEFAULT_CHUNK_ELEMENTS // max(1, bank_size))

"""k-NN pass vs its peers on the same features: JSON records, never asserted.

On ``--bank`` x ``--queries`` random features of ``--dim`` (default 50,000 x 10,000 x 512,
100 classes, k = 200), timed in alternation round after round after a warm-up round:

- ours: ``ssl_norms.knn.knn_predict`` (normalisation, exact search, tie check, weighted
  class scores), FAISS backend and torch backend;
- bare FAISS: ``faiss.IndexFlatIP`` add + search of the pre-normalised features (on a GPU:
  ``faiss.knn_gpu`` on the CUDA tensors);
- torch matmul + top-k of the pre-normalised features, in the same query chunks as ours;
- scikit-learn: ``NearestNeighbors(metric="cosine", algorithm="brute")`` (CPU only).

Goal: our pass at most 1.2x bare FAISS. ``--peak-memory`` adds the peak extra memory of our
pass (torch backend: it never holds more than one chunk of similarities; compare the chunk
and the full ``queries x bank`` matrix). ``--scaling-banks`` adds our pass's time against
the bank size (``scaling/.../knn_s/bank_<N>``, ``--scaling-queries`` queries).
``--collapse zero|constant`` replaces the bank by all-zero or identical features (a
collapsed run): the worst case of the tie re-ranking, where bare FAISS leaves ties
unresolved.

    .venv/bin/python benchmarks/bench_knn.py --out results/bench_knn.json
    .venv/bin/python benchmarks/bench_knn.py --bank 20000 --queries 5000 --repeats 5
    .venv/bin/python benchmarks/bench_knn.py --quick
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    cuda_peak_bytes,
    emit,
    gpu_name,
    interleaved,
    median_ratio,
    peak_extra_rss,
    record,
)


def features(args, device: str = "cpu"):
    """(bank, bank labels, queries, query labels): class centres plus noise, float32."""
    import torch

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(args.classes, args.dim, generator=g)
    y = torch.randint(0, args.classes, (args.bank,), generator=g)
    bank = centers[y] + 2.0 * torch.randn(args.bank, args.dim, generator=g)
    yq = torch.randint(0, args.classes, (args.queries,), generator=g)
    queries = centers[yq] + 2.0 * torch.randn(args.queries, args.dim, generator=g)
    if args.collapse == "zero":
        bank = torch.zeros_like(bank)
    elif args.collapse == "constant":
        bank = torch.full_like(bank, 0.3)
    return bank.to(device), y.to(device), queries.to(device), yq.to(device)


def sides(args, device: str, bank, y, queries) -> dict:
    import torch
    import torch.nn.functional as F

    from ssl_norms.knn import default_chunk_size, knn_predict

    k, classes = args.k, args.classes
    b, q = F.normalize(bank, dim=1), F.normalize(queries, dim=1)
    chunk = default_chunk_size(len(b))
    fns = {}
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None and device == "cpu":
        b_np, q_np = b.numpy(), q.numpy()

        def bare_faiss():
            index = faiss.IndexFlatIP(b_np.shape[1])
            index.add(b_np)
            return index.search(q_np, k)

        fns["bare FAISS (IndexFlatIP add+search)"] = bare_faiss
    elif faiss is not None and hasattr(faiss, "StandardGpuResources"):
        import faiss.contrib.torch_utils  # noqa: F401

        from ssl_norms.knn import _gpu_resources

        fns["bare FAISS (knn_gpu)"] = lambda: faiss.knn_gpu(
            _gpu_resources(), q, b, k, metric=faiss.METRIC_INNER_PRODUCT
        )
    if faiss is not None:
        fns["ours (knn_predict, faiss)"] = lambda: knn_predict(
            bank, y, queries, k=k, num_classes=classes, backend="faiss"
        )
    fns["ours (knn_predict, torch)"] = lambda: knn_predict(
        bank, y, queries, k=k, num_classes=classes, backend="torch"
    )

    def bare_torch():
        return [torch.topk(q[i : i + chunk] @ b.T, k, dim=1) for i in range(0, len(q), chunk)]

    fns["torch matmul+topk"] = bare_torch
    if device == "cpu" and not args.skip_sklearn:
        from sklearn.neighbors import NearestNeighbors

        b_np, q_np = bank.numpy(), queries.numpy()
        fns["scikit-learn (brute, cosine)"] = lambda: (
            NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute")
            .fit(b_np)
            .kneighbors(q_np)
        )
    if device == "cuda":
        sync = torch.cuda.synchronize

        def synced(fn):
            def run():
                out = fn()
                sync()
                return out

            return run

        fns = {name: synced(fn) for name, fn in fns.items()}
    return fns


def compare(args, device: str) -> list[dict]:
    bank, y, queries, yq = features(args, device)
    fns = sides(args, device, bank, y, queries)
    times = interleaved(fns, args.repeats, warmup=1)
    where = "cpu" if device == "cpu" else f"cuda ({gpu_name()})"
    size = f"{args.bank} x {args.queries} x {args.dim}, k={args.k}, {where}"
    if args.collapse:
        size += f", collapsed bank ({args.collapse})"
    for name, ts in times.items():
        print(f"{name:38s} median {statistics.median(ts) * 1e3:9.1f} ms", file=sys.stderr)
    records = []
    ours_name = (
        "ours (knn_predict, faiss)"
        if "ours (knn_predict, faiss)" in times
        else "ours (knn_predict, torch)"
    )
    ours = times[ours_name]
    for name, ts in times.items():
        if name == ours_name:
            continue
        # time ratio: ours / theirs (< 1: ours faster). Goal vs bare FAISS: <= 1.2.
        slug = name.split(" (")[0].replace(" ", "_").replace("+", "_").lower()
        if name.startswith("ours"):
            slug = "ours_torch_backend"
        records.append(
            record(
                f"knn/{device}/ours_vs_{slug}",
                statistics.median(ours),
                "s",
                name,
                statistics.median(ts),
                median_ratio(ours, ts),
                conditions=f"{ours_name}; {size}; ratio = time ours / time baseline",
            )
        )
    return records


def _knn_setup(args_dict, chunk):
    import torch

    from ssl_norms.knn import knn_predict

    args = argparse.Namespace(**args_dict)
    bank, y, queries, _ = features(args)
    # Imports and first-call buffers are not the pass's memory: a tiny pass first.
    knn_predict(bank[:50], y[:50], queries[:10], k=5, num_classes=args.classes, backend="torch")
    torch.manual_seed(0)
    return bank, y, queries, args, chunk


def _knn_run(state):
    from ssl_norms.knn import knn_predict

    bank, y, queries, args, chunk = state
    knn_predict(bank, y, queries, k=args.k, num_classes=args.classes, backend="torch",
                chunk_size=chunk)  # fmt: skip


def peak_memory(args, device: str) -> list[dict]:
    """Peak extra memory of our pass (torch backend) vs one chunk and the full matrix."""
    from ssl_norms.knn import default_chunk_size

    chunk = args.chunk_size or default_chunk_size(args.bank)
    chunk = min(chunk, args.queries)
    chunk_mib = chunk * args.bank * 4 / 2**20
    full_mib = args.queries * args.bank * 4 / 2**20
    if device == "cuda":
        state = (*features(args, device)[:3], args, chunk)
        peak = cuda_peak_bytes(functools.partial(_knn_run, state))
        kind = "CUDA peak allocated"
    else:
        peak = peak_extra_rss(functools.partial(_knn_setup, vars(args), chunk), _knn_run)
        kind = "peak resident memory above the input features (includes their normalised copies)"
    return [
        record(
            f"memory/{device}/knn_pass",
            peak / 2**20,
            "MiB",
            "one chunk of similarities (chunk_size x bank float32)",
            chunk_mib,
            conditions=(
                f"knn_predict torch backend, {args.bank} x {args.queries} x {args.dim}, chunk "
                f"{chunk} queries; the full similarity matrix would be {full_mib:.0f} MiB; {kind}"
            ),
            full_matrix_mib=round(full_mib, 1),
        )
    ]


def scaling(args, device: str) -> list[dict]:
    """Our pass's time against the bank size (``--scaling-queries`` queries)."""
    from ssl_norms.knn import knn_predict

    fns = {}
    for n in args.scaling_banks:
        sized = argparse.Namespace(**{**vars(args), "bank": n, "queries": args.scaling_queries})
        bank, y, queries, _ = features(sized, device)
        fns[n] = functools.partial(
            knn_predict, bank, y, queries, k=min(args.k, n), num_classes=args.classes
        )
    if device == "cuda":
        import torch

        fns = {n: _then_sync(fn, torch.cuda.synchronize) for n, fn in fns.items()}
    times = interleaved(fns, args.repeats, warmup=1)
    return [
        record(
            f"scaling/{device}/knn_s/bank_{n}",
            statistics.median(ts),
            "s",
            conditions=f"knn_predict (backend auto), {args.scaling_queries} queries x dim {args.dim}",
            bank_size=n,
        )
        for n, ts in times.items()
    ]


def _then_sync(fn, sync):
    def run():
        fn()
        sync()

    return run


def bench(args) -> list[dict]:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    if args.device:
        devices = [args.device]
    records = []
    for device in devices:
        if not args.skip_compare:
            records += compare(args, device)
        if args.peak_memory:
            records += peak_memory(args, device)
        if args.scaling_banks:
            records += scaling(args, device)
    return records


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bank", type=int, default=50000)
    p.add_argument("--queries", type=int, default=10000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=None, help="queries per chunk (peak memory)")
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--collapse", choices=["zero", "constant"], default=None)
    p.add_argument("--peak-memory", action="store_true")
    p.add_argument("--skip-compare", action="store_true", help="only memory / scaling")
    p.add_argument("--scaling-banks", type=int, nargs="*", default=[])
    p.add_argument("--scaling-queries", type=int, default=2000)
    p.add_argument("--cpu-only", action="store_true")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="only this device")
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the script runs")
    p.add_argument("--out", help="write the JSON records here (default: stdout)")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = parser().parse_args(argv)
    if args.quick:
        args.bank, args.queries, args.dim, args.classes, args.k = 600, 200, 32, 10, 20
        args.repeats, args.scaling_queries = 1, 100
        args.scaling_banks = args.scaling_banks and [200, 600]
        args.chunk_size = args.chunk_size or 50
    records = bench(args)
    return emit(records, args.out)


if __name__ == "__main__":
    main()

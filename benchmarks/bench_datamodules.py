"""Throughput of the DataModule pipelines: printed, never asserted.

Measures, on the real CIFAR-10 (HF parquet, JPEG) or any ``--data-dir``:
1. decoding: parquet -> in-memory uint8 [50000, 3, 32, 32] (done once per run), images/s;
2. the CIFAR training pipeline (two augmented views per image, collated batches) for
   ``--workers`` values, images/s;
3. the un-augmented bank loader, images/s;
4. the latent-classes training loader, samples/s.

    .venv/bin/python benchmarks/bench_datamodules.py --data-dir ../shared/data --workers 0 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _rate(loader, max_batches: int) -> tuple[float, int]:
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    n, t0 = 0, time.perf_counter()
    for b, batch in enumerate(it):
        n += len(batch[1])
        if b + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t0), n


def main(argv: list[str] | None = None) -> None:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-dir", default=os.environ.get("SSL_NORMS_DATA", str(repo.parent / "shared" / "data"))
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=20, help="batches timed per loader")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = p.parse_args(argv)

    import torch

    from datamodules import CIFAR10DataModule, LatentClassesDataModule
    from datamodules.cifar import load_cifar_split

    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} intra-op threads"
    )
    t0 = time.perf_counter()
    train = load_cifar_split("cifar10", args.data_dir, "train")
    dt = time.perf_counter() - t0
    print(
        f"decode CIFAR-10 train (parquet read + decode, once): {len(train)} images in {dt:.2f} s = {len(train) / dt:,.0f} images/s"
    )

    for workers in args.workers:
        dm = CIFAR10DataModule(
            args.data_dir, batch_size=args.batch_size, eval_batch_size=512, num_workers=workers
        )
        dm.setup("fit")
        rate, n = _rate(dm.train_dataloader(), args.batches)
        print(
            f"CIFAR-10 two views, num_workers={workers}: {rate:,.0f} images/s ({n} images, batch {args.batch_size})"
        )
        rate, n = _rate(dm.bank_dataloader(), args.batches)
        print(
            f"CIFAR-10 bank (un-augmented), num_workers={workers}: {rate:,.0f} images/s ({n} images)"
        )

    dm = LatentClassesDataModule(n_train=20_000, batch_size=128)
    dm.setup("fit")
    rate, n = _rate(dm.train_dataloader(), 10 * args.batches)
    print(f"latent classes two views, num_workers=0: {rate:,.0f} samples/s ({n} samples)")


if __name__ == "__main__":
    main()

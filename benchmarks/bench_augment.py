"""Batched vs per-image two-view augmentation throughput: JSON records, never asserted.

Both sides run back to back in one invocation, on the same synthetic uint8 images, with the
same recipe (``datamodules.transforms`` presets), each from a DataLoader as in training:

- baseline: the per-image torchvision path (``augment_on="loader"``): ``TwoViewDataset`` in
  ``--workers`` loader processes (default 2, one per core of the 2-core goal machine);
- batched: ``augment_on="device"``: the uint8 loader (``RawImageDataset``, no workers) and
  ``BatchAugment`` on the CPU with ``--threads`` intra-op threads (default 2), and on CUDA
  when present (the images moved to the GPU first, as Lightning does; timed to a sync);
- batched with the images held on the device (CUDA; a CPU in ``--quick`` only): the fast
  path's ``data_on_device``, images gathered there by index, no loader in the timed loop:
  the augmentation's own throughput, to set against the training step's;
- batched in the workers: ``augment_on="loader_batched"``: ``BatchAugment`` in ``--workers``
  loader processes, a whole batch per fetch (one thread each; the per-image uint8 crop,
  ``uint8_crop=True``, as the DataModule sets it there).

Each measurement: ``--warmup`` batches untimed (worker start-up, allocator), then
``--repeats`` timings of ``--batches`` batches; the value is the median. Unit: two-view
images/s (input images turned into two views per second). Goal on 2 CPU cores: batched at
least 3x the per-image path.

    .venv/bin/python benchmarks/bench_augment.py --out results/bench_augment.json
    .venv/bin/python benchmarks/bench_augment.py --quick   # seconds: proves the script runs

Records (a JSON list, to stdout or ``--out``): ``{name, value, unit, baseline,
baseline_value, ratio}``, ratio = value / baseline_value.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from _common import emit  # noqa: E402


def _timed(step, batches: int, warmup: int, repeats: int, images_per_batch: int, sync=None):
    """Median images/s of ``repeats`` runs of ``batches`` calls of ``step`` after ``warmup``."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        for _ in range(batches):
            step()
        if sync:
            sync()
        rates.append(batches * images_per_batch / (time.perf_counter() - t0))
    return statistics.median(rates)


def _cycle(loader):
    """An endless iterator over ``loader`` (one epoch after another)."""
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def bench(args) -> list[dict]:
    import torch
    from torch.utils.data import DataLoader

    from datamodules.base import AugmentBatch
    from datamodules.batch_augment import BatchAugment
    from datamodules.datasets import ImageSet, IndexBatchDataset, RawImageDataset, TwoViewDataset
    from datamodules.sampler import GlobalBatchSampler
    from datamodules.transforms import IMAGENET_STATS, resolve_augmentation, two_view_augmentation

    mean, std = IMAGENET_STATS
    n_images = args.batch_size * (args.batches + args.warmup) + args.batch_size
    records = []
    for size in args.sizes:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n_images, 3, size, size), dtype=torch.uint8, generator=g)
        base = ImageSet(images, [0] * n_images, ["synthetic"])
        for method in args.methods:
            views = resolve_augmentation(method, size)
            label = f"{method}/{size}px"

            per_image = TwoViewDataset(base, two_view_augmentation(views, size, mean, std))
            loader = DataLoader(
                per_image, batch_size=args.batch_size, num_workers=args.workers,
                sampler=GlobalBatchSampler(n_images, args.batch_size, on_epoch=per_image.set_epoch),
                persistent_workers=args.workers > 0, drop_last=True,
            )  # fmt: skip
            it = _cycle(loader)
            torch.set_num_threads(args.threads)
            base_rate = _timed(
                lambda it=it: next(it), args.batches, args.warmup, args.repeats, args.batch_size
            )
            del it, loader
            baseline = f"per-image torchvision loader, {args.workers} workers, {label}"
            print(f"{label} per-image ({args.workers} workers): {base_rate:,.0f} images/s",
                  file=sys.stderr)  # fmt: skip

            raw = RawImageDataset(base)
            # augment_on="loader_batched": the batched recipe in the same number of workers.
            aug = BatchAugment(views, size, mean, std)
            lb_aug = BatchAugment(views, size, mean, std, uint8_crop=True)  # as the DataModule
            lb_loader = DataLoader(
                IndexBatchDataset(raw), batch_size=args.batch_size, num_workers=args.workers,
                sampler=GlobalBatchSampler(n_images, args.batch_size, on_epoch=raw.set_epoch),
                persistent_workers=args.workers > 0, drop_last=True,
                collate_fn=AugmentBatch(lb_aug, raw),
            )  # fmt: skip
            lb_it = _cycle(lb_loader)
            rate = _timed(
                lambda it=lb_it: next(it), args.batches, args.warmup, args.repeats, args.batch_size
            )
            del lb_it, lb_loader
            print(
                f"{label} batched in {args.workers} workers: {rate:,.0f} images/s", file=sys.stderr
            )
            records.append(
                {
                    "name": f"augment/two_view/batched_loader/{label}",
                    "value": round(rate, 1),
                    "unit": "images/s",
                    "baseline": baseline,
                    "baseline_value": round(base_rate, 1),
                    "ratio": round(rate / base_rate, 3),
                }
            )
            raw_loader = DataLoader(
                raw, batch_size=args.batch_size, num_workers=0, drop_last=True,
                sampler=GlobalBatchSampler(n_images, args.batch_size, on_epoch=raw.set_epoch),
            )  # fmt: skip
            devices = ["cpu"] + (
                ["cuda"] if torch.cuda.is_available() and not args.cpu_only else []
            )
            for device in devices:
                raw_it = _cycle(raw_loader)
                sync = torch.cuda.synchronize if device == "cuda" else None

                def step(raw_it=raw_it, device=device, aug=aug, raw=raw):
                    x, _, idx = next(raw_it)
                    x = x.to(device, non_blocking=True)
                    # The host's indices, as the DataModule passes them (no read-back).
                    return aug(x, idx, raw.epoch)

                rate = _timed(step, args.batches, args.warmup, args.repeats, args.batch_size, sync)
                where = f"{args.threads} threads" if device == "cpu" else "cuda"
                print(f"{label} batched ({where}): {rate:,.0f} images/s", file=sys.stderr)
                records.append(
                    {
                        "name": f"augment/two_view/batched_{device}/{label}",
                        "value": round(rate, 1),
                        "unit": "images/s",
                        "baseline": baseline,
                        "baseline_value": round(base_rate, 1),
                        "ratio": round(rate / base_rate, 3),
                    }
                )
                if device == "cuda" or args.quick:
                    rate = _resident_rate(args, images, aug, device, sync)
                    print(f"{label} batched ({where}, images held there): {rate:,.0f} images/s",
                          file=sys.stderr)  # fmt: skip
                    records.append(
                        {
                            "name": f"augment/two_view/batched_{device}_resident/{label}",
                            "value": round(rate, 1),
                            "unit": "images/s",
                            "baseline": baseline,
                            "baseline_value": round(base_rate, 1),
                            "ratio": round(rate / base_rate, 3),
                            "conditions": (
                                "the augmentation's own throughput: the uint8 images held on "
                                "the device and gathered by index there (data_on_device), no "
                                "loader in the timed loop"
                            ),
                        }
                    )
    return records


def _resident_rate(args, images, aug, device: str, sync) -> float:
    """Two-view images/s of ``aug`` alone, as the fast path runs it (``data_on_device``):
    the uint8 set on ``device``, each batch gathered there by a shuffled index batch."""
    import torch

    held = images.to(device)
    order = torch.randperm(len(held), generator=torch.Generator().manual_seed(1))
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    # (host indices for the parameters, device indices for the gather), as the DataModule
    batches = [(b, b.to(device)) for b in batches if len(b) == args.batch_size]
    position = iter(range(10**9))

    def step():
        host, on_device = batches[next(position) % len(batches)]
        return aug(held[on_device], host, 0)

    return _timed(step, args.batches, args.warmup, args.repeats, args.batch_size, sync)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 128], help="image sides (px)")
    p.add_argument("--methods", nargs="+", default=["simclr", "simsiam", "byol"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=10, help="batches per timed repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--workers", type=int, default=2, help="loader workers of the per-image path")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of the batched path")
    p.add_argument("--cpu-only", action="store_true", help="skip the CUDA rows")
    p.add_argument("--quick", action="store_true", help="a few small batches: proves it runs")
    p.add_argument("--out", help="write the JSON records here (default: stdout)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.methods = [32], ["byol"]
        args.batch_size, args.batches, args.warmup, args.repeats, args.workers = 16, 2, 1, 1, 0
        args.threads = 1
    records = bench(args)
    return emit(records, args.out)


if __name__ == "__main__":
    main()

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

The sides take turns: ``--repeats`` rounds, in each every side (its loader's workers
started for its turn and stopped after it) runs ``--warmup`` batches untimed, then
``--batches`` timed ones. Values are medians over the rounds; a ratio is the median of the
rounds' ratios (each round's sides saw the same machine load). Unit: two-view images/s
(input images turned into two views per second). Goal on 2 CPU cores: batched at least 3x
the per-image path.

    .venv/bin/python benchmarks/bench_augment.py --out results/bench_augment.json
    .venv/bin/python benchmarks/bench_augment.py --quick   # seconds: proves the script runs

Records (a JSON list, to stdout or ``--out``): ``{name, value, unit, baseline,
baseline_value, ratio, ratios}``, ``ratios`` the rounds' value / baseline value.
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

from _common import emit, median_ratio  # noqa: E402


def _rate(step, batches: int, warmup: int, images_per_batch: int, sync=None) -> float:
    """Images/s of ``batches`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    if sync:
        sync()
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    if sync:
        sync()
    return batches * images_per_batch / (time.perf_counter() - t0)


def _paired(sides: dict, args) -> dict[str, list[float]]:
    """Each side's images/s in each of ``args.repeats`` rounds, the sides in turn within a
    round (A B C, A B C, ...), so that a change in the machine's load hits all of them.

    ``sides`` maps a name to ``open(round) -> (step, close, sync)``: a side's loader (its
    workers) lives for its own turn only and is shut down by ``close``, so that no worker of
    another side keeps filling its prefetch queue in the background of a timing."""
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(args.repeats):
        for name, open_side in sides.items():
            step, close, sync = open_side(round_)
            try:
                rates[name].append(_rate(step, args.batches, args.warmup, args.batch_size, sync))
            finally:
                close()
    return rates


def _loader_side(loader):
    """A side that draws batches from a fresh iterator over ``loader`` (its workers start
    for this turn and stop when it ends)."""

    def open_side(round_: int):
        it = _cycle(loader, first_epoch=round_)
        return (lambda: next(it)), it.close, None

    return open_side


def _cycle(loader, first_epoch: int = 0):
    """An endless iterator over ``loader`` (one epoch after another)."""
    epoch = first_epoch
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _record(kind: str, label: str, rates: list[float], base: list[float], baseline: str) -> dict:
    return {
        "name": f"augment/two_view/{kind}/{label}",
        "value": round(statistics.median(rates), 1),
        "unit": "images/s",
        "baseline": baseline,
        "baseline_value": round(statistics.median(base), 1),
        "ratio": round(median_ratio(rates, base), 3),
        "ratios": [round(r / b, 3) for r, b in zip(rates, base, strict=True)],
    }


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
    torch.set_num_threads(args.threads)
    records = []
    for size in args.sizes:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n_images, 3, size, size), dtype=torch.uint8, generator=g)
        base = ImageSet(images, [0] * n_images, ["synthetic"])
        for method in args.methods:
            views = resolve_augmentation(method, size)
            label = f"{method}/{size}px"
            sides = {}

            per_image = TwoViewDataset(base, two_view_augmentation(views, size, mean, std))
            sides["per_image"] = _loader_side(DataLoader(
                per_image, batch_size=args.batch_size, num_workers=args.workers,
                sampler=GlobalBatchSampler(n_images, args.batch_size, on_epoch=per_image.set_epoch),
                drop_last=True,
            ))  # fmt: skip

            raw = RawImageDataset(base)
            # augment_on="loader_batched": the batched recipe in the same number of workers.
            aug = BatchAugment(views, size, mean, std)
            lb_aug = BatchAugment(views, size, mean, std, uint8_crop=True)  # as the DataModule
            sides["batched_loader"] = _loader_side(DataLoader(
                IndexBatchDataset(raw), batch_size=args.batch_size, num_workers=args.workers,
                sampler=GlobalBatchSampler(n_images, args.batch_size, on_epoch=raw.set_epoch),
                drop_last=True, collate_fn=AugmentBatch(lb_aug, raw),
            ))  # fmt: skip

            raw_loader = DataLoader(
                raw, batch_size=args.batch_size, num_workers=0, drop_last=True,
                sampler=GlobalBatchSampler(n_images, args.batch_size, on_epoch=raw.set_epoch),
            )  # fmt: skip
            devices = ["cpu"] + (
                ["cuda"] if torch.cuda.is_available() and not args.cpu_only else []
            )
            for device in devices:
                sides[f"batched_{device}"] = _device_side(raw_loader, raw, aug, device)
                if device == "cuda" or args.quick:
                    sides[f"batched_{device}_resident"] = _resident_side(args, images, aug, device)

            rates = _paired(sides, args)
            base_rates = rates.pop("per_image")
            baseline = f"per-image torchvision loader, {args.workers} workers, {label}"
            print(f"{label} per-image ({args.workers} workers): "
                  f"{statistics.median(base_rates):,.0f} images/s", file=sys.stderr)  # fmt: skip
            for kind, side_rates in rates.items():
                record = _record(kind, label, side_rates, base_rates, baseline)
                if kind.endswith("_resident"):
                    record["conditions"] = (
                        "the augmentation's own throughput: the uint8 images held on the "
                        "device and gathered by index there (data_on_device), no loader in "
                        "the timed loop"
                    )
                records.append(record)
                print(f"{label} {kind}: {record['value']:,.0f} images/s, ratio "
                      f"{record['ratio']:.2f} (rounds {record['ratios']})",
                      file=sys.stderr)  # fmt: skip
    return records


def _device_side(raw_loader, raw, aug, device: str):
    """``augment_on="device"``: uint8 batches from a loader without workers, moved to
    ``device`` (as Lightning does) and augmented there with the host's indices (as the
    DataModule passes them: no read-back)."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else None

    def open_side(round_: int):
        it = _cycle(raw_loader, first_epoch=round_)

        def step():
            x, _, idx = next(it)
            return aug(x.to(device, non_blocking=True), idx, raw.epoch)

        return step, it.close, sync

    return open_side


def _resident_side(args, images, aug, device: str):
    """``aug`` alone, as the fast path runs it (``data_on_device``): the uint8 set on
    ``device``, each batch gathered there by a shuffled index batch."""
    import torch

    held = images.to(device)
    order = torch.randperm(len(held), generator=torch.Generator().manual_seed(1))
    batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    # (host indices for the parameters, device indices for the gather), as the DataModule
    batches = [(b, b.to(device)) for b in batches if len(b) == args.batch_size]
    position = iter(range(10**9))
    sync = torch.cuda.synchronize if device == "cuda" else None

    def open_side(round_: int):
        def step():
            host, on_device = batches[next(position) % len(batches)]
            return aug(held[on_device], host, 0)

        return step, (lambda: None), sync

    return open_side


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 128], help="image sides (px)")
    p.add_argument("--methods", nargs="+", default=["simclr", "simsiam", "byol"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=10, help="batches per timed repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--repeats", type=int, default=5, help="rounds of the sides in turn (medians)")
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

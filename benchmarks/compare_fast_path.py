"""Does the fast path train the same model? Loss curves and k-NN accuracy over seeds.

Trains SimCLR (ResNet-18 with the CIFAR stem) for ``--epochs`` on CIFAR-10 (optionally the
exponentially imbalanced split and per-class subsets, for CPU-sized runs), once per seed
with each path:

- default: per-image torchvision views in loader workers, ``--precision`` (32-true);
- fast (``configs/overrides/fast_gpu.yaml``): the uint8 training set on the device, index
  batches, the batched augmentation there, ``--fast-precision`` (bf16-mixed on a GPU),
  channels-last (both paths: the model default), optionally ``--compile``.

The two paths draw their random views from different generators, so their runs differ
like two seeds do: the comparison is between the spread over seeds and the difference of
the means. For the loss (mean of the last quarter of the steps) and the final k-NN top-1
it prints both paths' mean and standard deviation over seeds, the difference of the means
and its standard error ``sqrt(s_a^2 / n + s_b^2 / n)``; "within noise" when the
difference is at most 2 standard errors. Nothing is asserted; this is a measurement.

    # a GPU (the fast path's home): 5 seeds of 5 epochs on the full CIFAR-10
    .venv/bin/python benchmarks/compare_fast_path.py --seeds 0 1 2 3 4 --epochs 5 --width 64 \\
        --batch-size 512 --out results/fast_path.json
    # 2 CPU cores (data on the "device" = the CPU, float32 for both): minutes
    .venv/bin/python benchmarks/compare_fast_path.py --device cpu --fast-precision 32-true \\
        --train-subset 60 --eval-subset 50 --width 8 --batch-size 64 --epochs 2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO  # noqa: E402


def run(args, fast: bool, seed: int) -> dict:
    import lightning.pytorch as pl
    import torch

    from callbacks import EvaluationPass, KNNMonitor
    from datamodules import CIFAR10DataModule
    from ssl_norms.methods import SimCLR

    losses: list[float] = []

    class Losses(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"].detach()))

    pl.seed_everything(seed, verbose=False)
    model = SimCLR(
        backbone="resnet18", backbone_width=args.width, lr=args.lr, warmup_epochs=1,
        projector_hidden_dim=2048, projector_out_dim=256,
        compile_backbone=fast and args.compile,
    )  # fmt: skip
    dm = CIFAR10DataModule(
        args.data_dir, download=False, cache_dir=args.cache_dir,
        imbalance="exponential" if args.imbalanced else "none",
        train_subset=args.train_subset, eval_subset=args.eval_subset,
        batch_size=args.batch_size, eval_batch_size=512, seed=seed,
        num_workers=0 if fast else args.num_workers,
        augment_on="device" if fast else "loader", data_on_device=fast,
    )  # fmt: skip
    knn = KNNMonitor(k=args.k)
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
        precision=args.fast_precision if fast else args.precision,
        max_epochs=args.epochs, logger=False,
        callbacks=[Losses(), EvaluationPass(every_n_epochs=args.epochs), knn],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    torch.set_float32_matmul_precision("high")
    trainer.fit(model, datamodule=dm)
    return {"loss": losses, "knn_top1": knn.last_results["top1"]}


def summary(a: list[float], b: list[float]) -> dict:
    n_a, n_b = len(a), len(b)
    sd_a = statistics.stdev(a) if n_a > 1 else float("nan")
    sd_b = statistics.stdev(b) if n_b > 1 else float("nan")
    diff = statistics.mean(b) - statistics.mean(a)
    se = math.sqrt(sd_a**2 / n_a + sd_b**2 / n_b)
    return {
        "default_mean": statistics.mean(a), "default_std": sd_a,
        "fast_mean": statistics.mean(b), "fast_std": sd_b,
        "diff": diff, "se": se, "within_noise": abs(diff) <= 2 * se if se == se else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.6)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--imbalanced", action="store_true")
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--eval-subset", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--precision", default="32-true", help="the default path's")
    p.add_argument("--fast-precision", default="bf16-mixed")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    runs = {
        path: [run(args, path == "fast", seed) for seed in args.seeds]
        for path in ("default", "fast")
    }
    results: dict = {"args": vars(args), "runs": runs}
    for metric, pick in (
        ("final_loss", lambda r: statistics.mean(r["loss"][-max(1, len(r["loss"]) // 4) :])),
        ("knn_top1", lambda r: r["knn_top1"]),
    ):
        results[metric] = summary([pick(r) for r in runs["default"]],
                                  [pick(r) for r in runs["fast"]])  # fmt: skip
        s = results[metric]
        print(
            f"{metric}: default {s['default_mean']:.4f} +- {s['default_std']:.4f}, fast "
            f"{s['fast_mean']:.4f} +- {s['fast_std']:.4f} (over {len(args.seeds)} seeds); "
            f"difference {s['diff']:+.4f}, standard error {s['se']:.4f}: "
            f"{'within noise' if s['within_noise'] else 'NOT within noise'}"
        )
    steps = min(len(r["loss"]) for rs in runs.values() for r in rs)
    curves = {
        path: [statistics.mean(r["loss"][t] for r in rs) for t in range(steps)]
        for path, rs in runs.items()
    }
    results["loss_curves_mean"] = curves
    print("step  default  fast   (mean loss over seeds)")
    for t in range(0, steps, max(1, steps // 10)):
        print(f"{t:4d}  {curves['default'][t]:.4f}  {curves['fast'][t]:.4f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()

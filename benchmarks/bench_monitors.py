"""Cost of the per-step monitors on a training step.

Target: ``EmbeddingNormMonitor`` + ``EffectiveLRMonitor`` add under 2 % to a training step.
Runs SimCLR on synthetic data with a chosen backbone and measures, in one fit:
- the training step (``on_train_batch_start`` -> ``on_train_batch_end``, the monitors
  excluded), and
- the time spent inside the monitors' hooks (every hook call timed),
for ``every_n_steps`` = 1 (worst case: statistics and a gather on every step) and the
configs' values. A second fit without monitors gives an end-to-end comparison, which on a
shared CPU is noisier than the hook timings.

    python benchmarks/bench_monitors.py                         # ResNet-18 (width 16), 32 px
    python benchmarks/bench_monitors.py --backbone mlp          # the demo's MLP: tiny steps
    python benchmarks/bench_monitors.py --width 64 --steps 20   # the paper's ResNet-18
    python benchmarks/bench_monitors.py --quick --out results/bench_monitors.json

Records (JSON, to stdout or ``--out``): ``monitors/<device>/<backbone>/every_<n>``: the
monitors' hook time per step in % of the step without them (goal < 2 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, record  # noqa: E402

from callbacks import EffectiveLRMonitor, EmbeddingNormMonitor  # noqa: E402
from ssl_norms.methods import SimCLR  # noqa: E402


class Synthetic(Dataset):
    def __init__(self, n: int, shape: tuple[int, ...]) -> None:
        self.x = torch.randn(n, *shape)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        x = self.x[i]
        return [x, x.flip(-1)], i % 10, i


class StepTimer(pl.Callback):
    """Wall time of each training step; first in the callback list, so its end hook runs
    before the monitors' and their time is not counted in the step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self._t0)


def time_hooks(cb: pl.Callback, acc: list[float]) -> pl.Callback:
    """Wrap the training-batch hooks of ``cb`` to add their wall time to ``acc[0]``."""
    for name in ("on_train_batch_start", "on_train_batch_end"):
        original = getattr(cb, name)

        def timed(*args, _original=original, **kwargs):
            t0 = time.perf_counter()
            _original(*args, **kwargs)
            acc[0] += time.perf_counter() - t0

        setattr(cb, name, timed)
    return cb


def fit(args, every: int | None) -> tuple[list[float], float]:
    if args.backbone == "mlp":
        model = SimCLR(
            backbone="mlp",
            backbone_in_dim=64,
            backbone_width=64,
            projector_hidden_dim=64,
            projector_out_dim=16,
        )
        shape = (64,)
    else:
        model = SimCLR(
            backbone=args.backbone,
            backbone_width=args.width,
            projector_out_dim=128,
            projector_hidden_dim=512,
        )
        shape = (3, args.size, args.size)
    timer, acc = StepTimer(), [0.0]
    cbs: list[pl.Callback] = [timer]
    if every is not None:
        cbs += [
            time_hooks(EmbeddingNormMonitor(every_n_steps=every), acc),
            time_hooks(EffectiveLRMonitor(every_n_steps=every), acc),
        ]
    loader = DataLoader(
        Synthetic(args.batch_size * (args.steps + 1), shape),
        batch_size=args.batch_size,
        drop_last=True,
    )
    trainer = pl.Trainer(
        max_steps=args.steps,
        accelerator="auto",
        devices=1,
        callbacks=cbs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, loader)
    return timer.times[args.warmup :], acc[0]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet50", "mlp"])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--every", type=int, nargs="+", default=[1, 50])
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the script runs")
    p.add_argument("--out", help="write the JSON records here (default: stdout)")
    args = p.parse_args(argv)
    if args.quick:
        args.backbone, args.batch_size, args.steps, args.warmup, args.every = "mlp", 16, 4, 1, [1]
    print(
        f"SimCLR {args.backbone} (width {args.width}), batch {args.batch_size}, {args.steps} steps, torch threads {torch.get_num_threads()}",
        file=sys.stderr,
    )
    base, _ = fit(args, None)
    runs = {every: fit(args, every) for every in args.every}
    step = statistics.median(base)
    # The fastest median step of all fits: the least disturbed by other processes, so the
    # monitors' share is not understated on a loaded machine.
    fastest = min([step] + [statistics.median(t) for t, _ in runs.values()])
    print(
        f"no monitors:       median step {step * 1e3:8.2f} ms (fastest median of all fits {fastest * 1e3:.2f} ms)",
        file=sys.stderr,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = args.backbone + (f" w{args.width}" if args.backbone != "mlp" else "")
    records = []
    for every, (times, hooks) in runs.items():
        per_step_hooks = hooks / (len(times) + args.warmup)
        s = statistics.median(times)
        print(
            f"every_n_steps={every:<4d} median step {s * 1e3:8.2f} ms, monitor hooks {per_step_hooks * 1e3:7.3f} ms/step "
            f"= {100 * per_step_hooks / fastest:5.2f} % of the fastest step (target < 2 %); "
            f"end-to-end vs no monitors {100 * (s + per_step_hooks - step) / step:+6.2f} % (noisy)",
            file=sys.stderr,
        )
        records.append(
            record(
                f"monitors/{device}/{args.backbone}/every_{every}",
                100 * per_step_hooks / fastest,
                "% of a step",
                "training step without monitors (ms)",
                1e3 * fastest,
                ratio=(fastest + per_step_hooks) / fastest,
                conditions=(
                    f"EmbeddingNormMonitor + EffectiveLRMonitor every {every} steps, SimCLR "
                    f"{model}, batch {args.batch_size}, {device}; ratio = step with the "
                    "monitors' hooks / step without"
                ),
                hook_ms_per_step=round(1e3 * per_step_hooks, 4),
            )
        )
    return emit(records, args.out)


if __name__ == "__main__":
    main()

"""Training throughput: our ``Trainer.fit`` vs plain PyTorch loops, side by side (JSON records).

Three sides train SimCLR (ResNet-18 with the CIFAR stem at ``--width``, projector
``128 -> 2048 -> 256`` without BatchNorm, InfoNCE at temperature 0.5, SGD momentum 0.9) on the
same DataModule's training loader (by default the real exponentially imbalanced CIFAR-10,
14,736 images; ``--synthetic`` makes random images), batch ``--batch-size``,
``--num-workers`` loader workers:

- ``fit``: ``lightning.Trainer.fit`` of ``ssl_norms.methods.SimCLR`` with the monitors of the
  shipped configs (``EvaluationPass`` and its k-NN, norm, confidence and health monitors,
  ``EffectiveLRMonitor``; the per-step ones every ``--monitor-every`` steps), a CSV logger, the NaN guard, the
  warm-up + cosine schedule; k-NN evaluation off (``limit_val_batches=0``: the k-NN pass is
  timed by ``bench_knn.py``);
- ``plain``: a plain loop over the same module class: ``compute_loss``, ``backward``,
  ``SGD.step``, nothing else;
- ``lightly``: a plain loop on lightly's SimCLR blocks (``lightly.loss.NTXentLoss``,
  ``lightly.models.modules.SimCLRProjectionHead`` without BatchNorm) over the same
  backbone, channels-last, both views in one batch (needs ``pip install -e .[bench]``).

Each run trains ``--warmup`` untimed steps then ``--steps`` timed steps (from the end of
step ``warmup - 1`` to the end of the last step: the window includes loading, the hooks and
the monitors of every timed step); the sides run in turn, ``--repeats`` rounds (A B C A B C
...), and the value is the median over rounds of images/s (input images, i.e. pairs of
views, per second). Ratios are medians of the per-round ratios. On a GPU the clock is read
(after a sync) at the window's two ends only, as nothing waits for the GPU after each step
in a real run; ``--interleave step`` (one step of each side in turn) must sync after every
step, which also stalls the host work that would otherwise overlap the GPU's.
``--no-check-finite`` runs the fit side without the NaN guard (its cost).

``--scaling-batches`` adds the step time of our module (``compute_loss`` + backward + step
on synthetic views, no loader) at several batch sizes: ``scaling/step_ms/batch_<B>``.
``--peak-memory`` adds the peak extra resident memory of one training step (CPU, in a fresh
process) or the CUDA peak allocation.

    .venv/bin/python benchmarks/bench_fit.py --out results/bench_fit.json
    .venv/bin/python benchmarks/bench_fit.py --quick   # seconds: proves the script runs
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    cuda_peak_bytes,
    emit,
    gpu_name,
    interleaved,
    peak_extra_rss,
    record,
)

PROJECTOR = dict(projector_hidden_dim=2048, projector_out_dim=256)
TEMPERATURE = 0.5
LR, MOMENTUM, WD = 0.6, 0.9, 1e-6


def make_datamodule(args, **overrides):
    """The training data: imbalanced CIFAR-10 from ``--data-dir`` or random images."""
    from datamodules import CIFAR10DataModule

    options = dict(
        batch_size=args.batch_size,
        eval_batch_size=512,
        num_workers=args.num_workers,
        seed=0,
        augment_on=args.augment_on,
        data_on_device=args.data_on_device,
    )
    options.update(overrides)
    if args.synthetic:
        return SyntheticCIFAR(n=args.synthetic, **options)
    return CIFAR10DataModule(
        args.data_dir,
        download=False,
        imbalance="exponential",
        imbalance_factor=1.5,
        cache_dir=args.cache_dir,
        **options,
    )


def _synthetic_cls():
    from datamodules.cifar import CIFAR10DataModule
    from datamodules.datasets import ImageSet

    class SyntheticCIFAR(CIFAR10DataModule):
        """Random 32 px uint8 images with CIFAR-10's classes (no files)."""

        def __init__(self, n: int = 512, **kwargs):
            super().__init__("unused", **kwargs)
            self.n = int(n)

        def _load_splits(self):
            import torch

            g = torch.Generator().manual_seed(0)
            names = [str(c) for c in range(10)]

            def images(n):
                x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
                return ImageSet(x, (torch.arange(n) % 10).numpy(), names)

            return images(self.n), images(max(10, self.n // 4))

    return SyntheticCIFAR


def SyntheticCIFAR(**kwargs):  # noqa: N802 - a factory that reads like the class
    return _synthetic_cls()(**kwargs)


def make_model(args):
    from ssl_norms.methods import SimCLR

    return SimCLR(
        backbone="resnet18",
        backbone_width=args.width,
        cifar_stem=True,
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WD,
        warmup_epochs=1,
        temperature=TEMPERATURE,
        channels_last=args.channels_last,
        compile_backbone=args.compile,
        check_finite=getattr(args, "check_finite", True),
        **PROJECTOR,
    )


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process (all its threads) and by its
    live child processes (the loader workers), from ``/proc``."""
    total = time.process_time()
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:  # the parent pid; then utime, stime at 11, 12
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class _Window:
    """Wall and CPU time at the end of every training step: over steps ``warmup .. warmup +
    steps - 1``, images per wall second and images per CPU second (this process and its
    loader workers: robust to other processes' load, which slows the wall clock only)."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.cpu: list[float] = []

    def begin(self) -> None:
        self.start, self.cpu_start = time.perf_counter(), cpu_seconds()

    def end(self, read: bool = True) -> None:
        """The end of a step; ``read=False``: a step whose clocks ``rate`` never reads (the
        CPU clock scans /proc: milliseconds a GPU run should not pay every step)."""
        self.ends.append(time.perf_counter() if read else math.nan)
        self.cpu.append(cpu_seconds() if read else math.nan)

    def rate(self, warmup: int, steps: int, batch: int) -> tuple[float, float]:
        t0 = self.ends[warmup - 1] if warmup > 0 else self.start
        c0 = self.cpu[warmup - 1] if warmup > 0 else self.cpu_start
        images = steps * batch
        return (images / (self.ends[warmup + steps - 1] - t0),
                images / (self.cpu[warmup + steps - 1] - c0))  # fmt: skip


def run_fit(args, device: str, others: dict | None = None):
    """Images/s of ``Trainer.fit`` (steady state) with the monitors on.

    With ``others`` (name -> a function doing one step of another side), those run one step
    each after every fit step, timed apart and excluded from the fit's time; returns then
    the per-step seconds of every side (``{"fit": [...], name: [...]}``), warm-up included.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from callbacks import (
        ConfidenceMonitor,
        EffectiveLRMonitor,
        EmbeddingNormMonitor,
        EvaluationPass,
        HealthMonitor,
        KNNMonitor,
    )

    window = _Window()
    durations: dict[str, list[float]] = {"fit": [], **{name: [] for name in others or {}}}

    def sync():
        if device == "cuda":
            import torch

            torch.cuda.synchronize()

    class Timer(pl.Callback):
        # Listed last: its batch-end hook runs after the monitors'.
        def on_train_start(self, trainer, pl_module):
            window.begin()
            self.resume, self.cpu_resume = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if others is None:
                # Whole runs: a sync only where the rate reads the clock (the window's two
                # ends), as in a real run, where nothing waits for the GPU after each step.
                read = len(window.ends) in _clock_reads(args)
                if read:
                    sync()
                window.end(read)
                return
            sync()
            # Step by step: wall and this process's CPU seconds of each side's step.
            durations["fit"].append(
                (time.perf_counter() - self.resume, time.process_time() - self.cpu_resume)
            )
            for name, one in others.items():
                t0, c0 = time.perf_counter(), time.process_time()
                one()
                durations[name].append((time.perf_counter() - t0, time.process_time() - c0))
            self.resume, self.cpu_resume = time.perf_counter(), time.process_time()

    pl.seed_everything(0, verbose=False)
    model = make_model(args)
    dm = make_datamodule(args)
    with tempfile.TemporaryDirectory() as logs:
        trainer = pl.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            precision=args.precision,
            max_steps=args.warmup + args.steps,
            limit_val_batches=0,
            log_every_n_steps=args.monitor_every,
            logger=CSVLogger(logs),
            callbacks=[
                # The shipped configs' monitors (configs/base/simclr.yaml).
                EvaluationPass(every_n_epochs=10),
                KNNMonitor(k=200, temperature=0.1, bucket_accuracy=True),
                EmbeddingNormMonitor(every_n_steps=args.monitor_every),
                ConfidenceMonitor(),
                HealthMonitor(every_n_steps=args.monitor_every),
                EffectiveLRMonitor(every_n_steps=args.monitor_every),
                Timer(),
            ],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(model, datamodule=dm)
    if others is not None:
        return durations
    return window.rate(args.warmup, args.steps, args.batch_size)


def _cycle(loader):
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _views(dm, batch, device):
    """The two views of a loader batch on ``device`` (batched augmentation when set)."""
    import torch

    views, y, idx = batch
    if not isinstance(views, (list, tuple)):  # uint8 images or indices (augment_on="device")
        # As Lightning does: the DataModule's move, then its views.
        moved = dm.transfer_batch_to_device(batch, torch.device(device), 0)
        views = dm.on_after_batch_transfer(moved, 0)[0]
    return [v.to(device, non_blocking=True) for v in views]


def _one_step(args, device, dm, step):
    """A function that loads the next batch of ``dm`` and trains one step on it."""
    import torch

    dm.setup("fit")
    it = _cycle(dm.train_dataloader())

    def one(sync: bool = True):
        step(_views(dm, next(it), device))
        if sync and device == "cuda":
            torch.cuda.synchronize()

    return one


def _clock_reads(args) -> tuple[int, int]:
    """The steps (0-based) after which ``_Window.rate`` reads the clock."""
    return (args.warmup - 1, args.warmup + args.steps - 1)


def _loop_rate(args, device, dm, step) -> float:
    one = _one_step(args, device, dm, step)
    window = _Window()
    window.begin()
    for i in range(args.warmup + args.steps):
        read = i in _clock_reads(args)
        one(sync=read)
        window.end(read)
    return window.rate(args.warmup, args.steps, args.batch_size)


def _autocast(args, device):
    import contextlib

    import torch

    if args.precision.startswith("bf16"):
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def plain_side(args, device: str):
    """(DataModule, step) of a plain loop over our module: compute_loss, backward, SGD step."""
    import lightning.pytorch as pl
    import torch

    pl.seed_everything(0, verbose=False)
    model = make_model(args).to(device).train()
    if args.compile:
        model.backbone.compile()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    fmt = model._memory_format

    def step(views):
        with _autocast(args, device):
            loss = model.compute_loss(fmt(views[0]), fmt(views[1])).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return make_datamodule(args), step


def lightly_side(args, device: str):
    """(DataModule, step) of a plain loop on lightly's SimCLR blocks (channels-last, views
    concatenated)."""
    import lightning.pytorch as pl
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    from ssl_norms.models.backbones import build_backbone
    from ssl_norms.models.memory_format import channels_last_hazard

    pl.seed_everything(0, verbose=False)
    backbone = build_backbone("resnet18", width=args.width, cifar_stem=True)
    head = SimCLRProjectionHead(
        backbone.out_dim, PROJECTOR["projector_hidden_dim"], PROJECTOR["projector_out_dim"],
        batch_norm=False,
    )  # fmt: skip
    model = torch.nn.Sequential(backbone, head).to(device).train()
    # As SSLMethod does: NHWC unless oneDNN cannot run it for this backbone (toy widths).
    fmt = torch.contiguous_format if channels_last_hazard(backbone) else torch.channels_last
    model = model.to(memory_format=fmt)
    if args.compile:
        backbone.compile()
    criterion = NTXentLoss(temperature=TEMPERATURE)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)

    def step(views):
        x = torch.cat(views).contiguous(memory_format=fmt)
        with _autocast(args, device):
            z0, z1 = model(x).chunk(2)
            loss = criterion(z0, z1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # lightly's own pipeline is per-image torchvision transforms in loader workers: the
    # per-image path with our recipe (same images, same distributions).
    workers = args.num_workers if device == "cpu" else max(args.num_workers, 8)
    dm = make_datamodule(args, augment_on="loader", data_on_device=False, num_workers=workers)
    return dm, step


def run_plain(args, device: str) -> tuple[float, float]:
    return _loop_rate(args, device, *plain_side(args, device))


def run_lightly(args, device: str) -> tuple[float, float]:
    return _loop_rate(args, device, *lightly_side(args, device))


SIDES = {"fit": run_fit, "plain": run_plain, "lightly": run_lightly}
LOOP_SIDES = {"plain": plain_side, "lightly": lightly_side}
BASELINES = {
    "plain": "plain PyTorch loop over the same SimCLR module",
    "lightly": "plain loop on lightly's SimCLR blocks (NTXentLoss, SimCLRProjectionHead)",
}


def _side_args(args, side: str):
    """``args`` for ``side``; ``SIDE:loader`` / ``SIDE:device`` sets where its views are made."""
    where = side.partition(":")[2]
    if not where:
        return args
    return argparse.Namespace(**{**vars(args), "augment_on": where, "data_on_device": False})


def _rates_by_run(args, device: str, sides: list[str]) -> tuple[dict, dict, dict, dict]:
    """Rounds of whole runs, one side after the other. Returns the median images per wall
    second and per CPU second of each side, and the median per-round ratios fit / side."""
    wall: dict[str, list[float]] = {s: [] for s in sides}
    cpu: dict[str, list[float]] = {s: [] for s in sides}
    for r in range(args.repeats):
        for side in sides:
            w, c = SIDES[side.split(":")[0]](_side_args(args, side), device)
            wall[side].append(w)
            cpu[side].append(c)
            print(f"round {r}: {side} {w:.1f} images/s, {c:.1f} images/CPU-s", file=sys.stderr)

    def ratio(values, side):
        return statistics.median(a / b for a, b in zip(values["fit"], values[side], strict=True))

    others = [s for s in sides if s != "fit"]
    return (
        {s: statistics.median(v) for s, v in wall.items()},
        {s: statistics.median(v) for s, v in cpu.items()},
        {s: ratio(wall, s) for s in others},
        {s: ratio(cpu, s) for s in others},
    )


def _rates_by_step(args, device: str, sides: list[str]) -> tuple[dict, dict, dict, dict]:
    """One step of each side in turn (fit, then each loop), ``repeats`` fits. Returns images
    per wall second and per CPU second (this process; the workers run between the steps)
    from the median step, and the medians over steps of the paired ratios fit / side."""
    steps: dict[str, list[tuple[float, float]]] = {s: [] for s in sides}
    for r in range(args.repeats):
        others = {}
        for side in sides[1:]:
            side_args = _side_args(args, side)
            others[side] = _one_step(side_args, device, *LOOP_SIDES[side.split(":")[0]](
                side_args, device))  # fmt: skip
        durations = run_fit(args, device, others)
        for side in sides:
            steps[side] += durations[side][args.warmup :]
        print(f"round {r}: " + ", ".join(
            f"{s} {args.batch_size / statistics.median(t for t, _ in steps[s]):.1f} images/s"
            for s in sides
        ), file=sys.stderr)  # fmt: skip
    b = args.batch_size

    def rates(k):
        return {s: b / statistics.median(d[k] for d in v) for s, v in steps.items()}

    def ratios(k):
        return {
            side: statistics.median(
                o[k] / f[k] for f, o in zip(steps["fit"], steps[side], strict=True)
            )
            for side in sides[1:]
        }

    return rates(0), rates(1), ratios(0), ratios(1)


def compare(args, device: str) -> list[dict]:
    sides = [s for s in args.sides if s != "lightly" or _has_lightly()]
    if "lightly" in args.sides and "lightly" not in sides:
        print("lightly is not installed (pip install -e .[bench]): skipping that side", file=sys.stderr)  # fmt: skip
    bad = [s for s in sides if s.split(":")[0] not in SIDES or (s != "fit" and s.startswith("fit"))]
    if not bad and len(sides) == 1 and sides[0] != "fit":  # one loop alone (e.g. for a pair
        # of whole-process timings): its rate only
        runs = [SIDES[sides[0].split(":")[0]](_side_args(args, sides[0]), device)
                for _ in range(args.repeats)]  # fmt: skip
        return [record(f"fit/{device}/{sides[0].replace(':', '_')}",
                       statistics.median(w for w, _ in runs), "images/s",
                       images_per_cpu_s=round(statistics.median(c for _, c in runs), 2))]  # fmt: skip
    if bad or sides[:1] != ["fit"]:
        raise SystemExit(
            f"sides: 'fit' first, then plain and/or lightly (optionally ':loader' or ':device', "
            f"where that side's views are made); got {args.sides}"
        )
    if args.interleave == "step" and len(sides) > 1:
        rates, cpu_rates, ratios, cpu_ratios = _rates_by_step(args, device, sides)
    else:
        rates, cpu_rates, ratios, cpu_ratios = _rates_by_run(args, device, sides)
    where = device if device == "cpu" else f"cuda ({gpu_name()})"
    label = (
        f"SimCLR ResNet-18 w{args.width}, batch {args.batch_size}, {where}, "
        f"{'synthetic' if args.synthetic else 'imbalanced CIFAR-10'}, "
        f"augment_on={args.augment_on}{', data on device' if args.data_on_device else ''}, "
        f"{args.precision}{', channels_last' if args.channels_last else ''}"
        f"{', compiled' if args.compile else ''}, {args.num_workers} loader workers, "
        f"monitors every {args.monitor_every} steps"
        f"{'' if args.check_finite else ', fit without the NaN guard'}, {args.steps} timed "
        f"steps x {args.repeats} rounds, interleaved by {args.interleave}"
        + (" (a sync after every step)" if args.interleave == "step" and device == "cuda" else "")
    )
    records = []
    for side in sides[1:]:
        kind, _, where_views = side.partition(":")
        baseline = BASELINES[kind] + (f", {where_views} views" if where_views else "")
        if kind == "lightly":
            baseline += ", per-image loader views"
        records.append(
            record(
                f"fit/{device}/fit{args.tag}_vs_{side.replace(':', '_')}",
                rates["fit"],
                "images/s",
                baseline,
                rates[side],
                ratios[side],
                conditions=label,
                # Images per CPU second (process + its loader workers; step mode: this
                # process only): insensitive to other processes' load.
                images_per_cpu_s=round(cpu_rates["fit"], 2),
                baseline_images_per_cpu_s=round(cpu_rates[side], 2),
                cpu_ratio=round(cpu_ratios[side], 4),
            )
        )
    if len(sides) == 1:
        records.append(record(f"fit/{device}/fit", rates["fit"], "images/s", conditions=label,
                              images_per_cpu_s=round(cpu_rates["fit"], 2)))  # fmt: skip
    return records


def _has_lightly() -> bool:
    try:
        import lightly  # noqa: F401
    except ImportError:
        return False
    return True


# ---- scaling with the batch size, and peak memory -------------------------------------------
def _step_state(width: int, batch: int, device: str, channels_last: bool):
    import torch

    from ssl_norms.methods import SimCLR

    torch.manual_seed(0)
    model = SimCLR(backbone="resnet18", backbone_width=width, channels_last=channels_last,
                   **PROJECTOR).to(device).train()  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=MOMENTUM)
    views = [model._memory_format(torch.randn(batch, 3, 32, 32, device=device)) for _ in "12"]
    return model, opt, views


def _train_step(state) -> None:
    model, opt, views = state
    loss = model.compute_loss(*views).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def scaling(args, device: str) -> list[dict]:
    """Step time of our module against the batch size (no loader)."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    states = {
        b: _step_state(args.width, b, device, args.channels_last) for b in args.scaling_batches
    }

    def timed(state):
        def fn():
            _train_step(state)
            sync()

        return fn

    times = interleaved({b: timed(s) for b, s in states.items()}, args.repeats, warmup=1)
    return [
        record(
            f"scaling/{device}/step_ms/batch_{b}",
            1e3 * statistics.median(ts),
            "ms/step",
            conditions=f"SimCLR ResNet-18 w{args.width}, synthetic views, no loader",
            batch_size=b,
        )
        for b, ts in times.items()
    ]


def peak_memory(args, device: str) -> list[dict]:
    """Peak extra memory of one training step (after a first step allocated the grads)."""
    batch = args.batch_size
    if device == "cuda":
        state = _step_state(args.width, batch, device, args.channels_last)
        _train_step(state)
        peak = cuda_peak_bytes(functools.partial(_train_step, state))
        kind = "CUDA peak allocated"
    else:
        setup = functools.partial(_warm_state, args.width, batch, device, args.channels_last)
        peak = peak_extra_rss(setup, _train_step)
        kind = "peak resident memory above the model, optimizer state and batch"
    return [
        record(
            f"memory/{device}/train_step/batch_{batch}",
            peak / 2**20,
            "MiB",
            conditions=f"SimCLR ResNet-18 w{args.width}, {kind}",
        )
    ]


def _warm_state(width, batch, device, channels_last):
    state = _step_state(width, batch, device, channels_last)
    _train_step(state)  # gradients and momentum buffers exist: the steady state
    return state


class _StepClock:
    """Marks on the device's own clock: CUDA events (recorded in the stream, so the host never
    waits for them) or, on a CPU, the wall clock."""

    def __init__(self, device: str) -> None:
        import torch

        self.cuda = device == "cuda"
        self.torch = torch
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            self.marks.append(self.torch.cuda.Event(enable_timing=True))
            self.marks[-1].record()
        else:
            self.marks.append(time.perf_counter())

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def intervals_ms(self) -> list[float]:
        """Milliseconds between consecutive marks (after a sync)."""
        self.sync()
        if self.cuda:
            return [a.elapsed_time(b) for a, b in itertools.pairwise(self.marks)]
        return [1e3 * (b - a) for a, b in itertools.pairwise(self.marks)]


def gpu_epoch(args, device: str = "cuda") -> list[dict]:
    """Seconds of one SimCLR epoch on CIFAR-10 (50,000 images) with the fast path: the
    second of two epochs (the first pays compilation, cuDNN autotuning, the data copy), and
    its steps' times on the device's clock (first, median, max)."""
    import lightning.pytorch as pl

    from datamodules import CIFAR10DataModule

    times: list[float] = []
    steps_ms: list[list[float]] = []

    class EpochTimer(pl.Callback):
        # A mark at every batch start times the steps without making the host wait: the
        # epoch runs as it would without the timer.
        def on_train_epoch_start(self, trainer, pl_module):
            self.clock = _StepClock(device)
            self.clock.sync()
            self.t0 = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.clock.mark()

        def on_train_epoch_end(self, trainer, pl_module):
            self.clock.mark()
            self.clock.sync()
            times.append(time.perf_counter() - self.t0)
            steps_ms.append(self.clock.intervals_ms())

    pl.seed_everything(0, verbose=False)
    model = make_model(args)
    options = dict(batch_size=args.batch_size, num_workers=0, augment_on="device",
                   data_on_device=True)  # fmt: skip
    if args.synthetic:
        dm = SyntheticCIFAR(n=args.synthetic, **options)
    else:
        dm = CIFAR10DataModule(args.data_dir, download=False, cache_dir=args.cache_dir, **options)
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=args.precision,
        max_epochs=2, limit_val_batches=0, logger=False, callbacks=[EpochTimer()],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    n = trainer.num_training_batches * args.batch_size
    steps = sorted(steps_ms[-1])
    print(f"epoch {times[-1]:.3f} s; steps (ms, device clock): first {steps_ms[-1][0]:.1f}, "
          f"median {statistics.median(steps):.1f}, max {steps[-1]:.1f}, "
          f"sum {sum(steps) / 1e3:.3f} s", file=sys.stderr)  # fmt: skip
    where = gpu_name() if device == "cuda" else "the CPU"
    return [
        record(
            f"epoch/{device}/simclr_resnet18_w{args.width}_batch{args.batch_size}{args.tag}",
            times[-1],
            "s",
            conditions=(
                f"one epoch ({n} images) of Trainer.fit, {where}, {args.precision}, "
                f"channels_last={args.channels_last}, compile={args.compile}, "
                f"NaN guard {'on' if args.check_finite else 'off'}, data on the device, "
                "batched augmentation, no k-NN; the second of two epochs"
            ),
            # Batch start to batch start on the device's clock (the last: to the epoch's end).
            step_ms_first=round(steps_ms[-1][0], 2),
            step_ms_median=round(statistics.median(steps), 2),
            step_ms_max=round(steps[-1], 2),
        )
    ]


def bench(args) -> list[dict]:
    import torch

    torch.set_float32_matmul_precision("high")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    if args.device:
        devices = [args.device]
    records = []
    for device in devices:
        if device == "cuda":
            # The GPU rows: the fast path of configs/overrides/fast_gpu.yaml.
            gpu = argparse.Namespace(**vars(args))
            gpu.augment_on, gpu.data_on_device = "device", True
            gpu.precision = args.gpu_precision
            gpu.batch_size = args.gpu_batch_size or args.batch_size
            gpu.width = args.gpu_width or args.width
            gpu.num_workers = 0
            run_args = gpu
        else:
            run_args = args
        if args.sides:
            records += compare(run_args, device)
        if args.scaling_batches:
            records += scaling(run_args, device)
        if args.peak_memory:
            records += peak_memory(run_args, device)
        # On a CPU only in quick mode (a tiny synthetic epoch: proves the path runs).
        if args.gpu_epoch and (device == "cuda" or args.quick):
            records += gpu_epoch(run_args, device)
    return records


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--cache-dir", default=None, help="decoded-image cache (speeds up re-runs)")
    p.add_argument("--synthetic", type=int, default=0, help="N random images instead of CIFAR-10")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument(
        "--augment-on",
        choices=["loader", "loader_batched", "device"],
        default="loader_batched",
        help="fit and plain sides (lightly: per image)",
    )
    p.add_argument("--data-on-device", action="store_true")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    p.add_argument("--no-check-finite", dest="check_finite", action="store_false",
                   help="the fit side without the NaN guard (its cost; name it with --tag)")  # fmt: skip
    p.add_argument("--sides", nargs="*", default=["fit", "plain", "lightly"],
                   help="fit, plain, lightly; SIDE:loader or SIDE:device overrides "
                   "--augment-on for that side (lightly always uses the per-image loader)")  # fmt: skip
    p.add_argument("--interleave", choices=["step", "run"], default="step",
                   help="step: one step of each side in turn inside one fit (robust to "
                   "load drift); run: whole runs in turn")  # fmt: skip
    p.add_argument("--monitor-every", type=int, default=50, help="per-step monitors' period")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per run")
    p.add_argument("--steps", type=int, default=20, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=3, help="rounds (median reported)")
    p.add_argument("--scaling-batches", type=int, nargs="*", default=[])
    p.add_argument("--peak-memory", action="store_true")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="only this device")
    p.add_argument("--cpu-only", action="store_true")
    p.add_argument("--gpu-precision", default="bf16-mixed")
    p.add_argument("--gpu-batch-size", type=int, default=512)
    p.add_argument("--gpu-width", type=int, default=64)
    p.add_argument("--gpu-epoch", action="store_true",
                   help="time one CIFAR-10 epoch of the fast path (CUDA; on a CPU only "
                   "with --quick, a tiny synthetic one)")  # fmt: skip
    p.add_argument(
        "--tag", default="", help="appended to the fit side's and the epoch's record names"
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the script runs")
    p.add_argument("--out", help="write the JSON records here (default: stdout)")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = parser().parse_args(argv)
    if args.quick:
        args.synthetic, args.batch_size, args.width, args.num_workers = 64, 16, 2, 0
        args.warmup, args.steps, args.repeats, args.monitor_every = 1, 2, 1, 1
        args.scaling_batches = args.scaling_batches and [8, 16]
        args.gpu_batch_size, args.gpu_width = 16, 2
    records = bench(args)
    return emit(records, args.out)


if __name__ == "__main__":
    main()

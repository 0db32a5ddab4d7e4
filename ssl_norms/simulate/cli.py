"""``ssl-norms simulate aparametric|latent-classes --out DIR``: paper Figure 2.

* ``aparametric``: Fig. 2a (Appendix B.1) -> ``fig2a_aparametric.csv`` / ``.png``.
* ``latent-classes``: Fig. 2b and 2c (Appendix B.2) -> ``fig2b_density.*`` and
  ``fig2c_imbalance.*``.

Light on purpose: numpy, torch and matplotlib only, never Lightning.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

PROG = "ssl-norms simulate"


def _int_at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``low`` (argparse turns the ValueError into a usage error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _float_in(low: float, high: float = math.inf, low_open: bool = True) -> Callable[[str], float]:
    """argparse type: a finite float in (low, high) (``[low, high)`` when not ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = value > low if low_open else value >= low
        if not (math.isfinite(value) and above and value < high):
            lo = "(" if low_open else "["
            hi = "inf)" if math.isinf(high) else f"{high:g})"
            raise argparse.ArgumentTypeError(f"must lie in {lo}{low:g}, {hi}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


_POSITIVE = _float_in(0.0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The simulations of the paper's Section 4 / Appendix B (Figure 2).",
    )
    sub = parser.add_subparsers(
        dest="experiment", required=True, metavar="{aparametric,latent-classes}"
    )

    ap = sub.add_parser(
        "aparametric",
        help="Fig. 2a: steps of cosine-similarity descent vs embedding norm and angle (App. B.1)",
        description="Fig. 2a (App. B.1): a norm sweep, an angle sweep and a norm x alpha grid.",
    )
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument(
        "--seeds",
        type=_int_at_least(0),
        nargs="+",
        default=[0, 1, 2],
        help="data seeds, averaged (default: 0 1 2)",
    )
    ap.add_argument(
        "--n-pairs", type=_int_at_least(1), default=500, help="pairs per data set (paper: 500)"
    )
    ap.add_argument(
        "--dim", type=_int_at_least(2), default=20, help="ambient dimension (paper: 20)"
    )
    ap.add_argument(
        "--lr", type=_POSITIVE, default=10.0, help="learning rate on -mean cos (paper: 10)"
    )
    ap.add_argument(
        "--threshold",
        type=_float_in(-1.0, 1.0),
        default=0.999,
        help="converged when mean cos exceeds it (paper: 0.999)",
    )
    ap.add_argument(
        "--max-steps", type=_int_at_least(1), default=200_000, help="give up after this many steps"
    )
    ap.add_argument("--quick", action="store_true", help="a small grid, for smoke tests")

    lc = sub.add_parser(
        "latent-classes",
        help="Fig. 2b/2c: norms of a supervised-InfoNCE MLP on latent classes (App. B.2)",
        description="Fig. 2b (norm vs density, balanced classes) and Fig. 2c (norm per class "
        "over training, class probabilities ~1/2, 1/4, 1/8, 1/16). Defaults and their reasons: "
        "ssl_norms/simulate/parametric.py.",
    )
    lc.add_argument("--out", type=Path, required=True, help="output folder")
    lc.add_argument(
        "--figure", choices=["2b", "2c", "both"], default="both", help="which figure(s) to run"
    )
    lc.add_argument(
        "--seed", type=_int_at_least(0), default=0, help="seed of the Fig. 2b run (default 0)"
    )
    lc.add_argument(
        "--seeds",
        type=_int_at_least(0),
        nargs="+",
        default=[0, 1, 2, 3, 4],
        help="seeds of Fig. 2c (default: 0-4)",
    )
    lc.add_argument(
        "--epochs", type=_int_at_least(1), default=None, help="training epochs (default 30)"
    )
    lc.add_argument("--lr", type=_POSITIVE, default=None, help="SGD learning rate (default 2.0)")
    lc.add_argument(
        "--temperature", type=_POSITIVE, default=None, help="InfoNCE temperature (default 1)"
    )
    lc.add_argument(
        "--noise-std",
        type=_float_in(0.0, low_open=False),
        default=None,
        help="latent noise std (default: 1.0 for 2b, 0.1 for 2c; the notebook's 2c used 1.0)",
    )
    lc.add_argument(
        "--hidden-dim", type=_int_at_least(1), default=None, help="MLP hidden width (default 64)"
    )
    lc.add_argument(
        "--imbalance-ratio",
        type=_float_in(1.0, low_open=False),
        default=2.0,
        help="p_i ~ ratio^-i in Fig. 2c (default 2)",
    )
    lc.add_argument(
        "--no-rotate",
        action="store_true",
        help="Fig. 2c: one run per seed instead of one per assignment of probabilities to centres",
    )
    lc.add_argument(
        "--threads",
        type=_int_at_least(1),
        default=1,
        help="torch CPU threads (a tiny MLP: 1 is fastest)",
    )
    lc.add_argument(
        "--quick", action="store_true", help="fewer samples and epochs, for smoke tests"
    )
    return parser


def _aparametric(args: argparse.Namespace) -> list[Path]:
    from ssl_norms.simulate import aparametric as ap

    kwargs = {}
    if args.quick:
        kwargs = dict(
            norms=(0.5, 1.0, 2.0, 4.0),
            alphas=(-0.9, -0.5, 0.0, 0.5, 0.9),
            grid_norms=(1.0, 2.0),
            grid_alphas=(-0.5, 0.0, 0.5),
        )
    rows = ap.aparametric_sweep(
        seeds=args.seeds,
        n_pairs=args.n_pairs,
        dim=args.dim,
        lr=args.lr,
        threshold=args.threshold,
        max_steps=args.max_steps,
        **kwargs,
    )
    # A sweep without one converged setting has nothing to draw (its panel is log-scaled).
    stuck = sorted({r.sweep for r in rows} - {r.sweep for r in rows if r.steps >= 0})
    if stuck:
        raise ValueError(
            f"no setting of the {' and '.join(stuck)} sweep(s) converged within --max-steps "
            f"{args.max_steps}: raise --max-steps (nothing was written)"
        )
    csv_path = ap.write_aparametric_csv(rows, args.out / "fig2a_aparametric.csv")
    png_path = ap.plot_aparametric(rows, args.out / "fig2a_aparametric.png")
    norm_rows = {r.norm: r.steps for r in rows if r.sweep == "norm" and r.seed == args.seeds[0]}
    if 1.0 in norm_rows:
        summary = ", ".join(
            f"rho={n:g}: {s} ({s / norm_rows[1.0]:.2f} x steps(1))" for n, s in norm_rows.items()
        )
        print(f"Fig. 2a norm sweep (seed {args.seeds[0]}): {summary}")
    unconverged = sum(r.steps < 0 for r in rows)
    if unconverged:
        print(
            f"warning: {unconverged} settings did not converge within --max-steps {args.max_steps}"
        )
    return [csv_path, png_path]


def _latent_classes(args: argparse.Namespace) -> list[Path]:
    import torch

    from ssl_norms.simulate import parametric as pm

    torch.set_num_threads(max(1, args.threads))
    given = {
        "epochs": args.epochs,
        "lr": args.lr,
        "temperature": args.temperature,
        "noise_std": args.noise_std,
        "hidden_dim": args.hidden_dim,
    }
    overrides = {k: v for k, v in given.items() if v is not None}

    def configure(cfg: pm.LatentClassConfig) -> pm.LatentClassConfig:
        cfg = pm.quick_config(cfg) if args.quick else cfg
        return replace(cfg, **overrides)

    written = []
    if args.figure in ("2b", "both"):
        cfg = configure(pm.DENSITY_CONFIG)
        t0 = time.perf_counter()
        result = pm.density_experiment(cfg, seed=args.seed)
        written.append(pm.write_density_csv(result, args.out / "fig2b_density.csv"))
        written.append(pm.plot_density(result, args.out / "fig2b_density.png"))
        print(
            f"Fig. 2b ({time.perf_counter() - t0:.1f} s): Spearman(norm, {result.k}th-NN cosine distance) = "
            f"{result.spearman:.2f} (negative: dense regions have larger norms)"
        )
    if args.figure in ("2c", "both"):
        cfg = configure(pm.IMBALANCE_CONFIG)
        t0 = time.perf_counter()
        result = pm.imbalance_experiment(
            cfg, seeds=args.seeds, imbalance_ratio=args.imbalance_ratio, rotate=not args.no_rotate
        )
        written.append(pm.write_imbalance_csv(result, args.out / "fig2c_imbalance.csv"))
        written.append(pm.plot_imbalance(result, args.out / "fig2c_imbalance.png"))
        finals = ", ".join(
            f"p={p:.3f}: {n:.2f}" for p, n in zip(result.probs, result.final_mean, strict=True)
        )
        print(
            f"Fig. 2c ({time.perf_counter() - t0:.1f} s, {len(result.runs)} runs): final mean norms {finals}"
        )
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ssl-norms simulate``; returns the exit status."""
    args = _parser().parse_args(argv)  # bad values: a usage error (exit 2) before any work
    created = not args.out.exists()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        if args.experiment == "aparametric":
            written = _aparametric(args)
        else:
            written = _latent_classes(args)
    except (ValueError, OSError) as error:
        # Settings the library refuses, an --out that cannot be written: the message names
        # the problem; a traceback would hide it.
        reason = f"{error.strerror}: {error.filename}" if isinstance(error, OSError) else error
        print(f"{PROG}: error: {reason}", file=sys.stderr)
        if created and args.out.is_dir() and not any(args.out.iterdir()):
            args.out.rmdir()  # leave nothing behind
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

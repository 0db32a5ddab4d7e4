"""The aparametric simulation of paper Sec. 4.1 / Appendix B.1 (Figure 2a).

Protocol (Appendix B.1). Two data sets ``X1`` and ``X2`` of ``n_pairs`` points each are
drawn from a standard normal in R^dim and normalised to the unit sphere; pair i is
``(X1[i], X2[i])``. ``X1`` is static; ``X2`` is modified:

* angle: ``x2' = x2 (1 - |alpha|) + x1 alpha`` with ``alpha`` in [-1, 1] (alpha = 0 keeps
  the random, nearly orthogonal pair; alpha = 1 gives ``x1``, alpha = -1 gives ``-x1``);
* norm: ``X2`` is scaled to the desired norm. We re-normalise ``x2'`` before scaling (the
  interpolation leaves it off the sphere) so that ``norm`` and ``alpha`` are independent
  knobs; the authors' notebook does the same.

Then gradient descent with learning rate ``lr`` (paper: 10) on the embeddings ``X2``
themselves minimises ``-mean_i cos(x1_i, x2_i)`` until the mean cosine similarity
exceeds ``threshold`` (paper: 0.999); the number of steps is Figure 2a's y axis.

**Mean, not sum.** The loss is the MEAN over pairs (Appendix B.1 judges convergence by
the average cosine similarity; the authors' notebook uses ``torch.mean``). So each pair
moves with learning rate ``lr / n_pairs`` = 0.02: by Proposition 3.1 one step turns x2 by
about ``(lr / n_pairs) sin(phi) / ||x2||^2`` radians, the steps are small, and the count
follows ``||x2||^2`` (Theorem 3.4) at every norm: about 190 steps at norm 1 and 19,000 at
norm 10 (the notebook, which moves both points, printed 96 and 9,662). Under the sum
reading a pair would move by ``10 sin(phi) / ||x2||`` per step: the first step throws x2
far beyond its norm or overshoots x1, and the counts are 58, 16, 7, 12 and 41 steps at
norms 0.5, 1, 2, 5 and 10: no rho^2 law and not the paper's figure.

**Exact planar reduction (speed).** The gradient of ``cos(x1, x2)`` w.r.t. x2,
``(x1_hat - cos(phi) x2_hat) / ||x2||`` (Prop. 3.1), lies in span(x1, x2), and x1 never
moves: each pair's whole trajectory stays in that plane. We therefore sample the pairs in
R^dim exactly as B.1 says, then write ``x2 = a x1_hat + b e`` (e the unit vector of
x2's component orthogonal to x1) and iterate the two coordinates ``(a, b)``: with
``r^2 = a^2 + b^2`` and ``eta = lr / n_pairs`` one step is ``a += eta b^2 / r^3`` and
``b -= eta a b / r^3``, the same arithmetic as the d-dimensional update, 10x cheaper.
``descend_vectors`` is the plain d-dimensional loop, kept as a cross-check.

**The authors' notebook differs from B.1** (their counts are not ours): it moves both
X1 and X2 (twice the speed: about 96 rho^2 steps), scales both in the norm sweep, uses the
opposite sign of alpha (alpha = 1 gives -x1), and its first step in the norm sweep descends
``-mean(x1 . x2) / rho^2`` instead of the cosine. We follow B.1's text.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "AparametricRow",
    "aparametric_sweep",
    "descend_planar",
    "descend_vectors",
    "plot_aparametric",
    "sample_pairs",
    "steps_to_converge",
    "write_aparametric_csv",
]

#: Paper's norm axis (the notebook: 0.25..0.75 then 1..10) and angle axis (alpha = k / 25).
DEFAULT_NORMS: tuple[float, ...] = (0.25, 0.5, 0.75, *map(float, range(1, 11)))
DEFAULT_ALPHAS: tuple[float, ...] = tuple(k / 25 for k in range(-24, 25))
#: Coarser grid for the norm x angle heat map.
DEFAULT_GRID_NORMS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
DEFAULT_GRID_ALPHAS: tuple[float, ...] = (
    -0.96,
    -0.9,
    -0.75,
    -0.5,
    -0.25,
    0.0,
    0.25,
    0.5,
    0.75,
    0.9,
)
DEFAULT_MAX_STEPS = 200_000


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _check(norm: float, alpha: float, n_pairs: int, dim: int, lr: float, threshold: float) -> None:
    if not (math.isfinite(norm) and norm > 0):
        raise ValueError(f"norm must be a positive finite number, got {norm}")
    if not -1.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [-1, 1] (Appendix B.1), got {alpha}")
    if n_pairs < 1 or dim < 2:
        raise ValueError(f"need n_pairs >= 1 and dim >= 2, got n_pairs={n_pairs}, dim={dim}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if not -1.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (-1, 1), got {threshold}")


def sample_pairs(
    norm: float = 1.0, alpha: float = 0.0, *, n_pairs: int = 500, dim: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The two data sets of Appendix B.1, float64 ``[n_pairs, dim]`` each.

    ``x1`` is on the unit sphere (static); ``x2`` is the angle-controlled positive
    ``x2 (1 - |alpha|) + x1 alpha``, re-normalised, then scaled to ``norm``. The same seed
    gives the same random directions for every ``norm`` and ``alpha``, so a norm sweep
    scales the very same embeddings (the rho^2 test relies on it).
    """
    _check(norm, alpha, n_pairs, dim, 1.0, 0.0)
    rng = np.random.default_rng(seed)
    x1 = _unit(rng.standard_normal((n_pairs, dim)))
    x2 = _unit(rng.standard_normal((n_pairs, dim)))
    x2 = x2 * (1.0 - abs(alpha)) + x1 * alpha
    return x1, norm * _unit(x2)


def _planar(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (a, b >= 0) of x2 in the plane (x1_hat, x2's part orthogonal to x1)."""
    a = np.einsum("...d,...d->...", _unit(x1), x2)
    b = np.linalg.norm(x2 - a[..., None] * _unit(x1), axis=-1)
    return a, b


def descend_planar(
    a: np.ndarray, b: np.ndarray, eta: float | np.ndarray, threshold: float, max_steps: int
) -> np.ndarray:
    """Gradient descent on ``-mean cos`` in planar coordinates, many settings at once.

    Args:
        a, b: ``[S, n]`` coordinates of the moving points (S settings of n pairs).
        eta: per-pair step ``lr / n`` (scalar or ``[S]``).
        threshold: a setting has converged once ``mean_i a_i / r_i`` exceeds it.
        max_steps: give up after this many steps.
    Returns:
        ``[S]`` int64 steps to convergence (0 when already converged), -1 where
        ``max_steps`` was not enough.
    """
    a = np.array(a, dtype=np.float64, ndmin=2)  # copies: the loop updates in place
    b = np.array(b, dtype=np.float64, ndmin=2)
    n_settings = a.shape[0]
    eta_col = np.broadcast_to(np.asarray(eta, dtype=np.float64), (n_settings,))[:, None].copy()
    steps = np.full(n_settings, -1, dtype=np.int64)
    index = np.arange(n_settings)  # which original setting each active row is
    r2 = a * a + b * b
    r = np.sqrt(r2)
    for step in range(max_steps + 1):
        done = (a / r).mean(axis=1) > threshold
        if done.any():
            steps[index[done]] = step
            keep = ~done
            # Drop converged settings so the cost is the sum, not the max, of step counts.
            a, b, r2, r, eta_col, index = (
                a[keep],
                b[keep],
                r2[keep],
                r[keep],
                eta_col[keep],
                index[keep],
            )
            if len(index) == 0:
                break
        if step == max_steps:
            break
        k = eta_col * b / (r2 * r)  # eta / r^3 times b: Prop. 3.1's 1/||x2|| and the projection
        a, b = a + k * b, b - k * a
        r2 = a * a + b * b
        r = np.sqrt(r2)
    return steps


def descend_vectors(
    x1: np.ndarray, x2: np.ndarray, lr: float, threshold: float, max_steps: int
) -> int:
    """The literal d-dimensional loop of Appendix B.1 (slow; a cross-check of the planar one).

    ``x2 <- x2 - lr * grad_x2( -mean_i cos(x1_i, x2_i) )`` with the gradient of Prop. 3.1
    written out; returns the step count, or -1 after ``max_steps``.
    """
    x1_hat = _unit(np.asarray(x1, dtype=np.float64))
    x2 = np.array(x2, dtype=np.float64)
    n = len(x2)
    for step in range(max_steps + 1):
        r = np.linalg.norm(x2, axis=1, keepdims=True)
        cos = np.sum(x1_hat * x2, axis=1, keepdims=True) / r
        if cos.mean() > threshold:
            return step
        if step == max_steps:
            break
        x2 = x2 + (lr / n) * (x1_hat - cos * x2 / r) / r
    return -1


def steps_to_converge(
    norm: float,
    alpha: float = 0.0,
    *,
    n_pairs: int = 500,
    dim: int = 20,
    lr: float = 10.0,
    threshold: float = 0.999,
    seed: int = 0,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> int:
    """Steps of gradient descent until the mean cosine similarity exceeds ``threshold``.

    Appendix B.1 (Figure 2a): ``n_pairs`` pairs on the unit sphere of R^dim, the second
    point of each pair angle-controlled by ``alpha`` and scaled to ``norm``, descent with
    ``lr`` on ``-mean cos`` (the mean over pairs: see the module docstring). Steps grow
    like ``norm^2`` (Theorem 3.4) and blow up as alpha -> -1 (angle -> pi).

    Raises:
        RuntimeError: not converged within ``max_steps`` (alpha = -1 never converges: the
            gradient of Prop. 3.1 vanishes at phi = pi).
    """
    _check(norm, alpha, n_pairs, dim, lr, threshold)
    a, b = _planar(*sample_pairs(norm, alpha, n_pairs=n_pairs, dim=dim, seed=seed))
    steps = int(descend_planar(a[None], b[None], lr / n_pairs, threshold, max_steps)[0])
    if steps < 0:
        raise RuntimeError(
            f"not converged within max_steps={max_steps} (norm={norm}, alpha={alpha}); "
            "raise max_steps (alpha = -1 never converges)"
        )
    return steps


@dataclass(frozen=True)
class AparametricRow:
    """One setting of Figure 2a; ``steps`` is -1 when ``max_steps`` ran out."""

    sweep: str
    norm: float
    alpha: float
    mean_angle: float
    seed: int
    steps: int


def aparametric_sweep(
    norms: Sequence[float] = DEFAULT_NORMS,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    grid_norms: Sequence[float] = DEFAULT_GRID_NORMS,
    grid_alphas: Sequence[float] = DEFAULT_GRID_ALPHAS,
    angle_sweep_norm: float = 1.0,
    seeds: Sequence[int] = (0,),
    n_pairs: int = 500,
    dim: int = 20,
    lr: float = 10.0,
    threshold: float = 0.999,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[AparametricRow]:
    """Figure 2a's table: a norm sweep (alpha = 0), an angle sweep (norm
    ``angle_sweep_norm``) and a norm x alpha grid, each setting once per seed.

    Every setting of every sweep runs in ONE batched descent (``descend_planar``).
    ``mean_angle`` is the mean initial angle between positives (radians), the x axis of
    the paper's angle panel.
    """
    settings = [("norm", float(n), 0.0) for n in norms]
    settings += [("angle", float(angle_sweep_norm), float(al)) for al in alphas]
    settings += [("grid", float(n), float(al)) for n in grid_norms for al in grid_alphas]
    rows_in, a_all, b_all = [], [], []
    for seed in seeds:
        for sweep, norm, alpha in settings:
            _check(norm, alpha, n_pairs, dim, lr, threshold)
            a, b = _planar(*sample_pairs(norm, alpha, n_pairs=n_pairs, dim=dim, seed=seed))
            mean_angle = float(np.arccos(np.clip(a / np.hypot(a, b), -1, 1)).mean())
            rows_in.append((sweep, norm, alpha, mean_angle, int(seed)))
            a_all.append(a)
            b_all.append(b)
    steps = descend_planar(np.stack(a_all), np.stack(b_all), lr / n_pairs, threshold, max_steps)
    return [AparametricRow(*row, steps=int(s)) for row, s in zip(rows_in, steps, strict=True)]


def write_aparametric_csv(rows: Sequence[AparametricRow], path: str | Path) -> Path:
    """One line per (sweep, norm, alpha, seed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(AparametricRow.__dataclass_fields__))
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    return path


def _mean_by(rows: Sequence[AparametricRow], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, mean steps, std steps over seeds (unconverged settings become NaN)."""
    xs = sorted({getattr(r, key) for r in rows})
    mean, std = [], []
    for x in xs:
        s = np.array(
            [r.steps if r.steps >= 0 else np.nan for r in rows if getattr(r, key) == x], dtype=float
        )
        mean.append(s.mean())
        std.append(s.std())
    return np.array(xs), np.array(mean), np.array(std)


def plot_aparametric(rows: Sequence[AparametricRow], path: str | Path) -> Path:
    """Figure 2a: steps vs norm, steps vs mean angle, and the norm x angle heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    norm_rows = [r for r in rows if r.sweep == "norm"]
    angle_rows = [r for r in rows if r.sweep == "angle"]
    grid_rows = [r for r in rows if r.sweep == "grid"]
    panels = [bool(norm_rows), bool(angle_rows), bool(grid_rows)]
    fig, axes = plt.subplots(1, sum(panels), figsize=(4.6 * sum(panels), 3.8), squeeze=False)
    axes = list(axes[0])

    if norm_rows:
        ax = axes.pop(0)
        x, m, s = _mean_by(norm_rows, "norm")
        ax.plot(x, m, "o-", lw=2, color="navy", label="simulation")
        ref = np.interp(1.0, x, m) if x.min() <= 1.0 <= x.max() else m[0] / x[0] ** 2
        ax.plot(x, ref * x**2, "--", color="gray", label=r"steps(1) $\cdot\,\rho^2$")
        ax.fill_between(x, m - s, m + s, color="navy", alpha=0.2)
        ax.set(xlabel=r"embedding norm $\rho$ ($\alpha$ = 0)", ylabel="steps until convergence")
        ax.set_title("norm sweep")
        ax.legend(frameon=False)
    if angle_rows:
        ax = axes.pop(0)
        by_alpha = sorted({r.alpha for r in angle_rows})
        ang = np.array(
            [np.mean([r.mean_angle for r in angle_rows if r.alpha == al]) for al in by_alpha]
        )
        _, m, s = _mean_by(angle_rows, "alpha")
        ax.plot(ang, m, "o-", lw=2, ms=3, color="navy")
        ax.fill_between(ang, m - s, m + s, color="navy", alpha=0.2)
        ax.set_xticks([0, np.pi / 2, np.pi], ["0", r"$\pi/2$", r"$\pi$"])
        ax.set(xlabel="mean angle between positives (rad)", ylabel="steps until convergence")
        ax.set_title(rf"angle sweep ($\rho$ = {angle_rows[0].norm:g})")
    if grid_rows:
        ax = axes.pop(0)
        g_norms = sorted({r.norm for r in grid_rows})
        g_alphas = sorted({r.alpha for r in grid_rows})
        table = np.full((len(g_norms), len(g_alphas)), np.nan)
        for i, n in enumerate(g_norms):
            for j, al in enumerate(g_alphas):
                s = [r.steps for r in grid_rows if r.norm == n and r.alpha == al and r.steps >= 0]
                table[i, j] = np.mean(s) if s else np.nan
        mesh = ax.imshow(table, origin="lower", aspect="auto", cmap="Blues", norm=LogNorm())
        ax.set_xticks(range(len(g_alphas)), [f"{al:g}" for al in g_alphas], rotation=60)
        ax.set_yticks(range(len(g_norms)), [f"{n:g}" for n in g_norms])
        ax.set(xlabel=r"$\alpha$ (-1: antipodal, 1: identical)", ylabel=r"norm $\rho$")
        ax.set_title("steps until convergence")
        fig.colorbar(mesh, ax=ax)
        finite = table[np.isfinite(table)]
        middle = np.sqrt(finite.min() * finite.max()) if finite.size else 0.0
        for (i, j), value in np.ndenumerate(table):
            label = (
                "-"
                if not np.isfinite(value)
                else f"{value / 1000:.1f}k"
                if value >= 1000
                else f"{value:.0f}"
            )
            color = "white" if np.isfinite(value) and value > middle else "black"
            ax.text(j, i, label, ha="center", va="center", fontsize=6, color=color)
    fig.suptitle("Fig. 2a: cosine-similarity descent slows with norm$^2$ (App. B.1)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

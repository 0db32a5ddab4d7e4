"""``make bench``: every benchmark, one JSON file of records, BENCHMARKS.md and a scaling figure.

Runs, in this process, one after another (each compares its sides back to back, in
alternation, after a warm-up, and reports medians):

- ``bench_fit.py``: our ``Trainer.fit`` vs a plain loop over the same module (one step of
  each in turn) and vs a plain loop on lightly's SimCLR blocks (whole runs in turn, each
  with its own data pipeline); step time against the batch size; peak memory of a step;
  on CUDA the fast path (``configs/overrides/fast_gpu.yaml``) and one CIFAR-10 epoch;
- ``bench_augment.py``: batched vs per-image two-view augmentation;
- ``bench_knn.py``: our k-NN pass vs bare FAISS, torch matmul + top-k and scikit-learn;
  its time against the bank size; its peak memory;
- ``bench_monitors.py``: the per-step monitors' overhead.

Writes ``<out-dir>/bench.json`` (a list of records ``{name, value, unit, baseline,
baseline_value, ratio, machine, date, commit, ...}``), the Markdown report (default
``BENCHMARKS.md``) and the scaling figure it shows. ``--quick`` runs every script at tiny
sizes (seconds; the numbers mean nothing) and writes the report into ``<out-dir>``: the
test suite runs it to prove the scripts work.

    make bench                  # .venv/bin/python benchmarks/run_all.py
    make bench QUICK=1          # .venv/bin/python benchmarks/run_all.py --quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine  # noqa: E402

#: The fields every record of bench.json has.
FIELDS = (
    "name", "value", "unit", "baseline", "baseline_value", "ratio", "machine", "date", "commit",
)  # fmt: skip

#: Goals of the comparisons: (name prefix, description, test on the record).
GOALS = [
    ("fit/cpu/fit_vs_lightly", "ratio >= 1.1 (floor 1.0)", lambda r: r["ratio"] >= 1.1),
    ("fit/cpu/fit_vs_plain", "ratio >= 0.97", lambda r: r["ratio"] >= 0.97),
    ("fit/cuda/fit_vs_lightly", "ratio >= 1.1 (floor 1.0)", lambda r: r["ratio"] >= 1.1),
    ("fit/cuda/fit_vs_plain", "ratio >= 0.97", lambda r: r["ratio"] >= 0.97),
    ("augment/two_view/batched_cpu", "ratio >= 3", lambda r: r["ratio"] >= 3),
    ("augment/two_view/batched_loader", "ratio >= 3", lambda r: r["ratio"] >= 3),
    ("knn/cpu/ours_vs_bare_faiss", "ratio <= 1.2", lambda r: r["ratio"] <= 1.2),
    (
        "knn/cuda/ours_vs_bare_faiss",
        "ratio <= 1.2, value <= 2 s",
        lambda r: r["ratio"] <= 1.2 and r["value"] <= 2,
    ),  # fmt: skip
    ("monitors/", "value < 2 %", lambda r: r["value"] < 2),
    (
        "memory/cpu/knn_pass",
        "one chunk (+ copies), < the full matrix",
        lambda r: r["value"] < r["full_matrix_mib"],
    ),
    (
        "memory/cuda/knn_pass",
        "one chunk (+ copies), < the full matrix",
        lambda r: r["value"] < r["full_matrix_mib"],
    ),
    # Without faiss-gpu the CUDA k-NN is the torch backend's: the time goal still applies.
    ("knn/cuda/ours_vs_torch_matmul_topk", "value <= 2 s", lambda r: r["value"] <= 2),
    ("epoch/cuda/", "value <= 10 s", lambda r: r["value"] <= 10),
]


def commit() -> str:
    """The checked-out commit (short hash, ``-dirty`` with uncommitted changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def run_benchmarks(out: Path, quick: bool, gpu_only: bool = False) -> list[dict]:
    import bench_augment
    import bench_fit
    import bench_knn
    import bench_monitors
    import torch

    threads = torch.get_num_threads()  # a script may change it (bench_augment's --threads)
    q = ["--quick"] if quick else []
    records: list[dict] = []
    gpu = ["--device", "cuda"] if gpu_only else []
    # Our fit vs a plain loop over the same module, on the same loader: one step of each in
    # turn (the framework's cost alone); the step time against the batch size; peak memory;
    # on CUDA one CIFAR-10 epoch of the fast path.
    records += bench_fit.main(
        q + gpu + ["--sides", "fit", "plain", "--interleave", "step"]
        + ["--scaling-batches", "32", "64", "128", "256", "--peak-memory", "--gpu-epoch"]
        + ["--out", str(out / "bench_fit_plain.json")]
    )  # fmt: skip
    # Our fit vs a plain loop on lightly's blocks with per-image views: whole runs in turn,
    # so each side pays for its own data pipeline.
    records += bench_fit.main(
        q + gpu + ["--sides", "fit", "lightly", "--interleave", "run"]
        + ["--out", str(out / "bench_fit_lightly.json")]
    )  # fmt: skip
    if not gpu_only:
        records += bench_augment.main(
            q + ["--out", str(out / "bench_augment.json")]
        )  # fmt: skip
        torch.set_num_threads(threads)
    records += bench_knn.main(
        q + ["--peak-memory", "--scaling-banks", "5000", "10000", "20000", "50000"]
        + (["--skip-sklearn"] if gpu_only else [])
        + ["--out", str(out / "bench_knn.json")]
    )  # fmt: skip
    if not gpu_only:
        records += bench_monitors.main(
            q + (["--every", "1", "50"] if not quick else [])
            + ["--out", str(out / "bench_monitors.json")]
        )  # fmt: skip
    return records


def stamp(records: list[dict], host: str) -> list[dict]:
    """Add machine, date and commit to every record."""
    info = {
        "machine": host,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit(),
    }
    return [{**r, **info} for r in records]


def _goal(r: dict) -> str:
    for prefix, text, ok in GOALS:
        if r["name"].startswith(prefix):
            try:
                return f"{text}: {'met' if ok(r) else 'NOT met'}"
            except (TypeError, KeyError):  # a missing value
                return text
    return ""


def _spread(record: dict) -> str:
    """The range of a paired comparison's per-round ratios, when it has several."""
    ratios = record.get("ratios") or []
    if len(ratios) < 2:
        return ""
    return f" (rounds {_fmt(min(ratios))}-{_fmt(max(ratios))})"


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.1f}"
    return str(x)


def figure(records: list[dict], path: Path) -> bool:
    """Step time vs batch size and k-NN time vs bank size; False when no scaling records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps = [r for r in records if r["name"].startswith("scaling/") and "step_ms" in r["name"]]
    knn = [r for r in records if r["name"].startswith("scaling/") and "knn_s" in r["name"]]
    if not steps and not knn:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    for ax, rows, key, ylabel, xlabel in (
        (axes[0], steps, "batch_size", "ms per training step", "batch size (pairs of views)"),
        (axes[1], knn, "bank_size", "s per k-NN pass", "bank size (training images)"),
    ):
        for device in sorted({r["name"].split("/")[1] for r in rows}):
            pts = sorted((r[key], r["value"]) for r in rows if r["name"].split("/")[1] == device)
            ax.plot(*zip(*pts, strict=True), marker="o", label=device)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        if rows:
            ax.legend()
    axes[0].set_title("SimCLR step (ResNet-18)", fontsize=9)
    axes[1].set_title("k-NN pass (k=200)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def markdown(records: list[dict], figure_rel: str | None, quick: bool, note: str) -> str:
    first = records[0] if records else {"machine": machine(), "date": "", "commit": ""}
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`benchmarks/run_all.py`); the records are in "
        "`results/bench.json`. Every comparison runs its sides back to back in one "
        "process, in alternation (A B A B ...), after a warm-up, and reports medians; "
        "ratios are medians of the per-round ratios.",
        "",
    ]
    if quick:
        lines += ["**Quick mode: tiny sizes that prove the scripts run; the numbers mean nothing.**", ""]  # fmt: skip
    if note:
        lines += [note, ""]
    lines += [
        f"Machine: {first['machine']}. Date: {first['date']}. Commit: {first['commit']}.",
        "",
        "## How to rerun",
        "",
        "```",
        "pip install -e '.[bench]'        # lightly, for the peer loop",
        "make bench                       # all of it, about 15-30 minutes on 2 CPU cores",
        "make bench QUICK=1               # seconds: proves the scripts run",
        ".venv/bin/python benchmarks/bench_fit.py --help    # or one script at a time",
        "bash benchmarks/gpu_checks.sh    # on a GPU: the fast-path epoch, k-NN, CUDA tests",
        "```",
        "",
    ]
    groups = [
        ("Training throughput (images/s; ratio = ours / baseline, > 1 is faster)", "fit/"),
        ("Fast-path epoch", "epoch/"),
        ("Batched vs per-image augmentation (two-view images/s)", "augment/"),
        ("k-NN pass (s; ratio = time ours / time baseline, < 1 is faster)", "knn/"),
        ("Per-step monitors", "monitors/"),
        ("Peak memory", "memory/"),
        ("Scaling", "scaling/"),
    ]
    for title, prefix in groups:
        rows = [r for r in records if r["name"].startswith(prefix)]
        gpu = [r for r in rows if "/cuda/" in r["name"] or "_cuda/" in r["name"]]
        for heading, part in ((title, [r for r in rows if r not in gpu]),
                              (f"{title}, GPU", gpu)):  # fmt: skip
            if not part:
                continue
            lines += [f"## {heading}", ""]
            commits: dict[str, list[str]] = {}
            for r in part:
                seen = commits.setdefault(str(r.get("machine")), [])
                seen += [] if r.get("commit") in seen else [str(r.get("commit"))]
            if commits != {str(first.get("machine")): [str(first.get("commit"))]}:
                # Rows from another machine (a GPU's) or commit: say which, as the header does.
                lines += [f"Machine: {m}. Commit{'s' if len(c) > 1 else ''}: {', '.join(c)}."
                          for m, c in commits.items()]  # fmt: skip
                lines.append("")
            lines += [
                "| name | value | unit | baseline | baseline value | ratio | goal |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in part:
                lines.append(
                    f"| `{r['name']}` | {_fmt(r['value'])} | {r['unit']} | {r['baseline'] or ''} "
                    f"| {_fmt(r['baseline_value'])} | {_fmt(r['ratio'])}"
                    + (f" (CPU time: {_fmt(r['cpu_ratio'])})" if r.get("cpu_ratio") else "")
                    + _spread(r)
                    + f" | {_goal(r)} |"
                )
            conditions = [r.get("conditions") for r in part if r.get("conditions")]
            if len(set(conditions)) == 1:
                lines += ["", f"Conditions: {conditions[0]}."]
            elif conditions:
                lines += [""] + [f"- `{r['name']}`: {r['conditions']}" for r in part
                                 if r.get("conditions")]  # fmt: skip
            lines.append("")
    if figure_rel:
        lines += [
            "## How step time and k-NN time grow",
            "",
            f"![step time vs batch size, k-NN time vs bank size]({figure_rel})",
            "",
            "Left: one SimCLR training step of our module (synthetic views, no loader) "
            "against the batch size. Right: one k-NN pass (k = 200) against the bank size.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out-dir", default=str(REPO / "results"))
    p.add_argument("--markdown", default=None, help="default: BENCHMARKS.md (quick: in out-dir)")
    p.add_argument("--figure", default=None,
                   help="default: docs/benchmarks_scaling.png (quick: in out-dir)")  # fmt: skip
    p.add_argument("--note", default="", help="a line for the report (e.g. the conditions)")
    p.add_argument("--note-file", default=None, help="Markdown text for the report, verbatim")
    p.add_argument("--gpu-only", action="store_true", help="only the CUDA rows")
    p.add_argument("--records", nargs="+", default=None,
                   help="render the report from these JSON record files (one script's "
                   "--out each) instead of running the benchmarks; a record whose name "
                   "appears again in a later file is replaced by it")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the scripts run")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    md = Path(args.markdown or (out / "BENCHMARKS.md" if args.quick else REPO / "BENCHMARKS.md"))
    fig = Path(
        args.figure or (out / "scaling.png" if args.quick else REPO / "docs/benchmarks_scaling.png")
    )
    out.mkdir(parents=True, exist_ok=True)
    host = machine()  # before any script changes the thread count
    if args.records:
        records = [r for f in args.records for r in json.loads(Path(f).read_text())]
        records = [r if "commit" in r else stamp([r], host)[0] for r in records]
        # A name measured again (a later file: a rerun, a GPU machine's run) replaces the
        # older record in place, so merging new results into bench.json can be repeated.
        records = list({r["name"]: r for r in records}.values())
    else:
        records = stamp(run_benchmarks(out, args.quick, args.gpu_only), host)
    (out / "bench.json").write_text(json.dumps(records, indent=2) + "\n")
    fig_rel = os.path.relpath(fig, md.parent) if figure(records, fig) else None
    md.parent.mkdir(parents=True, exist_ok=True)
    note = args.note + ("\n\n" + Path(args.note_file).read_text() if args.note_file else "")
    md.write_text(markdown(records, fig_rel, args.quick, note.strip()) + "\n")
    print(f"wrote {out / 'bench.json'} ({len(records)} records), {md}, {fig}", file=sys.stderr)
    return records


if __name__ == "__main__":
    main()

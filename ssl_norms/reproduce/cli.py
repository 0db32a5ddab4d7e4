"""``ssl-norms reproduce NAME [NAME ...] | all | report``: run the paper's results and report.

Each NAME is one result of the paper (``RUNNERS``). The runs they need are merged (a run
two results share is trained once), brought to the epochs the results read, resumed when
interrupted, skipped when finished, then every result is collected into
``OUT/<name>/`` and ``OUT/REPORT.md``. Arguments after ``--`` go to every ``ssl-norms fit``.
Exit status 0 when every result asked for is complete (a divergence counts as a result),
1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssl_norms.reproduce.base import Context, Runner, Section
from ssl_norms.reproduce.curves import Fig5, FigS4
from ssl_norms.reproduce.embedded import Fig3, Fig4, FigS6, TableS1
from ssl_norms.reproduce.embeddings import options_of
from ssl_norms.reproduce.profiles import PROFILES
from ssl_norms.reproduce.report import write_report
from ssl_norms.reproduce.runs import (
    FitOptions,
    Outcome,
    Plan,
    execute,
    merge_requests,
    record_skipped_for_data,
)
from ssl_norms.reproduce.tables import Table1, Table2, Table3, TableS2

__all__ = ["RUNNERS", "main", "build_context", "run_plans", "collect_all"]

RUNNERS: dict[str, Runner] = {
    r.name: r
    for r in (
        Table1(),
        Table2(),
        Table3(),
        TableS1(),
        TableS2(),
        Fig3(),
        Fig4(),
        Fig5(),
        FigS4(),
        FigS6(),
    )
}


def _embed_job(profile):
    """The embeddings command of a run's epoch and the options its cache is keyed by."""

    def build(plan: Plan, run_dir: Path, epoch: int) -> tuple[list[str], dict]:
        wanted = plan.embed[epoch]
        options = options_of(
            wanted["extra"],
            wanted["pairs"],
            wanted["extremes"],
            wanted["human_index"],
            profile.knn_k,
        )
        argv = [str(run_dir), "--epoch", str(epoch), "--k", str(options["k"])]
        for extra in options["extra"]:
            argv += ["--extra", extra]
        if options["pairs"]:
            argv += ["--pairs", str(options["pairs"])]
        if options["extremes"]:
            argv += ["--extremes", str(options["extremes"])]
        if options["human_index"]:
            argv.append("--human-index")
        return argv, options

    return build


def run_plans(
    ctx: Context,
    plans: dict[str, Plan],
    options: FitOptions,
    dry_run: bool = False,
    retry_failed: bool = False,
    in_process: bool = False,
) -> dict[str, Outcome]:
    """Execute the plans, grouped by data set: once a data set is found missing, its other
    runs are not attempted (each would only repeat the message); they are recorded as such."""
    outcomes: dict[str, Outcome] = {}
    missing: dict[str, tuple[str, object]] = {}
    order = sorted(plans.values(), key=lambda p: (p.spec.dataset, p.spec.slug))
    embed = _embed_job(ctx.profile)
    for i, plan in enumerate(order, 1):
        run_dir = ctx.run_dir(plan.spec)
        tag = f"[{i}/{len(order)}] {plan.spec.slug}"
        if plan.spec.dataset in missing and not dry_run:
            first, failure = missing[plan.spec.dataset]
            print(
                f"{tag}: skipped, the data of {plan.spec.dataset} is missing (see {first})",
                flush=True,
            )
            record_skipped_for_data(run_dir, failure)  # type: ignore[arg-type]
            outcomes[plan.spec.slug] = Outcome("data", failure)  # type: ignore[arg-type]
            continue
        outcome = execute(plan, run_dir, options, tag, dry_run, retry_failed, in_process, embed)
        outcomes[plan.spec.slug] = outcome
        if outcome.status == "data" and outcome.failure is not None:
            missing[plan.spec.dataset] = (plan.spec.slug, outcome.failure)
            print(
                f"ssl-norms reproduce: the data of {plan.spec.dataset} is missing; its other runs "
                f'are skipped and read "data not available". {outcome.failure.first_line()}',
                file=sys.stderr,
                flush=True,
            )
        elif outcome.status == "diverged" and outcome.failure is not None:
            print(
                f"ssl-norms reproduce: {plan.spec.slug} {outcome.failure.short()}", file=sys.stderr
            )
        elif outcome.status == "failed":
            resumable = (run_dir / "checkpoints" / "last.ckpt").is_file()
            print(
                f"ssl-norms reproduce: {plan.spec.slug} failed; rerun to "
                + ("resume it from its last checkpoint" if resumable else "start it again"),
                file=sys.stderr,
                flush=True,
            )
    return outcomes


def collect_all(ctx: Context, runners: list[Runner]) -> list[Section]:
    return [runner.collect(ctx) for runner in runners]


def build_context(args: argparse.Namespace) -> Context:
    profile = PROFILES[args.profile]
    out = (
        Path(args.out)
        if args.out
        else Path("results") / ("smoke" if profile.name == "smoke" else "")
    )
    return Context(
        profile=profile,
        runs_dir=Path(args.runs) / profile.name,
        out_dir=out,
        configs_dir=Path(args.configs),
        data_dir=args.data_dir,
        human_labels=args.human_labels,
        datasets=tuple(args.datasets) if args.datasets else None,
    )


def _parser() -> argparse.ArgumentParser:
    names = ", ".join(RUNNERS)
    parser = argparse.ArgumentParser(
        prog="ssl-norms reproduce",
        description="Run the paper's results (one ssl-norms fit per run, shared between results "
        "where the protocol allows), then write OUT/<name>/ and OUT/REPORT.md beside the paper's "
        f"values. Results: {names}; `all` runs every one, `report` only rewrites the report. "
        "Arguments after `--` go to every fit, e.g. `-- --trainer.precision 16-mixed`.",
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help=f"{names}, all or report")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="paper", help="run size (default: paper)"
    )
    parser.add_argument(
        "--datasets", nargs="+", help="cover these data sets (default: the profile's)"
    )
    parser.add_argument("--runs", default="runs", help="parent of RUNS/<profile>/ (default: runs)")
    parser.add_argument(
        "--out", default=None, help="results folder (default: results, smoke: results/smoke)"
    )
    parser.add_argument("--configs", default="configs", help="the configs folder")
    parser.add_argument(
        "--data-dir", default=None, help="data folder of every run (data.init_args.data_dir)"
    )
    parser.add_argument(
        "--human-labels", default=None, help="folder of CIFAR-10N/100N/10H files (Fig. 4)"
    )
    parser.add_argument("--devices", type=int, default=None, help="GPUs per node (trainer.devices)")
    parser.add_argument("--nodes", type=int, default=None, help="nodes (trainer.num_nodes)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--collect-only", action="store_true", help="only collect existing runs")
    parser.add_argument("--retry-failed", action="store_true", help="retry diverged runs")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # tests
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = _parser()
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.names))
    report_only = names == ["report"]
    if "all" in names or report_only:
        names = list(RUNNERS)
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        parser.error(f"unknown result(s) {unknown}; choose from {list(RUNNERS)}, all or report")
    ctx = build_context(args)
    if not (ctx.configs_dir / "base").is_dir():
        parser.error(
            f"no configs folder at {ctx.configs_dir.resolve()} (run from the repository root or "
            "pass --configs)"
        )
    if args.datasets:
        known = {d.stem for d in (ctx.configs_dir / "data").glob("*.yaml")}
        bad = sorted(set(args.datasets) - known)
        if bad:
            parser.error(f"unknown data set(s) {bad}; choose from {sorted(known)}")
    selected = [RUNNERS[n] for n in names]
    if not report_only and not args.collect_only:
        everything = [r for runner in RUNNERS.values() for r in runner.requests(ctx)]
        wanted = [r for runner in selected for r in runner.requests(ctx)]
        if not wanted:
            print(
                f"ssl-norms reproduce: nothing of {', '.join(names)} is in the {ctx.profile.name} "
                "profile; choose data sets with --datasets",
                flush=True,
            )
        plans = merge_requests(everything, wanted)
        options = FitOptions(
            configs_dir=ctx.configs_dir,
            profile_configs=lambda spec: ctx.profile.configs_for(
                spec.method, spec.dataset, spec.overrides
            ),
            data_dir=args.data_dir,
            devices=args.devices,
            nodes=args.nodes,
            extra=tuple(extra),
        )
        run_plans(ctx, plans, options, args.dry_run, args.retry_failed, args.in_process)
        if args.dry_run:
            return 0
    sections = collect_all(ctx, list(RUNNERS.values()))
    report = write_report(ctx, sections, repo=ctx.configs_dir.resolve().parent)
    asked = [s for s in sections if s.name in names]
    for s in asked:
        if not s.in_scope:
            state = f"not in the {ctx.profile.name} profile"
        elif s.complete:
            state = "complete"
        else:
            state = f"INCOMPLETE ({len(s.missing)} missing: {', '.join(s.missing[:3])}{' ...' if len(s.missing) > 3 else ''})"
        print(f"{s.name}: {state} -> {ctx.out_dir / s.name}", flush=True)
    print(f"wrote {report}", flush=True)
    return 0 if all(s.complete for s in asked) else 1


if __name__ == "__main__":
    raise SystemExit(main())

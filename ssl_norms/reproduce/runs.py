"""Training runs of the paper's runners: what a run is, how it is run, resumed and read.

A :class:`RunSpec` is one training configuration (method, data, interventions, schedule
length); its folder is ``RUNS/<profile>/<slug>``, so two runners asking for the same run
share it (Table 2's SimSiam CIFAR-100 runs are Table S2's batch-1024 cells; Figures 3, 4
and S6 embed Table 2's checkpoints). A :class:`RunRequest` says how far a runner needs
the run (``until``), where to stop on the way (``stops``: the evaluation loop runs at the
last epoch of every fit, so a stop gives a k-NN value there) and which stops keep a copy of
their checkpoint (``keep``, as ``checkpoints/epoch-<E>.ckpt``: Table S1 embeds epochs 1 and
16 of a run that goes on to 500).

Every run is an ``ssl-norms fit`` subprocess. Its state lives in its folder:

- ``progress.json``: the epochs completed by the last fit that exited cleanly, and the
  commits of the code that trained the run (named in the report);
- ``failure.json``: why the last attempt stopped (``data``: its data set is missing;
  ``diverged``: the NaN guard stopped it, at the step it names; ``failed``: anything else);
- ``checkpoints/last.ckpt``: an interrupted fit resumes from it (``ssl-norms fit -c
  RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt``); a folder left without one (a
  run killed in its first epoch) is moved aside to ``<slug>.incomplete-<N>``.

A finished run is skipped; a diverged run is not retried (the same seed diverges at the
same step) unless asked. Light on import: no Lightning, no torch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ssl_norms.cli import ERROR_FILE_ENV

__all__ = [
    "RunSpec",
    "RunRequest",
    "Plan",
    "FitOptions",
    "Failure",
    "merge_requests",
    "fresh_command",
    "resume_command",
    "set_aside_incomplete",
    "read_progress",
    "read_failure",
    "classify_error",
    "execute",
    "checkpoint_at",
]

PROGRESS_FILE = "progress.json"
FAILURE_FILE = "failure.json"


@dataclass(frozen=True)
class RunSpec:
    """One training configuration.

    Args:
        method: ``simclr``, ``simsiam`` or ``byol`` (``configs/base/<method>.yaml``).
        dataset: a data config name (``configs/data/<dataset>.yaml``).
        schedule_epochs: the learning-rate schedule's length (``model.init_args.schedule_epochs``).
        overrides: stems of ``configs/overrides/*.yaml`` (``cut``, ``gradscale``, ``wd_1e-8``).
        cut_constant: a cut constant without an override file (Table 1, Figure S4).
        accumulate: ``trainer.accumulate_grad_batches`` (Table S2's batch sizes); None keeps
            the method's (SimSiam and BYOL: 4, i.e. 1024 = 256 x 4).
    """

    method: str
    dataset: str
    schedule_epochs: int
    overrides: tuple[str, ...] = ()
    cut_constant: float | None = None
    accumulate: int | None = None

    @property
    def slug(self) -> str:
        parts = [self.method, self.dataset, *self.overrides]
        if self.cut_constant is not None:
            parts.append(f"c{self.cut_constant:g}")
        if self.accumulate is not None:
            parts.append(f"acc{self.accumulate}")
        parts.append(f"e{self.schedule_epochs}")
        return "-".join(parts)


@dataclass(frozen=True)
class RunRequest:
    """What one runner needs of a run: train to ``until``, stop at ``stops`` on the way,
    keep the checkpoints of ``keep``, and the embeddings of ``embed`` epochs
    (:mod:`ssl_norms.reproduce.embeddings`) with ``extra`` splits, ``pairs`` positive
    pairs and ``extremes`` images per class."""

    spec: RunSpec
    until: int
    stops: tuple[int, ...] = ()
    keep: tuple[int, ...] = ()
    embed: tuple[int, ...] = ()
    extra: tuple[str, ...] = ()
    pairs: int = 0
    extremes: int = 0
    human_index: bool = False


@dataclass
class Plan:
    """A run as every request of the profile wants it (merged)."""

    spec: RunSpec
    until: int
    stops: set[int] = field(default_factory=set)
    keep: set[int] = field(default_factory=set)
    embed: dict[int, dict] = field(default_factory=dict)  # epoch -> embeddings options

    def targets(self, done: int) -> list[int]:
        """The epochs the next fits stop at, from ``done`` epochs on."""
        if done >= self.until:
            return []
        return sorted({s for s in self.stops if done < s < self.until} | {self.until})


def merge_requests(
    requests: Iterable[RunRequest], selected: Iterable[RunRequest] | None = None
) -> dict[str, Plan]:
    """One :class:`Plan` per run folder of the ``selected`` requests (default: all).

    ``until`` and the epochs to embed come from ``selected`` (the runners asked for now);
    stops, kept checkpoints and the embeddings' contents from ``requests`` (every runner of
    the profile), so a run that one runner takes further still stops where another needs
    it, and one cache file serves every runner that reads that checkpoint.
    """
    requests = list(requests)
    selected = requests if selected is None else list(selected)
    plans: dict[str, Plan] = {}
    for req in selected:
        plan = plans.get(req.spec.slug)
        if plan is None:
            plan = plans[req.spec.slug] = Plan(req.spec, req.until)
        plan.until = max(plan.until, req.until)
        for epoch in req.embed:
            plan.embed.setdefault(
                epoch, {"extra": [], "pairs": 0, "extremes": 0, "human_index": False}
            )
    final: dict[str, int] = {}
    for req in requests:
        final[req.spec.slug] = max(final.get(req.spec.slug, 0), req.until)
    for req in requests:
        plan = plans.get(req.spec.slug)
        if plan is None:
            continue
        last = final[req.spec.slug]
        # Stop where a result is read (the evaluation loop runs at the end of every fit) and
        # keep a checkpoint where the run goes on past it (last.ckpt holds the final one).
        plan.stops.update(e for e in (*req.stops, *req.keep, *req.embed, req.until) if e < last)
        plan.keep.update(e for e in (*req.keep, *req.embed) if e < last)
        for epoch in req.embed:
            options = plan.embed.get(epoch)
            if options is None:
                continue
            options["extra"] += [e for e in req.extra if e not in options["extra"]]
            options["pairs"] = max(options["pairs"], req.pairs)
            options["extremes"] = max(options["extremes"], req.extremes)
            options["human_index"] = options["human_index"] or req.human_index
    return plans


@dataclass(frozen=True)
class FitOptions:
    """What every fit of an invocation gets: the profile's configs, ``--data-dir``,
    ``--devices``/``--nodes`` and the arguments after ``--``."""

    configs_dir: Path
    profile_configs: Callable[[RunSpec], list[str]]
    data_dir: str | None = None
    devices: int | None = None
    nodes: int | None = None
    extra: tuple[str, ...] = ()

    def common(self) -> list[str]:
        args: list[str] = []
        if self.data_dir:
            args += ["--data.init_args.data_dir", self.data_dir]
        if self.devices is not None:
            args += ["--trainer.devices", str(self.devices)]
        if self.nodes is not None:
            args += ["--trainer.num_nodes", str(self.nodes)]
        if (self.devices or 1) * (self.nodes or 1) > 1:
            args += ["--trainer.strategy", "ddp"]
        return [*args, *self.extra]


def fresh_command(spec: RunSpec, run_dir: Path, epochs: int, options: FitOptions) -> list[str]:
    """``ssl-norms fit`` arguments of a new run, trained to ``epochs`` of its schedule.

    Composition order (later wins): method base, data config, interventions, the profile's
    configs, then the run's own settings and the invocation's flags.
    """
    files = [f"base/{spec.method}.yaml", f"data/{spec.dataset}.yaml"]
    files += [f"overrides/{o}.yaml" for o in spec.overrides]
    files += options.profile_configs(spec)
    argv = ["fit"]
    for name in files:
        argv += ["-c", str(options.configs_dir / name)]
    if spec.cut_constant is not None:
        argv += ["--model.init_args.cut_constant", f"{spec.cut_constant:g}"]
    if spec.accumulate is not None:
        argv += ["--trainer.accumulate_grad_batches", str(spec.accumulate)]
    argv += ["--model.init_args.schedule_epochs", str(spec.schedule_epochs)]
    argv += ["--trainer.max_epochs", str(epochs)]
    argv += options.common()
    return [*argv, "--run_dir", str(run_dir), "--name", run_dir.name]


def resume_command(run_dir: Path, epochs: int, options: FitOptions) -> list[str]:
    """``ssl-norms fit`` arguments that resume a run from ``last.ckpt`` up to ``epochs``.

    The saved ``config.yaml`` holds the run's settings (its schedule among them); only the
    stopping epoch and the invocation's flags are given again.
    """
    return [
        "fit",
        "-c",
        str(run_dir / "config.yaml"),
        "--ckpt_path",
        str(run_dir / "checkpoints" / "last.ckpt"),
        "--trainer.max_epochs",
        str(epochs),
        *options.common(),
        "--run_dir",
        str(run_dir),
    ]


def set_aside_incomplete(run_dir: Path) -> Path | None:
    """Move a run folder that holds a run but no ``last.ckpt`` to ``<run>.incomplete-<N>``.

    Such a folder (a run killed before its first checkpoint) cannot be resumed, and a new
    fit refuses a folder that holds another run. Returns the new place, or None.
    """
    held = [n for n in ("config.yaml", "csv/metrics.csv") if (run_dir / n).is_file()]
    if not held or (run_dir / "checkpoints" / "last.ckpt").is_file():
        return None
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.incomplete-{n}")).exists():
        n += 1
    run_dir.rename(target)
    return target


def commit_description(where: Path) -> str:
    """``<short hash>`` (``+ uncommitted changes`` when the tracked files differ from it), or
    ``unknown``. The ``results/`` folder is not counted: it holds what reproduce itself
    writes, before the report that names the commit."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude,top)results",
            ],  # fmt: skip
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        suffix = " + uncommitted changes" if dirty.stdout.strip() else ""
        return head.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def _with_current_commit(progress: dict | None) -> list[str]:
    commits = list((progress or {}).get("commits", []))
    current = commit_description(Path(__file__).resolve().parents[2])
    return commits if current in commits else [*commits, current]


def run_commits(runs_dir: Path) -> dict[str, int]:
    """How many of the runs under ``runs_dir`` each commit trained (``progress.json``);
    runs written before commits were recorded count under ``"not recorded"``."""
    counts: dict[str, int] = {}
    for progress in sorted(Path(runs_dir).glob(f"*/{PROGRESS_FILE}")):
        value = _read_json(progress) or {}
        for commit in value.get("commits") or ["not recorded"]:
            counts[commit] = counts.get(commit, 0) + 1
    return counts


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    tmp.replace(path)


def read_progress(run_dir: Path) -> int:
    """Epochs completed by the run's last clean fit (0 when none)."""
    value = _read_json(run_dir / PROGRESS_FILE)
    return int(value.get("epochs_done", 0)) if value else 0


@dataclass(frozen=True)
class Failure:
    """Why a run stopped: ``kind`` is ``data``, ``diverged`` or ``failed``."""

    kind: str
    message: str
    step: int | None = None
    exit_code: int | None = None

    def short(self) -> str:
        """A table cell: "diverged at step 151", "data not available", "failed (exit 1)"."""
        if self.kind == "diverged":
            return f"diverged at step {self.step}" if self.step is not None else "diverged"
        if self.kind == "data":
            return "data not available"
        return f"failed (exit {self.exit_code})" if self.exit_code is not None else "failed"

    def first_line(self) -> str:
        return self.message.strip().splitlines()[0] if self.message.strip() else self.kind


def read_failure(run_dir: Path) -> Failure | None:
    value = _read_json(run_dir / FAILURE_FILE)
    if not value:
        return None
    return Failure(
        str(value.get("kind", "failed")),
        str(value.get("message", "")),
        value.get("step"),
        value.get("exit_code"),
    )


_STEP = re.compile(r"global step (\d+)")


def classify_error(code: int, error: dict[str, str] | None) -> Failure:
    """A failed fit's :class:`Failure` from its exit code and the error it recorded
    (``SSL_NORMS_ERROR_FILE``: ``{"type", "message"}``).

    Missing data is a ``FileNotFoundError`` of the data modules (docs/contract.md), not
    a missing checkpoint; divergence is the NaN guard's ``FloatingPointError``, whose
    message names the global step.
    """
    kind, message, step = "failed", "", None
    if error:
        message = str(error.get("message", ""))
        etype = error.get("type")
        if etype == "FileNotFoundError" and not message.startswith("checkpoint "):
            kind = "data"
        elif etype == "FloatingPointError":
            kind = "diverged"
            found = _STEP.search(message)
            step = int(found.group(1)) if found else None
    return Failure(kind, message, step, code)


def checkpoint_at(run_dir: Path, epoch: int) -> Path | None:
    """The checkpoint of ``epoch``: a kept stop, or ``last.ckpt`` when the run ended there."""
    kept = run_dir / "checkpoints" / f"epoch-{epoch}.ckpt"
    if kept.is_file():
        return kept
    last = run_dir / "checkpoints" / "last.ckpt"
    if read_progress(run_dir) == epoch and last.is_file():
        return last
    return None


def _run_subprocess(module: str, argv: list[str]) -> tuple[int, dict[str, str] | None]:
    """Run ``python -m module argv``; its exit code and the error it recorded."""
    with tempfile.TemporaryDirectory(prefix="ssl-norms-reproduce-") as tmp:
        error_file = Path(tmp) / "error.json"
        env = {**os.environ, ERROR_FILE_ENV: str(error_file)}
        code = subprocess.call([sys.executable, "-m", module, *argv], env=env)
        return code, _read_json(error_file)


def _run_in_process(main: Callable[[list[str]], int], argv: list[str]):
    """The same in this process (tests: one import of Lightning for many small fits)."""
    with tempfile.TemporaryDirectory(prefix="ssl-norms-reproduce-") as tmp:
        error_file = Path(tmp) / "error.json"
        old = os.environ.get(ERROR_FILE_ENV)
        os.environ[ERROR_FILE_ENV] = str(error_file)
        old_argv = sys.argv
        sys.argv = [old_argv[0], *argv]  # LightningCLI compares its args with sys.argv
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception as error:  # what the CLI does not turn into an exit code
            error_file.write_text(json.dumps({"type": type(error).__name__, "message": str(error)}))
            code = 1
        finally:
            sys.argv = old_argv
            if old is None:
                os.environ.pop(ERROR_FILE_ENV, None)
            else:
                os.environ[ERROR_FILE_ENV] = old
        return code, _read_json(error_file)


def run_fit(argv: list[str], in_process: bool = False) -> tuple[int, dict[str, str] | None]:
    """One ``ssl-norms fit``: a subprocess (a crash or an out-of-memory kill stays there)."""
    if in_process:
        from ssl_norms.cli import main

        return _run_in_process(main, argv)
    return _run_subprocess("ssl_norms.cli", argv)


def run_embeddings(argv: list[str], in_process: bool = False) -> tuple[int, dict | None]:
    if in_process:
        from ssl_norms.reproduce.embeddings import main

        return _run_in_process(main, argv)
    return _run_subprocess("ssl_norms.reproduce.embeddings", argv)


@dataclass
class Outcome:
    """What :func:`execute` did with a run."""

    status: str  # "finished", "skipped", "diverged", "data", "failed", "dry-run"
    failure: Failure | None = None


def _say(tag: str, text: str) -> None:
    print(f"{tag}: {text}", flush=True)


def execute(
    plan: Plan,
    run_dir: Path,
    options: FitOptions,
    tag: str,
    dry_run: bool = False,
    retry_failed: bool = False,
    in_process: bool = False,
    embed_job: Callable[[Plan, Path, int], tuple[list[str], dict]] | None = None,
) -> Outcome:
    """Bring a run to ``plan.until``, stopping at ``plan.stops``, then compute its embeddings.

    Skips a finished run and (unless ``retry_failed``) a diverged one; resumes from
    ``last.ckpt``; moves aside a folder without a checkpoint. Records each failure in
    ``failure.json`` and each completed stop in ``progress.json``.
    """
    done = read_progress(run_dir)
    failure = read_failure(run_dir)
    if failure and failure.kind == "diverged" and not retry_failed and done < plan.until:
        _say(tag, f"{failure.short()} earlier; not retried (--retry-failed retries it)")
        return Outcome("diverged", failure)
    targets = plan.targets(done)
    if not targets:
        _say(tag, f"finished earlier ({done} epochs), skipped")
    for index, target in enumerate(targets):
        resumable = (run_dir / "checkpoints" / "last.ckpt").is_file() and (
            run_dir / "config.yaml"
        ).is_file()
        resumable = resumable or (dry_run and index > 0)  # what the earlier stop would leave
        if not dry_run and not resumable:
            moved = set_aside_incomplete(run_dir)
            if moved is not None:
                _say(tag, f"no checkpoint in {run_dir}; moved it to {moved}")
        if resumable:
            argv = resume_command(run_dir, target, options)
        else:
            argv = fresh_command(plan.spec, run_dir, target, options)
        _say(tag, f"epochs {done} -> {target}: {shlex.join(['ssl-norms', *argv])}")
        if dry_run:
            done = target
            continue
        code, error = run_fit(argv, in_process)
        if code != 0:
            failure = classify_error(code, error)
            _write_json(
                run_dir / FAILURE_FILE,
                {
                    "kind": failure.kind,
                    "message": failure.message,
                    "step": failure.step,
                    "exit_code": code,
                    "target_epoch": target,
                },
            )
            return Outcome(failure.kind, failure)
        done = target
        _write_json(
            run_dir / PROGRESS_FILE,
            {
                "epochs_done": done,
                "schedule": plan.spec.schedule_epochs,
                # Every commit that trained a stretch of this run, for the report's header.
                "commits": _with_current_commit(_read_json(run_dir / PROGRESS_FILE)),
            },
        )
        (run_dir / FAILURE_FILE).unlink(missing_ok=True)
        if done in plan.keep:
            last = run_dir / "checkpoints" / "last.ckpt"
            shutil.copyfile(last, run_dir / "checkpoints" / f"epoch-{done}.ckpt")
    if embed_job is not None:
        from ssl_norms.reproduce.embeddings import up_to_date

        for epoch in sorted(plan.embed):
            if epoch > done:
                continue
            argv, options = embed_job(plan, run_dir, epoch)
            if not dry_run and up_to_date(run_dir, epoch, options):
                _say(tag, f"embeddings of epoch {epoch}: up to date")
                continue
            command = shlex.join(["python", "-m", "ssl_norms.reproduce.embeddings", *argv])
            _say(tag, f"embeddings of epoch {epoch}: {command}")
            if dry_run:
                continue
            code, error = run_embeddings(argv, in_process)
            if code != 0:
                message = (error or {}).get("message", f"exit {code}")
                _say(tag, f"embeddings failed: {message}")
                return Outcome("failed", Failure("failed", f"embeddings: {message}", None, code))
    return Outcome("dry-run" if dry_run else "finished" if targets else "skipped")


def with_until(request: RunRequest, until: int) -> RunRequest:
    return replace(request, until=until)


def data_failures(outcomes: dict[str, tuple[str, Outcome]]) -> dict[str, Failure]:
    """Data set -> the data failure that showed it missing, from ``{slug: (dataset, outcome)}``."""
    found: dict[str, Failure] = {}
    for dataset, outcome in outcomes.values():
        if outcome.status == "data" and outcome.failure is not None:
            found.setdefault(dataset, outcome.failure)
    return found


def record_skipped_for_data(run_dir: Path, failure: Failure) -> None:
    """Mark a run not attempted because its data set was found missing by another run."""
    _write_json(
        run_dir / FAILURE_FILE,
        {"kind": "data", "message": failure.message, "step": None, "exit_code": None},
    )


def format_argv(argv: Sequence[str]) -> str:
    return shlex.join(argv)

"""``ssl_norms.reproduce.runs``: commands, merged plans, failures, skipping and resuming."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from fake_runs import CONFIGS

from ssl_norms.reproduce import runs
from ssl_norms.reproduce.runs import (
    FitOptions,
    Plan,
    RunRequest,
    RunSpec,
    classify_error,
    execute,
    fresh_command,
    merge_requests,
    read_failure,
    read_progress,
    resume_command,
    set_aside_incomplete,
)


def _options(configs: Path = CONFIGS, **kwargs) -> FitOptions:
    return FitOptions(configs, lambda spec: ["cpu/table3.yaml"], **kwargs)


def _files(argv: list[str]) -> list[str]:
    return [
        Path(argv[i + 1]).relative_to(CONFIGS).as_posix() for i, a in enumerate(argv) if a == "-c"
    ]


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_a_run_composes_base_data_interventions_profile_then_its_flags(tmp_path: Path) -> None:
    spec = RunSpec("simsiam", "cifar100", 500, ("cut_simsiam",), cut_constant=None, accumulate=2)
    options = _options(data_dir="/data", devices=4, nodes=2, extra=("--seed_everything", "3"))
    argv = fresh_command(spec, tmp_path / spec.slug, 100, options)
    assert argv[0] == "fit"
    assert _files(argv) == [
        "base/simsiam.yaml",
        "data/cifar100.yaml",
        "overrides/cut_simsiam.yaml",
        "cpu/table3.yaml",
    ]
    assert all((CONFIGS / f).is_file() for f in _files(argv))
    assert _flag(argv, "--trainer.accumulate_grad_batches") == "2"
    assert _flag(argv, "--model.init_args.schedule_epochs") == "500"
    assert _flag(argv, "--trainer.max_epochs") == "100"
    assert _flag(argv, "--data.init_args.data_dir") == "/data"
    assert (_flag(argv, "--trainer.devices"), _flag(argv, "--trainer.num_nodes")) == ("4", "2")
    assert _flag(argv, "--trainer.strategy") == "ddp"
    assert _flag(argv, "--seed_everything") == "3"
    assert _flag(argv, "--run_dir") == str(tmp_path / "simsiam-cifar100-cut_simsiam-acc2-e500")
    # The run's own settings come after the profile's files, the invocation's flags last.
    assert argv.index("--trainer.accumulate_grad_batches") > argv.index("-c") + 7
    assert argv.index("--seed_everything") > argv.index("--trainer.max_epochs")


def test_a_cut_constant_without_override_file_and_one_device() -> None:
    spec = RunSpec("simclr", "cifar100", 500, ("wd_1e-8",), cut_constant=2.0)
    assert spec.slug == "simclr-cifar100-wd_1e-8-c2-e500"
    argv = fresh_command(spec, Path("/r"), 100, _options(devices=1))
    assert _flag(argv, "--model.init_args.cut_constant") == "2"
    assert "--trainer.strategy" not in argv and "--data.init_args.data_dir" not in argv


def test_resume_uses_the_saved_config_and_only_moves_the_stop(tmp_path: Path) -> None:
    argv = resume_command(tmp_path, 16, _options(extra=("--wandb", "disabled")))
    assert argv[:5] == [
        "fit",
        "-c",
        str(tmp_path / "config.yaml"),
        "--ckpt_path",
        str(tmp_path / "checkpoints" / "last.ckpt"),
    ]
    assert _flag(argv, "--trainer.max_epochs") == "16"
    assert "--model.init_args.schedule_epochs" not in argv  # the saved config holds it
    assert _flag(argv, "--run_dir") == str(tmp_path) and _flag(argv, "--wandb") == "disabled"


def test_requests_of_several_results_merge_into_one_plan_per_run() -> None:
    """Table 1 reads epoch 100, Table S1 epochs 1 and 16, Table 2 epoch 500 of one run."""
    spec = RunSpec("simclr", "cifar100", 500)
    other = RunSpec("byol", "cifar100", 500)
    table1 = RunRequest(spec, until=100)
    s1 = RunRequest(spec, until=16, keep=(1, 16), embed=(1, 16), pairs=100)
    s1_byol = RunRequest(other, until=16, keep=(1, 16), embed=(1, 16), pairs=100)
    table2 = RunRequest(spec, until=500)
    fig3 = RunRequest(spec, until=500, embed=(500,), extra=("a=ood:test:x",))
    fig4 = RunRequest(spec, until=500, embed=(500,), human_index=True)
    everything = [table1, s1, s1_byol, table2, fig3, fig4]

    # Only Table S1 asked for: the run stops at 16, but still at 1 and with both kept.
    plans = merge_requests(everything, [s1, s1_byol])
    plan = plans[spec.slug]
    assert plan.until == 16 and plan.targets(0) == [1, 16]
    assert plan.keep == {1, 16}  # the run goes on to 500 for Table 2: last.ckpt moves on
    assert plan.embed == {
        1: {"extra": [], "pairs": 100, "extremes": 0, "human_index": False},
        16: {"extra": [], "pairs": 100, "extremes": 0, "human_index": False},
    }
    # BYOL's run ends at 16 (its last.ckpt): only epoch 1 needs a copy.
    assert plans[other.slug].targets(0) == [1, 16] and plans[other.slug].keep == {1}

    # Everything: one run to 500 stopping at 1, 16 and 100; the final embeddings serve both
    # Figures 3 and 4 (one cache file); last.ckpt is the epoch-500 checkpoint (not kept).
    plan = merge_requests(everything)[spec.slug]
    assert plan.until == 500 and plan.targets(0) == [1, 16, 100, 500]
    assert plan.targets(16) == [100, 500] and plan.targets(500) == []
    assert plan.keep == {1, 16}
    assert plan.embed[500] == {
        "extra": ["a=ood:test:x"],
        "pairs": 0,
        "extremes": 0,
        "human_index": True,
    }


@pytest.mark.parametrize(
    ("error", "kind", "step", "short"),
    [
        ({"type": "FileNotFoundError", "message": "cifar100 (train split) not found in /d"}, "data", None, "data not available"),
        ({"type": "FileNotFoundError", "message": "checkpoint x does not exist"}, "failed", None, "failed (exit 1)"),
        ({"type": "FloatingPointError", "message": "SimCLR: non-finite gradients at global step 151 (epoch 1). Likely"}, "diverged", 151, "diverged at step 151"),
        ({"type": "FloatingPointError", "message": "the loss is nan at global step 7 (epoch 0, batch 7)"}, "diverged", 7, "diverged at step 7"),
        (None, "failed", None, "failed (exit 1)"),
    ],
)  # fmt: skip
def test_a_failed_fit_is_classified_from_its_recorded_error(error, kind, step, short) -> None:
    failure = classify_error(1, error)
    assert (failure.kind, failure.step, failure.short()) == (kind, step, short)


class FakeFits:
    """Stands for ``ssl-norms fit``: records each argv; a successful fit leaves a config and
    a last.ckpt holding the epoch it reached, as the real one does."""

    def __init__(self, fail_at: dict[int, dict] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_at = fail_at or {}

    def __call__(self, argv, in_process=False):
        self.calls.append(argv)
        run_dir = Path(_flag(argv, "--run_dir"))
        target = int(_flag(argv, "--trainer.max_epochs"))
        if target in self.fail_at:
            return 1, self.fail_at[target]
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text("model: {}\n")
        (run_dir / "checkpoints" / "last.ckpt").write_text(f"epoch {target}")
        return 0, None


def test_a_run_stops_where_results_need_it_keeping_those_checkpoints(tmp_path, monkeypatch) -> None:
    fits = FakeFits()
    monkeypatch.setattr(runs, "run_fit", fits)
    plan = Plan(RunSpec("simclr", "cifar100", 500), 500, stops={1, 16, 100}, keep={1, 16})
    run_dir = tmp_path / plan.spec.slug
    outcome = execute(plan, run_dir, _options(), "t")
    assert outcome.status == "finished"
    assert [int(_flag(c, "--trainer.max_epochs")) for c in fits.calls] == [1, 16, 100, 500]
    assert "--ckpt_path" not in fits.calls[0] and all("--ckpt_path" in c for c in fits.calls[1:])
    assert read_progress(run_dir) == 500
    assert (run_dir / "checkpoints" / "epoch-1.ckpt").read_text() == "epoch 1"
    assert (run_dir / "checkpoints" / "epoch-16.ckpt").read_text() == "epoch 16"
    assert not (run_dir / "checkpoints" / "epoch-100.ckpt").exists()


def test_a_finished_run_is_skipped(tmp_path, monkeypatch, capsys) -> None:
    fits = FakeFits()
    monkeypatch.setattr(runs, "run_fit", fits)
    plan = Plan(RunSpec("simclr", "cifar10", 8), 8)
    run_dir = tmp_path / plan.spec.slug
    (run_dir).mkdir()
    (run_dir / "progress.json").write_text(json.dumps({"epochs_done": 8}))
    assert execute(plan, run_dir, _options(), "t").status == "skipped"
    assert fits.calls == [] and "finished earlier (8 epochs), skipped" in capsys.readouterr().out
    # A later result that needs the run longer takes it on from its checkpoint.
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_text("epoch 8")
    (run_dir / "config.yaml").write_text("model: {}\n")
    assert execute(Plan(plan.spec, 16), run_dir, _options(), "t").status == "finished"
    assert len(fits.calls) == 1 and _flag(fits.calls[0], "--ckpt_path").endswith("last.ckpt")


def test_a_diverged_run_reads_as_such_and_is_not_retried_unless_asked(
    tmp_path, monkeypatch
) -> None:
    nan = {
        "type": "FloatingPointError",
        "message": "non-finite gradients at global step 151 (epoch 1)",
    }
    fits = FakeFits(fail_at={5: nan})
    monkeypatch.setattr(runs, "run_fit", fits)
    plan = Plan(RunSpec("simclr", "cifar10_unbalanced", 5, ("gradscale",)), 5)
    run_dir = tmp_path / plan.spec.slug
    outcome = execute(plan, run_dir, _options(), "t")
    assert outcome.status == "diverged" and outcome.failure.short() == "diverged at step 151"
    assert read_failure(run_dir).step == 151 and read_progress(run_dir) == 0
    assert execute(plan, run_dir, _options(), "t").status == "diverged"
    assert len(fits.calls) == 1  # the same seed would diverge at the same step
    fits.fail_at = {}
    assert execute(plan, run_dir, _options(), "t", retry_failed=True).status == "finished"
    assert read_failure(run_dir) is None and read_progress(run_dir) == 5


def test_a_run_killed_in_its_first_epoch_is_moved_aside(tmp_path: Path) -> None:
    cell = tmp_path / "simclr-cifar10-e8"
    (cell / "csv").mkdir(parents=True)
    (cell / "config.yaml").write_text("model: {}\n")
    moved = set_aside_incomplete(cell)
    assert moved == tmp_path / "simclr-cifar10-e8.incomplete-1"
    assert not cell.exists() and (moved / "config.yaml").is_file()
    (cell / "checkpoints").mkdir(parents=True)
    (cell / "config.yaml").write_text("model: {}\n")
    (cell / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert set_aside_incomplete(cell) is None and cell.is_dir()  # resumable: left in place


# ------------------------------------------------------------------ real fits (latent data)

LATENT_DATA = """\
data:
  class_path: datamodules.LatentClassesDataModule
  init_args:
    num_classes: 4
    n_train: 256
    n_eval: 128
    batch_size: 64
    num_workers: 0
    seed: 0
"""
LATENT_RUN = """\
trainer:
  accelerator: cpu
  devices: 1
  num_nodes: 1
  log_every_n_steps: 1
  enable_model_summary: false
  callbacks:
    - class_path: callbacks.EvaluationPass
      init_args: {every_n_epochs: 1}
    - class_path: callbacks.KNNMonitor
      init_args: {k: 10}
    - class_path: callbacks.EmbeddingNormMonitor
      init_args: {every_n_steps: 1}
    - class_path: callbacks.EffectiveLRMonitor
      init_args: {every_n_steps: 1}
model:
  init_args:
    backbone: mlp
    backbone_in_dim: 64
    backbone_width: 32
    projector_hidden_dim: 32
    projector_out_dim: 8
    lr: 0.05
    warmup_epochs: 0
"""


@pytest.fixture
def latent_configs(tmp_path: Path) -> Path:
    """The shipped configs plus a latent-class data config and a tiny MLP size."""
    configs = Path(shutil.copytree(CONFIGS, tmp_path / "configs"))
    (configs / "data" / "latent.yaml").write_text(LATENT_DATA)
    (configs / "test").mkdir()
    (configs / "test" / "run.yaml").write_text(LATENT_RUN)
    return configs


def _head() -> str:
    import subprocess

    return subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_the_report_counts_the_commits_that_trained_the_runs(tmp_path: Path) -> None:
    for name, progress in {
        "a": {"epochs_done": 8, "commits": ["abc"]},
        "b": {"epochs_done": 8, "commits": ["abc", "def + uncommitted changes"]},
        "c": {"epochs_done": 8},  # written before commits were recorded
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "progress.json").write_text(json.dumps(progress))
    assert runs.run_commits(tmp_path) == {
        "abc": 2,
        "def + uncommitted changes": 1,
        "not recorded": 1,
    }
    assert runs._with_current_commit({"commits": ["abc"]})[0] == "abc"
    assert runs._with_current_commit(None)[0].split()[0] == _head()


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_a_run_killed_mid_way_is_resumed_not_restarted(latent_configs, tmp_path, capsys) -> None:
    """A fit that died after its epoch-1 checkpoint (no progress.json) goes on from it."""
    import torch

    options = FitOptions(
        latent_configs, lambda spec: ["test/run.yaml"], extra=("--wandb", "disabled")
    )
    spec = RunSpec("simclr", "latent", 3)
    run_dir = tmp_path / "runs" / spec.slug
    # What the kill left: epoch 1 of the run trained and checkpointed, nothing recorded.
    code, _ = runs.run_fit(fresh_command(spec, run_dir, 1, options), in_process=True)
    assert code == 0 and read_progress(run_dir) == 0
    first_rows = _rows(run_dir)
    steps_per_epoch = 256 // 64

    outcome = execute(Plan(spec, 3), run_dir, options, "t", in_process=True)
    assert outcome.status == "finished" and read_progress(run_dir) == 3
    # The commit that trained it is recorded for the report (this checkout's HEAD).
    commits = json.loads((run_dir / "progress.json").read_text())["commits"]
    assert len(commits) == 1 and commits[0].split()[0] == _head()
    out = capsys.readouterr().out
    assert "epochs 0 -> 3" in out and "--ckpt_path" in out and "incomplete" not in out
    rows = _rows(run_dir)
    assert rows[: len(first_rows)] == first_rows  # epoch 1's logs kept, not re-trained
    epochs = sorted({int(float(r["epoch"])) for r in rows if r["epoch"]})
    assert epochs == [0, 1, 2]
    knn_epochs = [int(float(r["epoch"])) for r in rows if r.get("knn/top1")]
    assert knn_epochs == [0, 1, 2]  # one evaluation per epoch, none repeated
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3 * steps_per_epoch and ckpt["epoch"] == 2
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [spec.slug]

    def no_fit(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    original = runs.run_fit
    runs.run_fit = no_fit
    try:
        assert execute(Plan(spec, 3), run_dir, options, "t").status == "skipped"
    finally:
        runs.run_fit = original


@pytest.mark.slow
def test_a_run_is_a_subprocess_whose_error_is_recorded(latent_configs, tmp_path, capsys) -> None:
    """The default: each fit in its own process; a failure's error comes back through
    SSL_NORMS_ERROR_FILE (here a data module that cannot be built: a clear ValueError)."""
    options = FitOptions(
        latent_configs, lambda spec: ["test/run.yaml"], extra=("--wandb", "disabled")
    )
    spec = RunSpec("simclr", "latent", 1)
    run_dir = tmp_path / "runs" / spec.slug
    assert execute(Plan(spec, 1), run_dir, options, "t").status == "finished"
    assert read_progress(run_dir) == 1 and (run_dir / "checkpoints" / "last.ckpt").is_file()
    bad = FitOptions(
        latent_configs,
        lambda spec: ["test/run.yaml"],
        extra=("--wandb", "disabled", "--data.init_args.n_train", "2"),
    )
    broken = tmp_path / "runs" / "broken"
    outcome = execute(Plan(spec, 1), broken, bad, "t")
    assert outcome.status == "failed" and outcome.failure.exit_code == 1
    assert "leave class 2 empty" in read_failure(broken).message


def test_the_commit_counts_code_changes_not_the_results_reproduce_writes(tmp_path: Path) -> None:
    import subprocess

    from ssl_norms.reproduce.runs import commit_description

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "REPORT.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert commit_description(tmp_path) == head
    (tmp_path / "results" / "REPORT.md").write_text("new\n")  # reproduce's own output
    assert commit_description(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")  # the code that trains and reports
    assert commit_description(tmp_path) == f"{head} + uncommitted changes"

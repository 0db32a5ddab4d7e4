"""``ssl-norms fit|validate``: run folders, loggers, W&B fallback, errors, end-to-end runs.

Everything runs in-process through ``ssl_norms.lightning_cli.run`` (one Lightning import).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from ssl_norms import lightning_cli
from ssl_norms.lightning_cli import resolve_wandb_mode, run

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

REPO = Path(__file__).resolve().parents[2]
# The demo, shrunk: 2 epochs of 512 latent-class samples.
SMALL_DEMO = [
    "-c", str(REPO / "configs/demo.yaml"),
    "--trainer.max_epochs", "2",
    "--data.init_args.n_train", "512",
    "--data.init_args.n_eval", "256",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.log_every_n_steps", "1",
]  # fmt: skip


# ----------------------------------------------------------------------------- W&B mode
@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return tmp_path


def test_wandb_without_key_goes_offline_without_touching_the_network(
    no_wandb_env, monkeypatch
) -> None:
    monkeypatch.setattr(
        lightning_cli, "_reachable", lambda *a, **k: pytest.fail("no network probe without a key")
    )
    mode, reason = resolve_wandb_mode("auto")
    assert mode == "offline" and "no W&B API key" in reason


def test_wandb_with_key_but_no_network_goes_offline(no_wandb_env, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(lightning_cli, "_reachable", lambda *a, **k: False)
    mode, reason = resolve_wandb_mode("auto")
    assert mode == "offline" and "not reachable" in reason
    monkeypatch.setattr(lightning_cli, "_reachable", lambda *a, **k: True)
    assert resolve_wandb_mode("auto") == ("online", None)


def test_wandb_key_from_netrc_and_env_modes(no_wandb_env, monkeypatch) -> None:
    netrc = no_wandb_env / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setattr(lightning_cli, "_reachable", lambda *a, **k: True)
    assert resolve_wandb_mode("auto") == ("online", None)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == ("disabled", None)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("auto") == ("offline", None)
    assert resolve_wandb_mode("disabled") == ("disabled", None)  # the flag wins


def test_unreachable_host_answers_fast() -> None:
    import time

    start = time.monotonic()
    assert (
        lightning_cli._reachable("https://ssl-norms.invalid/healthz", timeout=0.5) is False
    )  # .invalid never resolves
    assert time.monotonic() - start < 2.0


# ----------------------------------------------------------------------------- errors
def test_unknown_method_is_a_clear_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        run(["fit", *SMALL_DEMO, "--model", "ssl_norms.methods.MoCo", "--print_config"])
    assert info.value.code != 0
    assert "MoCo" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--model.init_args.backbone", "resnet7", "unknown backbone 'resnet7'"),
        ("--model.init_args.cut_constant", "0", "cut_constant must be a finite number > 0"),
        ("--model.init_args.cut_constant", "-3", "cut_constant must be a finite number > 0"),
    ],
)
def test_bad_model_arguments_are_clear_errors(
    tmp_path, flag: str, value: str, message: str
) -> None:
    with pytest.raises((ValueError, SystemExit), match=message):
        run(["fit", *SMALL_DEMO, flag, value, "--wandb", "disabled", "--runs_root", str(tmp_path)])
    assert not any(tmp_path.rglob("*")), "a config error leaves no empty run folder"


# ----------------------------------------------------------------------------- run folder
def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_fit_writes_a_run_folder_and_validate_reads_it(tmp_path, no_wandb_env, capsys) -> None:
    cli = run(["fit", *SMALL_DEMO, "--runs_root", str(tmp_path)])
    run_dir = cli.run_dir
    assert run_dir.parent == (tmp_path / "demo").resolve()
    assert len(run_dir.name) == len("20250101-120000") and run_dir.name[8] == "-"
    captured = capsys.readouterr()
    assert captured.err.count("W&B offline") == 1 and "no W&B API key" in captured.err
    assert f"run folder   {run_dir}" in captured.out and f"ssl-norms plot {run_dir}" in captured.out

    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    rows = _csv_rows(run_dir / "csv" / "metrics.csv")
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    assert "train/loss_step" not in rows[0], "the contract's metric name is train/loss"
    assert sum(bool(r.get("train/loss_epoch")) for r in rows) == 2  # one per epoch
    run_id = (run_dir / "wandb" / "run_id").read_text().split()[0]  # then the folder
    assert any(
        p.name.startswith("offline-run-") and p.name.endswith(run_id)
        for p in (run_dir / "wandb").iterdir()
    )
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (
        saved["model"]["class_path"] == "ssl_norms.methods.SimCLR"
        and saved["trainer"]["max_epochs"] == 2
    )
    assert saved["seed_everything"] == 0

    # The checkpoint names its method: the base class loads the right one, same weights.
    from ssl_norms.methods import SimCLR, SSLMethod

    last = run_dir / "checkpoints" / "last.ckpt"
    loaded = SSLMethod.load_from_checkpoint(last)
    assert type(loaded) is SimCLR
    for key, value in cli.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    # The run's own config re-runs: evaluate the checkpoint into the run's eval/ folder.
    val = run(
        [
            "validate",
            "-c",
            str(run_dir / "config.yaml"),
            "--ckpt_path",
            str(last),
            "--wandb",
            "disabled",
        ]
    )
    assert val.run_dir.parent == run_dir / "eval" and val.run_dir.name.startswith("validate-")
    assert (val.run_dir / "config.yaml").is_file()
    metrics = val.trainer.callback_metrics
    assert "knn/top1" in metrics and 0.0 <= float(metrics["knn/top1"]) <= 1.0


# ----------------------------------------------------------------------------- real CIFAR-10
@pytest.fixture(scope="module")
def decode_cache(tmp_path_factory) -> Path:
    """Decoded CIFAR-10 shared by the tests of this module: one JPEG decode instead of six."""
    return tmp_path_factory.mktemp("decoded")


def _cifar_args(shared_data: Path, method: str, tmp_path: Path, cache: Path) -> list[str]:
    assert isinstance(cache, Path), "request the decode_cache fixture"
    return [
        "-c", str(REPO / f"configs/base/{method}.yaml"),
        "-c", str(REPO / "configs/cpu/cifar10.yaml"),
        "--data.init_args.data_dir", str(shared_data / "cifar10"),
        "--data.init_args.ood", "null",
        "--data.init_args.train_subset", "4",
        "--data.init_args.eval_subset", "2",
        "--data.init_args.batch_size", "8",
        "--data.init_args.eval_batch_size", "20",
        "--data.init_args.num_workers", "0",
        "--data.init_args.cache_dir", str(cache),
        "--model.init_args.backbone_width", "4",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--wandb", "disabled",
        "--runs_root", str(tmp_path),
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_fast_dev_run_on_real_cifar10(
    shared_data: Path, tmp_path, decode_cache: Path, method: str
) -> None:
    cli = run(
        [
            "fit",
            *_cifar_args(shared_data, method, tmp_path, decode_cache),
            "--trainer.fast_dev_run",
            "2",
        ]
    )
    assert cli.trainer.global_step == 2
    loss = cli.trainer.callback_metrics["train/loss"]
    assert torch.isfinite(loss)
    assert type(cli.model).__name__.lower() == method
    assert cli.model.backbone.out_dim == 32  # ResNet-18 at width 4: 8 x 4 features


class _Killed(RuntimeError):
    pass


@pytest.mark.slow
@pytest.mark.data
def test_cli_run_killed_and_resumed_matches_the_uninterrupted_run(
    shared_data: Path, tmp_path, decode_cache: Path
) -> None:
    """BYOL (the most state: EMA target, tau, accumulation) on real CIFAR-10, cut c = 2."""
    from lightning.pytorch import Callback

    class KillAt(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.current_epoch == 1 and batch_idx == 2:
                raise _Killed

    args = [
        *_cifar_args(shared_data, "byol", tmp_path, decode_cache),
        "--trainer.max_epochs", "2",
        "--trainer.accumulate_grad_batches", "2",
        "--trainer.limit_val_batches", "0",
        "--trainer.callbacks", "[]",
        "--trainer.deterministic", "true",
        "--model.init_args.cut_constant", "2",
        "--model.init_args.projector_dim", "64",
        "--model.init_args.predictor_hidden_dim", "16",
    ]  # fmt: skip

    def fit(run_dir: Path, ckpt: Path | None = None, kill: bool = False):
        cli = run([*args, "--run_dir", str(run_dir)], run=False)
        if kill:
            cli.trainer.callbacks.append(KillAt())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt) if ckpt else None)
        return cli

    full = fit(tmp_path / "full")
    with pytest.raises(_Killed):
        fit(tmp_path / "killed", kill=True)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0  # saved at the end of epoch 0
    resumed = fit(tmp_path / "killed", ckpt=last)
    # 2 epochs x 2 whole optimizer steps: 5 batches per epoch, the partial window dropped.
    assert resumed.trainer.global_step == full.trainer.global_step == 4
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The resumed run appended to the run folder's metrics: epoch 0 (logged before the
    # kill) is still there, next to epoch 1 (Lightning's own CSVLogger would delete it).
    with open(tmp_path / "killed" / "csv" / "metrics.csv", newline="") as file:
        epochs = {row["epoch"] for row in csv.DictReader(file) if row.get("train/loss_epoch")}
    assert epochs == {"0", "1"}


def test_run_folder_flags_and_default_callbacks(tmp_path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from ssl_norms.loggers import ResumableCSVLogger

    quiet = [*SMALL_DEMO, "--wandb", "disabled"]
    cli = run([*quiet, "--trainer.default_root_dir", str(tmp_path / "mine")], run=False)
    assert cli.run_dir == (tmp_path / "mine").resolve() == Path(cli.trainer.default_root_dir)
    cli = run([*quiet, "--run_dir", str(tmp_path / "explicit"), "--name", "other"], run=False)
    assert cli.run_dir == (tmp_path / "explicit").resolve()

    first = run([*quiet, "--name", "exp1", "--runs_root", str(tmp_path / "r")], run=False)
    second = run([*quiet, "--name", "exp1", "--runs_root", str(tmp_path / "r")], run=False)
    assert first.run_dir.parent == second.run_dir.parent == (tmp_path / "r" / "exp1").resolve()
    assert first.run_dir != second.run_dir, (
        "two runs started in the same second get their own folders"
    )

    assert [type(lg) for lg in first.trainer.loggers] == [ResumableCSVLogger]  # --wandb disabled
    assert Path(first.trainer.loggers[0].log_dir) == first.run_dir / "csv"
    (ckpt,) = [cb for cb in first.trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    assert Path(ckpt.dirpath) == first.run_dir / "checkpoints" and ckpt.save_last
    assert ckpt._save_on_train_epoch_end  # last.ckpt every epoch, not only on k-NN epochs
    names = {type(cb).__name__ for cb in first.trainer.callbacks}
    assert {
        "EvaluationPass",
        "KNNMonitor",
        "EmbeddingNormMonitor",
        "ConfidenceMonitor",
        "HealthMonitor",
        "EffectiveLRMonitor",
    } <= names  # the demo's monitors


def test_a_run_folder_keeps_its_wandb_run_id(tmp_path) -> None:
    args = [*SMALL_DEMO, "--wandb", "disabled", "--run_dir", str(tmp_path / "run")]
    first = run(args, run=False)._wandb_run_id()
    assert len(first) == 12 and run(args, run=False)._wandb_run_id() == first
    other = run([*SMALL_DEMO, "--wandb", "disabled", "--run_dir", str(tmp_path / "b")], run=False)
    assert other._wandb_run_id() != first


def test_any_module_as_backbone_from_the_command_line(tmp_path) -> None:
    """A class_path backbone: instantiated by the CLI, saved in config form, reloaded."""
    from ssl_norms.methods import SSLMethod
    from ssl_norms.models import MLP

    cli = run(
        [
            "fit", *SMALL_DEMO,
            "--trainer.max_epochs", "1",
            "--trainer.callbacks", "[]",
            "--model.backbone", "ssl_norms.models.MLP",
            "--model.backbone.in_dim", "64",
            "--model.backbone.hidden_dims", "[32, 16]",
            "--wandb", "disabled",
            "--runs_root", str(tmp_path),
        ]
    )  # fmt: skip
    assert isinstance(cli.model.backbone, MLP) and cli.model.feature_dim == 16
    assert cli.model.hparams.backbone["class_path"] == "ssl_norms.models.MLP"
    loaded = SSLMethod.load_from_checkpoint(cli.run_dir / "checkpoints" / "last.ckpt")
    assert isinstance(loaded.backbone, MLP)
    for key, value in cli.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def _fit_without_data(run_flags: list[str], data_dir: Path) -> int:
    from ssl_norms.cli import main

    return main(
        [
            "fit",
            "-c", str(REPO / "configs" / "base" / "simclr.yaml"),
            "-c", str(REPO / "configs" / "data" / "cifar10.yaml"),
            "--data.init_args.data_dir", str(data_dir),
            "--data.init_args.download", "false",
            "--model.init_args.backbone", "resnet18",
            "--model.init_args.backbone_width", "4",
            "--wandb", "disabled",
            *run_flags,
        ]
    )  # fmt: skip


def test_missing_data_is_one_clear_error_and_leaves_no_run_folder(tmp_path, capsys) -> None:
    code = _fit_without_data(["--runs_root", str(tmp_path / "runs")], tmp_path / "nodata")
    assert code == 1
    err = capsys.readouterr().err
    assert f"not found in {tmp_path / 'nodata'}" in err and "download=True" in err
    assert "Traceback" not in err
    assert [p for p in (tmp_path / "runs").rglob("*")] == []  # nothing half-written


def test_a_failing_resume_keeps_its_existing_run_folder(tmp_path, capsys) -> None:
    run_dir = tmp_path / "earlier-run"
    (run_dir / "csv").mkdir(parents=True)
    (run_dir / "csv" / "metrics.csv").write_text("epoch,step\n0,1\n")
    assert _fit_without_data(["--run_dir", str(run_dir)], tmp_path / "nodata") == 1
    assert (run_dir / "csv" / "metrics.csv").read_text() == "epoch,step\n0,1\n"


def test_a_batch_the_processes_cannot_share_is_refused_before_any_starts(tmp_path, capsys):
    """batch_size is the global batch: 127 on 2 processes fails in the launching process,
    before Lightning starts the second one, and leaves no run folder."""
    from ssl_norms.cli import main

    run_dir = tmp_path / "run"
    argv = [
        "fit", *SMALL_DEMO, "--data.init_args.batch_size", "127", "--trainer.devices", "2",
        "--trainer.strategy", "ddp", "--wandb", "disabled", "--run_dir", str(run_dir),
    ]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "batch_size 127 is the global batch of all 2 processes" in err and "126" in err
    assert not run_dir.exists()

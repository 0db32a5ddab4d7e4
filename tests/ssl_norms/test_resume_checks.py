"""Resume honours the config: the model comes from it, a checkpoint that does not fit is
refused naming both, overrides are kept or refused, and the CSV holds every step once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import (
    REPO,
    SMALL_DEMO,
    STEPS_PER_EPOCH,
    Crash,
    CrashAt,
    csv_rows,
    duplicated_steps,
    snapshot,
)

from ssl_norms.cli import main
from ssl_norms.lightning_cli import run

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

# The demo's data and trainer with a SimSiam on the same MLP backbone.
SIMSIAM_ON_DEMO = [
    "-c", str(REPO / "configs/base/simsiam.yaml"),
    *SMALL_DEMO,
    "--model", "ssl_norms.methods.SimSiam",
    "--model.init_args.backbone", "mlp",
    "--model.init_args.backbone_in_dim", "64",
    "--model.init_args.backbone_width", "64",
]  # fmt: skip


def _resume(run_dir: Path, *extra: str) -> list[str]:
    last = run_dir / "checkpoints" / "last.ckpt"
    return ["fit", "-c", str(run_dir / "config.yaml"), "--ckpt_path", str(last), *extra]


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_a_checkpoint_of_another_method_is_refused(
    finished_run: Path, tmp_path: Path, capsys, subcommand: str
) -> None:
    """A SimCLR checkpoint with a SimSiam config trained (or evaluated) SimCLR, exit 0."""
    last = finished_run / "checkpoints" / "last.ckpt"
    args = [
        subcommand,
        *SIMSIAM_ON_DEMO,
        "--ckpt_path",
        str(last),
        "--run_dir",
        str(tmp_path / "r"),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"checkpoint {last} holds SimCLR(backbone='mlp'" in err
    assert "but the config builds SimSiam(backbone='mlp'" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_checkpoint_of_another_backbone_is_refused(
    finished_run: Path, tmp_path: Path, capsys
) -> None:
    last = finished_run / "checkpoints" / "last.ckpt"
    wider = ["--model.init_args.backbone_width", "32", "--run_dir", str(tmp_path / "r")]
    assert main(["validate", *SMALL_DEMO, *wider, "--ckpt_path", str(last)]) == 1
    err = capsys.readouterr().err
    assert "SimCLR(backbone='mlp', backbone_width=64, backbone_in_dim=64) in the checkpoint" in err
    assert "SimCLR(backbone='mlp', backbone_width=32, backbone_in_dim=64) in the config" in err
    assert "backbone.net.0.weight is [64, 64] in the checkpoint and [32, 64] in the config" in err


def test_a_resume_applies_the_overrides_it_can_and_refuses_the_others(copy_run, capsys) -> None:
    """--model.init_args.* on resume were replaced by the checkpoint's values without a word."""
    run_dir = copy_run()
    before = snapshot(run_dir)
    assert main(_resume(run_dir, "--model.init_args.lr", "0.5")) == 1
    err = capsys.readouterr().err
    assert "lr: 0.05 in the checkpoint, 0.5 in the config" in err
    assert "start a new run without --ckpt_path" in err
    assert snapshot(run_dir) == before

    cli = run(
        _resume(run_dir, "--model.init_args.temperature", "0.25", "--trainer.max_epochs", "3")
    )
    assert cli.model.temperature == 0.25 and cli.model.hparams.temperature == 0.25
    assert (
        "resuming with temperature=0.25 from the config (the checkpoint was trained with 0.5)"
        in (capsys.readouterr().err)
    )
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 2 and saved["hyper_parameters"]["temperature"] == 0.25


def test_resume_after_a_crash_logs_every_step_once(tmp_path: Path) -> None:
    """The rows a crashed run logged after its last checkpoint were logged again on resume."""
    run_dir = tmp_path / "run"
    three = ["fit", *SMALL_DEMO, "--trainer.max_epochs", "3", "--run_dir", str(run_dir)]
    with pytest.raises(Crash):
        run(three, trainer_defaults={"callbacks": [CrashAt(epoch=2, batch=2)]})
    steps = [int(r["step"]) for r in csv_rows(run_dir / "csv" / "metrics.csv") if r["train/loss"]]
    assert max(steps) >= 2 * STEPS_PER_EPOCH, "the crash left rows after the checkpoint"
    assert main(_resume(run_dir)) == 0
    rows = csv_rows(run_dir / "csv" / "metrics.csv")
    assert duplicated_steps(rows) == []
    steps = [int(r["step"]) for r in rows if r["train/loss"]]
    assert steps == list(range(3 * STEPS_PER_EPOCH))
    assert sorted(r["epoch"] for r in rows if r["train/loss_epoch"]) == ["0", "1", "2"]


@pytest.mark.slow
def test_resume_after_sigkill_and_a_cut_off_csv_line(tmp_path: Path) -> None:
    """``kill -9`` after a flush of the CSV (rows after the checkpoint on disk) and a last
    line cut in the middle: the resumed run repairs the file and logs every step once."""
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "PYTHONPATH": f"{Path(__file__).parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    fit = [
        sys.executable, "-m", "ssl_norms.cli", "fit", *SMALL_DEMO,
        "--trainer.max_epochs", "3", "--run_dir", str(run_dir),
        "--trainer.callbacks+=cli_helpers.SigkillAt",
        "--trainer.callbacks.epoch", "2", "--trainer.callbacks.batch", "3",
    ]  # fmt: skip
    killed = subprocess.run(fit, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    metrics = run_dir / "csv" / "metrics.csv"
    text = metrics.read_bytes()
    assert max(int(r["step"]) for r in csv_rows(metrics)) >= 2 * STEPS_PER_EPOCH
    metrics.write_bytes(text[: text.rstrip().rfind(b",") + 2])  # the kill hit a write
    assert not metrics.read_bytes().endswith(b"\n")
    # Resumed from the demo config: RUN/config.yaml also holds the test's SigkillAt.
    last = str(run_dir / "checkpoints" / "last.ckpt")
    resume = ["fit", *SMALL_DEMO, "--trainer.max_epochs", "3", "--run_dir", str(run_dir)]
    assert main([*resume, "--ckpt_path", last]) == 0
    rows = csv_rows(metrics)
    assert duplicated_steps(rows) == [] and all(None not in r for r in rows)
    assert [int(r["step"]) for r in rows if r["train/loss"]] == list(range(3 * STEPS_PER_EPOCH))


def test_settings_newer_or_older_than_the_checkpoint_do_not_block_a_resume(tmp_path: Path) -> None:
    """A checkpoint written before a setting existed (or after one was removed) still resumes
    when the config leaves that setting at its default; a changed value is still refused."""
    from ssl_norms.methods import SimCLR
    from ssl_norms.resume import CheckpointInfo, CheckpointMismatchError, check_checkpoint_fits

    model = SimCLR(backbone="mlp", backbone_in_dim=8, backbone_width=8, projector_hidden_dim=8)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    hparams = {k: v for k, v in model.hparams.items() if k != "lars_eta"}
    hparams["a_removed_setting"] = 1
    info = CheckpointInfo(tmp_path / "x.ckpt", hparams, shapes, global_step=4, log_step=4, epoch=0)
    assert check_checkpoint_fits(info, model, "fit") == []
    changed = SimCLR(
        backbone="mlp", backbone_in_dim=8, backbone_width=8, projector_hidden_dim=8, lars_eta=0.1
    )
    with pytest.raises(
        CheckpointMismatchError, match=r"lars_eta: \(not set\) in the checkpoint, 0.1"
    ):
        check_checkpoint_fits(info, changed, "fit")

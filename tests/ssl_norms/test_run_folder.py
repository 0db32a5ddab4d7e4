"""One run per run folder: launchers agree on a folder, rank 0 alone locks it, a busy or
used folder is refused, ``validate`` leaves a run untouched, Ctrl-C says how to resume."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import SMALL_DEMO, CrashAt, snapshot

from ssl_norms.cli import main
from ssl_norms.run_folder import (
    RUN_DIR_ENV,
    RunFolderError,
    RunFolderLock,
    claim_run_folder,
    global_rank,
    launcher_run_id,
    resolve_run_folder,
)

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


def torchrun(rank: int, run_id: str = "job42") -> dict[str, str]:
    """The environment ``torchrun --nproc-per-node 2`` gives process ``rank``."""
    return {
        "RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0", "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": run_id,
    }  # fmt: skip


def slurm(procid: int) -> dict[str, str]:
    """The environment ``srun --ntasks 4`` (2 nodes) gives task ``procid``."""
    return {
        "SLURM_JOB_ID": "777", "SLURM_STEP_ID": "3", "SLURM_NTASKS": "4",
        "SLURM_PROCID": str(procid), "SLURM_LOCALID": str(procid % 2), "SLURM_NODEID": str(procid // 2),
    }  # fmt: skip


# ----------------------------------------------------------------------------- launchers
def test_global_rank_under_every_launcher() -> None:
    assert global_rank({}) == 0
    assert [global_rank(torchrun(r)) for r in (0, 1)] == [0, 1]
    assert [global_rank(slurm(p)) for p in (0, 3)] == [0, 3]
    assert global_rank({"SLURM_JOB_ID": "5", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) == 0
    # Lightning's own launcher starts its processes with LOCAL_RANK/NODE_RANK only, also
    # inside a SLURM allocation whose SLURM_PROCID=0 they inherit.
    assert global_rank({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}) != 0
    assert global_rank({"LOCAL_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}) != 0
    assert global_rank({"LOCAL_RANK": "0", "NODE_RANK": "1"}) != 0


def test_the_processes_of_one_launch_agree_on_one_run_folder(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "demo"
    for (first, other), name in (
        ((torchrun(0), torchrun(1)), "torchrun-job42"),
        ((slurm(0), slurm(3)), "slurm-777.3"),
    ):
        folders = {resolve_run_folder(stage="fit", base=base, env=e) for e in (first, other)}
        assert folders == {(base / name).resolve()}
        evals = {
            resolve_run_folder(stage="validate", base=base, explicit=tmp_path / "run", env=e)
            for e in (first, other)
        }
        assert evals == {(tmp_path / "run" / "eval" / f"validate-{name}").resolve()}
    assert not tmp_path.joinpath("runs").exists(), "resolving creates nothing"


def test_a_launch_without_an_id_needs_run_dir(tmp_path: Path) -> None:
    static = {**torchrun(1), "TORCHELASTIC_RUN_ID": "none"}  # torchrun's static rendezvous
    assert launcher_run_id(static) is None
    for env, nodes in ((static, 1), ({"NODE_RANK": "0"}, 2)):
        with pytest.raises(RunFolderError, match="pass --run_dir, the same for every process"):
            resolve_run_folder(stage="fit", base=tmp_path / "runs", env=env, num_nodes=nodes)
    mine = resolve_run_folder(stage="fit", base=tmp_path, explicit=tmp_path / "mine", env=static)
    assert mine == (tmp_path / "mine").resolve()


def test_single_processes_keep_timestamped_folders_and_lightning_children_inherit(
    tmp_path: Path,
) -> None:
    # Several fits in one single-task SLURM job are not one launch: each gets its own folder.
    one_task = {"SLURM_JOB_ID": "777", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}
    first = resolve_run_folder(stage="fit", base=tmp_path, env=one_task)
    first.mkdir(parents=True)
    second = resolve_run_folder(stage="fit", base=tmp_path, env=one_task)
    assert first != second and first.parent == second.parent and first.name[8] == "-"
    child = {"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2", RUN_DIR_ENV: str(first)}
    assert resolve_run_folder(stage="fit", base=tmp_path / "elsewhere", env=child) == first


# ----------------------------------------------------------------------------- the lock
def test_only_global_rank_zero_locks_and_checks_the_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("model: {}\n")  # another run's results
    other_run = RunFolderLock(run_dir)
    other_run.acquire()
    try:
        for env in (torchrun(1), slurm(2), {"LOCAL_RANK": "1", "WORLD_SIZE": "2"}):
            claim = claim_run_folder(run_dir, stage="fit", env=env)
            assert claim.lock is None and not claim.created  # never refused, never locks
        with pytest.raises(RunFolderError, match=f"in use by another run .*pid={os.getpid()}"):
            claim_run_folder(run_dir, stage="fit", env=torchrun(0))
    finally:
        other_run.release()
    with pytest.raises(RunFolderError, match="already holds a run"):
        claim_run_folder(run_dir, stage="fit", env={})
    fresh = tmp_path / "fresh"
    claim_run_folder(fresh, stage="fit", env=slurm(1))
    assert not fresh.exists(), "other ranks create nothing"
    claim = claim_run_folder(fresh, stage="fit", env={})
    assert claim.created and claim.lock is not None and claim.lock.held
    claim.release()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """``kill -9`` of a running fit never leaves a lock that blocks its resume."""
    code = (
        "import os, signal, pathlib\n"
        "from ssl_norms.run_folder import RunFolderLock\n"
        f"RunFolderLock(pathlib.Path({str(tmp_path)!r})).acquire()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    lock = RunFolderLock(tmp_path)
    lock.acquire()
    lock.release()


# ----------------------------------------------------------------------------- the CLI
def test_a_second_fit_into_a_busy_run_folder_is_refused(tmp_path: Path, capsys) -> None:
    """Two fits in one --run_dir at once: the second is refused before it writes anything."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    running = RunFolderLock(run_dir)  # a fit running in another process
    running.acquire()
    try:
        assert main(["fit", *SMALL_DEMO, "--run_dir", str(run_dir)]) == 1
    finally:
        running.release()
    err = capsys.readouterr().err
    assert "is in use by another run" in err and "Traceback" not in err
    assert [p.name for p in run_dir.iterdir()] == [".lock"]


def test_a_fit_into_a_used_run_folder_is_refused_or_versioned(copy_run, capsys) -> None:
    """One fit after another in one --run_dir: refused; --new_version starts <run_dir>-v1."""
    run_dir = copy_run()
    before = snapshot(run_dir)
    assert main(["fit", *SMALL_DEMO, "--run_dir", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--new_version true" in err
    assert f"--ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}" in err
    assert snapshot(run_dir) == before
    quick = ["--trainer.max_epochs", "1", "--new_version", "true"]
    assert main(["fit", *SMALL_DEMO, *quick, "--run_dir", str(run_dir)]) == 0
    assert snapshot(run_dir) == before
    version = run_dir.with_name("run-v1")
    assert torch.load(version / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    assert "new_version: false" in (version / "config.yaml").read_text()


def test_last_ckpt_stays_the_latest_state_in_a_copied_run_folder(copy_run) -> None:
    """Resuming a copy of a run folder wrote last-v1.ckpt beside a stale last.ckpt."""
    run_dir = copy_run("copy")
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    resume = ["fit", "-c", str(run_dir / "config.yaml"), "--ckpt_path", str(last)]
    assert main([*resume, "--trainer.max_epochs", "3"]) == 0
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in names and not any(n.startswith("last-") for n in names), names
    assert torch.load(last, weights_only=True)["epoch"] == 2


def test_a_copied_run_folder_gets_its_own_wandb_run(copy_run) -> None:
    from ssl_norms.lightning_cli import run

    original = copy_run("original")
    args = [*SMALL_DEMO, "--wandb", "offline"]
    first = run([*args, "--run_dir", str(original)], run=False)._wandb_run_id()
    assert run([*args, "--run_dir", str(original)], run=False)._wandb_run_id() == first
    copy = original.with_name("copy")
    copy.mkdir()
    (copy / "wandb").mkdir()
    (copy / "wandb" / "run_id").write_bytes((original / "wandb" / "run_id").read_bytes())
    assert run([*args, "--run_dir", str(copy)], run=False)._wandb_run_id() != first


def test_validate_leaves_the_run_folder_byte_identical(copy_run) -> None:
    """The README's validate command rewrote config.yaml and appended to metrics.csv, after
    which the documented resume failed."""
    run_dir = copy_run()
    last = run_dir / "checkpoints" / "last.ckpt"
    before = snapshot(run_dir)
    assert main(["validate", "-c", str(run_dir / "config.yaml"), "--ckpt_path", str(last)]) == 0
    after = snapshot(run_dir)
    assert {k: v for k, v in after.items() if not k.startswith("eval/")} == before
    (evaluation,) = (run_dir / "eval").iterdir()
    assert evaluation.name.startswith("validate-")
    assert any(r.startswith(f"eval/{evaluation.name}/csv/metrics.csv") for r in after)
    resume = ["fit", "-c", str(run_dir / "config.yaml"), "--ckpt_path", str(last)]
    assert main([*resume, "--trainer.max_epochs", "3"]) == 0


def test_a_read_only_runs_root_is_a_clear_error(tmp_path: Path, unwritable, capsys) -> None:
    root = unwritable(tmp_path / "read-only")
    assert main(["fit", *SMALL_DEMO, "--runs_root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "cannot create the run folder" in err and "writable --runs_root" in err
    assert "Traceback" not in err


def test_ctrl_c_prints_the_command_that_resumes(tmp_path: Path, capsys) -> None:
    from ssl_norms.lightning_cli import run

    run_dir = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as info:
            run(
                ["fit", *SMALL_DEMO, "--run_dir", str(run_dir)],
                trainer_defaults={"callbacks": [CrashAt(epoch=1, batch=1, ctrl_c=True)]},
            )
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C while it shuts down
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "ssl-norms: interrupted. Resume from the last checkpoint with:" in err
    command = next(line for line in err.splitlines() if line.strip().startswith("ssl-norms fit"))
    argv = shlex.split(command)[1:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert argv == ["fit", "-c", str(run_dir / "config.yaml"), "--ckpt_path", str(last)]
    assert main(argv) == 0
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_config_yaml_is_replaced_whole_or_left_as_it_was(tmp_path: Path) -> None:
    """A save that fails half-way (a full disk) leaves the previous config.yaml intact and
    no partial file behind; a save that succeeds replaces it whole."""
    import errno
    from types import SimpleNamespace

    from jsonargparse import Namespace

    from ssl_norms.lightning_cli import RunFolderConfigCallback

    class Parser:
        fail = True

        def save(self, cfg, path, **kwargs):
            Path(path).write_text("model:\n  class_path: ssl_norms.meth")  # cut off
            if self.fail:
                raise OSError(errno.ENOSPC, "No space left on device")
            Path(path).write_text(f"seed_everything: {cfg.seed_everything}\n")

    (tmp_path / "config.yaml").write_text("seed_everything: 1\n")
    trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path))
    config = Namespace(seed_everything=2, run_dir=str(tmp_path), ckpt_path=None)
    parser = Parser()
    with pytest.raises(OSError, match="No space left"):
        RunFolderConfigCallback(parser, config).setup(trainer, None, "fit")
    assert (tmp_path / "config.yaml").read_text() == "seed_everything: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    parser.fail = False
    RunFolderConfigCallback(parser, config).setup(trainer, None, "fit")
    assert (tmp_path / "config.yaml").read_text() == "seed_everything: 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]

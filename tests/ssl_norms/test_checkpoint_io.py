"""Checkpoints written whole or not at all, and bad checkpoint files read with one message."""

from __future__ import annotations

import builtins
import errno
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import REPO, SMALL_DEMO, writes_fail_under

from ssl_norms import checkpoint_io
from ssl_norms.checkpoint_io import (
    CheckpointReadError,
    CheckpointWriteError,
    atomic_save,
    load_checkpoint_file,
)
from ssl_norms.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")


class NotATensor:
    """A Python object in a checkpoint (module level, so that pickle can find it)."""

    value = 3


# ----------------------------------------------------------------------------- reading
def _bad_checkpoints(good: Path, folder: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "garbage": b"this is not a checkpoint\n" * 10,
        "random": bytes(range(256)) * 20,
    }
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.ckpt"
        out[name].write_bytes(content)
    out["folder"] = folder / "folder.ckpt"
    out["folder"].mkdir()
    return out


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "random", "folder"])
@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_a_bad_checkpoint_file_is_one_clear_message(
    finished_run: Path, tmp_path: Path, capsys, kind: str, subcommand: str
) -> None:
    """Raw OSError/UnpicklingError (advising weights_only=False)/EOFError tracebacks before."""
    bad = _bad_checkpoints(finished_run / "checkpoints" / "last.ckpt", tmp_path)[kind]
    runs = tmp_path / "runs"
    code = main([subcommand, *SMALL_DEMO, "--ckpt_path", str(bad), "--runs_root", str(runs)])
    assert code == 1
    err = capsys.readouterr().err
    expected = (
        "is a folder, not a checkpoint file"
        if kind == "folder"
        else "is truncated or not a checkpoint"
    )
    assert f"checkpoint {bad} {expected}" in err
    assert "Traceback" not in err and "weights_only" not in err
    assert not runs.exists(), "nothing is created for a checkpoint that cannot be read"


def test_checkpoints_load_weights_only_and_objects_need_trust(tmp_path: Path) -> None:
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, plain)
    assert load_checkpoint_file(plain)["epoch"] == 3
    rich = tmp_path / "rich.ckpt"
    torch.save({"state_dict": {}, "extra": NotATensor()}, rich)
    with pytest.raises(CheckpointReadError, match="holds Python objects"):
        load_checkpoint_file(rich, weights_only=True)
    with pytest.warns(UserWarning, match="load only checkpoints you trust"):
        assert load_checkpoint_file(rich)["extra"].value == 3
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointReadError, match="not a Lightning checkpoint .no 'state_dict'"):
        load_checkpoint_file(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint_file(tmp_path / "missing.ckpt")


# ----------------------------------------------------------------------------- writing
def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "last.ckpt"
    atomic_save({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.setattr(builtins, "open", writes_fail_under(tmp_path, budget=1000))
    with pytest.raises(CheckpointWriteError) as info:
        atomic_save({"state_dict": {"w": torch.ones(10_000)}}, path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert f"could not write checkpoint {path}: No space left on device" in str(info.value)
    assert "free space" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], torch.zeros(3))


def test_a_full_disk_fails_the_run_and_leaves_no_partial_checkpoint(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A disk filling during a save left a truncated epoch=...ckpt under its final name.

    Patched writer: ``open`` of any file under RUN/checkpoints fails with ENOSPC after
    4 KiB, the first bytes reaching the file, as on a full disk.
    """
    run_dir = tmp_path / "run"
    monkeypatch.setattr(builtins, "open", writes_fail_under(run_dir / "checkpoints", 4096))
    code = main(["fit", *SMALL_DEMO, "--run_dir", str(run_dir)])
    monkeypatch.undo()
    captured = capsys.readouterr()
    assert code == 1
    assert (
        "could not write checkpoint" in captured.err and "No space left on device" in captured.err
    )
    assert "Traceback" not in captured.err and "run folder" not in captured.out
    leftovers = list(run_dir.rglob("*.ckpt")) + list(run_dir.rglob("*.tmp"))
    assert leftovers == [], leftovers


def test_a_full_disk_while_writing_the_logs_is_a_message(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Patched writer: writes under RUN/csv fail with ENOSPC after 100 bytes."""
    run_dir = tmp_path / "run"
    monkeypatch.setattr(builtins, "open", writes_fail_under(run_dir / "csv", 100))
    code = main(["fit", *SMALL_DEMO, "--run_dir", str(run_dir)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 1
    assert "ssl-norms: error: No space left on device" in err and "Traceback" not in err


def test_an_unwritable_checkpoints_folder_fails_the_run(tmp_path: Path, unwritable, capsys) -> None:
    """Exit 0, no checkpoint and a summary naming a last.ckpt that did not exist, before.

    The folder is really unwritable: ``chmod 555`` and, as root, ``chattr +i`` (see the
    ``unwritable`` fixture).
    """
    run_dir = tmp_path / "run"
    unwritable(run_dir / "checkpoints")
    code = main(["fit", *SMALL_DEMO, "--run_dir", str(run_dir)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"could not write checkpoint {run_dir / 'checkpoints'}" in captured.err
    assert "make " in captured.err and "writable" in captured.err
    assert "Traceback" not in captured.err and "last.ckpt" not in captured.out
    assert list((run_dir / "checkpoints").iterdir()) == []


@pytest.mark.slow
def test_a_real_full_disk_leaves_no_partial_checkpoint(tmp_path: Path) -> None:
    """The same on a real full disk: a 64 KiB tmpfs mounted on RUN/checkpoints in a private
    mount namespace (``unshare -m``); skipped where mount namespaces are not allowed."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount -t tmpfs -o size=64k tmpfs {tmp_path}",
        ],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    fit = [sys.executable, "-m", "ssl_norms.cli", "fit", *SMALL_DEMO, "--run_dir", str(run_dir)]
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {run_dir / 'checkpoints'} && "
        f"{' '.join(fit)}; code=$?; ls -a {run_dir / 'checkpoints'}; exit $code"
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    listing = result.stdout.split()
    assert not any(name.endswith((".ckpt", ".tmp")) for name in listing), listing


def test_the_lightning_plugin_writes_through_atomic_save(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(checkpoint_io, "atomic_save", lambda obj, path: calls.append(path))
    checkpoint_io.AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, str(tmp_path / "a.ckpt"))
    assert calls == [tmp_path / "a.ckpt"]

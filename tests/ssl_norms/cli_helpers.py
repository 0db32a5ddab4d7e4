"""Helpers of the CLI fault tests (imported as ``cli_helpers``; also by subprocesses via PYTHONPATH).

- ``SMALL_DEMO``: the demo, shrunk to 2 epochs of 4 steps (512 latent-class samples).
- ``snapshot``: every file of a folder with its bytes, to assert that a folder is unchanged.
- ``CrashAt`` / ``SigkillAt``: a run that dies at a given epoch and batch, by an exception
  (Lightning tears down and flushes its loggers) or by ``SIGKILL`` (nothing is flushed
  except what the callback flushes first, as a periodic flush would have).
- ``writes_fail_under``: a patched ``open`` whose writes in one folder fail with ENOSPC
  after a byte budget, as on a full disk (the bytes before the failure reach the file).
"""

from __future__ import annotations

import builtins
import csv
import errno
import os
import signal
from pathlib import Path

from lightning.pytorch import Callback

REPO = Path(__file__).resolve().parents[2]
SMALL_DEMO = [
    "-c", str(REPO / "configs/demo.yaml"),
    "--trainer.max_epochs", "2",
    "--data.init_args.n_train", "512",
    "--data.init_args.n_eval", "256",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.log_every_n_steps", "1",
    "--wandb", "disabled",
]  # fmt: skip
STEPS_PER_EPOCH = 4  # 512 samples / batch 128, drop_last


def snapshot(folder: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def duplicated_steps(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(column, step) pairs logged more than once (a metric logged twice for one step)."""
    seen: set[tuple[str, str]] = set()
    twice = []
    for row in rows:
        for key, value in row.items():
            if key in ("step", "epoch") or value in ("", None):
                continue
            pair = (key, row["step"])
            if pair in seen:
                twice.append(pair)
            seen.add(pair)
    return twice


class Crash(RuntimeError):
    pass


class CrashAt(Callback):
    """Raise ``Crash`` (or ``KeyboardInterrupt``, as Ctrl-C) at the start of a training batch."""

    def __init__(self, epoch: int, batch: int, ctrl_c: bool = False) -> None:
        self.epoch, self.batch, self.ctrl_c = epoch, batch, ctrl_c

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise KeyboardInterrupt if self.ctrl_c else Crash("crash injected by the test")


class SigkillAt(Callback):
    """Flush the loggers (as their periodic flush would), then ``kill -9`` this process."""

    def __init__(self, epoch: int = 0, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            for logger in trainer.loggers:
                logger.save()
            os.kill(os.getpid(), signal.SIGKILL)


class _FullDiskFile:
    """A real file whose writes fail with ENOSPC once ``budget`` bytes were written."""

    def __init__(self, file, budget: int) -> None:
        self._file, self._left = file, budget

    def write(self, data) -> int:
        if len(data) > self._left:
            self._file.write(data[: self._left])  # a real disk takes what fits, then fails
            self._file.flush()
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def writes_fail_under(folder: Path, budget: int = 4096):
    """A replacement for ``builtins.open``: files opened for writing under ``folder`` fail
    with ENOSPC after ``budget`` bytes; everything else is the real ``open``."""
    real_open = builtins.open
    folder = Path(folder).resolve()

    def fake_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        writing = any(flag in mode for flag in "wax+")
        if writing and isinstance(file, str | os.PathLike):
            if Path(os.fspath(file)).resolve().is_relative_to(folder):
                return _FullDiskFile(handle, budget)
        return handle

    return fake_open

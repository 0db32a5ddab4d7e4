"""One run per run folder: where a run writes, who writes, and the lock (docs/contract.md, "Run folder").

Pure helpers of ``ssl_norms.lightning_cli``; light (standard library only):

- :func:`global_rank` and :func:`launch_world_size` read the launcher's environment
  (Lightning's own DDP launcher, ``torchrun`` or SLURM ``srun``) before any process group
  exists, so that only global rank 0 checks, locks and writes the run folder;
- :func:`launcher_run_id` is an id that every process of one multi-process launch shares
  (``SLURM_JOB_ID`` with the step, or ``TORCHELASTIC_RUN_ID``), so that processes started
  independently, possibly on other nodes, agree on one run folder without a clock;
- :func:`run_contents` says whether a folder already holds a run's results;
- :class:`RunFolderLock` is an exclusive ``flock`` on ``RUN_DIR/.lock`` held while a fit
  runs; the kernel drops it when the process dies (``kill -9`` included), so a stale lock
  never blocks a resume.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "LOCK_FILE",
    "RunFolderError",
    "RunFolderLock",
    "checkpoint_home",
    "eval_folder",
    "global_rank",
    "launch_world_size",
    "launcher_run_id",
    "next_version",
    "run_contents",
    "timestamp_folder",
]

LOCK_FILE = ".lock"
# What makes a folder hold a run's results (a bare wandb/run_id or .lock does not).
RESULT_FILES = ("config.yaml", "csv/metrics.csv")


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (busy, holds another run, not writable)."""


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(env.get(key, default))
    except ValueError:
        return default


def global_rank(env: Mapping[str, str] | None = None) -> int:
    """This process' global rank, from the launcher's environment (0 when not launched).

    ``RANK`` (``torchrun``); a ``LOCAL_RANK`` > 0 is never global rank 0 (Lightning's own
    launcher starts its extra processes with it, also inside a SLURM allocation whose
    ``SLURM_PROCID`` they inherit); ``SLURM_PROCID`` when SLURM runs several tasks; a
    ``NODE_RANK`` > 0 (a hand-started node of Lightning's launcher).
    """
    env = os.environ if env is None else env
    if "RANK" in env:
        return _int(env, "RANK", 0)
    local = _int(env, "LOCAL_RANK", 0)
    if local > 0:
        return local
    if "SLURM_PROCID" in env and _int(env, "SLURM_NTASKS", 1) > 1:
        return _int(env, "SLURM_PROCID", 0)
    return _int(env, "NODE_RANK", _int(env, "GROUP_RANK", 0))


def launch_world_size(env: Mapping[str, str] | None = None, num_nodes: int = 1) -> int:
    """How many processes an external launcher started (1 when none did).

    ``WORLD_SIZE`` (``torchrun``; Lightning's own launcher sets it too, in the processes it
    starts), ``SLURM_NTASKS``, or a ``NODE_RANK``/``num_nodes`` > 1 for hand-started nodes.
    """
    env = os.environ if env is None else env
    size = max(_int(env, "WORLD_SIZE", 1), 1)
    if "SLURM_JOB_ID" in env:
        size = max(size, _int(env, "SLURM_NTASKS", 1))
    if _int(env, "NODE_RANK", 0) > 0 or num_nodes > 1:
        size = max(size, 2)
    return size


def launcher_run_id(env: Mapping[str, str] | None = None) -> str | None:
    """A folder name shared by every process of one launch, or None.

    ``slurm-<SLURM_JOB_ID>[.<SLURM_STEP_ID>]`` (each ``srun`` of a job is a step of its
    own), else ``torchrun-<TORCHELASTIC_RUN_ID>`` unless that is ``none`` (torchrun's
    default for a static rendezvous, the same for every launch).
    """
    env = os.environ if env is None else env
    job = env.get("SLURM_JOB_ID", "").strip()
    if job:
        step = env.get("SLURM_STEP_ID", "").strip()
        return f"slurm-{job}" + (f".{step}" if step and step.isdigit() else "")
    run_id = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if run_id and run_id.lower() != "none":
        return "torchrun-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return None


def timestamp_folder(base: Path, prefix: str = "") -> Path:
    """``base/<prefix><YYYYmmdd-HHMMSS>`` that does not exist yet (``-1``, ``-2`` ... in one second)."""
    stamp = prefix + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder, n = base / stamp, 1
    while folder.exists():
        folder, n = base / f"{stamp}-{n}", n + 1
    return folder


def eval_folder(home: Path, stage: str, launch_id: str | None = None) -> Path:
    """Where ``validate``/``test`` write: ``home/eval/<stage>-<time or launch id>``.

    Never the run folder itself, so evaluating a run's checkpoint leaves its config, CSV
    and checkpoints byte-identical.
    """
    if launch_id:
        return home / "eval" / f"{stage}-{launch_id}"
    return timestamp_folder(home / "eval", prefix=f"{stage}-")


def checkpoint_home(ckpt_path: str | os.PathLike | None) -> Path | None:
    """The run folder a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` with ``RUN/config.yaml``)."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).resolve()
    home = path.parent.parent
    if path.parent.name == "checkpoints" and (home / "config.yaml").is_file():
        return home
    return None


def run_contents(run_dir: Path) -> list[str]:
    """The results of a run already in ``run_dir`` (relative paths; empty when none)."""
    found = [name for name in RESULT_FILES if (run_dir / name).is_file()]
    ckpt_dir = run_dir / "checkpoints"
    if ckpt_dir.is_dir():
        found += sorted(f"checkpoints/{p.name}" for p in ckpt_dir.glob("*.ckpt"))
    return found


def next_version(run_dir: Path) -> Path:
    """The first ``<run_dir>-v<N>`` (N >= 1) that holds no run: ``--new_version``'s folder."""
    n = 1
    while True:
        candidate = run_dir.with_name(f"{run_dir.name}-v{n}")
        if not run_contents(candidate):
            return candidate
        n += 1


def is_inside(path: str | os.PathLike, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


class RunFolderLock:
    """An exclusive, non-blocking ``flock`` on ``run_dir/.lock`` for the lifetime of a fit.

    The lock file records who holds it (host, pid, start time), for the refusal message.
    ``flock`` is per open file, so two fits in one process exclude each other too; on
    network file systems without ``flock`` support the lock may not exclude other hosts.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunFolderError(
                f"run folder {self.path.parent} is in use by another run ({holder}): wait for it "
                "to finish, or give this run its own folder (--run_dir, or no --run_dir for a new "
                "timestamped one)"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        os.write(fd, f"host={socket.gethostname()} pid={os.getpid()} since={stamp}\n".encode())
        self._fd = fd

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        except OSError:
            text = ""
        return text or "holder unknown"

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a CLI object dropped without release()
        try:
            self.release()
        except Exception:
            pass

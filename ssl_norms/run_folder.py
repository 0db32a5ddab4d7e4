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
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LOCK_FILE",
    "RUN_DIR_ENV",
    "RunFolderClaim",
    "RunFolderError",
    "RunFolderLock",
    "check_reuse",
    "checkpoint_home",
    "claim_run_folder",
    "eval_folder",
    "global_rank",
    "launch_world_size",
    "launcher_run_id",
    "next_version",
    "resolve_run_folder",
    "run_contents",
    "timestamp_folder",
]

LOCK_FILE = ".lock"
RUN_DIR_ENV = "SSL_NORMS_RUN_DIR"  # hands rank 0's folder to Lightning's own DDP processes
# Lightning's special --ckpt_path values (resolved by the trainer, not files).
CKPT_KEYWORDS = frozenset({"last", "best", "hpc", "registry"})
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


def _is_file_path(ckpt_path: str | os.PathLike | None) -> bool:
    text = str(ckpt_path or "")
    return bool(text) and text not in CKPT_KEYWORDS and "://" not in text


def resolve_run_folder(
    *,
    stage: str,
    base: Path,
    explicit: str | os.PathLike | None = None,
    ckpt_path: str | os.PathLike | None = None,
    num_nodes: int = 1,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The folder a ``fit``/``validate``/``test`` process writes into (absolute).

    Args:
        stage: ``fit``, ``validate``, ``test`` or ``predict``.
        base: ``<runs_root>/<experiment name>``, the parent of default run folders.
        explicit: ``--run_dir`` (or ``trainer.default_root_dir``), if given.
        ckpt_path: ``--ckpt_path``; its run folder is the default home.
        num_nodes: ``trainer.num_nodes``.
        env: the environment (``os.environ``).

    The home is ``explicit``, else the checkpoint's run folder, else a new folder
    ``base/<launch id>`` (multi-process launch) or ``base/<time>``. ``fit`` writes into the
    home, ``validate``/``test`` into ``home/eval/<stage>-<time or launch id>``. Processes
    that Lightning's own launcher started get rank 0's folder from ``SSL_NORMS_RUN_DIR``.

    Raises:
        RunFolderError: a multi-process launch without a launcher id and without a home.
    """
    env = os.environ if env is None else env
    lightning_child = "RANK" not in env and (
        _int(env, "LOCAL_RANK", 0) > 0 or _int(env, "NODE_RANK", 0) > 0
    )
    if lightning_child and env.get(RUN_DIR_ENV):
        return Path(env[RUN_DIR_ENV])
    home = (
        Path(explicit).resolve()
        if explicit
        else checkpoint_home(ckpt_path)
        if _is_file_path(ckpt_path)
        else None
    )
    multi = launch_world_size(env, num_nodes) > 1
    launch_id = launcher_run_id(env) if multi else None
    if home is not None:
        return home if stage == "fit" else eval_folder(home, stage, launch_id).resolve()
    if multi and launch_id is None:
        raise RunFolderError(
            "this is one of several processes started by a launcher that gives no run id (no "
            "SLURM_JOB_ID; TORCHELASTIC_RUN_ID unset or 'none'), so they cannot agree on a "
            "timestamped run folder: pass --run_dir, the same for every process"
        )
    return (base / launch_id if launch_id else timestamp_folder(base)).resolve()


def check_reuse(
    run_dir: Path, ckpt_path: str | os.PathLike | None = None, new_version: bool = False
) -> Path:
    """One run per folder: ``run_dir`` if a fit may write there, else its new version or an error.

    A fit may write into a folder that holds no run, or whose run it resumes (``ckpt_path``
    inside the folder). Otherwise ``new_version`` sends it to :func:`next_version`; without
    it the fit is refused with a :class:`RunFolderError` that says how to resume instead.
    """
    contents = run_contents(run_dir)
    if not contents:
        return run_dir
    if _is_file_path(ckpt_path) and is_inside(ckpt_path, run_dir):  # type: ignore[arg-type]
        return run_dir
    if new_version:
        return next_version(run_dir).resolve()
    listing = ", ".join(contents[:4]) + (" ..." if len(contents) > 4 else "")
    why = (
        f"--ckpt_path {ckpt_path} is not one of its checkpoints"
        if ckpt_path
        else "this fit does not resume it"
    )
    raise RunFolderError(
        f"run folder {run_dir} already holds a run ({listing}) and {why}. Resume that run with "
        f"`ssl-norms fit -c {run_dir / 'config.yaml'} --ckpt_path "
        f"{run_dir / 'checkpoints' / 'last.ckpt'}`, start a new run beside it with "
        "--new_version true, or choose another --run_dir"
    )


@dataclass
class RunFolderClaim:
    """The folder a process writes into, whether it created it, and the fit's lock."""

    run_dir: Path
    created: bool = False
    lock: RunFolderLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def claim_run_folder(
    run_dir: Path,
    *,
    stage: str,
    ckpt_path: str | os.PathLike | None = None,
    new_version: bool = False,
    env: Mapping[str, str] | None = None,
) -> RunFolderClaim:
    """Create ``run_dir`` and, for a fit, lock it and check it holds no other run (rank 0 only).

    Processes other than global rank 0 (of any launcher) never write the run folder, so
    they are never refused: they get a claim that created nothing and holds no lock.

    Raises:
        RunFolderError: the folder cannot be created or locked, is in use by another run,
            or holds another run (checked again under the lock).
    """
    if global_rank(env) != 0:
        return RunFolderClaim(run_dir)
    claim = RunFolderClaim(run_dir)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
            claim.created = True
        except FileExistsError:
            pass
    except OSError as error:
        raise RunFolderError(
            f"cannot create the run folder {run_dir}: {error.strerror or error}: choose a "
            "writable --runs_root or --run_dir"
        ) from error
    if stage != "fit":
        return claim
    lock = RunFolderLock(run_dir)
    try:
        lock.acquire()
    except OSError as error:
        raise RunFolderError(
            f"cannot lock the run folder {run_dir}: {error.strerror or error}: choose a "
            "writable --runs_root or --run_dir"
        ) from error
    claim.lock = lock
    try:
        # Under the lock: another fit may have filled the folder since the first look.
        check_reuse(run_dir, ckpt_path)
    except BaseException:
        claim.release()
        raise
    return claim

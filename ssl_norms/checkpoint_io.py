"""Checkpoints written whole or not at all, and read with a clear message (docs/contract.md, "Run folder").

Lightning's own save writes the checkpoint through an fsspec transaction whose temporary
file may live on another device (the final move is then a copy that a full disk cuts
short, leaving a truncated file under the final name), and it swallows a
``PermissionError``, so a run whose ``checkpoints/`` folder is not writable ends with exit
0 and no checkpoint. :class:`AtomicCheckpointIO` writes ``.<name>.<pid>.tmp`` in the
target folder, ``fsync``\\ s it and renames it over the final name (atomic on POSIX), and
turns any failure into a :class:`CheckpointWriteError` that stops the run.

Reading goes through :func:`load_checkpoint_file`: ``weights_only=True`` (plain tensors and
containers; Lightning checkpoints of ssl-norms need nothing else), a fallback with a warning
for a well-formed archive that holds other Python objects, and a
:class:`CheckpointReadError` "checkpoint X is truncated or not a checkpoint" for an empty,
cut-off or foreign file instead of a zip, pickle or EOF traceback.
"""

from __future__ import annotations

import errno
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointReadError",
    "CheckpointWriteError",
    "atomic_save",
    "load_checkpoint_file",
]


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read (empty, truncated, not a checkpoint)."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written; nothing was left under its final name."""

    def __init__(self, path: Path, cause: OSError) -> None:
        code = cause.errno
        reason = cause.strerror or str(cause)
        if code == errno.ENOSPC or code == errno.EDQUOT:
            fix = f"free space on the disk of {path.parent}"
        elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = f"make {path.parent} writable"
        else:
            fix = f"fix {path.parent}"
        self.message = (
            f"could not write checkpoint {path}: {reason}. Nothing was written under that name "
            f"(earlier checkpoints are intact): {fix}, then resume from the last checkpoint"
        )
        super().__init__(code, self.message)
        self.path = path

    def __str__(self) -> str:
        return self.message


def _os_error(error: BaseException) -> OSError | None:
    """The ``OSError`` behind ``error`` (``torch.save`` wraps a failed write in a RuntimeError)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same folder and a rename.

    Raises :class:`CheckpointWriteError` when the folder cannot be created or written (disk
    full, permissions); the temporary file is removed and ``path`` keeps its old content.
    """
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        _remove_quietly(tmp)
        cause = _os_error(error)
        if cause is not None:
            raise CheckpointWriteError(path, cause) from error
        raise
    try:  # make the rename itself durable; not all file systems allow it
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _corrupt(path: Path, reason: str) -> CheckpointReadError:
    return CheckpointReadError(
        f"checkpoint {path} is truncated or not a checkpoint ({reason}): point --ckpt_path at "
        "another checkpoint of the run (e.g. the epoch one next to last.ckpt)"
    )


def load_checkpoint_file(
    path: str | os.PathLike,
    weights_only: bool | None = None,
    map_location: Any = "cpu",
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a Lightning checkpoint file with a clear error for a bad one.

    Args:
        path: the ``.ckpt`` file.
        weights_only: ``None`` (default) tries ``torch.load(weights_only=True)`` and, for a
            well-formed archive holding Python objects beyond tensors, falls back on
            ``weights_only=False`` with a warning; ``True``/``False`` are passed on as given.
        map_location: as in ``torch.load``.
        mmap: memory-map the tensors (zip checkpoints only; others load normally), so that
            a look at the hyperparameters and shapes costs no copy of the weights.

    Raises:
        FileNotFoundError: no such file.
        CheckpointReadError: unreadable, empty, truncated or not a Lightning checkpoint.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointReadError(f"checkpoint {path} is a folder, not a checkpoint file")
    try:
        size = path.stat().st_size
        is_zip = zipfile.is_zipfile(path)
    except OSError as error:
        raise CheckpointReadError(f"cannot read checkpoint {path}: {error.strerror}") from error
    if size == 0:
        raise _corrupt(path, "the file is empty")

    def load(only_weights: bool) -> Any:
        return torch.load(
            path, map_location=map_location, weights_only=only_weights, mmap=mmap and is_zip
        )

    try:
        checkpoint = load(True if weights_only is None else weights_only)
    except PermissionError as error:
        raise CheckpointReadError(f"cannot read checkpoint {path}: {error.strerror}") from error
    except pickle.UnpicklingError as error:
        if not is_zip:
            raise _corrupt(path, "not a PyTorch archive") from error
        if weights_only is not None:
            raise CheckpointReadError(
                f"checkpoint {path} holds Python objects that weights_only={weights_only} does "
                f"not load: {str(error).splitlines()[-1].strip()}"
            ) from error
        warnings.warn(
            f"checkpoint {path} holds Python objects beyond tensors; loaded with "
            "weights_only=False, which runs code from the file: load only checkpoints you trust",
            stacklevel=2,
        )
        checkpoint = load(False)
    except Exception as error:  # a foreign byte stream makes the unpickler fail in any way
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        reason = "cut off before its end" if not is_zip else first[:160]
        raise _corrupt(path, reason) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointReadError(
            f"checkpoint {path} is not a Lightning checkpoint (no 'state_dict'; it holds a "
            f"{type(checkpoint).__name__})"
        )
    return checkpoint


def _is_local(path: str | os.PathLike) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


def _local(path: str | os.PathLike) -> Path:
    text = str(path)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO``: atomic local saves that fail loudly, clear errors on load.

    Remote paths (``s3://`` ...) go to Lightning's ``TorchCheckpointIO`` unchanged.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, _local(path))

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        if not _is_local(path):
            return super().load_checkpoint(
                path, map_location=map_location, weights_only=weights_only
            )
        location = map_location if map_location is not None else (lambda storage, loc: storage)
        return load_checkpoint_file(_local(path), weights_only=weights_only, map_location=location)

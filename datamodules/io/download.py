"""Running a download (torchvision, HF hub) so that a network failure gives the one clear
missing-data error and leaves no partial files behind.

What the fetchers do when the network fails (torchvision 0.29, huggingface_hub):
- torchvision's ``download_url`` opens the archive (``cifar-10-python.tar.gz`` ...) only
  after the connection succeeds, so an unreachable host leaves nothing; a connection that
  drops mid-transfer leaves a truncated archive, then raises ``URLError``/``OSError``,
  ``http.client.IncompleteRead`` or, when the short file fails its md5,
  ``RuntimeError("File not found or corrupted.")``; (Fashion-)MNIST turns its mirrors'
  failures into ``RuntimeError("Error downloading ...")``.
- ``huggingface_hub.snapshot_download`` moves each finished shard into ``local_dir`` and
  keeps unfinished ones as ``.cache/huggingface/download/*.incomplete``; offline it raises
  ``LocalEntryNotFoundError`` / ``HfHubHTTPError`` (``OSError`` subclasses) or an ``httpx``
  transport error. A half-fetched set of shards would later pass for the data set.

``guarded_download`` therefore deletes every file the failed call created or rewrote (the
truncated archive, the shards fetched so far) and the folders it created, except HF's own
resumable ``.cache/huggingface`` parts, which no accepted layout reads.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
from collections.abc import Callable
from pathlib import Path

__all__ = ["NETWORK_ERRORS", "guarded_download", "is_network_error"]


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        urllib.error.URLError,  # an OSError, listed for clarity
        OSError,  # ConnectionError, TimeoutError, socket errors, requests' exceptions
        http.client.HTTPException,  # IncompleteRead, RemoteDisconnected
    ]
    try:
        import requests

        errors.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover - requests ships with the venv
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from huggingface_hub import errors as hf_errors

        errors.append(hf_errors.HfHubHTTPError)
        errors.append(hf_errors.LocalEntryNotFoundError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


NETWORK_ERRORS = _network_errors()

# torchvision's RuntimeErrors that mean "the download failed or came back truncated".
_TORCHVISION_MESSAGES = ("File not found or corrupted", "Error downloading")


def is_network_error(err: BaseException) -> bool:
    """Whether ``err`` is a failed or truncated download (not a bug in our code)."""
    if isinstance(err, NETWORK_ERRORS):
        return True
    return isinstance(err, RuntimeError) and str(err).startswith(_TORCHVISION_MESSAGES)


def _describe(err: BaseException) -> str:
    if isinstance(err, PermissionError):
        return f"download failed (folder not writable?): {type(err).__name__}: {err}"
    return f"download failed (no network?): {type(err).__name__}: {err}"


def _snapshot(folder: Path) -> tuple[dict[str, tuple[int, int]], set[str]]:
    """(file -> (size, mtime_ns), folders) under ``folder`` (empty when it does not exist)."""
    files: dict[str, tuple[int, int]] = {}
    dirs: set[str] = set()
    if not folder.is_dir():
        return files, dirs
    for root, subdirs, names in os.walk(folder):
        dirs.update(os.path.join(root, d) for d in subdirs)
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            files[path] = (st.st_size, st.st_mtime_ns)
    return files, dirs


def _remove_partial(folder: Path, before: tuple[dict[str, tuple[int, int]], set[str]]) -> None:
    """Delete what the failed download created or rewrote under ``folder``."""
    files_before, dirs_before = before
    after_files, after_dirs = _snapshot(folder)
    keep = os.sep + os.path.join(".cache", "huggingface") + os.sep
    for path, sig in after_files.items():
        if keep in path:
            continue  # HF's resumable parts: never read as data
        if files_before.get(path) != sig:
            try:
                os.remove(path)
            except OSError:
                pass
    # Folders the call created, deepest first, when left empty.
    for d in sorted(after_dirs - dirs_before, key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass


def guarded_download(
    fetch: Callable[[], None],
    folder: str | Path,
    missing_error: Callable[[str], Exception],
    local_hint: str,
) -> None:
    """Run ``fetch()``; on a network failure remove its partial files under ``folder`` and
    raise ``missing_error(note)`` (the module's missing-data error) from the original error.

    ``local_hint`` ends the note: where to put the files or what to point at a local copy.
    """
    folder = Path(folder).expanduser()
    existed = folder.exists()
    before = _snapshot(folder)
    try:
        fetch()
    except Exception as err:
        if not is_network_error(err):
            raise
        _remove_partial(folder, before)
        if not existed:
            try:
                folder.rmdir()  # the call created data_dir itself and left it empty
            except OSError:
                pass
        raise missing_error(f"{_describe(err)}; {local_hint}") from err

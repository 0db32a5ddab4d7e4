"""Finding a data set under ``data_dir`` and the one clear error when it is not there."""

from __future__ import annotations

from pathlib import Path

__all__ = ["candidate_folders", "missing_data_error"]

SHARED_HINT = "the offline copy in the project's shared data folder (../shared/data, HF parquet)"


def candidate_folders(data_dir: str | Path, names: list[str]) -> list[Path]:
    """``data_dir`` itself and ``data_dir/<name>`` for each usual folder name, in that order."""
    root = Path(data_dir).expanduser()
    return [root] + [root / n for n in names]


def missing_data_error(
    dataset: str,
    data_dir: str | Path,
    layouts: list[str],
    split: str | None = None,
    fix: str | None = None,
    note: str | None = None,
) -> FileNotFoundError:
    """One error naming the folder looked at, the accepted layouts and how to get the data.

    ``note`` adds a last line, e.g. why ``download=True`` did not get it.
    """
    what = f"{dataset} ({split} split)" if split else dataset
    accepted = "\n".join(f"  - {lay}" for lay in layouts)
    fix = fix or (
        "pass download=True on a machine with internet, or set data_dir to a folder holding "
        f"one of these layouts, e.g. {SHARED_HINT}"
    )
    return FileNotFoundError(
        f"{what} not found in {Path(data_dir).expanduser().resolve()}.\n"
        f"Accepted layouts:\n{accepted}\nTo get the data: {fix}." + (f"\n{note}" if note else "")
    )

"""Fixtures of the CLI fault tests: one finished demo run, and folders that even root cannot write."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import SMALL_DEMO


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A finished 2-epoch demo run (``--run_dir``); tests copy it before they touch it."""
    from ssl_norms.cli import main

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["fit", *SMALL_DEMO, "--run_dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture
def copy_run(finished_run: Path, tmp_path: Path) -> Callable[[str], Path]:
    def copy(name: str = "run") -> Path:
        return Path(shutil.copytree(finished_run, tmp_path / name))

    return copy


def _writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.fixture
def unwritable() -> Iterator[Callable[[Path], Path]]:
    """Make a folder really unwritable: ``chmod 555``, and for root (whom permissions do not
    stop) the immutable attribute ``chattr +i``, which stops root too. Skips where neither
    works (root on a file system without the attribute); undone after the test."""
    made: list[tuple[Path, bool]] = []

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        immutable = False
        if _writable(folder) and shutil.which("chattr"):  # root
            result = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
            immutable = result.returncode == 0
        made.append((folder, immutable))
        if _writable(folder):
            pytest.skip(f"cannot make {folder} unwritable here (root without chattr +i)")
        return folder

    yield make
    for folder, immutable in made:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        os.chmod(folder, 0o755)

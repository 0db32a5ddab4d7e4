"""The ``ssl-norms`` dispatcher: light help, clear errors, no Lightning import for light commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ssl_norms.cli import USAGE, main

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_subcommands(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("fit", "validate", "simulate", "plot"):
        assert word in out


def test_unknown_subcommand_is_a_clear_error(capsys) -> None:
    assert main(["trian"]) == 2
    assert "unknown subcommand 'trian'" in capsys.readouterr().err


def test_help_does_not_import_the_heavy_stack() -> None:
    code = (
        "import sys; from ssl_norms.cli import main; main(['--help']); "
        "heavy = [m for m in ('lightning', 'torchvision', 'wandb') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_usage_names_only_files_that_exist() -> None:
    """The usage named configs/cifar10/simclr.yaml, which does not exist."""
    paths = re.findall(r"(?<![\w/])configs/[\w./-]+", USAGE)
    assert len(paths) >= 3
    missing = [p for p in paths if not (REPO / p).is_file()]
    assert missing == []

"""The Lightning internals the callbacks rely on (``callbacks._lightning``) still exist."""

from __future__ import annotations

import re
from pathlib import Path

import lightning.pytorch as pl
import pytest

from callbacks._lightning import LIGHTNING_PRIVATE_NAMES, LIGHTNING_STEERED_ATTRIBUTES, resolve

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", LIGHTNING_PRIVATE_NAMES + LIGHTNING_STEERED_ATTRIBUTES)
def test_every_listed_name_exists_on_a_trainer(path):
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    resolve(trainer, path)  # AttributeError when Lightning renamed or removed it


def test_the_callbacks_read_no_other_private_lightning_name():
    # Every ``._name`` read off a trainer or a loop in callbacks/ is one of the listed ones.
    listed = {path.rsplit(".", 1)[-1] for path in LIGHTNING_PRIVATE_NAMES}
    found = set()
    for path in (REPO / "callbacks").glob("*.py"):
        for match in re.finditer(
            r"(?:trainer|fit_loop|epoch_loop|fit)\.(_[a-z]\w*)", path.read_text()
        ):
            found.add(match.group(1))
        for match in re.finditer(r'"fit_loop(?:\.epoch_loop)?\.(_[a-z]\w*)"', path.read_text()):
            found.add(match.group(1))
    assert found and found <= listed, found - listed

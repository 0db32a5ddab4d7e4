"""The private Lightning names ssl-norms relies on still exist in the installed Lightning.

pyproject.toml pins the Lightning range these were checked against (``lightning>=2.6,<2.7``).
Each name below is used because no public API gives the same thing; when a Lightning
release drops or renames one, this test fails with the name and its user instead of a run
failing (or, worse, silently changing) later.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning
import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]

# (object, attribute, where ssl-norms uses it and why)
PRIVATE = [
    ("hparams_mixin", "_given_hyperparameters",
     "ssl_norms/methods/base.py: a backbone module given by LightningCLI is saved in config form"),
    ("fit_loop", "_should_accumulate",
     "callbacks/_logging.py: whether this micro-batch ends an optimizer step"),
    ("epoch_loop", "_batches_that_stepped",
     "callbacks/_logging.py: the step Lightning's own loggers use as x-axis"),
    ("fit_loop", "_can_stop_early",
     "callbacks/knn_monitor.py: whether a requested stop ends training after this batch"),
    ("epoch_loop", "_num_ready_batches_reached",
     "callbacks/knn_monitor.py: whether this is the epoch's last batch"),
    ("cli", "_instantiate_trainer",
     "ssl_norms/lightning_cli.py: the run folder's loggers and checkpoint callback"),
    ("cli", "_run_subcommand",
     "ssl_norms/lightning_cli.py: clean up a run folder when a run fails early"),
    ("cloud_io", "_load",
     "ssl_norms/methods/base.py: read a checkpoint from any fsspec path, as Lightning does"),
    ("module", "_trainer",
     "ssl_norms/methods/base.py: the trainer or None (LightningModule.trainer raises when detached)"),
]  # fmt: skip


def _owner(name: str):
    if name == "hparams_mixin":
        from lightning.pytorch.core.mixins import hparams_mixin

        return hparams_mixin
    if name == "cli":
        return LightningCLI
    if name == "cloud_io":
        from lightning.fabric.utilities import cloud_io

        return cloud_io
    if name == "module":
        from lightning.pytorch import LightningModule

        return LightningModule()
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return trainer.fit_loop if name == "fit_loop" else trainer.fit_loop.epoch_loop


@pytest.mark.parametrize("owner, attribute, used", PRIVATE, ids=[p[1] for p in PRIVATE])
def test_private_lightning_name_exists(owner, attribute, used):
    assert hasattr(_owner(owner), attribute), (
        f"Lightning {lightning.__version__} has no {owner}.{attribute}, used by {used}: "
        "adapt that code and the Lightning pin in pyproject.toml"
    )


def test_installed_lightning_is_in_the_pinned_range():
    text = (REPO / "pyproject.toml").read_text()
    low, high = re.search(r'"lightning>=([\d.]+),<([\d.]+)"', text).groups()
    assert Version(low) <= Version(lightning.__version__) < Version(high)


def test_every_private_name_used_in_the_package_is_listed():
    """A new private Lightning name must be added above (and checked) before it is used.

    Scans for attribute access on the trainer and its loops, ``super()._...`` (our
    subclasses of Lightning classes), ``self._trainer`` and imports of private names.
    """
    listed = {attribute for _, attribute, _ in PRIVATE}
    pattern = re.compile(
        r"(?:fit_loop|epoch_loop|trainer|super\(\))\.(_[a-z]\w*)|self\.(_trainer)\b|from lightning[\w.]* import (_\w+)"
    )
    found: dict[str, str] = {}
    for package in ("ssl_norms", "callbacks", "datamodules"):
        for path in (REPO / package).rglob("*.py"):
            code = "\n".join(
                line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
            )
            for match in pattern.finditer(code):
                name = next(g for g in match.groups() if g)
                found.setdefault(name, str(path.relative_to(REPO)))
    unlisted = {n: f for n, f in found.items() if n not in listed}
    assert not unlisted, f"private Lightning names used but not listed in this test: {unlisted}"

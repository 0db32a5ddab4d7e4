"""The private Lightning names ssl-norms relies on still exist in the installed Lightning.

The callbacks' fit-loop names are listed in ``callbacks/_lightning.py`` and checked by
``tests/callbacks/test_lightning_internals.py``; this file checks the others and that no
private name is used without being listed in one of the two places.

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
    ("cli", "_instantiate_trainer",
     "ssl_norms/lightning_cli.py: the run folder's loggers and checkpoint callback"),
    ("cli", "_run_subcommand",
     "ssl_norms/lightning_cli.py: clean up a run folder when a run fails early"),
    ("cloud_io", "_load",
     "ssl_norms/methods/base.py: read a checkpoint from any fsspec path, as Lightning does"),
    ("cli", "_parse_ckpt_path",
     "ssl_norms/lightning_cli.py: overridden so that --ckpt_path never replaces the config's model"),
    ("csv_writer", "_check_log_dir_exists",
     "ssl_norms/loggers.py: overridden to keep (and repair) metrics.csv on resume"),
    ("csv_writer", "_rewrite_with_new_header",
     "ssl_norms/loggers.py: overridden to rewrite metrics.csv atomically"),
    ("csv_logger", "_experiment", "ssl_norms/loggers.py: the CSV logger's writer, made ours"),
    ("csv_logger", "_fs", "ssl_norms/loggers.py: the CSV logger's file system"),
    ("wandb_logger", "_wandb_init",
     "ssl_norms/lightning_cli.py: drop the anonymous=None that wandb warns about on every run"),
    ("module", "_trainer",
     "ssl_norms/methods/base.py: the trainer or None (LightningModule.trainer raises when detached)"),
    ("tqdm_bar", "_should_update",
     "ssl_norms/progress.py: overridden to redraw the bar by time, not at every step"),
]  # fmt: skip


def _owner(name: str):
    if name == "hparams_mixin":
        from lightning.pytorch.core.mixins import hparams_mixin

        return hparams_mixin
    if name == "cli":
        return LightningCLI
    if name == "csv_writer":
        from lightning.pytorch.loggers.csv_logs import ExperimentWriter

        return ExperimentWriter
    if name == "csv_logger":
        import tempfile

        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(tempfile.mkdtemp())
    if name == "wandb_logger":
        import tempfile

        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(save_dir=tempfile.mkdtemp(), offline=True)
    if name == "cloud_io":
        from lightning.fabric.utilities import cloud_io

        return cloud_io
    if name == "tqdm_bar":
        from lightning.pytorch.callbacks import TQDMProgressBar

        return TQDMProgressBar
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
    from callbacks._lightning import LIGHTNING_PRIVATE_NAMES

    listed = {attribute for _, attribute, _ in PRIVATE}
    listed |= {path.rsplit(".", 1)[-1] for path in LIGHTNING_PRIVATE_NAMES}
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


def test_every_private_lightning_method_we_override_is_listed():
    """Overriding a private method is a dependency too: if Lightning renames it, our override
    silently stops being called (e.g. --ckpt_path would replace the config's model again)."""
    import importlib

    listed = {attribute for _, attribute, _ in PRIVATE}
    overrides = {}
    for module_name in ("ssl_norms.lightning_cli", "ssl_norms.loggers", "ssl_norms.checkpoint_io",
                        "ssl_norms.progress"):  # fmt: skip
        module = importlib.import_module(module_name)
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != module_name:
                continue
            lightning_bases = [b for b in cls.__mro__[1:] if b.__module__.startswith("lightning")]
            for attribute in vars(cls):
                if attribute.startswith("_") and not attribute.startswith("__"):
                    if any(attribute in vars(b) for b in lightning_bases):
                        overrides[f"{cls.__name__}.{attribute}"] = attribute
    overrides = {k: v for k, v in overrides.items() if v != "_abc_impl"}
    assert {"SSLNormsCLI._parse_ckpt_path", "SSLNormsCLI._instantiate_trainer"} <= set(overrides)
    unlisted = sorted(k for k, v in overrides.items() if v not in listed)
    assert not unlisted, f"private Lightning methods overridden but not listed: {unlisted}"

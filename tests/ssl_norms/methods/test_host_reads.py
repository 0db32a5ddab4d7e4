"""Lightning reads no logged value back at a training step.

Lightning turns every value logged with ``prog_bar=True`` into a Python number at every
batch's end, whether a progress bar is drawn or not: on a GPU the host then waits for each
step's work before it can queue the next. The CUDA tests (``test_finite_guard.py``) see
such waits with torch's sync debug mode; this test sees Lightning's reads on any machine
by recording every tensor-to-Python conversion that Lightning's own code makes during
steps 2-5 of a fit (no logging step among them). The progress bar reads the loss only
when it redraws (``ssl_norms.progress.TimedProgressBar``).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from method_helpers import TinyDataModule, make_method, tiny_trainer

import callbacks as monitors
from callbacks import EffectiveLRMonitor, EmbeddingNormMonitor, HealthMonitor
from ssl_norms.progress import TimedProgressBar

LIGHTNING = str(Path(lightning.__file__).parent)
MONITORS = str(Path(monitors.__file__).parent)
READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


class LightningReads(Callback):
    """Every conversion of a tensor to a Python value made by Lightning's code (the
    innermost caller outside torch) from the start of step 2 to the end of step 5."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.found: list[str] = []
        self.recording = False
        self.window_ran = False
        for name in READS:
            monkeypatch.setattr(torch.Tensor, name, self._recorder(getattr(torch.Tensor, name)))

    def _recorder(self, read):
        def recording(tensor, *args, **kwargs):
            if self.recording:
                frames = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
                if frames and frames[-1].filename.startswith((LIGHTNING, MONITORS)):
                    self.found.append(
                        f"{read.__name__} at {frames[-1].filename}:{frames[-1].lineno}"
                    )
            return read(tensor, *args, **kwargs)

        return recording

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            self.recording = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 6:
            self.recording, self.window_ran = False, True


@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_lightning_reads_no_logged_value_at_a_training_step(method: str, monkeypatch) -> None:
    reads = LightningReads(monkeypatch)
    model = make_method(method, check_finite_timing="next_step")  # the GPU's timing
    # The per-step monitors at their defaults: steps 2-5 are none of their logging steps.
    steps = [EmbeddingNormMonitor(), HealthMonitor(), EffectiveLRMonitor()]
    trainer = tiny_trainer(max_steps=8, log_every_n_steps=1000, callbacks=[reads, *steps])
    trainer.fit(model, datamodule=TinyDataModule(n=80, batch_size=8))
    assert reads.window_ran
    assert reads.found == [], "\n".join(reads.found)
    # The loss is still logged per step (for the loggers and callbacks).
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_the_progress_bar_shows_the_last_step_s_loss(capfd) -> None:
    model = make_method("simclr")
    trainer = tiny_trainer(max_steps=3, enable_progress_bar=True,
                           callbacks=[TimedProgressBar(interval=0.0)])  # fmt: skip
    trainer.fit(model, datamodule=TinyDataModule(n=24, batch_size=8))
    printed = capfd.readouterr()
    # Lightning's bar shows 3 significant digits, padded with zeros (2.7 -> 2.700).
    shown = f"train/loss={float(trainer.callback_metrics['train/loss']):.3g}"
    assert shown in printed.out + printed.err, printed

"""The NaN guard's two timings: "before_step" reads each check before the optimizer step,
"next_step" (the GPU default) one step later and before anything is saved or read. Both
stop at the first bad step and name it; neither changes what a finite run trains; no
checkpoint is written after a divergence; every process stops at the same point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from method_helpers import TinyDataModule, make_method, tiny_trainer

from callbacks import EmbeddingNormMonitor
from ssl_norms.checkpoint_io import load_checkpoint_file
from ssl_norms.methods.finite_guard import FiniteGuard

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _cause() -> str:
    return "a test"


def test_next_step_holds_a_bad_check_until_it_is_read_then_refuses_for_good() -> None:
    guard = FiniteGuard("next_step")
    z = torch.randn(4, 3)
    guard.after_forward(torch.tensor(1.0), z, z, "at global step 0", "M", _cause)
    guard.raise_if_diverged("M", _cause)  # finite: nothing
    guard.after_forward(torch.tensor(float("nan")), z, z, "at global step 1", "M", _cause)
    guard.before_optimizer_step([torch.ones(2)], "at global step 1", "M", _cause)  # no raise yet
    with pytest.raises(FloatingPointError) as info:
        guard.raise_if_diverged("M", _cause)
    message = str(info.value)
    assert message.startswith("M: the loss is nan on this process") and "global step 1" in message
    assert "one step late" in message and "Likely cause: a test" in message
    with pytest.raises(FloatingPointError, match="global step 1"):  # e.g. a later save
        guard.raise_if_diverged("M", _cause)


def test_before_step_raises_at_once_and_names_what_failed() -> None:
    guard = FiniteGuard("before_step")
    with pytest.raises(FloatingPointError, match="non-finite gradients at global step 5"):
        guard.before_optimizer_step(
            [torch.ones(3), torch.tensor([1.0, float("inf")])], "at global step 5", "M", _cause
        )
    # The bad update never happened: the guard does not hold the run's error.
    guard.raise_if_diverged("M", _cause)
    z = torch.full((2, 4), 3e19)  # finite entries, ||z||^2 overflows float32
    with pytest.raises(
        FloatingPointError, match=r"embedding norms diverged \(max \|\|z\|\| = 6e\+19"
    ):
        guard.after_forward(torch.tensor(2.0), z, None, "at global step 6", "M", _cause)
    with pytest.raises(ValueError, match="'before_step' or 'next_step'"):
        FiniteGuard("later")  # type: ignore[arg-type]


def test_auto_timing_is_before_step_on_a_cpu_and_next_step_on_a_gpu(monkeypatch) -> None:
    model = make_method("simclr")
    assert model._finite_check_timing() == "before_step"
    monkeypatch.setattr(type(model), "device", property(lambda self: torch.device("cuda", 0)))
    assert model._finite_check_timing() == "next_step"
    assert make_method("simclr", check_finite_timing="before_step")._finite_check_timing() == (
        "before_step"
    )
    with pytest.raises(ValueError, match="check_finite_timing must be"):
        make_method("simclr", check_finite_timing="sometimes")


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_the_timing_does_not_change_what_a_finite_run_trains(method: str) -> None:
    weights = {}
    for timing in ("before_step", "next_step"):
        torch.manual_seed(0)
        model = make_method(method, check_finite_timing=timing)
        tiny_trainer(max_epochs=2).fit(model, datamodule=TinyDataModule(n=32, batch_size=8))
        weights[timing] = model.state_dict()
    for key, value in weights["before_step"].items():
        assert torch.equal(value, weights["next_step"][key]), key


def test_next_step_reads_a_step_s_checks_only_after_the_next_forward(monkeypatch) -> None:
    """What makes it cheap on a GPU: no check is read in the step that made it (the host
    would wait for that step's GPU work); each is read while the next step's forward runs,
    the last one at the epoch's end."""
    reads: list[tuple[str, list[str]]] = []
    original = FiniteGuard.raise_if_diverged

    def recording(self, owner, cause):
        if self._unread:
            reads.append((where_now[0], [c.where.split(" (")[0] for c in self._unread]))
        return original(self, owner, cause)

    monkeypatch.setattr(FiniteGuard, "raise_if_diverged", recording)
    model = make_method("simclr", check_finite_timing="next_step")
    where_now = ["?"]
    original_loss = model.compute_loss

    def compute_loss(*args):
        where_now[0] = f"forward of step {model.global_step}"
        return original_loss(*args)

    model.compute_loss = compute_loss

    class EpochEnd(Callback):  # callbacks' hooks run before the module's
        def on_train_epoch_end(self, trainer, pl_module):
            where_now[0] = "epoch end"

    trainer = tiny_trainer(max_epochs=1, callbacks=[EpochEnd()])
    trainer.fit(model, datamodule=TinyDataModule(n=32, batch_size=8))
    # Each step's two checks (forward, gradients), read one step later; the last step's at
    # the epoch's end.
    assert reads == [
        (f"forward of step {k}", [f"at global step {k - 1}"] * 2) for k in (1, 2, 3)
    ] + [("epoch end", ["at global step 3"] * 2)]


def test_next_step_saves_no_checkpoint_after_the_bad_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = make_method("simclr", check_finite_timing="next_step")
    # Samples 16.. are NaN: global steps 0 and 1 are fine, step 2 is not.
    every_step = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_top_k=-1,
                                 filename="{step}")  # fmt: skip
    trainer = tiny_trainer(max_epochs=1, enable_checkpointing=True, callbacks=[every_step])
    with pytest.raises(FloatingPointError) as info:
        trainer.fit(model, datamodule=TinyDataModule(n=32, batch_size=8, nan_from=16))
    assert "the loss is nan" in str(info.value) and "global step 2" in str(info.value)
    # The checkpoint after step 2's update (step=3) was refused before it was written.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step=1.ckpt", "step=2.ckpt"]
    for path in tmp_path.iterdir():
        state = load_checkpoint_file(path)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    # Every later save is refused too (e.g. a save-on-exception callback).
    with pytest.raises(FloatingPointError, match="global step 2"):
        trainer.save_checkpoint(tmp_path / "after.ckpt")
    assert not (tmp_path / "after.ckpt").exists()


def test_next_step_stops_on_the_last_step_of_training() -> None:
    """The bad step is the last one: nothing reads it the step after, the fit's end does."""
    model = make_method("simclr", check_finite_timing="next_step")
    with pytest.raises(FloatingPointError, match="global step 2"):
        tiny_trainer(max_epochs=1).fit(model, datamodule=TinyDataModule(n=24, nan_from=16))


def test_a_monitor_reading_the_bad_step_raises_the_guard_error_first(tmp_path: Path) -> None:
    """The norm monitor logs every step: it must not log (or choke on) the bad step."""
    from lightning.pytorch.loggers import CSVLogger

    model = make_method("simclr", check_finite_timing="next_step")
    trainer = tiny_trainer(max_epochs=1, logger=CSVLogger(tmp_path),
                           callbacks=[EmbeddingNormMonitor(every_n_steps=1)])  # fmt: skip
    with pytest.raises(FloatingPointError, match="global step 2"):
        trainer.fit(model, datamodule=TinyDataModule(n=32, batch_size=8, nan_from=16))
    rows = (next(tmp_path.rglob("metrics.csv"))).read_text().splitlines()
    header = rows[0].split(",")
    steps = {int(r.split(",")[header.index("step")]) for r in rows[1:]}
    assert steps and max(steps) < 2, "nothing of the bad step was logged"


_DDP_SCRIPT = """
import sys
import torch
sys.path.insert(0, {helpers!r})
from method_helpers import PairDataset, TinyDataModule, make_method, tiny_trainer

class OneBadSample(PairDataset):  # sample 17 only: on one process, in one batch
    def __getitem__(self, i):
        views, y, idx = super().__getitem__(i)
        if i == 17:
            views = [torch.full_like(v, float("nan")) for v in views]
        return views, y, idx

class Data(TinyDataModule):
    def train_dataloader(self):
        return torch.utils.data.DataLoader(OneBadSample(self.n), batch_size=self.batch_size // 2,
                                           shuffle=False, drop_last=True)

import lightning.pytorch as pl

class WhereTheNaNIs(pl.Callback):  # the global step whose batch holds sample 17
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if 17 in batch[2].tolist():
            with open({out!r} + "/expected.txt", "w") as f:
                f.write(f"rank {{trainer.global_rank}} step {{trainer.global_step}}")

torch.manual_seed(0)
model = make_method("simclr", check_finite_timing={timing!r})
trainer = tiny_trainer(max_epochs=1, strategy="ddp", devices=2, callbacks=[WhereTheNaNIs()])
try:
    trainer.fit(model, datamodule=Data(n=32, batch_size=8))
except FloatingPointError as error:
    with open({out!r} + f"/rank{{trainer.global_rank}}.txt", "w") as f:
        f.write(str(error))
"""


@pytest.mark.slow
@pytest.mark.parametrize("timing", ["before_step", "next_step"])
def test_every_process_stops_at_the_same_step(tmp_path: Path, timing: str) -> None:
    """A NaN on one process only: both stop, with the same step named, and none hangs."""
    script = tmp_path / "fit.py"
    script.write_text(
        textwrap.dedent(_DDP_SCRIPT.format(helpers=str(HERE), timing=timing, out=str(tmp_path)))
    )
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    messages = [(tmp_path / f"rank{r}.txt") for r in (0, 1)]
    assert all(m.exists() for m in messages), proc.stderr[-3000:]
    _, rank, _, step = (tmp_path / "expected.txt").read_text().split()
    for m in messages:
        assert (
            f"the loss is nan on this process (not finite on at least one) at global step {step} "
            in m.read_text()
        ), m.read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_on_a_gpu_the_steps_never_make_the_host_wait(method: str) -> None:
    """With the GPU's timing, steps 2-5 of a fit (no logging or monitor step among them)
    make no CUDA call that waits for the GPU (torch's sync debug mode): the host queues the
    next step meanwhile."""
    import warnings

    class SyncDebug(Callback):
        found: list[str] | None = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 2:
                torch.cuda.synchronize()
                self.context = warnings.catch_warnings(record=True)
                self.caught = self.context.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 6:  # step 5's update done
                torch.cuda.set_sync_debug_mode("default")
                self.context.__exit__(None, None, None)
                self.found = [f"{w.filename}:{w.lineno}: {w.message}" for w in self.caught
                              if "synchroniz" in str(w.message)]  # fmt: skip

    debug = SyncDebug()
    model = make_method(method)  # auto: next_step on the GPU
    trainer = tiny_trainer(accelerator="gpu", max_steps=8, log_every_n_steps=1000,
                           deterministic=False, callbacks=[debug])  # fmt: skip
    trainer.fit(model, datamodule=TinyDataModule(n=80, batch_size=8))
    assert model._finite_guard.timing == "next_step"
    assert debug.found == [], "\n".join(debug.found or ["the window did not run"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["simclr", "simsiam", "byol"])
def test_on_a_gpu_each_step_runs_ahead_of_a_busy_gpu(method: str, busy_gpu) -> None:
    """With the GPU's timing, the host queues a whole training step (forward, the guard's
    checks, backward, optimizer step) while the GPU is still busy with work queued before
    it: no wait, not even one torch's sync debug mode cannot see (the driver's). The guard
    reads a step's checks during the next step's forward: one step ahead at most. (A
    logging step, every ``log_every_n_steps``, reads the logged values back.)"""

    class RunAhead(Callback):
        """Queues half a second of GPU work as batch k (2-4) starts; at the next batch's
        start (after step k, the module's own batch-end hook and the next batch's transfer,
        before its forward reads step k's checks) the GPU must still be busy with it."""

        def __init__(self) -> None:
            self.waited: dict[int, bool] = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if 3 <= batch_idx <= 5:
                self.waited[batch_idx - 1] = self.done.query()
            if 2 <= batch_idx <= 4:
                self.done = busy_gpu(0.5)

    probe = RunAhead()
    model = make_method(method)
    trainer = tiny_trainer(accelerator="gpu", max_steps=6, log_every_n_steps=1000,
                           deterministic=False, callbacks=[probe])  # fmt: skip
    trainer.fit(model, datamodule=TinyDataModule(n=80, batch_size=8))
    assert model._finite_guard.timing == "next_step"
    assert probe.waited == {2: False, 3: False, 4: False}, probe.waited

"""The NaN guard sees the embeddings too; nonsense settings are refused or warned about."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from method_helpers import IN_DIM, make_method

from ssl_norms.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

REPO = Path(__file__).resolve().parents[3]
SMALL_DEMO = [
    "-c", str(REPO / "configs/demo.yaml"),
    "--trainer.max_epochs", "2",
    "--data.init_args.n_train", "512",
    "--data.init_args.n_eval", "256",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--wandb", "disabled",
]  # fmt: skip


def test_overflowing_embedding_norms_stop_before_the_step() -> None:
    model = make_method("simclr")
    loss = torch.tensor(5.5)  # a normalised loss stays finite while ||z|| overflows
    h = torch.randn(8, 24)
    z = torch.full((8, 16), 1e19)  # finite entries, ||z||^2 = 1.6e39 > float32 max
    with pytest.raises(FloatingPointError) as info:
        model._check_finite_loss(loss, 3, z, h)
    message = str(info.value)
    assert "the embedding norms diverged (max ||z|| = 4e+19" in message
    assert "normalised loss is still 5.5" in message and "batch 3" in message
    assert "Stopped before the optimizer step" in message
    model._check_finite_loss(loss, 3, torch.full((8, 16), 1e17), h)  # large but finite: fine
    with pytest.raises(FloatingPointError, match=r"max \|\|h\|\| = inf"):
        model._check_finite_loss(
            loss, 3, z[:, :1] * 0, h.index_fill(0, torch.tensor([2]), float("inf"))
        )


def test_half_precision_embeddings_are_measured_in_float32() -> None:
    """||z|| of 6e4-sized fp16 entries overflows fp16 (max 65504), not float32: no stop."""
    model = make_method("simclr")
    z = torch.full((64, 16), 6.0e4, dtype=torch.float16)
    model._check_finite_loss(torch.tensor(5.0, dtype=torch.float16), 0, z, z)


@pytest.mark.parametrize("timing", ["auto", "next_step"])
def test_lr_1e6_on_the_demo_stops_with_the_guard_message(
    tmp_path: Path, capsys, timing: str
) -> None:
    """The loss stayed finite, the norms overflowed, and the run died in the norm histogram
    with a traceback, leaving a diverged checkpoint. "next_step" is the GPU's timing."""
    runs = tmp_path / "runs"
    timed = ["--model.init_args.check_finite_timing", timing]
    assert (
        main(["fit", *SMALL_DEMO, *timed, "--model.init_args.lr", "1e6", "--runs_root", str(runs)])
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "SimCLR: the embedding norms diverged" in err and "Likely cause: the learning rate" in err
    )
    assert "Traceback" not in err
    assert list(runs.rglob("*.ckpt")) == [], "no checkpoint holds the diverged state"


def test_simclr_refuses_a_batch_of_one_pair(tmp_path: Path, capsys) -> None:
    """batch_size 1: InfoNCE without negatives is exactly 0 and nothing learns."""
    x = torch.randn(1, IN_DIM)
    with pytest.raises(ValueError, match="SimCLR needs at least 2 pairs per global batch"):
        make_method("simclr").compute_loss(x, x)
    runs = tmp_path / "runs"
    assert (
        main(["fit", *SMALL_DEMO, "--data.init_args.batch_size", "1", "--runs_root", str(runs)])
        == 1
    )
    err = capsys.readouterr().err
    assert "SimCLR needs at least 2 pairs per global batch" in err and "batch_size" in err


@pytest.mark.parametrize("power", [-1.0, 3.0, 1e6])
def test_a_gradscale_power_outside_the_sane_range_is_warned(power: float) -> None:
    with pytest.warns(UserWarning, match=r"gradscale_power=.* is outside \[0, 2\]"):
        make_method("simclr", gradscale_power=power)


def test_the_paper_gradscale_powers_are_not_warned() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for power in (0.0, 1.0, 2.0):
            make_method("simclr", gradscale_power=power)
    assert not [w for w in caught if "gradscale_power" in str(w.message)]

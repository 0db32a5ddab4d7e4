"""``ssl_norms.inference``: the norm percentile (scipy's ``percentileofscore(kind="mean")``) and
the confidence of a trained model from its checkpoint, whose stored training norms must be
the norms of the training set under the checkpoint's weights."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from scipy.stats import percentileofscore

from callbacks import EmbeddingNormMonitor, EvaluationPass
from ssl_norms.inference import NormConfidence, norm_percentile, reference_norms
from ssl_norms.methods import SimCLR


def test_percentile_matches_scipy_with_ties():
    ref = torch.tensor([1.0, 2.0, 2.0, 2.0, 3.5, 7.0, 7.0])
    x = torch.tensor([0.5, 1.0, 2.0, 2.5, 7.0, 9.0])
    expected = [percentileofscore(ref.numpy(), v, kind="mean") for v in x.numpy()]
    assert norm_percentile(x, ref).tolist() == pytest.approx(expected, rel=1e-12)
    assert norm_percentile(x, ref[torch.randperm(7)]).tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match="empty"):
        norm_percentile(x, torch.tensor([]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from datamodules import LatentClassesDataModule

    tmp = tmp_path_factory.mktemp("inference")
    pl.seed_everything(0)
    model = SimCLR(
        backbone="mlp",
        backbone_in_dim=64,
        backbone_width=32,
        projector_hidden_dim=32,
        projector_out_dim=16,
        lr=0.05,
        warmup_epochs=1,
    )
    data = LatentClassesDataModule(num_classes=3, n_train=192, n_eval=60, batch_size=64)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        callbacks=[
            EvaluationPass(every_n_epochs=1),
            EmbeddingNormMonitor(every_n_steps=1000),
            ModelCheckpoint(dirpath=tmp, save_last=True, save_on_train_epoch_end=True),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, data)
    return tmp / "last.ckpt", data


def test_confidence_from_a_checkpoint(trained):
    path, data = trained
    scorer = NormConfidence.from_checkpoint(path, model_class=SimCLR)
    # The stored norms are the training set's under the checkpoint's weights.
    recomputed = reference_norms(scorer.model, data.bank_dataloader())
    assert recomputed.shape == (192,)
    torch.testing.assert_close(scorer.reference.float(), recomputed, rtol=1e-5, atol=0)
    x = torch.stack([data.eval_dataset[i][0] for i in range(20)])
    out = scorer(x)
    assert out.h.shape == (20, 32) and out.z.shape == (20, 16)
    torch.testing.assert_close(out.norm, scorer.model.embed(x).detach().norm(dim=1))
    ref = scorer.reference.numpy()
    expected = [percentileofscore(ref, v, kind="mean") for v in out.norm.double().numpy()]
    np.testing.assert_allclose(out.confidence.numpy(), expected, rtol=1e-12)
    assert 0 <= out.confidence.min() and out.confidence.max() <= 100
    # A training sample sits among the training norms: its own norm is in the reference.
    own = scorer(torch.stack([data.bank_dataset[0][0]]))
    assert torch.isclose(scorer.reference, own.norm.double(), rtol=1e-5).any()
    h_scorer = NormConfidence(
        scorer.model, torch.load(path, weights_only=False)["ssl_norms_reference_norms"], space="h"
    )
    assert torch.allclose(h_scorer(x).norm, out.h.norm(dim=1))


def test_checkpoint_without_norms_and_stale_norms(trained, tmp_path):
    path, _ = trained
    ckpt = torch.load(path, weights_only=False)
    stored = ckpt.pop("ssl_norms_reference_norms")
    torch.save(ckpt, tmp_path / "none.ckpt")
    with pytest.raises(ValueError, match="holds no training norms.*reference_norms"):
        NormConfidence.from_checkpoint(tmp_path / "none.ckpt", model_class=SimCLR)
    ckpt["ssl_norms_reference_norms"] = {**stored, "step": stored["step"] - 1}
    torch.save(ckpt, tmp_path / "stale.ckpt")
    with pytest.warns(UserWarning, match="percentiles are approximate"):
        NormConfidence.from_checkpoint(tmp_path / "stale.ckpt", model_class=SimCLR)
    with pytest.raises(FileNotFoundError):
        NormConfidence.from_checkpoint(tmp_path / "missing.ckpt")


def test_checkpoints_load_as_plain_data_and_bad_files_get_a_message(trained, tmp_path):
    """Our checkpoints need no code from the pickle (weights_only=True loads them, no
    fall-back warning); a cut-off file names itself instead of an unpickling traceback."""
    import warnings

    from ssl_norms.checkpoint_io import CheckpointReadError
    from ssl_norms.methods import SSLMethod

    path, _ = trained
    torch.load(path, map_location="cpu", weights_only=True)  # raises if code is needed
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        NormConfidence.from_checkpoint(path, model_class=SimCLR)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for load in (
        lambda: NormConfidence.from_checkpoint(cut, model_class=SimCLR),
        lambda: SSLMethod.load_from_checkpoint(cut),
    ):
        with pytest.raises(
            CheckpointReadError, match=r"cut\.ckpt is truncated or not a checkpoint"
        ):
            load()

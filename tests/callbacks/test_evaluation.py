"""The shared evaluation pass: one gather per split whatever the monitors, the monitors' numbers
against references computed here from the model's own outputs, and clear setup errors.

The references re-run the fixed model on the same evaluation loaders (so the features are
bitwise those the pass gathers) and recompute every value in float64: numpy for the norm
statistics, scikit-learn for AUROC / AUPR / the ROC curve, plain formulas for AURC, RankMe,
uniformity and the l2-normalised std. k-NN goes through ``ssl_norms.knn`` (checked against a
brute-force reference in ``tests/ssl_norms/test_knn.py``), exactly as before the pass existed.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from monitor_testkit import TinyDataModule, TinySSL

import callbacks._eval_outputs as eval_outputs
from callbacks import (
    ConfidenceMonitor,
    EmbeddingNormMonitor,
    EvaluationPass,
    HealthMonitor,
    KNNMonitor,
)
from callbacks.evaluation import REFERENCE_KEY
from ssl_norms.knn import knn_accuracy, knn_predict

K, T = 9, 0.1


def all_monitors():
    return [
        KNNMonitor(k=K, temperature=T, backend="torch", bucket_accuracy=True, bucket_min_count=3),
        EmbeddingNormMonitor(every_n_steps=1000, histogram_bins=8),
        ConfidenceMonitor(),
        HealthMonitor(every_n_steps=1000, max_samples=None),
    ]


def make_trainer(cbs, **kwargs):
    return pl.Trainer(
        accelerator="cpu",
        callbacks=cbs,
        logger=False,
        enable_checkpointing=kwargs.pop("enable_checkpointing", False),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


@pytest.fixture
def count_gathers(monkeypatch):
    calls: list[list[str]] = []
    original = eval_outputs.gather_eval

    def counting(pl_module, tensors):
        calls.append(sorted(tensors))
        return original(pl_module, tensors)

    monkeypatch.setattr(eval_outputs, "gather_eval", counting)
    return calls


@pytest.mark.parametrize("n_monitors", [1, 4])
def test_each_split_is_gathered_once_per_evaluation(count_gathers, n_monitors):
    monitors = all_monitors()[:n_monitors]
    trainer = make_trainer([EvaluationPass(every_n_epochs=1), *monitors], max_epochs=2)
    trainer.fit(TinySSL(), TinyDataModule(n_bank=48, n_eval=20, n_ood=10))
    # Two evaluations x three splits, whatever the number of monitors.
    assert len(count_gathers) == 2 * 3
    base = ["h_norm", "idx", "y", "z_norm"]
    bank, evals, ood = count_gathers[:3]
    assert bank == sorted([*base, "h"])  # what the k-NN needs, gathered with the norms
    assert evals == sorted([*base, "h"] + (["z"] if n_monitors == 4 else []))
    assert ood == base


def evaluation_features(model, dm):
    """Per split, the fixed model's (h, z, y) on the same loaders the trainer validates on."""
    dm.setup("validate")
    model.eval()
    out = {}
    with torch.no_grad():
        for name, loader in zip(dm.eval_loader_names, dm.val_dataloader(), strict=True):
            hs, zs, ys = [], [], []
            for x, y, _ in loader:
                h = model(x)
                hs.append(h)
                zs.append(model.projector(h))
                ys.append(y)
            out[name] = (torch.cat(hs), torch.cat(zs), torch.cat(ys))
    return out


def numpy_summary(x: np.ndarray) -> dict[str, float]:
    out = {"mean": x.mean(), "std": x.std(ddof=1)}
    out.update({f"q{q:02d}": np.quantile(x, q / 100) for q in (5, 25, 50, 75, 95)})
    return out


def risk_coverage_reference(norms: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Selective risk at every coverage, lowest norms rejected first (distinct norms here)."""
    assert len(np.unique(norms)) == len(norms)
    order = np.argsort(-norms)
    errors = np.cumsum(1.0 - correct[order])
    return errors / np.arange(1, len(norms) + 1)


class NoisyEvalLabels(TinyDataModule):
    """Every third eval label moved to the next class: the k-NN makes errors to rank."""

    def setup(self, stage=None):
        super().setup(stage)
        x, y = self.eval
        y = y.clone()
        y[::3] = (y[::3] + 1) % 4
        self.eval = (x, y)


def test_monitors_give_the_numbers_of_the_references():
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    model, dm = TinySSL(), NoisyEvalLabels(eval_batch_size=7)
    monitors = all_monitors()
    knn, norm, conf, health = monitors
    make_trainer([EvaluationPass(), *monitors]).validate(model, dm, verbose=False)
    feats = evaluation_features(model, dm)
    (bank_h, bank_z, bank_y), (eval_h, eval_z, eval_y), (ood_h, ood_z, _) = feats.values()

    # k-NN: the pure functions on the same features, as the monitor called them before.
    pred, scores = knn_predict(bank_h, bank_y, eval_h, k=K, temperature=T, backend="torch")
    correct = (pred == eval_y).numpy()
    assert knn.last_results["top1"] == knn_accuracy(scores, eval_y, top_k=1)
    assert knn.last_results["top1"] == pytest.approx(correct.mean(), abs=1e-7)
    assert 0.3 < correct.mean() < 1.0  # an informative case: some errors, better than chance

    # Norm statistics in float64.
    res = norm.last_results
    for split, (h, z, _) in feats.items():
        for key, x in (("z", z), ("h", h)):
            expected = numpy_summary(x.norm(dim=1).double().numpy())
            assert res["splits"][split][key] == pytest.approx(expected, rel=1e-12), (split, key)
    bank_norms = bank_z.norm(dim=1).double().numpy()
    for c, value in res["class_mean"].items():
        assert value == pytest.approx(bank_norms[bank_y.numpy() == c].mean(), rel=1e-12)
    ood_norms = ood_z.norm(dim=1).double().numpy()
    assert res["ood_ratio"]["far"] == pytest.approx(ood_norms.mean() / bank_norms.mean())

    # Confidence: scikit-learn for the OOD metrics, the risk-coverage curve by hand.
    eval_norms = eval_z.norm(dim=1).double().numpy()
    scores_ = np.concatenate([eval_norms, ood_norms])
    positive = np.concatenate([np.ones_like(eval_norms), np.zeros_like(ood_norms)])
    fpr, tpr, _ = roc_curve(positive, scores_, drop_intermediate=False)
    ood = conf.last_results["ood"]["far"]
    assert ood["auroc"] == pytest.approx(roc_auc_score(positive, scores_), rel=1e-12)
    assert ood["aupr"] == pytest.approx(average_precision_score(positive, scores_), rel=1e-12)
    assert ood["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    risk = risk_coverage_reference(eval_norms, correct.astype(float))
    assert conf.last_results["aurc"] == pytest.approx(risk.mean(), rel=1e-12)
    assert conf.last_results["random_aurc"] == pytest.approx(1 - correct.mean(), rel=1e-12)

    # Health: RankMe, uniformity and the l2-normalised std in float64.
    for space, x in (("z", eval_z), ("h", eval_h)):
        x = x.double().numpy()
        s = np.linalg.svd(x, compute_uv=False)
        p = s / s.sum() + 1e-7
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        i, j = np.triu_indices(len(u), k=1)
        sq = ((u[i] - u[j]) ** 2).sum(1)
        got = health.last_results[space]
        assert got["rankme"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-10)
        assert got["uniformity"] == pytest.approx(np.log(np.exp(-2 * sq).mean()), rel=1e-10)
        assert got["l2_std"] == pytest.approx(u.std(axis=0, ddof=1).mean(), rel=1e-10)


def test_confidence_every_n_evaluations_and_the_final_one():
    conf = ConfidenceMonitor(every_n_evaluations=3)
    knn = KNNMonitor(k=5)
    trainer = make_trainer([EvaluationPass(every_n_epochs=1), knn, conf], max_epochs=4)
    trainer.fit(TinySSL(), TinyDataModule(n_bank=48, n_eval=20, n_ood=10))
    assert [r["epoch"] for r in knn.history] == [0, 1, 2, 3]
    assert [r["epoch"] for r in conf.history] == [2, 3]  # the 3rd evaluation, the last one


def test_the_checkpoint_stores_the_sorted_training_norms(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    norm = EmbeddingNormMonitor(every_n_steps=1000)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_on_train_epoch_end=True)
    trainer = make_trainer(
        [EvaluationPass(every_n_epochs=2), norm, ckpt], max_epochs=2, enable_checkpointing=True
    )
    trainer.fit(TinySSL(), TinyDataModule(n_bank=48, n_eval=20, n_ood=10))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)[REFERENCE_KEY]
    assert saved["epoch"] == 1 and saved["step"] == trainer.global_step
    z = saved["z"]
    assert z.shape == (48,) and torch.all(z[1:] >= z[:-1])
    assert z.double().mean().item() == pytest.approx(
        norm.last_results["splits"]["bank"]["z"]["mean"]
    )


def test_setup_errors_name_the_fix():
    dm = TinyDataModule(n_bank=48, n_eval=20, n_ood=10)
    with pytest.raises(ValueError, match="no callbacks.EvaluationPass"):
        make_trainer([KNNMonitor()]).validate(TinySSL(), dm, verbose=False)
    with pytest.raises(ValueError, match="add callbacks.KNNMonitor"):
        make_trainer([EvaluationPass(), ConfidenceMonitor()]).validate(TinySSL(), dm)
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1"):
        EvaluationPass(every_n_epochs=0)
    # Without AURC the confidence monitor needs no k-NN.
    conf = ConfidenceMonitor(aurc=False)
    make_trainer([EvaluationPass(), conf]).validate(TinySSL(), dm, verbose=False)
    assert set(conf.last_results) == {"ood", "eval_size", "epoch", "step"}
    # A monitor with per-step parts only warns: its per-step values still come.
    with pytest.warns(UserWarning, match="per-step values only"):
        make_trainer([EmbeddingNormMonitor()]).validate(TinySSL(), dm, verbose=False)

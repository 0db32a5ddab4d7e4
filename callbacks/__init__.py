"""Lightning callbacks that observe SSL training (docs/contract.md).

They read what a module exposes (docs/contract.md): ``training_step``'s ``{"loss", "z",
"h", "y"}``, ``validation_step``/``test_step``'s ``{"h", "z", "y", "idx"}`` over the loaders
``[bank, eval, *ood]``, ``gradscale_power`` and the optimizer group named ``"backbone"``.
Every value is gathered across DDP ranks, so it does not depend on the number of processes.

- :class:`EvaluationPass` ``(every_n_epochs=10, store_reference_norms=True)``: schedules the
  evaluation loop (every n epochs, at the last one, and on the batch where a stop is
  requested during training: see its docstring for the stops it cannot precede with an
  evaluation), gathers every split once per evaluation and hands it to the monitors below
  that read it (the evaluation monitors); it saves the bank's sorted norms in checkpoints
  (``ssl_norms.inference``).
- :class:`KNNMonitor` ``(k=200, temperature=0.1, bucket_accuracy=False, backend="auto")``:
  weighted k-NN accuracy (evaluation).
- :class:`EmbeddingNormMonitor` ``(every_n_steps=50, histogram_bins=64)``: norms of z and h
  (per step, and per evaluation).
- :class:`ConfidenceMonitor` ``(every_n_evaluations=1, space="z", aurc=True)``: the norm as
  a confidence score: OOD detection and selective prediction (evaluation).
- :class:`HealthMonitor` ``(every_n_steps=50, spaces="both", max_samples=4096)``: RankMe,
  uniformity, l2-normalised std (evaluation); alignment, opposite-halves rate (per step).
- :class:`EffectiveLRMonitor` ``(every_n_steps=50)``: the effective learning rate.

Metric names (stable). ``z`` is the loss-space embedding (projector output for SimCLR,
predictor output for SimSiam/BYOL), ``h`` the backbone features; ``<q>`` is one of
``q05 q25 q50 q75 q95``; ``<split>`` is ``bank`` or ``eval``; ``<name>`` an OOD loader's name
(``ood/<name>`` in ``eval_loader_names``); ``<c>`` a class index; ``<i>`` a bucket index 0-19.

Every ``every_n_steps`` optimizer steps (x-axis: the trainer step). These per-step
statistics read ``training_step``'s outputs in ``on_train_batch_end`` and cover every sample
the logged step's gradient was summed over: with gradient accumulation
(``accumulate_grad_batches > 1``) the per-sample norms of all the step's micro-batches are
buffered (only for logged steps), gathered across ranks and summarised once, when the
optimizer step completes. "The batch" below means all of them, on every rank.

- ``norm/z_mean``, ``norm/z_std``, ``norm/z_<q>``: ||z|| over the batch (all ranks)
- ``norm/h_mean``, ``norm/h_std``, ``norm/h_<q>``: ||h|| over the batch
- ``lr/base``: current lr of the backbone's parameter group
- ``lr/effective``, ``lr/effective_median``: batch mean / median of ``lr * ||z_i||^(p-2)``,
  p = GradScale power (Theorem 3.4)
- ``health/alignment``: mean ||u1_i - u2_i||^2 over the positive pairs of the batch, u = z /
  ||z|| (Wang & Isola, 2020); ``health/opposite_halves``: fraction of positive pairs with
  z1_i . z2_i < 0, i.e. more than pi/2 apart (paper Appendix C.2, Table S1)

Every evaluation epoch (every ``EvaluationPass.every_n_epochs``, the last epoch,
``ssl-norms validate|test``; in W&B plotted against ``epoch``):

- ``knn/top1``, ``knn/top5``: weighted k-NN accuracy (in [0, 1]) of the eval split, bank =
  the un-augmented SSL training set, features = h
- ``knn/bucket_acc/<i>``, ``knn/bucket_count/<i>`` (``bucket_accuracy=True``): accuracy and
  size of bucket i of ||z|| / max ||z|| over the eval split, buckets of 0.05 holding more
  than 50 samples (paper Fig. 4 left)
- ``norm/<split>_hist``: histogram of the per-sample ||z|| (W&B ``wandb.Histogram``,
  TensorBoard ``add_histogram``); ``norm/<split>_h_hist`` the same for ||h||
- ``norm/<split>_mean``, ``norm/<split>_std``, ``norm/<split>_<q>``: the same ||z|| as
  scalars (the histogram's quantiles: the CSV columns); ``norm/<split>_h_mean``,
  ``norm/<split>_h_std``, ``norm/<split>_h_<q>`` for ||h||
- ``norm/class_mean/<c>``: mean ||z|| of class c over the bank (paper Fig. 2c)
- ``norm/ood/<name>_mean``: mean ||z|| over an OOD loader
- ``norm/ood_ratio/<name>``: that mean divided by the bank's mean ||z|| (paper Fig. 3)
- ``norm/class_mean_table``, ``norm/class_mean_bar`` (W&B only): the per-class mean ||z||
  and ||h|| of the bank as a ``wandb.Table`` and its bar chart
- ``confidence/auroc/<name>``, ``confidence/aupr/<name>``, ``confidence/fpr95/<name>``: the
  norm ||z|| as an OOD score, eval split (positives) against OOD loader ``<name>``: area
  under the ROC curve, average precision of the in-distribution samples, false-positive
  rate at 95% true-positive rate (paper Fig. 3; every ``every_n_evaluations``)
- ``confidence/aurc``: area under the risk-coverage curve of the k-NN predictions of the
  eval split when the lowest norms are rejected first (paper Section 7; lower is better);
  ``confidence/random_aurc``: the same for random rejection (the error rate);
  ``confidence/excess_aurc``: aurc minus its optimum; ``confidence/spearman``: rank
  correlation of the norm with k-NN correctness (Fig. 4 left; absent when constant)
- ``health/rankme_<s>``: effective rank of the eval embeddings (RankMe, Garrido et al.,
  2023); ``health/uniformity_<s>``: log E exp(-2 ||u_i - u_j||^2) (Wang & Isola, 2020);
  ``health/l2_std_<s>``: mean per-dimension std of u = x / ||x|| (collapse when near 0,
  about 1 / sqrt(d) when isotropic); ``<s>`` = ``z`` or ``h``

Exact definitions of the confidence and health metrics: ``docs/confidence.md``.
"""

from callbacks.confidence_monitor import ConfidenceMonitor
from callbacks.effective_lr_monitor import EffectiveLRMonitor
from callbacks.evaluation import EvalFeatures, EvalMonitor, EvaluationPass
from callbacks.health_monitor import HealthMonitor
from callbacks.knn_monitor import KNNMonitor
from callbacks.norm_monitor import EmbeddingNormMonitor

__all__ = [
    "EvaluationPass",
    "EvalFeatures",
    "EvalMonitor",
    "KNNMonitor",
    "EmbeddingNormMonitor",
    "ConfidenceMonitor",
    "HealthMonitor",
    "EffectiveLRMonitor",
]

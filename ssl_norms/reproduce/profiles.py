"""The sizes the paper's runners run at: ``paper``, ``cpu`` and ``smoke``.

A profile says which configs are composed after a run's method base, data config and
interventions (``configs/README.md``), how many epochs each kind of run trains, and which
data sets a runner covers when ``--datasets`` is not given:

- ``paper``: the shipped configs at the paper's size (Appendix C.1): 500 epochs for the
  tables, 256 for the weight-decay and cut curves, every data set. GPU-days.
- ``cpu``: sized for 2 CPU cores on ``../shared/data`` (``configs/cpu/``): the Table 3
  CIFAR-10-Unb. row, Figures 3, 4 (left) and 5 on CIFAR-10 in about an hour (the design and
  its timing are in ``configs/cpu/table3.yaml`` and ``configs/cpu/balanced.yaml``).
- ``smoke``: seconds per run (``configs/smoke/``), to test the runners end to end.

Epochs are named by their role: ``table`` (the schedule of Tables 1-3 and S1-S2, 500 in
the paper), ``curves`` (Figures 5, S3 and S4, 256). Early epochs of Table S1 (1 and 16) and
the stops of Tables 1 and S2 (epoch 100) are scaled to the profile's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PROFILES", "Profile", "ExtraSet"]


@dataclass(frozen=True)
class ExtraSet:
    """A data split embedded beside a run's own splits (Figure 3's other data sets).

    ``loader`` is ``"ood"`` (``datamodules.ood.load_ood_set``: a test split, any known
    layout) or ``"cifar10"``/``"cifar100"`` (``datamodules.cifar.load_cifar_split`` of
    ``split``); ``folder`` may hold ``{data}``, replaced by the data folder in use.
    """

    label: str
    loader: str
    split: str
    folder: str

    def argument(self, data_dir: str) -> str:
        """The ``--extra`` argument of ``python -m ssl_norms.reproduce.embeddings``."""
        return f"{self.label}={self.loader}:{self.split}:{self.folder.format(data=data_dir)}"


def _other_cifar(dataset: str) -> str:
    return "cifar100" if dataset == "cifar10" else "cifar10"


@dataclass(frozen=True)
class Profile:
    """How big the runs of ``ssl-norms reproduce`` are.

    Args:
        name: ``paper``, ``cpu`` or ``smoke``.
        description: one line for the report.
        dataset_configs: data config name (or ``"*"``) -> configs composed after the
            interventions (relative to ``configs/``).
        method_configs: method -> configs composed after those (head sizes).
        override_configs: intervention -> configs composed last when the run has it
            (e.g. GradScale's schedule at this size).
        epochs: role -> schedule length; ``(role, dataset)`` keys win over ``role``.
        early_epochs: the epochs of Table S1 (the paper: 1 and 16).
        log_stops: stop the curve runs at epochs 1, 2, 4, ... to evaluate k-NN there (needed
            when the configs evaluate only every n epochs).
        scope: runner -> the data sets it covers by default (absent: all of them).
        default_data_dir: the data folder the configs of this profile read (for Figure 3's
            extra sets and the human label files, when ``--data-dir`` is not given).
        bucket_min_count: Figure 4 keeps buckets with more samples than this (paper: 50).
        knn_k: neighbours of the k-NN of Figure 4 (paper: 200).
        pairs: positive pairs Table S1 measures per checkpoint.
        accumulate: the gradient accumulation of SimSiam and BYOL in this profile's configs
            (the paper's 1024 = 256 x 4; the CPU configs step every micro-batch).
        extras: training data set -> the other splits Figure 3 embeds beside it.
    """

    name: str
    description: str
    dataset_configs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    method_configs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    override_configs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    epochs: dict[object, int] = field(default_factory=dict)
    early_epochs: tuple[int, int] = (1, 16)
    log_stops: bool = True
    scope: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_data_dir: str = "data"
    bucket_min_count: int = 50
    knn_k: int = 200
    pairs: int = 10_000
    accumulate: int = 4
    extras: dict[str, tuple[ExtraSet, ...]] = field(default_factory=dict)

    def configs_for(self, method: str, dataset: str, overrides: tuple[str, ...]) -> list[str]:
        """The profile's configs of one run, in composition order."""
        out = list(self.dataset_configs.get(dataset, self.dataset_configs.get("*", ())))
        out += self.method_configs.get(method, ())
        for name in overrides:
            out += self.override_configs.get(name, ())
        return out

    def schedule(self, role: str, dataset: str) -> int:
        """Epochs of a run of this role on this data set."""
        return int(self.epochs.get((role, dataset), self.epochs[role]))

    def scaled(self, paper_epoch: int, paper_schedule: int, schedule: int) -> int:
        """``paper_epoch`` of a ``paper_schedule``-epoch run, at this profile's schedule."""
        if schedule == paper_schedule:
            return paper_epoch
        return max(1, min(schedule, round(paper_epoch * schedule / paper_schedule)))

    def early(self, schedule: int) -> tuple[int, int]:
        """Table S1's two epochs, within ``schedule``."""
        first, second = (min(e, schedule) for e in self.early_epochs)
        return first, second

    def covers(self, runner: str, dataset: str) -> bool:
        scope = self.scope.get(runner)
        return scope is None or dataset in scope

    def extra_sets(self, dataset: str) -> tuple[ExtraSet, ...]:
        return self.extras.get(dataset, ())


_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
# Figure 3: the other CIFAR's training and test splits.
_PAPER_EXTRAS = {
    d: tuple(
        ExtraSet(f"{_TITLES[_other_cifar(d)]} {split}", _other_cifar(d), split, "{data}")
        for split in ("train", "test")
    )
    for d in ("cifar10", "cifar100")
}

# Figure 3 on ../shared/data: Fashion-MNIST and the 20 CIFAR-100 test images it holds.
_OFFLINE_EXTRAS = {
    "cifar10": (
        ExtraSet("Fashion-MNIST test (OOD)", "ood", "test", "{data}/fashion_mnist"),
        ExtraSet("CIFAR-100, 20 test images (OOD)", "ood", "test", "{data}/cifar100"),
    )
}

PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        description="the shipped configs at the paper's size (ResNet-50, 500 / 256 epochs)",
        epochs={"table": 500, "curves": 256},
        early_epochs=(1, 16),
        log_stops=True,
        extras=_PAPER_EXTRAS,
    ),
    "cpu": Profile(
        name="cpu",
        description=(
            "2 CPU cores on ../shared/data: a 3-layer ConvNet, the imbalanced CIFAR-10 for 5 "
            "epochs, 500 CIFAR-10 images per class for 8 (configs/cpu/)"
        ),
        dataset_configs={
            "cifar10_unbalanced": ("cpu/table3.yaml",),
            "cifar100_unbalanced": ("cpu/table3.yaml",),
            "flowers_unbalanced": ("cpu/table3.yaml",),
            "*": ("cpu/balanced.yaml",),
        },
        method_configs={
            "simsiam": ("cpu/heads_siamese.yaml",),
            "byol": ("cpu/heads_siamese.yaml",),
        },
        override_configs={"gradscale": ("cpu/gradscale.yaml",)},
        epochs={"table": 8, "curves": 8, ("table", "cifar10_unbalanced"): 5},
        early_epochs=(1, 4),
        log_stops=False,  # configs/cpu/balanced.yaml evaluates every epoch
        scope={
            "table1": (),
            "table2": (),
            "table3": ("cifar10_unbalanced",),
            "table-s1": (),
            "table-s2": (),
            "fig3": ("cifar10",),
            "fig4": ("cifar10",),
            "fig5": ("cifar10",),
            "fig-s4": (),
            "fig-s6": ("cifar10",),
        },
        default_data_dir="../shared/data",
        pairs=4096,
        accumulate=1,
        extras=_OFFLINE_EXTRAS,
    ),
    "smoke": Profile(
        name="smoke",
        description="seconds per run: a width-8 ConvNet, 8 images per class, 2 epochs (configs/smoke/)",
        dataset_configs={
            "*": ("smoke/image.yaml",),
            "flowers_unbalanced": ("smoke/image.yaml", "smoke/large_images.yaml"),
            "imagenet100": ("smoke/image.yaml", "smoke/large_images.yaml"),
        },
        method_configs={
            "simclr": ("smoke/heads_simclr.yaml",),
            "simsiam": ("smoke/heads_siamese.yaml",),
            "byol": ("smoke/heads_siamese.yaml",),
        },
        epochs={"table": 2, "curves": 2},
        early_epochs=(1, 2),
        log_stops=False,
        default_data_dir="../shared/data",
        bucket_min_count=2,
        knn_k=20,
        pairs=64,
        accumulate=1,
        extras=_OFFLINE_EXTRAS,
    ),
}

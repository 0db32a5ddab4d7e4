"""The paper's published numbers, beside which every runner reports its own.

Draganov et al., "On the Importance of Embedding Norms in Self-Supervised Learning"
(ICML 2025): Table 1 (Section 6), Tables 2 and 3 (Section 6), Table S1 (Appendix C.2) and
Table S2 (Appendix C.4). k-NN accuracies in %, rates in %.
"""

from __future__ import annotations

__all__ = [
    "INTERVENTIONS",
    "TABLE1_SIMCLR",
    "TABLE1_SIMSIAM",
    "TABLE2",
    "TABLE3",
    "TABLE_S1",
    "TABLE_S2",
    "CUT_VALUES",
]

#: The rows of Tables 2 and 3: (method, variant label, overrides/*.yaml stems).
INTERVENTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("simclr", "Default", ()),
    ("simclr", "Cut (c = 3)", ("cut",)),
    ("simclr", "GradScale", ("gradscale",)),
    ("simsiam", "Default", ()),
    ("simsiam", "Cut (c = 9)", ("cut_simsiam",)),
)

#: Table 2, k-NN at epoch 500: (method, variant) -> {dataset: %}.
TABLE2: dict[tuple[str, str], dict[str, float]] = {
    ("simclr", "Default"): {"cifar10": 85.2, "cifar100": 51.9, "imagenet100": 59.4},
    ("simclr", "Cut (c = 3)"): {"cifar10": 87.0, "cifar100": 52.6, "imagenet100": 60.9},
    ("simclr", "GradScale"): {"cifar10": 86.5, "cifar100": 54.0, "imagenet100": 61.0},
    ("simsiam", "Default"): {"cifar10": 87.0, "cifar100": 61.1, "imagenet100": 62.0},
    ("simsiam", "Cut (c = 9)"): {"cifar10": 89.0, "cifar100": 61.5, "imagenet100": 67.2},
}

#: Table 3, k-NN at epoch 500 on class-imbalanced data.
TABLE3: dict[tuple[str, str], dict[str, float]] = {
    ("simclr", "Default"): {
        "cifar10_unbalanced": 56.5,
        "cifar100_unbalanced": 24.3,
        "flowers_unbalanced": 42.6,
    },
    ("simclr", "Cut (c = 3)"): {
        "cifar10_unbalanced": 61.1,
        "cifar100_unbalanced": 26.3,
        "flowers_unbalanced": 61.6,
    },
    ("simclr", "GradScale"): {
        "cifar10_unbalanced": 61.3,
        "cifar100_unbalanced": 29.1,
        "flowers_unbalanced": 47.2,
    },
    ("simsiam", "Default"): {
        "cifar10_unbalanced": 47.0,
        "cifar100_unbalanced": 21.6,
        "flowers_unbalanced": 22.5,
    },
    ("simsiam", "Cut (c = 9)"): {
        "cifar10_unbalanced": 61.7,
        "cifar100_unbalanced": 31.5,
        "flowers_unbalanced": 39.9,
    },
}

#: Table 1 cut constants (rows).
CUT_VALUES = (1, 2, 4, 8)

#: Table 1 left, SimCLR on CIFAR-100, k-NN at epoch 100: {(c, weight decay): %}.
TABLE1_SIMCLR: dict[tuple[int, str], float] = {
    (1, "1e-8"): 40.8, (1, "1e-6"): 40.5, (1, "5e-6"): 40.9, (1, "1e-5"): 41.5,
    (2, "1e-8"): 42.7, (2, "1e-6"): 42.8, (2, "5e-6"): 42.9, (2, "1e-5"): 42.2,
    (4, "1e-8"): 42.3, (4, "1e-6"): 41.4, (4, "5e-6"): 42.0, (4, "1e-5"): 41.1,
    (8, "1e-8"): 37.1, (8, "1e-6"): 36.8, (8, "5e-6"): 37.9, (8, "1e-5"): 37.3,
}  # fmt: skip

#: Table 1 right, SimSiam on ImageNet-100, k-NN at epoch 100.
TABLE1_SIMSIAM: dict[tuple[int, str], float] = {
    (1, "5e-5"): 36.7, (1, "1e-4"): 38.5, (1, "5e-4"): 40.5, (1, "1e-3"): 44.7,
    (2, "5e-5"): 41.1, (2, "1e-4"): 44.0, (2, "5e-4"): 48.8, (2, "1e-3"): 42.1,
    (4, "5e-5"): 40.2, (4, "1e-4"): 41.2, (4, "5e-4"): 49.8, (4, "1e-3"): 49.1,
    (8, "5e-5"): 44.4, (8, "1e-4"): 46.4, (8, "5e-4"): 50.2, (8, "1e-3"): 53.2,
}  # fmt: skip

#: Table S1, % of positive pairs at an angle above pi/2: (method, dataset) -> (epoch 1, 16).
TABLE_S1: dict[tuple[str, str], tuple[float, float]] = {
    ("simclr", "imagenet100"): (2.0, 0.0),
    ("simclr", "cifar100"): (11.0, 1.0),
    ("simsiam", "imagenet100"): (26.0, 1.0),
    ("simsiam", "cifar100"): (21.0, 0.0),
    ("byol", "imagenet100"): (28.0, 1.0),
    ("byol", "cifar100"): (20.0, 0.0),
}

#: Table S2, SimSiam on CIFAR-100: (epoch, variant, batch size) -> %.
TABLE_S2: dict[tuple[int, str, int], float] = {
    (100, "Default", 256): 46.1, (100, "Default", 512): 41.2, (100, "Default", 1024): 32.6,
    (100, "Cut (c = 9)", 256): 43.1, (100, "Cut (c = 9)", 512): 46.5, (100, "Cut (c = 9)", 1024): 44.3,
    (500, "Default", 256): 59.1, (500, "Default", 512): 60.4, (500, "Default", 1024): 61.3,
    (500, "Cut (c = 9)", 256): 59.4, (500, "Cut (c = 9)", 512): 58.9, (500, "Cut (c = 9)", 1024): 61.5,
}  # fmt: skip

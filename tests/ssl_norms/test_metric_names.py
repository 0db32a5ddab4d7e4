"""``ssl_norms.metric_names``: the one list of logged names, the README's table and the CSVs."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from ssl_norms import metric_names as M

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {"<split>": "eval", "<c>": "7", "<i>": "19", "<name>": "fashion_mnist", "<s>": "h"}


def _examples(readme: str) -> list[str]:
    """The concrete names a README spelling stands for (placeholders filled in)."""
    names = []
    for part in readme.split(", "):
        for key, value in EXAMPLES.items():
            part = part.replace(key, value)
        if part.endswith(" ... q95"):
            stem = part[: -len(" ... q95")][: -len("q05")]
            names += [stem + q for q in M.QUANTILES]
        elif part.endswith("*"):
            names += [part[:-1] + stat for stat in M.STEP_STATS]
        else:
            names.append(part)
    return names


def readme_table() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## What is logged")[1].split("\n## ")[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            name, meaning = (c.strip().replace("\\|", "|") for c in cells)
            rows.append((name.replace("`", ""), meaning))
    return rows


def test_the_readme_table_is_the_list_of_patterns() -> None:
    assert readme_table() == [(p.readme, p.meaning) for p in M.PATTERNS]


@pytest.mark.parametrize("pattern", M.PATTERNS, ids=lambda p: p.readme)
def test_each_family_recognises_exactly_its_own_names(pattern: M.Pattern) -> None:
    for name in _examples(pattern.readme):
        assert pattern.matches(name), name
        assert M.match(name) is pattern and M.is_known(name)


def test_the_builders_spell_the_names_the_monitors_log() -> None:
    assert M.step_norm("z", "q95") == "norm/z_q95" and M.step_norm("h", "mean") == "norm/h_mean"
    assert M.split_norm("bank", "mean") == "norm/bank_mean"
    assert M.split_norm("eval", "q05", "h") == "norm/eval_h_q05"
    assert M.split_hist("eval", "h") == "norm/eval_h_hist" and M.is_known("norm/bank_hist")
    assert M.class_mean(3) == "norm/class_mean/3" and M.bucket_count(19) == "knn/bucket_count/19"
    assert M.ood_ratio("cifar100") == "norm/ood_ratio/cifar100"
    assert M.ood_mean("cifar100") == "norm/ood/cifar100_mean"
    for name in ("norm/z_max", "knn/top3", "norm/test_mean", "lr/peak", "norm/class_mean/x"):
        assert not M.is_known(name), name
    assert M.ood_detection("fpr95", "svhn") == "confidence/fpr95/svhn" and M.is_known(
        "confidence/fpr95/svhn"
    )
    assert (
        M.selective("aurc") == "confidence/aurc"
        and M.health_step("opposite_halves") == "health/opposite_halves"
    )
    assert M.health_eval("rankme", "h") == "health/rankme_h" and M.is_known(M.TRAIN_TAU)
    for name in (M.CLASS_MEAN_TABLE, M.CLASS_MEAN_BAR, M.health_eval("l2_std", "z")):
        assert M.is_known(name), name
    with pytest.raises(ValueError, match="unknown health metric 'rank'"):
        M.health_eval("rank", "z")
    with pytest.raises(ValueError, match="unknown split 'train'"):
        M.split_norm("train", "mean")
    with pytest.raises(ValueError, match="unknown statistic 'max'"):
        M.step_norm("z", "max")


def test_every_name_the_monitors_document_is_defined() -> None:
    """The callbacks' docstring (the definitions) names nothing metric_names does not know."""
    import callbacks

    names = set(re.findall(r"``((?:norm|knn|lr|train)/[^`]+)``", callbacks.__doc__))
    assert len(names) > 10
    for name in names:
        for key, value in {**EXAMPLES, "<q>": "q50"}.items():
            name = name.replace(key, value)
        assert M.is_known(name), name


def test_every_column_a_run_logs_is_defined(finished_run: Path) -> None:
    """The demo fit's CSV (the monitors as shipped): every column is a documented name."""
    with open(finished_run / "csv" / "metrics.csv", newline="") as file:
        columns = next(csv.reader(file))
    metrics = [c for c in columns if c not in M.CSV_INDEX_COLUMNS]
    assert len(metrics) > 30 and "norm/class_mean/0" in metrics
    assert [c for c in metrics if not M.is_known(c)] == []

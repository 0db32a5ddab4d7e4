"""``ssl-norms dashboard``: the W&B workspace it builds (no server): one section per family,
evaluation metrics against the epoch, every plotted name one that the callbacks document
and log, the per-class bar chart on the table the norm monitor logs."""

from __future__ import annotations

import json
import re

import pytest

import callbacks
from ssl_norms import dashboard
from ssl_norms.dashboard import SECTIONS, build_workspace

ws = pytest.importorskip("wandb_workspaces.workspaces", reason="pip install '.[dashboard]'")
wr = pytest.importorskip("wandb_workspaces.reports.v2")

# Every metric name the callbacks document (callbacks/__init__.py), as regexes.
DOCUMENTED = [
    re.compile(
        "^"
        + re.escape(p)
        .replace(r"<q>", "q(05|25|50|75|95)")
        .replace(r"<split>", "(bank|eval)")
        .replace(r"<s>", "(z|h)")
        .replace(r"<c>", r"\d+")
        .replace(r"<i>", r"\d+")
        .replace(r"<name>", r"[^/]+")
        + "$"
    )
    for p in re.findall(r"``((?:norm|knn|lr|confidence|health)/[^`]+)``", callbacks.__doc__)
]
# Logged per training step (callbacks/__init__.py, "Every every_n_steps optimizer steps").
PER_STEP = re.compile(r"^(norm/[zh]_|lr/|health/(alignment|opposite_halves)$)")
EXAMPLES = {  # names a run logs, for each regex panel
    "knn/bucket_acc/.*": "knn/bucket_acc/7",
    "knn/bucket_count/.*": "knn/bucket_count/7",
    "norm/class_mean/.*": "norm/class_mean/3",
    "norm/ood_ratio/.*": "norm/ood_ratio/fashion_mnist",
    "confidence/auroc/.*": "confidence/auroc/cifar100",
    "confidence/aupr/.*": "confidence/aupr/cifar100",
    "confidence/fpr95/.*": "confidence/fpr95/cifar100",
}


def test_one_section_per_family_with_the_right_axes():
    workspace = build_workspace("me", "proj")
    assert (workspace.entity, workspace.project, workspace.name) == ("me", "proj", "ssl-norms")
    assert [s.name for s in workspace.sections] == ["knn", "norm", "lr", "confidence", "health"]
    lines = 0
    for section in workspace.sections:
        for panel in section.panels:
            if isinstance(panel, wr.CustomChart):
                continue
            lines += 1
            names = list(panel.y) or [EXAMPLES[panel.metric_regex]]
            assert panel.y or panel.metric_regex, panel.title
            for name in names:
                assert name.split("/")[0] == section.name, name
                assert any(r.match(name) for r in DOCUMENTED), name
                expected_x = "trainer/global_step" if PER_STEP.match(name) else "epoch"
                assert panel.x == expected_x, (panel.title, name)
            if panel.metric_regex:
                assert re.fullmatch(panel.metric_regex, names[0])
    assert lines == sum(len(p) for p in SECTIONS.values()) - 1  # all but the bar chart


def test_class_norm_bar_chart_reads_the_logged_table():
    from callbacks.norm_monitor import class_mean_chart

    (bar,) = [
        p for s in build_workspace("me", "proj").sections for p in s.panels
        if isinstance(p, wr.CustomChart)
    ]  # fmt: skip
    logged = class_mean_chart(
        {"class_mean": {0: 1.5}, "class_mean_h": {0: 2.0}, "class_count": {0: 9}}, ["cat"]
    )
    table = logged["norm/class_mean_table"]
    assert bar.query == {"summaryTable": {"tableKey": "norm/class_mean_table"}}
    assert set(bar.chart_fields.values()) <= set(table.columns)
    assert table.data == [[0, "cat", 1.5, 2.0, 9]]


def test_the_command_saves_the_workspace_it_builds(monkeypatch, capsys):
    saved = []
    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(self) or self)
    assert dashboard.main(["--entity", "me", "--project", "proj"]) == 0
    (workspace,) = saved
    assert dashboard.workspace_spec(workspace) == dashboard.workspace_spec(
        build_workspace("me", "proj")
    )
    assert [s.name for s in workspace.sections] == list(SECTIONS)
    assert "saved workspace 'ssl-norms' to me/proj" in capsys.readouterr().out

    def refuse(self):
        raise RuntimeError("no API key")

    monkeypatch.setattr(ws.Workspace, "save", refuse)
    assert dashboard.main(["--entity", "me", "--project", "proj"]) == 1
    err = capsys.readouterr().err
    assert "could not save" in err and "no API key" in err and "--print" in err


def test_print_shows_the_spec_without_saving(monkeypatch, capsys):
    monkeypatch.setattr(ws.Workspace, "save", lambda self: pytest.fail("--print saved"))
    assert dashboard.main(["--entity", "me", "--project", "proj", "--print"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in spec["sections"]] == list(SECTIONS)
    first = spec["sections"][0]["panels"][0]
    assert (first["x"], first["y"]) == ("epoch", ["knn/top1", "knn/top5"])

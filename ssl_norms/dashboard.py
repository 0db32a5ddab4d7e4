"""``ssl-norms dashboard --entity E --project P``: a W&B workspace laid out for ssl-norms runs.

One section per metric family (``callbacks/__init__.py`` defines every name): ``knn``,
``norm``, ``lr``, ``confidence``, ``health``. Evaluation metrics are plotted against
``epoch`` (the runs define them so: ``callbacks._wandb``), per-step ones against
``trainer/global_step``; names that vary with the data (classes, norm buckets, OOD sets)
are matched by regular expressions; the per-class norms are the bar chart of their table
``norm/class_mean_table``. Built with ``wandb-workspaces`` (``pip install
'ssl-norms[dashboard]'``) and saved to W&B (needs an API key and the network);
``--print`` shows the workspace's spec instead of saving it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["SECTIONS", "build_workspace", "workspace_spec", "main"]

EPOCH, STEP = "epoch", "trainer/global_step"
_Q = ("q05", "q25", "q50", "q75", "q95")

#: section -> panels: (title, x axis, y metrics or a regex "re:<pattern>") or a bar chart
#: ("bar", table key, label column, value column).
SECTIONS: dict[str, list[tuple]] = {
    "knn": [
        ("k-NN accuracy", EPOCH, ["knn/top1", "knn/top5"]),
        ("k-NN accuracy per norm bucket (Fig. 4 left)", EPOCH, "re:knn/bucket_acc/.*"),
        ("samples per norm bucket", EPOCH, "re:knn/bucket_count/.*"),
    ],
    "norm": [
        ("||z|| per step", STEP, ["norm/z_mean", *(f"norm/z_{q}" for q in _Q)]),
        ("||h|| per step", STEP, ["norm/h_mean", *(f"norm/h_{q}" for q in _Q)]),
        ("||z|| of the evaluation splits", EPOCH, ["norm/bank_mean", "norm/eval_mean"]),
        ("mean ||z|| per class (Fig. 2c)", EPOCH, "re:norm/class_mean/.*"),
        ("OOD mean ||z|| / training mean (Fig. 3)", EPOCH, "re:norm/ood_ratio/.*"),
        ("bar", "norm/class_mean_table", "name", "mean_z"),
    ],
    "lr": [
        (
            "learning rate and effective lr (Theorem 3.4)",
            STEP,
            ["lr/base", "lr/effective", "lr/effective_median"],
        ),  # fmt: skip
    ],
    "confidence": [
        ("OOD AUROC of ||z|| (Fig. 3)", EPOCH, "re:confidence/auroc/.*"),
        ("OOD AUPR-In", EPOCH, "re:confidence/aupr/.*"),
        ("OOD FPR at 95% TPR", EPOCH, "re:confidence/fpr95/.*"),
        (
            "selective prediction: AURC (Section 7)",
            EPOCH,
            ["confidence/aurc", "confidence/random_aurc", "confidence/excess_aurc"],
        ),  # fmt: skip
        ("rank correlation of ||z|| with k-NN correctness", EPOCH, ["confidence/spearman"]),
    ],
    "health": [
        ("effective rank (RankMe)", EPOCH, ["health/rankme_z", "health/rankme_h"]),
        ("uniformity", EPOCH, ["health/uniformity_z", "health/uniformity_h"]),
        ("std of l2-normalised embeddings", EPOCH, ["health/l2_std_z", "health/l2_std_h"]),
        (
            "positive pairs: alignment, opposite halves (Table S1)",
            STEP,
            ["health/alignment", "health/opposite_halves"],
        ),  # fmt: skip
    ],
}


def _panel(spec: tuple):
    import wandb_workspaces.reports.v2 as wr

    if spec[0] == "bar":
        _, table, label, value = spec
        return wr.CustomChart(
            query={"summaryTable": {"tableKey": table}},
            chart_name="wandb/bar/v0",
            chart_fields={"label": label, "value": value},
            chart_strings={"title": "mean ||z|| per class (bank)"},
        )
    title, x, y = spec
    if isinstance(y, str) and y.startswith("re:"):
        return wr.LinePlot(title=title, x=x, metric_regex=y[3:])
    return wr.LinePlot(title=title, x=x, y=list(y))


def build_workspace(entity: str, project: str, name: str = "ssl-norms") -> Any:
    """The ``wandb_workspaces`` Workspace: one open section per family, in SECTIONS order."""
    try:
        import wandb_workspaces.workspaces as ws
    except ImportError as error:
        raise ImportError(
            "ssl-norms dashboard needs wandb-workspaces: pip install 'ssl-norms[dashboard]'"
        ) from error
    sections = [
        ws.Section(name=section, panels=[_panel(p) for p in panels], is_open=True)
        for section, panels in SECTIONS.items()
    ]
    return ws.Workspace(entity=entity, project=project, name=name, sections=sections)


def workspace_spec(workspace: Any) -> dict[str, Any]:
    """The workspace's public fields as plain JSON data (what ``--print`` shows)."""
    import pydantic

    def public(obj):
        if isinstance(obj, dict):
            return {k: public(v) for k, v in obj.items() if not k.startswith("_") and v is not None}
        if isinstance(obj, list):
            return [public(v) for v in obj]
        return obj

    return public(pydantic.TypeAdapter(type(workspace)).dump_python(workspace, mode="json"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ssl-norms dashboard",
        description="Save a W&B workspace with one section per ssl-norms metric family.",
    )
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", required=True, help="W&B project of the runs")
    parser.add_argument("--name", default="ssl-norms", help="workspace name")
    parser.add_argument("--print", action="store_true", help="print the spec, do not save")
    args = parser.parse_args(argv)
    try:
        workspace = build_workspace(args.entity, args.project, args.name)
    except ImportError as error:
        print(f"ssl-norms dashboard: error: {error}", file=sys.stderr)
        return 1
    if args.print:
        print(json.dumps(workspace_spec(workspace), indent=1))
        return 0
    try:
        workspace.save()
    except Exception as error:  # no key, no network, no such project: say so, no traceback
        print(
            f"ssl-norms dashboard: error: could not save the workspace to "
            f"{args.entity}/{args.project} ({type(error).__name__}: {error}); it needs a W&B API "
            "key (wandb login) and the network; --print shows it without saving",
            file=sys.stderr,
        )
        return 1
    print(f"ssl-norms dashboard: saved workspace {args.name!r} to {args.entity}/{args.project}")
    return 0

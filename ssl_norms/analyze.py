"""``ssl-norms analyze``: the norm as a confidence score, for one trained model (paper Section 5).

    ssl-norms analyze -c CONFIG [-c CONFIG ...] --ckpt CKPT [--ood NAME[=FOLDER] ...]
        [--human-labels FOLDER] --out DIR

Builds the config's model and DataModule (the ``model`` and ``data`` sections, composed as
``ssl-norms fit`` composes them: later files win; ``RUN_DIR/config.yaml`` of a run is the
simplest choice), loads the checkpoint's weights (refusing a checkpoint of another method
or architecture), computes the embeddings of every split once (``bank``: the un-augmented
training set, ``eval``, and each OOD set, which the DataModule serves at the training image
size and channels whatever the files hold) and caches them in ``DIR/embeddings.pt`` (a
second call with the same checkpoint and config reuses them), then writes ``DIR/report.md``
with its figures (:mod:`ssl_norms.report`): norm violins per split (Fig. 3), k-NN accuracy
per norm bucket (Fig. 4 left), ROC curves of the norm as an OOD score, the
accuracy-coverage curve (Section 7), the 10 highest- and lowest-norm eval images per
class (Fig. S6) and, for CIFAR-10 and CIFAR-100 with the CIFAR-10N / CIFAR-100N /
CIFAR-10H files (``--human-labels FOLDER``, default the data folder), consensus-label
accuracy and human-label entropy per norm bucket (Fig. 4 middle and right).
Definitions: ``docs/confidence.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ssl_norms.checkpoint_io import load_checkpoint_file

__all__ = ["main", "load_model_and_data", "compute_embeddings", "parse_ood"]

#: Hyperparameters that fix a method's architecture: a checkpoint must agree on them.
ARCH_KEYS = (
    "backbone",
    "backbone_width",
    "cifar_stem",
    "backbone_in_dim",
    "backbone_out_dim",
    "projector_hidden_dim",
    "projector_out_dim",
    "projector_dim",
    "predictor_hidden_dim",
)
CACHE = "embeddings.pt"
CACHE_VERSION = 1


def _merge(into: dict, new: dict) -> dict:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def read_configs(paths: list[str]) -> dict[str, Any]:
    """The ``model`` and ``data`` sections of the composed YAML files (later files win)."""
    import yaml

    merged: dict[str, Any] = {}
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config {p} not found")
        _merge(merged, yaml.safe_load(p.read_text()) or {})
    for section in ("model", "data"):
        if not isinstance(merged.get(section), dict) or "class_path" not in merged[section]:
            raise ValueError(
                f"the config has no {section}.class_path: pass the run's config.yaml, or a "
                "method base and a data config (e.g. -c configs/base/simclr.yaml -c "
                "configs/cpu/cifar10.yaml)"
            )
    return {"model": merged["model"], "data": merged["data"]}


def parse_ood(requests: list[str] | None, configured: dict[str, str]) -> dict[str, str]:
    """The OOD sets to analyse: all configured ones by default; ``NAME`` picks a configured
    set, ``NAME=FOLDER`` adds (or re-points) one."""
    if not requests:
        return dict(configured)
    chosen: dict[str, str] = {}
    for item in requests:
        name, sep, folder = item.partition("=")
        if not name:
            raise ValueError(f"--ood {item!r}: give NAME or NAME=FOLDER")
        if sep:
            chosen[name] = folder
        elif name in configured:
            chosen[name] = configured[name]
        else:
            known = ", ".join(sorted(configured)) or "none"
            raise ValueError(
                f"--ood {name}: the config has no OOD set {name!r} (configured: {known}); "
                f"give its folder: --ood {name}=FOLDER"
            )
    return chosen


def _describe(class_path: str, hparams: dict) -> str:
    parts = [f"{k} {hparams[k]}" for k in ("backbone", "backbone_width") if k in hparams]
    return f"{class_path.rsplit('.', 1)[-1]} ({', '.join(parts)})"


def load_model_and_data(sections: dict[str, Any], ckpt_path: Path, ood: list[str] | None):
    """The config's model with the checkpoint's weights, and its DataModule with ``ood``.

    Returns ``(model, datamodule, checkpoint)``. Raises ValueError naming both when the
    checkpoint holds another method or architecture than the config builds.
    """
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    from ssl_norms.methods import SSLMethod

    sections = json.loads(json.dumps(sections))  # a private copy
    data_args = sections["data"].setdefault("init_args", {})
    data_args["ood"] = parse_ood(ood, dict(data_args.get("ood") or {}))
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(SSLMethod, "model", required=True)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    namespace = parser.parse_object(sections)
    built = (getattr(parser, "instantiate", None) or parser.instantiate_classes)(namespace)
    model, datamodule = built.model, built.data

    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} not found")
    ckpt = load_checkpoint_file(ckpt_path, map_location="cpu")
    saved = dict(ckpt.get("hyper_parameters") or {})
    ours = dict(model.hparams)
    config_class = str(namespace.model.class_path)
    ckpt_class = str(saved.get("_class_path") or config_class)
    differs = [k for k in ARCH_KEYS if k in saved and k in ours and saved[k] != ours[k]]
    mismatch = ckpt_class.rsplit(".", 1)[-1] != config_class.rsplit(".", 1)[-1] or differs
    error = None
    if not mismatch:
        try:
            model.load_state_dict(ckpt["state_dict"])
        except (RuntimeError, KeyError) as err:
            error = str(err).splitlines()[0]
    if mismatch or error:
        detail = f" ({', '.join(differs)} differ)" if differs else f" ({error})" if error else ""
        raise ValueError(
            f"checkpoint {ckpt_path} holds {_describe(ckpt_class, saved)}, but the config "
            f"builds {_describe(config_class, ours)}{detail}: pass the config the checkpoint "
            "was trained with (its run folder's config.yaml)"
        )
    model.eval()
    return model, datamodule, ckpt


def _fingerprint(ckpt_path: Path, sections: dict, ood: dict[str, str]) -> str:
    digest = hashlib.sha256()
    with open(ckpt_path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps([sections, ood, CACHE_VERSION], sort_keys=True).encode())
    return digest.hexdigest()


def _split_loaders(datamodule) -> dict[str, Any]:
    loaders = {"bank": datamodule.bank_dataloader(), "eval": datamodule.eval_dataloader()}
    loaders.update({f"ood/{k}": v for k, v in datamodule.ood_dataloaders().items()})
    for name, loader in loaders.items():
        if len(loader.dataset) == 0:
            raise ValueError(
                f"split {name!r} is empty: nothing to analyse (check the DataModule's "
                "data_dir, eval_subset and the OOD folders)"
            )
    return loaders


@torch.no_grad()
def compute_embeddings(model, datamodule, device: str = "cpu") -> dict[str, dict]:
    """Per split: ``y``, ``z_norm``, ``h_norm`` (and ``h`` for ``bank`` and ``eval``), in
    dataset order, from one forward pass over the un-augmented loaders."""
    datamodule.setup("validate")
    loaders = _split_loaders(datamodule)
    model.to(device).eval()
    out: dict[str, dict] = {}
    for name, loader in loaders.items():
        parts: dict[str, list] = {"y": [], "z_norm": [], "h_norm": [], "h": []}
        for x, y, _ in loader:
            h = model(x.to(device)).flatten(1)
            z = model.project(h).flatten(1)
            parts["y"].append(y.long())
            parts["z_norm"].append(z.norm(dim=1).cpu())
            parts["h_norm"].append(h.norm(dim=1).cpu())
            if name in ("bank", "eval"):
                parts["h"].append(h.cpu())
        out[name] = {k: torch.cat(v) for k, v in parts.items() if v}
    return out


def load_or_compute(out_dir: Path, fingerprint: str, compute) -> tuple[dict, bool]:
    """The cached embeddings of this fingerprint, else ``compute()`` (then cached)."""
    path = out_dir / CACHE
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.get("fingerprint") == fingerprint:
            return cached["splits"], True
    splits = compute()
    tmp = path.with_suffix(".tmp")
    torch.save({"fingerprint": fingerprint, "splits": splits}, tmp)
    tmp.replace(path)
    return splits, False


def human_labels(datamodule, folder: Path | None) -> dict[str, torch.Tensor | str] | None:
    """Per human label set of the DataModule's data set, the values aligned with its bank or
    eval samples, or why they cannot be had (``ssl_norms.human_agreement``); None for a data
    set without human labels. ``folder`` (default: the DataModule's ``data_dir``) holds the
    label files; a ``folder`` that does not exist, or one given for a data set without human
    labels, is an error."""
    from datamodules.human_labels import find_human_labels
    from ssl_norms.human_agreement import (
        HUMAN_LABEL_SETS,
        human_label_rows,
        human_values_or_reasons,
    )

    dataset = getattr(datamodule, "dataset", None)
    if dataset not in HUMAN_LABEL_SETS:
        if folder is not None:
            raise ValueError(
                f"--human-labels: human labels exist for CIFAR-10 (CIFAR-10N, CIFAR-10H) and "
                f"CIFAR-100 (CIFAR-100N) only, and this model's data set is "
                f"{dataset or type(datamodule).__name__}: leave the option out"
            )
        return None
    if folder is not None and not folder.is_dir():
        raise FileNotFoundError(
            f"--human-labels {folder}: no such folder (it should hold CIFAR-10_human.pt, "
            "CIFAR-100_human.pt or cifar10h-counts.npy)"
        )
    where = folder if folder is not None else Path(datamodule.data_dir)
    if not set(find_human_labels(where)) & set(HUMAN_LABEL_SETS[dataset]):
        # No file to align: say which are missing without reading the full CIFAR splits.
        return human_values_or_reasons(dataset, where, {})
    datamodule.setup("validate")
    try:
        rows = human_label_rows(datamodule)
    except ValueError as error:  # a sample not found in the full CIFAR split
        reason = str(error).strip().splitlines()[0]
        return {which: reason for which in HUMAN_LABEL_SETS[dataset]}
    return human_values_or_reasons(dataset, where, rows)


def _knn_settings(paths: list[str]) -> dict[str, Any]:
    """``k`` and ``temperature`` of the config's KNNMonitor (the run's k-NN), else 200 / 0.1."""
    import yaml

    merged: dict = {}
    for path in paths:
        _merge(merged, yaml.safe_load(Path(path).read_text()) or {})
    for cb in (merged.get("trainer") or {}).get("callbacks") or []:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("KNNMonitor"):
            args = cb.get("init_args") or {}
            return {
                "k": int(args.get("k", 200)),
                "temperature": float(args.get("temperature", 0.1)),
            }
    return {"k": 200, "temperature": 0.1}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssl-norms analyze",
        description="The embedding norm as a confidence score for one trained model: "
        "DIR/report.md with its figures (paper Figs. 3, 4 left, S6; Section 7).",
    )
    parser.add_argument("-c", "--config", action="append", required=True, metavar="CONFIG",
                        help="the run's config.yaml, or configs composed as for fit (repeatable)")  # fmt: skip
    parser.add_argument("--ckpt", required=True, type=Path, help="the checkpoint to analyse")
    parser.add_argument("--ood", nargs="+", metavar="NAME[=FOLDER]",
                        help="OOD sets: configured names, or NAME=FOLDER (default: the config's)")  # fmt: skip
    parser.add_argument("--out", required=True, type=Path, help="output folder (report.md, PNGs)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    parser.add_argument("--human-labels", type=Path, default=None, metavar="FOLDER",
                        help="CIFAR-10N / CIFAR-100N / CIFAR-10H files for the norm against "
                        "human agreement (Fig. 4 middle, right); default: the data folder")  # fmt: skip
    parser.add_argument("--bucket-min-count", type=int, default=50,
                        help="norm buckets need more than this many samples (paper: 50)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ssl_norms.report import write_report

    try:
        sections = read_configs(args.config)
        model, datamodule, ckpt = load_model_and_data(sections, args.ckpt, args.ood)
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        human = human_labels(datamodule, args.human_labels)
        args.out.mkdir(parents=True, exist_ok=True)
        fingerprint = _fingerprint(args.ckpt, sections, dict(getattr(datamodule, "ood", {})))
        splits, cached = load_or_compute(
            args.out, fingerprint, lambda: compute_embeddings(model, datamodule, device)
        )
        if cached:
            print(f"ssl-norms analyze: reusing the embeddings cached in {args.out / CACHE}")
        report = write_report(
            args.out,
            splits,
            datamodule,
            knn=_knn_settings(args.config),
            bucket_min_count=args.bucket_min_count,
            human=human,
            title=f"{args.ckpt} (epoch {ckpt.get('epoch')}, step {ckpt.get('global_step')})",
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"ssl-norms analyze: error: {error}", file=sys.stderr)
        return 1
    print(f"ssl-norms analyze: report {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

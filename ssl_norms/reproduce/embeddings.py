"""``python -m ssl_norms.reproduce.embeddings RUN_DIR --epoch E``: a run's embeddings, cached.

The figures of Section 5 (Figures 3, 4 and S6) and Table S1 read a trained model's
embeddings, not its training logs. This module builds the run's model and DataModule from
``RUN_DIR/config.yaml``, loads the checkpoint of epoch ``E`` (a kept stop,
``checkpoints/epoch-E.ckpt``, or ``last.ckpt`` when the run ended there), runs the model
once over the un-augmented splits and writes ``RUN_DIR/embeddings/epoch-E.npz``:

- ``<split>.z_norm`` ||z|| (loss space, where the paper measures norms, Appendix C.1),
  ``<split>.y`` labels, for ``bank`` (the training set), ``eval`` and every ``--extra`` set;
- ``eval.knn_pred``: the weighted k-NN prediction (k = 200, T = 0.1, backbone features h,
  bank = the training set) of each eval sample, for Figure 4;
- ``--human-index``: ``bank.source_index`` / ``eval.source_index``, each sample's row in the
  full CIFAR train / test split (matched by its pixels), and those splits' labels, so that
  CIFAR-10N/100N and CIFAR-10H rows can be looked up (Figure 4 middle and right);
- ``--pairs N``: the cosine of N positive pairs (two training augmentations of one image,
  the model in training mode as the loss sees it) and their rate at an angle above pi/2,
  ``ssl_norms.health.opposite_halves_rate`` (Table S1);
- ``--extremes K``: the K highest- and lowest-||z|| eval images of each class (Figure S6).

A second call with the same checkpoint and options finds the file and does nothing. A
missing ``--extra`` set is recorded (``meta["missing"]``), not an error: its figure panel
says "data not available".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "main",
    "load",
    "cache_path",
    "up_to_date",
    "options_of",
    "build_from_run",
    "pair_cosines",
]

CACHE_VERSION = 1
KNN_TEMPERATURE = 0.1


def cache_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / "embeddings" / f"epoch-{epoch}.npz"


def load(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` of a cache file, or None when there is none (or it is unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None
    meta = json.loads(str(arrays.pop("meta")))
    return meta, arrays


def _read_sections(config: Path) -> dict[str, Any]:
    import yaml

    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: pass a run folder written by ssl-norms fit")
    cfg = yaml.safe_load(config.read_text()) or {}
    for section in ("model", "data"):
        if not isinstance(cfg.get(section), dict) or "class_path" not in cfg[section]:
            raise ValueError(f"{config} has no {section}.class_path: not a run's config.yaml")
    return {"model": cfg["model"], "data": cfg["data"]}


def build_from_run(run_dir: Path, ckpt: Path):
    """The run's model (with the checkpoint's weights, in eval mode) and its DataModule."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    from ssl_norms.checkpoint_io import load_checkpoint_file
    from ssl_norms.methods import SSLMethod

    sections = _read_sections(run_dir / "config.yaml")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(SSLMethod, "model", required=True)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    built = parser.instantiate_classes(parser.parse_object(sections))
    model, datamodule = built.model, built.data
    state = load_checkpoint_file(ckpt, weights_only=True)["state_dict"]
    model.load_state_dict(state)
    return model.eval(), datamodule


def _device(requested: str):
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _embed(model, loader, device, keep_h: bool) -> dict[str, Any]:
    import torch

    z_norm, ys, hs = [], [], []
    with torch.no_grad():
        for x, y, _ in loader:
            h = model(x.to(device))
            z = model.project(h)
            z_norm.append(z.double().norm(dim=1).float().cpu())
            ys.append(y.long().cpu())
            if keep_h:
                hs.append(h.float().cpu())
    out = {"z_norm": torch.cat(z_norm), "y": torch.cat(ys)}
    if keep_h:
        out["h"] = torch.cat(hs)
    return out


def _loader(dataset, batch_size: int):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def _extra_dataset(datamodule, loader: str, split: str, folder: str):
    from datamodules.cifar import load_cifar_split
    from datamodules.datasets import EvalDataset
    from datamodules.ood import load_ood_set

    size = datamodule.image_size
    if loader == "ood":
        images = load_ood_set(Path(folder).name, folder, size, datamodule.cache_dir)
    elif loader in ("cifar10", "cifar100"):
        images = load_cifar_split(loader, folder, split, datamodule.cache_dir)
    else:
        raise ValueError(f"unknown extra-set loader {loader!r}: ood, cifar10 or cifar100")
    resize = tuple(images.images[0].shape[-2:]) != (size, size)
    return EvalDataset(images, datamodule.eval_transform(resize=resize))


def pair_cosines(model, views_loader, device) -> tuple[Any, Any]:
    """``(z1, z2)`` of the positive pairs a loader of ``([view1, view2], y, idx)`` yields,
    with the model in training mode (BatchNorm on batch statistics, as in the loss) and no
    gradient; the model's weights are not changed (its BatchNorm running statistics are,
    so it is put back in eval mode with the statistics it had)."""
    import copy

    import torch

    saved = copy.deepcopy(model.state_dict())
    model.train()
    z1s, z2s = [], []
    try:
        with torch.no_grad():
            for views, _, _ in views_loader:
                z1s.append(model.embed(views[0].to(device)).float().cpu())
                z2s.append(model.embed(views[1].to(device)).float().cpu())
    finally:
        model.load_state_dict(saved)
        model.eval()
    return torch.cat(z1s), torch.cat(z2s)


def _pairs(model, datamodule, n: int, device) -> dict[str, Any]:
    import torch
    from torch.utils.data import Subset

    from datamodules.datasets import TwoViewDataset
    from datamodules.transforms import two_view_augmentation
    from ssl_norms.health import opposite_halves_rate

    base = datamodule.bank_dataset.base  # the un-augmented training ImageSet
    method = type(model).__name__.lower()
    mean, std = datamodule.stats
    views = two_view_augmentation(
        datamodule.augmentation, datamodule.image_size, mean, std, method=method
    )
    pairs = TwoViewDataset(base, views, seed=datamodule.seed)
    pairs.set_epoch(0)
    order = torch.randperm(len(base), generator=torch.Generator().manual_seed(0))[:n]
    batch = min(datamodule.batch_size, len(order))
    loader = _loader(Subset(pairs, order.tolist()), batch)
    z1, z2 = pair_cosines(model, loader, device)
    cos = torch.nn.functional.cosine_similarity(z1.double(), z2.double(), dim=1)
    return {
        "pairs.cos": cos.float().numpy(),
        "pairs.rate": np.float64(opposite_halves_rate(z1, z2)),
    }


def _extremes(z_norm, labels, eval_base, k: int) -> dict[str, np.ndarray]:
    import torch

    classes = int(labels.max()) + 1
    first = torch.as_tensor(eval_base[0][0])
    shape = tuple(first.shape)
    high = np.zeros((classes, k, *shape), dtype=np.uint8)
    low = np.zeros((classes, k, *shape), dtype=np.uint8)
    counts = np.zeros(classes, dtype=np.int64)
    for c in range(classes):
        rows = torch.nonzero(labels == c).flatten()
        order = rows[torch.argsort(z_norm[rows], descending=True, stable=True)]
        m = min(k, len(order))
        counts[c] = m
        for j in range(m):
            high[c, j] = torch.as_tensor(eval_base[int(order[j])][0]).numpy()
            low[c, j] = torch.as_tensor(eval_base[int(order[len(order) - 1 - j])][0]).numpy()
    return {"extremes.high": high, "extremes.low": low, "extremes.count": counts}


def _fingerprint(ckpt: Path, options: dict) -> str:
    stat = ckpt.stat()
    text = json.dumps(
        [str(ckpt.resolve()), stat.st_size, stat.st_mtime_ns, options, CACHE_VERSION],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def compute(run_dir: Path, epoch: int, options: dict, out: Path, device_name: str = "auto") -> Path:
    """Compute and write the cache file (see the module docstring)."""
    from ssl_norms.knn import knn_predict
    from ssl_norms.reproduce.runs import checkpoint_at

    ckpt = checkpoint_at(run_dir, epoch)
    if ckpt is None:
        raise FileNotFoundError(
            f"checkpoint {run_dir}/checkpoints/epoch-{epoch}.ckpt not found (nor a last.ckpt of "
            f"epoch {epoch}): train the run to epoch {epoch} first (ssl-norms reproduce)"
        )
    fingerprint = _fingerprint(ckpt, options)
    cached = load(out) if out.is_file() else None
    if cached is not None and cached[0].get("fingerprint") == fingerprint:
        print(f"embeddings: {out} is up to date", flush=True)
        return out
    device = _device(device_name)
    model, dm = build_from_run(run_dir, ckpt)
    model.to(device)
    dm.setup("validate")
    batch = dm.eval_batch_size
    arrays: dict[str, Any] = {}
    splits = {
        "bank": _embed(model, _loader(dm.bank_dataset, batch), device, keep_h=True),
        "eval": _embed(model, _loader(dm.eval_dataset, batch), device, keep_h=True),
    }
    labels = {"bank": "train", "eval": "test"}
    missing: dict[str, str] = {}
    for i, item in enumerate(options.get("extra", [])):
        label, _, where = item.partition("=")
        loader, split, folder = where.split(":", 2)
        try:
            dataset = _extra_dataset(dm, loader, split, folder)
        except FileNotFoundError as error:
            missing[label] = str(error)
            continue
        key = f"extra{i}"
        splits[key] = _embed(model, _loader(dataset, batch), device, keep_h=False)
        labels[key] = label
    k = min(int(options.get("k", 200)), len(splits["bank"]["y"]))
    pred, _ = knn_predict(
        splits["bank"]["h"].to(device),
        splits["bank"]["y"].to(device),
        splits["eval"]["h"].to(device),
        k=k,
        temperature=KNN_TEMPERATURE,
        num_classes=dm.num_classes,
    )
    arrays["eval.knn_pred"] = pred.cpu().numpy()
    for name, values in splits.items():
        arrays[f"{name}.z_norm"] = values["z_norm"].numpy()
        arrays[f"{name}.y"] = values["y"].numpy()
    if options.get("pairs"):
        arrays.update(_pairs(model, dm, int(options["pairs"]), device))
    if options.get("extremes"):
        arrays.update(
            _extremes(
                splits["eval"]["z_norm"],
                splits["eval"]["y"],
                dm.eval_dataset.base,
                int(options["extremes"]),
            )
        )
    if options.get("human_index"):
        from ssl_norms.human_agreement import human_label_rows

        arrays.update(human_label_rows(dm))
    meta = {
        "fingerprint": fingerprint,
        "checkpoint": str(ckpt),
        "epoch": epoch,
        "method": type(model).__name__,
        "data": type(dm).__name__,
        "dataset": getattr(dm, "dataset", None),
        "splits": labels,
        "missing": missing,
        "class_names": list(dm.class_names),
        "k": k,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(out)
    print(f"embeddings: wrote {out}", flush=True)
    return out


def up_to_date(run_dir: Path, epoch: int, options: dict) -> bool:
    """Whether ``RUN/embeddings/epoch-E.npz`` holds these options of the current checkpoint
    (the runner then starts no process for it)."""
    from ssl_norms.reproduce.runs import checkpoint_at

    ckpt = checkpoint_at(run_dir, epoch)
    out = cache_path(run_dir, epoch)
    if ckpt is None or not out.is_file():
        return False
    cached = load(out)
    return cached is not None and cached[0].get("fingerprint") == _fingerprint(ckpt, options)


def options_of(extra: list[str], pairs: int, extremes: int, human_index: bool, k: int) -> dict:
    """The options a cache file is keyed by (the same for the command line and the runner)."""
    return {
        "extra": list(extra),
        "pairs": int(pairs),
        "extremes": int(extremes),
        "human_index": bool(human_index),
        "k": int(k),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ssl_norms.reproduce.embeddings",
        description="Embed a run's splits once with the checkpoint of one epoch and cache "
        "the per-sample norms, k-NN predictions, pair cosines and extreme images.",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument(
        "--out", type=Path, default=None, help="default: RUN/embeddings/epoch-E.npz"
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="LABEL=LOADER:SPLIT:FOLDER, LOADER ood (a test split, any known layout) or "
        "cifar10/cifar100 (SPLIT train or test)",
    )
    parser.add_argument("--pairs", type=int, default=0, help="positive pairs for Table S1")
    parser.add_argument("--extremes", type=int, default=0, help="images per class (Fig. S6)")
    parser.add_argument("--human-index", action="store_true", help="CIFAR rows (Fig. 4)")
    parser.add_argument("--k", type=int, default=200, help="k-NN neighbours")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    options = options_of(args.extra, args.pairs, args.extremes, args.human_index, args.k)
    out = args.out or cache_path(args.run_dir, args.epoch)
    try:
        compute(args.run_dir, args.epoch, options, out, args.device)
    except (FileNotFoundError, ValueError) as error:
        from ssl_norms.cli import _record_error

        _record_error(error)
        print(f"embeddings: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does a checkpoint fit the model of the config? (``--ckpt_path``; docs/contract.md, "Run folder").

LightningCLI's own ``--ckpt_path`` handling replaces the config's model with the
checkpoint's hyperparameters: another method's checkpoint silently trains that method, and
a command-line override on resume is dropped without a word. ssl-norms builds the model
from the config instead and checks the checkpoint against it:

- another method, or weights whose names or shapes differ (another backbone, width,
  projector), are refused with a message naming both models;
- on ``fit`` (a resume restores the optimizer and the learning-rate schedule with the
  weights), any other hyperparameter that differs is refused too, listing each one, except
  the few the resumed run really applies (:data:`APPLIED_ON_RESUME`), which are announced.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_norms.checkpoint_io import load_checkpoint_file

__all__ = [
    "APPLIED_ON_RESUME",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "check_checkpoint_fits",
    "read_checkpoint_info",
]

# Hyperparameters that the module reads at every step (not fixed in the weights, the
# optimizer or the schedule state), so a resumed run applies a new value.
APPLIED_ON_RESUME = frozenset(
    {"check_finite", "check_finite_timing", "gradscale_power", "temperature", "base_tau"}
)
_NOT_HPARAMS = frozenset({"_class_path", "_instantiator"})
# Shown for both models in a mismatch message, whether they differ or not.
_SUMMARY_KEYS = ("backbone", "backbone_width", "backbone_in_dim")
_MISSING = object()


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the config's model, or a resume that would drop settings."""


@dataclass
class CheckpointInfo:
    """What the checks need from a checkpoint (read memory-mapped, weights not copied)."""

    path: Path
    hparams: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    global_step: int
    log_step: int  # the step Lightning logs at (the CSV's ``step`` column)
    epoch: int
    extra: dict[str, Any] = field(default_factory=dict)


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Hyperparameters, weight shapes and progress of a checkpoint; clear errors for bad files."""
    checkpoint = load_checkpoint_file(path, mmap=True)
    state = checkpoint.get("state_dict") or {}
    shapes = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
    global_step = int(checkpoint.get("global_step", 0) or 0)
    try:
        log_step = int(
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"]
        )
    except (KeyError, TypeError, ValueError):
        log_step = global_step
    return CheckpointInfo(
        path=Path(path),
        hparams=dict(checkpoint.get("hyper_parameters") or {}),
        shapes=shapes,
        global_step=global_step,
        log_step=log_step,
        epoch=int(checkpoint.get("epoch", 0) or 0),
    )


def _resolve(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _class_name(class_path: str | None, fallback: type | None = None) -> str:
    if class_path:
        return class_path.rpartition(".")[2]
    return fallback.__name__ if fallback is not None else "an unnamed model"


def _fmt(value: Any) -> str:
    if value is _MISSING:
        return "(not set)"
    if isinstance(value, dict) and "class_path" in value:
        return str(value["class_path"]).rpartition(".")[2] + str(value.get("init_args") or "")
    return repr(value)


def _describe(name: str, hparams: dict[str, Any], keys: list[str]) -> str:
    shown = ", ".join(f"{k}={_fmt(hparams[k])}" for k in keys if k in hparams)
    return f"{name}({shown})"


def _telling_keys(diffs: dict[str, tuple[Any, Any]]) -> list[str]:
    """The backbone keys, then up to four other settings both models have and differ in."""
    both = [k for k, (a, b) in diffs.items() if a is not _MISSING and b is not _MISSING]
    others = [k for k in both if k not in _SUMMARY_KEYS and k not in APPLIED_ON_RESUME]
    return [*_SUMMARY_KEYS, *others[:4]]


def _differences(ckpt: dict[str, Any], config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    keys = sorted((set(ckpt) | set(config)) - _NOT_HPARAMS)
    return {
        k: (ckpt.get(k, _MISSING), config.get(k, _MISSING))
        for k in keys
        if ckpt.get(k, _MISSING) != config.get(k, _MISSING)
    }


def _constructor_defaults(cls: type) -> dict[str, Any]:
    """Default values of the constructor arguments of ``cls``, following ``**kwargs`` into its bases."""
    defaults: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        for p in params:
            if p.default is not p.empty:
                defaults.setdefault(p.name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return defaults


def _version_skew(diffs: dict[str, tuple[Any, Any]], model: Any) -> set[str]:
    """Differences that only say the code and the checkpoint are of other versions.

    A setting the checkpoint predates (absent there) at its default value in the config, and
    a setting the code no longer has (absent from the config's model), change nothing.
    """
    defaults = _constructor_defaults(type(model))
    return {
        k
        for k, (old, new) in diffs.items()
        if new is _MISSING or (old is _MISSING and defaults.get(k, _MISSING) == new)
    }


def check_checkpoint_fits(info: CheckpointInfo, model: Any, stage: str) -> list[str]:
    """Refuse a checkpoint that does not fit ``model`` (built from the config) for ``stage``.

    Returns notices for the settings a resumed ``fit`` applies although the checkpoint was
    trained with other values; raises :class:`CheckpointMismatchError` otherwise.
    """
    config_hp = {k: v for k, v in dict(getattr(model, "hparams", {}) or {}).items()}
    ckpt_hp = info.hparams
    diffs = _differences(ckpt_hp, config_hp)
    config_name = _class_name(config_hp.get("_class_path"), type(model))
    ckpt_path_cls = ckpt_hp.get("_class_path")
    ckpt_name = _class_name(ckpt_path_cls) if ckpt_path_cls else "a model"
    arch_keys = _telling_keys(diffs)

    ckpt_cls = _resolve(str(ckpt_path_cls)) if ckpt_path_cls else None
    other_class = ckpt_path_cls is not None and (
        ckpt_cls is not type(model) if ckpt_cls is not None else ckpt_name != config_name
    )
    if other_class:
        raise CheckpointMismatchError(
            f"checkpoint {info.path} holds {_describe(ckpt_name, ckpt_hp, arch_keys)}, but the "
            f"config builds {_describe(config_name, config_hp, arch_keys)}: pass the config the "
            "checkpoint was trained with (its run folder's config.yaml), or another checkpoint"
        )

    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [
        f"{k} is {list(info.shapes[k])} in the checkpoint and {list(own[k])} in the config"
        for k in own
        if k in info.shapes and info.shapes[k] != own[k]
    ]
    problems += [f"{k} is missing from the checkpoint" for k in own if k not in info.shapes]
    problems += [f"{k} is not in the config's model" for k in info.shapes if k not in own]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointMismatchError(
            f"checkpoint {info.path} does not fit the config's model: "
            f"{_describe(ckpt_name if ckpt_path_cls else config_name, ckpt_hp, arch_keys)} in the "
            f"checkpoint, {_describe(config_name, config_hp, arch_keys)} in the config; "
            + "; ".join(problems[:3])
            + more
            + ". Pass the config the checkpoint was trained with (its run folder's config.yaml)"
        )

    if stage != "fit":
        return []
    for key in _version_skew(diffs, model):
        del diffs[key]
    fixed = {k: v for k, v in diffs.items() if k not in APPLIED_ON_RESUME}
    if fixed:
        listing = "; ".join(
            f"{k}: {_fmt(old)} in the checkpoint, {_fmt(new)} in the config"
            for k, (old, new) in fixed.items()
        )
        raise CheckpointMismatchError(
            f"--ckpt_path {info.path} resumes a run with its weights, optimizer and learning-rate "
            f"schedule, which fix these settings, but the config changes them: {listing}. Resume "
            "with the run's own settings (drop these overrides; the run folder's config.yaml "
            "holds them), or start a new run without --ckpt_path"
        )
    return [
        f"resuming with {k}={_fmt(new)} from the config (the checkpoint was trained with "
        f"{_fmt(old)})"
        for k, (old, new) in diffs.items()
    ]

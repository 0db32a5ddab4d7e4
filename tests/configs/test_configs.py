"""Every YAML in configs/ composes as configs/README.md documents it (``--print_config``).

The commands are read from the README itself (shell ``for`` loops expanded), run in-process
(one import of Lightning for all of them), and each composed config is compared with the
deep merge of its files and flags written here: later files win, flags win over files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import re
import shlex
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
MONITORS = {
    "callbacks.EvaluationPass",
    "callbacks.KNNMonitor",
    "callbacks.ConfidenceMonitor",
    "callbacks.HealthMonitor",
    "callbacks.EmbeddingNormMonitor",
    "callbacks.EffectiveLRMonitor",
}


def readme_commands(text: str) -> list[list[str]]:
    """``ssl-norms ...`` lines of the README's code blocks, loops expanded, without ``ssl-norms``."""
    commands: list[list[str]] = []
    loops: list[tuple[str, list[str]]] = []
    in_block = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        for var, values in re.findall(r"for (\w+) in ([^;]+); do", line):
            loops.append((var, values.split()))
        if line.startswith("ssl-norms ") and "RUN_DIR" not in line:
            cmd = line.split(" #")[0]
            for combo in itertools.product(*[values for _, values in loops]):
                expanded = cmd
                for (var, _), value in zip(loops, combo, strict=True):
                    expanded = expanded.replace(f"${var}", value)
                assert "$" not in expanded, expanded
                commands.append(shlex.split(expanded)[1:])
        for _ in range(len(re.findall(r"\bdone\b", line))):
            loops.pop()
    return commands


def _merge(into: dict, new: dict) -> dict:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def expected_config(args: list[str]) -> dict:
    """The deep merge of the ``-c`` files and ``--a.b value`` flags, in order."""
    merged: dict = {}
    it = iter(args[1:])
    for arg in it:
        if arg == "-c":
            _merge(merged, yaml.safe_load((REPO / next(it)).read_text()))
        elif arg.startswith("--"):
            value = yaml.safe_load(next(it))
            node: dict = {}
            keys = arg[2:].split(".")
            leaf = node
            for k in keys[:-1]:
                leaf = leaf.setdefault(k, {})
            leaf[keys[-1]] = value
            _merge(merged, node)
    return merged


def assert_contains(actual, expected, path: str = "") -> None:
    """Every leaf of ``expected`` is in ``actual`` (numbers compared as floats; list items as subsets)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_contains(a, e, f"{path}[{i}]")
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert float(actual) == pytest.approx(float(expected), rel=1e-12), path
    else:
        assert actual == expected, path


def print_config(args: list[str]) -> dict:
    from ssl_norms.lightning_cli import run

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        run([*args, "--print_config"])
    assert info.value.code in (0, None), f"{' '.join(args)} failed"
    return yaml.safe_load(out.getvalue())


@pytest.fixture(scope="module")
def commands() -> list[list[str]]:
    if importlib.util.find_spec("callbacks") is None or not hasattr(
        importlib.import_module("callbacks"), "KNNMonitor"
    ):
        pytest.skip("the callbacks package is not there: the shipped configs need its monitors")
    return readme_commands((CONFIGS / "README.md").read_text())


def test_readme_loops_expand(commands: list[list[str]]) -> None:
    names = [c[c.index("--name") + 1] for c in commands if "--name" in c]
    assert len(names) == len(set(names)), "every experiment of the README gets its own run name"
    assert sum(n.startswith("table1-") for n in names) == 32
    assert sum(n.startswith("table2-") for n in names) == 15
    assert sum(n.startswith("table3-") for n in names) == 15
    assert sum(n.startswith("fig3-") for n in names) == 4
    assert sum(n.startswith("fig5-") for n in names) == 18


def test_every_yaml_is_used_by_a_documented_command(commands: list[list[str]]) -> None:
    used = {Path(c[i + 1]) for c in commands for i, a in enumerate(c) if a == "-c"}
    every = {p.relative_to(REPO) for p in CONFIGS.rglob("*.yaml")}
    assert every - used == set(), "configs that no command of configs/README.md composes"


def test_every_documented_command_composes(commands: list[list[str]]) -> None:
    from ssl_norms.methods import METHODS

    method_paths = {f"ssl_norms.methods.{cls.__name__}" for cls in METHODS.values()}
    for args in commands:
        assert args[0] == "fit"
        config = print_config(args)
        where = " ".join(args)
        assert config["model"]["class_path"] in method_paths, where
        assert config["data"]["class_path"].startswith("datamodules."), where
        assert {cb["class_path"] for cb in config["trainer"]["callbacks"]} >= MONITORS, where
        expected = expected_config(args)
        try:
            assert_contains(config, expected)
        except AssertionError as err:
            raise AssertionError(f"{where}: {err}") from None


def test_paper_defaults_in_the_bases() -> None:
    """The paper's defaults (docs/definitions.md), read from the files (a typo in a base would go unnoticed otherwise)."""
    simclr = yaml.safe_load((CONFIGS / "base/simclr.yaml").read_text())
    simsiam = yaml.safe_load((CONFIGS / "base/simsiam.yaml").read_text())
    byol = yaml.safe_load((CONFIGS / "base/byol.yaml").read_text())
    a = simclr["model"]["init_args"]
    assert (a["lr"], a["weight_decay"], a["projector_out_dim"], a["temperature"]) == (
        0.6,
        1e-6,
        256,
        0.5,
    )
    for cfg in (simsiam, byol):
        b = cfg["model"]["init_args"]
        assert (b["lr"], b["weight_decay"], b["projector_dim"], b["predictor_hidden_dim"]) == (
            0.2,
            5e-4,
            2048,
            512,
        )
        assert cfg["trainer"]["accumulate_grad_batches"] == 4
    assert simsiam["model"]["init_args"]["nesterov"] is True
    for cfg in (simclr, simsiam, byol):
        init = cfg["model"]["init_args"]
        assert (init["warmup_epochs"], init["min_lr_ratio"], cfg["trainer"]["max_epochs"]) == (
            10,
            1e-3,
            500,
        )
    assert (
        yaml.safe_load((CONFIGS / "overrides/cut.yaml").read_text())["model"]["init_args"][
            "cut_constant"
        ]
        == 3.0
    )
    assert (
        yaml.safe_load((CONFIGS / "overrides/cut_simsiam.yaml").read_text())["model"]["init_args"][
            "cut_constant"
        ]
        == 9.0
    )
    gs = yaml.safe_load((CONFIGS / "overrides/gradscale.yaml").read_text())["model"]["init_args"]
    assert (gs["gradscale_power"], gs["lr"], gs["warmup_epochs"]) == (
        1.0,
        pytest.approx(0.6 / 6),
        100,
    )


def test_shipped_configs_fix_the_number_of_devices():
    """No config says ``devices: auto``: the experiment (its global batch split, its BatchNorm
    statistics) must not change with the machine it lands on. Every file that picks devices
    names the number of nodes too."""
    for path in sorted(CONFIGS.rglob("*.yaml")):
        trainer = (yaml.safe_load(path.read_text()) or {}).get("trainer") or {}
        if "devices" in trainer:
            assert isinstance(trainer["devices"], int), (path, trainer["devices"])
            assert isinstance(trainer.get("num_nodes"), int), path
    for method in ("simclr", "simsiam", "byol"):
        trainer = yaml.safe_load((CONFIGS / "base" / f"{method}.yaml").read_text())["trainer"]
        assert trainer["devices"] == 1 and trainer["num_nodes"] == 1

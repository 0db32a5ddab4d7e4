"""Config errors name the file, the full key and the choices, without the parser's union listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import SMALL_DEMO

from ssl_norms.lightning_cli import run

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

# (name, YAML of an extra -c file or None, extra arguments, expected parts; {f} is the file)
CASES = [
    ("yaml syntax", "model:\n  init_args:\n    lr: [0.1\n", [],
     ["config file {f} is not valid YAML at line 4"]),
    ("unknown key in a file", "model:\n  init_args:\n    lrr: 0.1\n", [],
     ["model.init_args.lrr (in {f}): SimCLR has no option 'lrr' (did you mean 'lr'?)"]),
    ("bad value in a file", "model:\n  init_args:\n    lr: abc\n", [],
     ["model.init_args.lr (in {f}): expected float, got 'abc'"]),
    ("top-level typo in a file", "trainr:\n  max_epochs: 3\n", [],
     ["trainr.max_epochs (in {f}): unknown option", "did you mean 'trainer.max_epochs'"]),
    ("trainer typo in a file", "trainer:\n  max_epochz: 3\n", [],
     ["trainer.max_epochz (in {f}): trainer has no option 'max_epochz' (did you mean 'max_epochs'"]),
    ("a file that is a list", "- 1\n- 2\n", [], ["config file {f} must hold a mapping"]),
    ("unknown key on the command line", None, ["--data.init_args.n_trian", "3"],
     ["data.init_args.n_trian (on the command line): LatentClassesDataModule has no option "
      "'n_trian' (did you mean 'n_train'?)"]),
    ("bad value on the command line", None, ["--trainer.max_epochs", "many"],
     ["trainer.max_epochs (on the command line): expected int, got 'many'"]),
    ("unknown method", None, ["--model", "ssl_norms.methods.MoCo"],
     ["unknown method 'ssl_norms.methods.MoCo': choose one of", "ssl_norms.methods.SimCLR",
      "ssl_norms.methods.SimSiam", "ssl_norms.methods.BYOL"]),
    ("unknown data module", None, ["--data", "datamodules.Foo"],
     ["unknown data module 'datamodules.Foo': choose one of", "datamodules.CIFAR10DataModule",
      "datamodules.LatentClassesDataModule"]),
    ("missing config file", None, ["-c", "no/such/file.yaml"],
     ["no/such/file.yaml does not exist"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "extra", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_config_error_names_the_file_and_the_key(
    tmp_path: Path, capsys, name: str, text: str | None, extra: list[str], expected: list[str]
) -> None:
    config = tmp_path / "mine.yaml"
    files = []
    if text is not None:
        config.write_text(text)
        files = ["-c", str(config)]
    with pytest.raises(SystemExit) as info:
        run(["fit", *SMALL_DEMO, *files, *extra, "--runs_root", str(tmp_path / "runs")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    for part in expected:
        assert part.format(f=config) in err, err
    assert "Union subtypes" not in err and "NoneType" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_an_unknown_backbone_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        run([*SMALL_DEMO, "--model.init_args.backbone", "resnet7"], run=False)
    message = str(info.value)
    assert message.startswith("unknown backbone 'resnet7': choose one of ['resnet18', ")
    assert "Union" not in message and "NoneType" not in message

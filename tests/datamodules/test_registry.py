"""Selecting DataModules and splits by name; constructor arguments fit LightningCLI."""

from __future__ import annotations

import inspect

import pytest

import datamodules
from datamodules import DATAMODULES, CIFAR10DataModule, get_datamodule, load_split


def test_by_name_and_unknown_names(tmp_path):
    dm = get_datamodule("CIFAR-10", data_dir=str(tmp_path), imbalance="exponential")
    assert isinstance(dm, CIFAR10DataModule) and dm.imbalance_factor == 1.5
    assert (
        get_datamodule("cifar100", data_dir=str(tmp_path), imbalance="exponential").imbalance_factor
        == 1.034
    )
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*cifar10"):
        get_datamodule("mnist")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        load_split("svhn", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown cifar100 split 'valid'"):
        load_split("cifar100", tmp_path, "valid")


@pytest.mark.parametrize("name", sorted(DATAMODULES))
def test_constructor_arguments_are_typed_documented_and_saved(name):
    cls = DATAMODULES[name]
    assert issubclass(cls, datamodules.SSLDataModule)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    # Documented in the class docstring or in its (possibly inherited) __init__'s.
    doc = (inspect.getdoc(cls) or "") + (inspect.getdoc(cls.__init__) or "")
    for p in params:
        assert p.annotation is not inspect.Parameter.empty, f"{name}.{p.name} has no type"
        assert p.default is not inspect.Parameter.empty, f"{name}.{p.name} has no default"
        assert f"{p.name}:" in doc, f"{name}.{p.name} is not documented"
    dm = cls()
    assert set(dm.hparams) == {p.name for p in params}

"""One declaration of the trained modules (``SSLMethod.param_groups``): the optimizer's
groups, their schedule and weight decay, and cut-initialisation all read it."""

from __future__ import annotations

import pytest
import torch
from method_helpers import make_method
from torch import nn

from ssl_norms.methods import SimCLR
from ssl_norms.methods.base import ParamGroup


class WithExtraHead(SimCLR):
    """A method that adds a head but forgets to declare it."""

    def __init__(self, declare: bool, **kwargs) -> None:
        self.declare = declare
        super().__init__(**kwargs)
        self.extra = nn.Linear(16, 4)

    def param_groups(self) -> dict[str, ParamGroup]:
        groups = super().param_groups()
        if self.declare and hasattr(self, "extra"):
            groups["extra"] = ParamGroup(self.extra, fixed_lr=0.01, weight_decay=False)
        return groups


def _extra(declare: bool) -> WithExtraHead:
    return WithExtraHead(
        declare, backbone="mlp", backbone_in_dim=12, backbone_width=8, projector_hidden_dim=8,
        projector_out_dim=16, weight_decay=1e-3,
    )  # fmt: skip


def test_an_undeclared_head_is_refused_by_name():
    with pytest.raises(
        ValueError, match=r"trainable parameters in no optimizer group: extra\.weight, extra\.bias"
    ):
        _extra(declare=False)._optimizer_groups()


def test_a_declared_head_gets_its_own_lr_and_weight_decay():
    groups, scheduled = _extra(declare=True)._optimizer_groups()
    by_name = {g["name"]: (g, s) for g, s in zip(groups, scheduled, strict=True)}
    assert set(by_name) == {"backbone", "projector", "extra"}
    extra, extra_scheduled = by_name["extra"]
    assert extra["lr"] == 0.01 and extra["weight_decay"] == 0.0 and not extra_scheduled
    assert by_name["backbone"][0]["weight_decay"] == 1e-3 and by_name["backbone"][1]


def test_a_parameter_in_two_groups_is_refused():
    model = make_method("simclr")
    model.param_groups = lambda: {  # type: ignore[method-assign]
        "backbone": ParamGroup(model.backbone),
        "everything": ParamGroup(model),
    }
    with pytest.raises(ValueError, match="is in group 'backbone' too"):
        model._optimizer_groups()


@pytest.mark.parametrize("name", ["simclr", "simsiam", "byol"])
def test_every_trainable_parameter_in_exactly_one_group(name):
    model = make_method(name, cut_constant=2.0)
    groups, _ = model._optimizer_groups()
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == trainable
    # Cut-init divided exactly the declared modules: BYOL's target copies the cut online net.
    if name == "byol":
        for t, o in zip(
            model.target_backbone.parameters(), model.backbone.parameters(), strict=True
        ):
            assert torch.equal(t, o)

"""Cut-initialisation (docs/definitions.md): once at construction, exactly 1/c, never again on resume."""

from __future__ import annotations

import pytest
import torch
from method_helpers import TinyDataModule, make_method, tiny_trainer

from ssl_norms.methods import SimCLR


@pytest.mark.parametrize("c", [3.0, 9.0])
def test_cut_divides_every_parameter_exactly(method_name: str, c: float) -> None:
    torch.manual_seed(123)
    plain = make_method(method_name)
    torch.manual_seed(123)
    cut = make_method(method_name, cut_constant=c)
    plain_params, cut_params = dict(plain.named_parameters()), dict(cut.named_parameters())
    assert plain_params.keys() == cut_params.keys()
    for name, p in plain_params.items():
        assert torch.equal(cut_params[name], p / c), name
        if p.abs().sum() > 0:
            assert not torch.equal(cut_params[name], p), name
    # Buffers (BatchNorm running statistics) are not parameters: untouched.
    for (name, b), (_, b_cut) in zip(plain.named_buffers(), cut.named_buffers(), strict=True):
        assert torch.equal(b, b_cut), name


def test_cut_resnet_backbone_exactly() -> None:
    kwargs = dict(
        backbone="resnet18", backbone_width=4, projector_hidden_dim=8, projector_out_dim=4
    )
    torch.manual_seed(5)
    plain = SimCLR(**kwargs)
    torch.manual_seed(5)
    cut = SimCLR(cut_constant=3.0, **kwargs)
    for (name, p), q in zip(plain.named_parameters(), cut.parameters(), strict=True):
        assert torch.equal(q, p / 3.0), name


def test_byol_target_starts_equal_to_the_cut_online_network() -> None:
    torch.manual_seed(0)
    model = make_method("byol", cut_constant=4.0)
    online = [*model.backbone.parameters(), *model.projector.parameters()]
    target = list(model.target_parameters())
    assert len(online) == len(target)
    for o, t in zip(online, target, strict=True):
        assert torch.equal(o, t) and t is not o and not t.requires_grad
    torch.manual_seed(0)
    plain = make_method("byol")
    for p, t in zip(plain.backbone.parameters(), model.target_backbone.parameters(), strict=False):
        assert torch.equal(t, p / 4.0)


def test_loading_a_checkpoint_does_not_cut_again(tmp_path, method_name: str) -> None:
    torch.manual_seed(0)
    model = make_method(method_name, cut_constant=3.0)
    trainer = tiny_trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=TinyDataModule(n=16, batch_size=8))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    trained = {k: v.clone() for k, v in model.state_dict().items()}

    # The constructor cuts a fresh network, load_state_dict then overwrites it with the
    # saved (already cut, then trained) weights: nothing is divided a second time.
    restored = type(model).load_from_checkpoint(path)
    assert restored.hparams.cut_constant == 3.0
    state = restored.state_dict()
    assert state.keys() == trained.keys()
    for k, v in trained.items():
        assert torch.equal(state[k], v), k

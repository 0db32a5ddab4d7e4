"""The module/callback contract (docs/contract.md) for SimCLR, SimSiam and BYOL."""

from __future__ import annotations

import pytest
import torch
from method_helpers import IN_DIM, TinyDataModule, make_method, tiny_trainer

from ssl_norms.methods import BYOL, SimCLR, SimSiam, SSLMethod, get_method

EMBED_DIM = {"simclr": 16, "simsiam": 32, "byol": 32}  # projector / predictor output sizes


def _batch(b: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(b, IN_DIM, generator=g), torch.randn(b, IN_DIM, generator=g)]
    return views, torch.arange(b) % 3, torch.arange(b)


def test_training_step_outputs_follow_the_contract(method_name: str) -> None:
    torch.manual_seed(0)
    model = make_method(method_name)
    assert isinstance(model, SSLMethod)
    assert model.gradscale_power == 0.0
    views, y, idx = _batch()
    out = model.training_step((views, y, idx), 0)
    assert set(out) == {"loss", "z", "h", "y"}
    assert out["loss"].dim() == 0 and out["loss"].requires_grad
    assert out["z"].shape == (12, EMBED_DIM[method_name])
    assert out["h"].shape == (12, 24)
    assert not out["z"].requires_grad and not out["h"].requires_grad
    assert torch.equal(out["y"], y)
    # view-1 rows then view-2 rows: the rows equal the embedding of each view on its own
    # (eval mode for both so that BatchNorm does not mix the two halves).
    model.eval()
    with torch.no_grad():
        out = model.training_step((views, y, idx), 0)
        torch.testing.assert_close(out["z"][:6], model.embed(views[0]))
        torch.testing.assert_close(out["z"][6:], model.embed(views[1]))
        torch.testing.assert_close(out["h"][6:], model(views[1]))


def test_eval_steps_return_h_z_y_idx(method_name: str) -> None:
    model = make_method(method_name).eval()
    x, y, idx = torch.randn(5, IN_DIM), torch.arange(5), torch.arange(10, 15)
    for step in (model.validation_step, model.test_step):
        out = step((x, y, idx), 0, dataloader_idx=1)
        assert set(out) == {"h", "z", "y", "idx"}
        assert torch.equal(out["idx"], idx) and torch.equal(out["y"], y)
        with torch.no_grad():
            torch.testing.assert_close(out["h"], model(x))
            torch.testing.assert_close(out["z"], model.embed(x))
        assert out["z"].shape == (5, EMBED_DIM[method_name])


def test_each_method_lowers_its_loss_on_a_tiny_batch(method_name: str) -> None:
    torch.manual_seed(0)
    model = make_method(method_name, lr=0.05, weight_decay=0.0, min_lr_ratio=1.0)
    dm = TinyDataModule(n=16, batch_size=16)
    batch = next(iter(dm.train_dataloader()))

    def loss() -> float:
        model.train()  # batch statistics, as in training; no step is taken here
        with torch.no_grad():
            return model.compute_loss(*batch[0]).loss.item()

    before = loss()
    tiny_trainer(max_epochs=20).fit(model, datamodule=dm)
    after = loss()
    assert after < before - 0.01, (before, after)


def test_optimizer_groups_are_named_and_exclude_bn_and_bias_from_weight_decay() -> None:
    model = make_method(
        "simsiam", weight_decay=1e-3, exclude_bn_bias_from_wd=True, predictor_lr=0.03
    )
    trainer = tiny_trainer(max_epochs=1)
    trainer.fit(model, datamodule=TinyDataModule(n=8, batch_size=8))
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert set(groups) == {
        "backbone",
        "backbone_no_wd",
        "projector",
        "projector_no_wd",
        "predictor",
        "predictor_no_wd",
    }
    assert (
        all(p.ndim > 1 for p in groups["backbone"]["params"])
        and groups["backbone"]["weight_decay"] == 1e-3
    )
    assert (
        all(p.ndim == 1 for p in groups["backbone_no_wd"]["params"])
        and groups["backbone_no_wd"]["weight_decay"] == 0.0
    )
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len([p for p in model.parameters() if p.requires_grad])


def test_lars_is_used_when_asked() -> None:
    from ssl_norms.optim import LARS

    model = make_method("simclr", optimizer="lars")
    trainer = tiny_trainer(max_epochs=1)
    trainer.fit(model, datamodule=TinyDataModule(n=8, batch_size=8))
    assert isinstance(trainer.optimizers[0], LARS)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("c", [0.0, -2.0, float("nan"), float("inf")])
def test_bad_cut_constant_is_a_clear_error(c: float) -> None:
    with pytest.raises(ValueError, match="cut_constant must be a finite number > 0"):
        make_method("simclr", cut_constant=c)


def test_unknown_backbone_and_method_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet7'.*resnet18"):
        SimCLR(backbone="resnet7")
    with pytest.raises(ValueError, match="backbone_in_dim"):
        SimCLR(backbone="mlp")
    with pytest.raises(ValueError, match=r"unknown SSL method 'mocov3'.*byol"):
        get_method("mocov3")
    assert get_method("SimSiam") is SimSiam and get_method("byol") is BYOL


def test_any_module_can_be_the_backbone() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(IN_DIM, 20), torch.nn.ReLU())
    with pytest.raises(ValueError, match="backbone_out_dim"):
        SimCLR(backbone=net, projector_hidden_dim=8, projector_out_dim=4)
    model = SimCLR(backbone=net, backbone_out_dim=20, projector_hidden_dim=8, projector_out_dim=4)
    assert model.backbone is net and "backbone" not in model.hparams
    assert model.embed(torch.randn(3, IN_DIM)).shape == (3, 4)


def test_nan_loss_stops_before_the_optimizer_step_and_names_the_step() -> None:
    torch.manual_seed(0)
    model = make_method("simclr", gradscale_power=1.0)
    # Samples 16.. are NaN: batches 0 and 1 are fine, batch 2 (global step 2) is not.
    dm = TinyDataModule(n=32, batch_size=8, nan_from=16)
    with pytest.raises(FloatingPointError) as info:
        tiny_trainer(max_epochs=1).fit(model, datamodule=dm)
    message = str(info.value)
    assert (
        "global step 2" in message and "GradScale (p=1.0)" in message and "learning rate" in message
    )
    assert all(torch.isfinite(p).all() for p in model.parameters()), (
        "the NaN step must not reach the weights"
    )


def test_non_finite_gradients_are_caught_before_the_step() -> None:
    model = make_method("simclr")

    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h):
            return h.clone()

        @staticmethod
        def backward(ctx, grad):  # finite forward, infinite gradient
            return torch.full_like(grad, float("inf"))

    class Poison(torch.nn.Module):
        def forward(self, h):
            return InfGrad.apply(h)

    model.backbone.net.append(Poison())
    with pytest.raises(FloatingPointError, match="non-finite gradients at global step 0"):
        tiny_trainer(max_epochs=1).fit(model, datamodule=TinyDataModule(n=8, batch_size=8))


def test_the_base_class_is_not_a_method() -> None:
    with pytest.raises(TypeError, match="use SimCLR, SimSiam or BYOL"):
        SSLMethod(backbone="mlp", backbone_in_dim=4)

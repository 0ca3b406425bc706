"""The shared adversarial machinery (fusebench.methods.gan): objectives, the k-D-steps-per-G-step trainer,
checkpoint round trips and bitwise resume through the shared loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from training_helpers import assert_equal_nested, check_resume

from fusebench.methods.gan import (
    LSGAN,
    WGANGP,
    AdversarialTrainer,
    WGANDiv,
    check_options,
    divergence_penalty,
    forward_with_bn_mode,
    gradient_penalty,
    lsgan_loss,
    make_objective,
    parameter_count,
    seeded,
)


# ------------------------------------------------------------------------------------------- toy setup
class Linear(nn.Module):
    """D(x) = <w, x> + b per sample: its input gradient is w everywhere."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(n))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) * self.w).sum(dim=1, keepdim=True) + self.b


class ToyDisc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 7 * 7, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


class ToyGen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(torch.relu(self.bn(self.conv(x)))))


class ToyTrainer(AdversarialTrainer):
    method = "toy"

    def __init__(self, device: str = "cpu", objective: str = "lsgan", d_steps: int = 2, **kw: Any) -> None:
        gen = seeded(0, ToyGen)
        discs = {"vi": seeded(1, ToyDisc), "ir": seeded(2, ToyDisc)}
        objectives = {
            "lsgan": LSGAN((0.7, 1.2), (0.0, 0.3), (0.7, 1.2)),
            "wgan-gp": WGANGP(),
            "wgan-div": WGANDiv(),
        }
        super().__init__(
            device,
            generator=gen,
            discriminators=discs,
            g_optimizer=torch.optim.Adam(gen.parameters(), 1e-3),
            d_optimizers={k: torch.optim.Adam(d.parameters(), 1e-3) for k, d in discs.items()},
            objectives=objectives[objective],
            d_steps=d_steps,
            **kw,
        )
        self.calls: list[str] = []

    def generate(self, batch: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():  # the discriminators' fake batch
            self.calls.append("gen:" + ("train" if self.generator.training else "eval"))
        return super().generate(batch)

    def generator_loss(self, batch: torch.Tensor, fused: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        self.calls.append("g")
        content = ((fused - batch[:, :1]) ** 2).mean()
        adv = self.adversarial("vi", fused) + self.adversarial("ir", fused)
        return {"loss": adv + 10 * content, "adv": adv, "content": content}

    def discriminator_inputs(
        self, name: str, batch: torch.Tensor, fused: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(f"d_{name}")
        assert not fused.requires_grad
        return (batch[:, 1:] if name == "vi" else batch[:, :1]), fused


def toy_batch(n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, 16, 16, generator=g)


# ------------------------------------------------------------------------------------------ objectives
def test_lsgan_fixed_and_soft_labels() -> None:
    out = torch.tensor([[0.5], [1.5]])
    assert torch.isclose(lsgan_loss(out, 1.0), torch.tensor((0.25 + 0.25) / 2))
    torch.manual_seed(0)
    big = torch.zeros(20000, 1)
    # E[(0 - U[0.7, 1.2])^2] = Var + mean^2 = 0.5^2 / 12 + 0.95^2
    assert abs(float(lsgan_loss(big, (0.7, 1.2))) - (0.25 / 12 + 0.95**2)) < 5e-3
    d = Linear(3)
    real, fake = torch.ones(5, 3), torch.zeros(5, 3)
    loss, terms = LSGAN().discriminator_loss(d, real, fake)
    expect = ((d(real) - 1) ** 2).mean() + (d(fake) ** 2).mean()
    assert torch.isclose(loss, expect) and set(terms) == {"real", "fake"}
    assert torch.isclose(LSGAN().generator_loss(torch.tensor([[0.0]])), torch.tensor(1.0))
    # label flipping with probability ~1 swaps the targets
    flipped, _ = LSGAN(flip=0.999999).discriminator_loss(d, real, fake)
    assert torch.isclose(flipped, (d(real) ** 2).mean() + ((d(fake) - 1) ** 2).mean())
    with pytest.raises(ValueError):
        LSGAN(flip=1.0)


def test_wasserstein_penalties_on_a_linear_critic() -> None:
    torch.manual_seed(0)
    d = Linear(6)
    real, fake = torch.rand(4, 6), torch.rand(4, 6)
    norm = d.w.detach().norm()
    assert torch.isclose(gradient_penalty(d, real, fake), (norm - 1) ** 2)
    for points in ("interpolate", "real_fake"):
        assert torch.isclose(divergence_penalty(d, real, fake, p=6, points=points), norm**6, rtol=1e-5)
    loss, terms = WGANDiv(k=2, p=6).discriminator_loss(d, real, fake)
    assert torch.isclose(loss, d(fake).mean() - d(real).mean() + 2 * norm**6, rtol=1e-5)
    loss, _ = WGANGP(weight=10).discriminator_loss(d, real, fake)
    assert torch.isclose(loss, d(fake).mean() - d(real).mean() + 10 * (norm - 1) ** 2, rtol=1e-5)
    assert torch.isclose(WGANGP().generator_loss(torch.tensor([[2.0], [4.0]])), torch.tensor(-3.0))
    # the penalty is differentiable w.r.t. the critic's parameters (double backward)
    loss.backward()
    assert d.w.grad is not None and torch.isfinite(d.w.grad).all()
    with pytest.raises(ValueError):
        WGANDiv(points="nowhere")


def test_make_objective_and_options() -> None:
    obj = make_objective("lsgan", real_label=[0.7, 1.2], fake_label=[0, 0.3])
    assert isinstance(obj, LSGAN) and obj.real_label == (0.7, 1.2)
    assert isinstance(make_objective("wgan-div", k=2, p=6), WGANDiv)
    with pytest.raises(ValueError, match="unknown adversarial objective"):
        make_objective("hinge")
    check_options("toy", {"steps": 1, "patch_size": 8})
    with pytest.raises(TypeError, match="unknown option"):
        check_options("toy", {"stepz": 1})
    assert parameter_count(nn.Linear(3, 2)) == 8


# --------------------------------------------------------------------------------------------- trainer
@pytest.mark.parametrize("objective", ["lsgan", "wgan-gp", "wgan-div"])
def test_step_order_and_updates(objective: str) -> None:
    t = ToyTrainer(objective=objective, d_steps=2)
    before = {k: {n: p.detach().clone() for n, p in d.named_parameters()} for k, d in t.discriminators.items()}
    g_before = {n: p.detach().clone() for n, p in t.generator.named_parameters()}
    logs = t.train_step(toy_batch(), 0)
    assert list(logs)[:3] == ["loss", "adv", "content"] and {"d_vi", "d_ir"} <= set(logs)
    assert all(np.isfinite(v) for v in logs.values())
    # k = 2 discriminator updates (both discriminators, in order), then one generator update
    assert t.calls == ["gen:train", "d_vi", "d_ir", "gen:train", "d_vi", "d_ir", "g"]
    for k, d in t.discriminators.items():
        assert t.d_optimizers[k].state[next(iter(d.parameters()))]["step"] == 2
        assert any(not torch.equal(p, before[k][n]) for n, p in d.named_parameters())
        assert all(p.requires_grad for p in d.parameters())  # unfrozen after the generator step
    assert t.g_optimizer.state[next(iter(t.generator.parameters()))]["step"] == 1
    assert any(not torch.equal(p, g_before[n]) for n, p in t.generator.named_parameters())


def test_generator_first_and_eval_mode_generator_for_discriminators() -> None:
    t = ToyTrainer(d_steps=1, d_first=False, d_generator_mode="eval")
    t.train_step(toy_batch(), 0)
    assert t.calls == ["g", "gen:eval", "d_vi", "d_ir"]
    assert t.generator.training
    with pytest.raises(ValueError):
        ToyTrainer(d_generator_mode="sometimes")


def test_generator_every_nth_step() -> None:
    t = ToyTrainer(d_steps=1, g_every=2)
    g_param = next(iter(t.generator.parameters()))
    keys = None
    for s in range(4):
        logs = t.train_step(toy_batch(seed=s), s)
        keys = keys or list(logs)
        assert list(logs) == keys and all(np.isfinite(v) for v in logs.values())  # same log columns
        steps = int(t.g_optimizer.state[g_param]["step"]) if t.g_optimizer.state else 0
        assert steps == (s + 1) // 2
    assert t.d_optimizers["vi"].state[next(iter(t.discriminators["vi"].parameters()))]["step"] == 4
    with pytest.raises(ValueError):
        ToyTrainer(g_every=0)


def test_forward_with_bn_mode() -> None:
    net = ToyGen()
    with torch.no_grad():
        net.bn.running_mean.fill_(0.3)
    x = torch.rand(1, 2, 8, 8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    with torch.no_grad():
        train_out = forward_with_bn_mode(net, x, "train")
        eval_out = forward_with_bn_mode(net, x, "eval")
    assert not net.training  # the module's flag is restored
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # statistics untouched
    assert not torch.allclose(train_out, eval_out)
    with torch.no_grad():
        net.train()
        assert torch.equal(train_out, net(x))
    with pytest.raises(ValueError):
        forward_with_bn_mode(net, x, "frozen")


def test_generator_step_does_not_touch_discriminator_gradients() -> None:
    t = ToyTrainer(d_steps=0)
    t.train_step(toy_batch(), 0)
    for d in t.discriminators.values():
        assert all(p.grad is None for p in d.parameters())


def test_state_dict_round_trip_and_export() -> None:
    a, b = ToyTrainer(), ToyTrainer()
    for s in range(2):
        a.train_step(toy_batch(seed=s), s)
    b.load_state_dict(a.state_dict())
    assert_equal_nested(a.state_dict(), b.state_dict())
    torch.manual_seed(7)
    la = a.train_step(toy_batch(seed=9), 2)
    torch.manual_seed(7)
    lb = b.train_step(toy_batch(seed=9), 2)
    assert la == lb
    exported = a.export()
    assert set(exported) == set(a.generator.state_dict()) and all(v.device.type == "cpu" for v in exported.values())


def test_seeded_builds_are_reproducible_and_leave_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    x, y = seeded(4, ToyGen), seeded(4, ToyGen)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters(), strict=True))


def test_resume_is_bitwise_through_the_shared_loop(tmp_path: Path) -> None:
    patches = (np.random.default_rng(0).random((6, 2, 16, 16)) * 255).astype(np.uint8)
    check_resume(lambda: ToyTrainer(objective="lsgan"), patches, tmp_path / "lsgan")
    check_resume(lambda: ToyTrainer(objective="wgan-div"), patches, tmp_path / "div")

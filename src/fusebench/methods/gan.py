"""Shared adversarial-training machinery for the GAN fusion methods (FusionGAN, TarDAL, UFGAN, MFF-GAN, ...).

A GAN fusion method has one generator (the fusion network) and one or more *named* discriminators, each
trained with an adversarial objective; the generator loss is a content loss plus weighted adversarial
terms. This module provides the parts every such method repeats, so a method only writes its networks,
its content loss and what each discriminator sees.

Objectives (reusable loss functions, usable on their own)
---------------------------------------------------------
Each objective is a small object with two methods:

* ``discriminator_loss(disc, real, fake) -> (loss, terms)``: the loss minimised by discriminator ``disc``
  given a batch of "real" and "fake" inputs (``fake`` is already detached); ``terms`` is a dict of
  detached scalar tensors for logging (e.g. ``{"real": ..., "fake": ..., "penalty": ...}``);
* ``generator_loss(d_fake) -> loss``: the adversarial loss of the generator given the discriminator's
  output on the generator's (non-detached) fake input.

Available objectives:

* :class:`LSGAN` -- least squares (Mao et al. 2017): ``D: E(D(x) - a)^2 + E(D(G) - b)^2``,
  ``G: E(D(G) - c)^2``. Each label ``a``, ``b``, ``c`` is a number or a ``(low, high)`` range: a range draws
  one label per output element uniformly from it (FusionGAN's "soft labels": ``a, c ~ U[0.7, 1.2]``,
  ``b ~ U[0, 0.3]``). ``flip`` swaps the real and fake labels of each element with that probability
  ("noisy labels"). Random labels come from torch's global RNG, which the shared loop checkpoints, so a
  resumed run draws the same labels.
* :class:`WGANGP` -- Wasserstein loss with gradient penalty (Gulrajani et al. 2017):
  ``D: E D(G) - E D(x) + w E(||grad D(u)||_2 - 1)^2`` at random interpolates ``u``; ``G: -E D(G)``.
* :class:`WGANDiv` -- Wasserstein divergence (Wu et al. 2018): ``D: E D(G) - E D(x) + k E ||grad D(u)||_2^p``
  with ``k = 2``, ``p = 6``; ``points="interpolate"`` evaluates the gradient at random interpolates ``u``
  (TarDAL's code), ``points="real_fake"`` at the real and fake samples (the WGAN-div paper's code, mean of
  the two); ``G: -E D(G)``.

Functions :func:`lsgan_loss`, :func:`gradient_penalty`, :func:`divergence_penalty` and :func:`interpolate`
are the building blocks, also usable directly. :func:`make_objective` builds an objective from a config
name (``"lsgan"``, ``"wgan-gp"``, ``"wgan-div"``) and keyword options.

Other helpers: :func:`seeded` (build networks under a forked, seeded RNG), :func:`parameter_count`,
:func:`check_options` (reject unknown trainer options, allowing the loop's :data:`LOOP_KEYS`; these two and
``LOOP_KEYS`` live in :mod:`fusebench.training` and are re-exported here) and
:func:`forward_with_bn_mode` (inference with BatchNorm in train mode -- per-image statistics, as TF1 test
scripts that never set ``is_training=False`` do -- without disturbing the stored running statistics).

The trainer base class
----------------------
:class:`AdversarialTrainer` (a :class:`~fusebench.training.Trainer`) owns the generator, the discriminators
(``dict`` name -> module), their optimisers and objectives and the training step. A subclass builds its
networks and optimisers, calls ``super().__init__(device, generator=..., discriminators=...,
g_optimizer=..., d_optimizers=..., objectives=..., d_steps=k)`` and implements:

* ``generator_loss(batch, fused, step) -> dict[str, Tensor]``: the generator's total loss under the key
  ``"loss"`` plus any terms to log; inside it, :meth:`AdversarialTrainer.adversarial` gives the
  adversarial term of a named discriminator for a (non-detached) fake input;
* ``discriminator_inputs(name, batch, fused) -> (real, fake)``: what discriminator ``name`` is shown
  (e.g. the visible image vs the fused one for FusionGAN; masked images or gradient maps for TarDAL).
  ``fused`` is detached there;

and may override:

* ``generate(batch) -> fused``: the generator's forward pass on a prepared batch (default
  ``self.generator(batch)``);
* ``prepare_batch(batch) -> batch``: turn the loop's Bx2xHxW [0, 1] batch into the generator's input
  (default: move to the device as float32);
* ``after_step(step)``: called after each full step (default: step the schedulers in ``schedulers``);
* ``export()``: the weights saved in ``model.pt`` (default: the generator's state dict on the CPU);
* ``extra_state()`` / ``load_extra_state(state)``: anything else to checkpoint.

One :meth:`~AdversarialTrainer.train_step` is ``d_steps`` discriminator updates followed by ``g_steps``
generator updates (``d_first=False`` reverses the order), all on the same batch:

1. for each of the ``d_steps``: the generator runs under ``no_grad`` -- in train mode by default (as the TF1
   originals do, so BatchNorm uses batch statistics and updates its running ones), in eval mode with
   ``d_generator_mode="eval"`` (TarDAL's code) -- then every discriminator, in insertion order, takes one
   optimiser step on ``objective.discriminator_loss(D, *discriminator_inputs(...))``;
2. for each of the ``g_steps``: the discriminators' parameters are frozen (``requires_grad=False``, so
   no gradient is accumulated into them), the generator runs with gradients, ``generator_loss`` is
   back-propagated and the generator's optimiser steps.

``g_every=n`` updates the generator only on every n-th step (``(step + 1) % n == 0``; UFGAN's
``generator_interval``), so the discriminators see n batches per generator update; on the other steps the
generator's loss terms are computed under ``no_grad`` for the log only.

The step returns ``{"loss": generator total, <generator terms>, "d_<name>": discriminator loss, ...}`` as
floats (the last update of each), which the shared loop writes to ``loss.csv``.

Two schemes shared by several methods are subclasses here:

* :class:`CentreCropTrainer` (FusionGAN, UFGAN): a VALID-convolution generator on ``cat([ir, vi])`` in
  [-1, 1] compared with the central crops of the sources, one discriminator ``vi`` (visible crop vs fused),
  generator loss ``adv + lam (intensity + xi grad)``; a subclass gives the two content terms;
* :class:`ConditionalMapTrainer` (FuseGAN, MFIF-GAN): a decision-map cGAN on synthetic multi-focus triplets
  ``(A, B, M)``, one discriminator on ``[A, B, map]``, generator loss ``adversarial + w |G - M|_1``.

``state_dict()`` holds the generator, every discriminator, every optimiser and scheduler (and
``extra_state()``); together with the torch RNG that the shared loop checkpoints, a resumed run is
bitwise identical to an uninterrupted one. Networks should be built with :func:`seeded` so their initial
weights depend on the ``seed`` option only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..training import LOOP_KEYS, Trainer, check_options, seeded

__all__ = [
    "LOOP_KEYS",
    "LSGAN",
    "OBJECTIVES",
    "AdversarialTrainer",
    "CentreCropTrainer",
    "ConditionalMapTrainer",
    "Objective",
    "WGANDiv",
    "WGANGP",
    "check_options",
    "divergence_penalty",
    "forward_with_bn_mode",
    "gradient_penalty",
    "interpolate",
    "lsgan_loss",
    "make_objective",
    "parameter_count",
    "seeded",
]

Label = float | tuple[float, float]


# ----------------------------------------------------------------------------------------------- helpers
def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def forward_with_bn_mode(net: nn.Module, x: torch.Tensor, bn_mode: str) -> torch.Tensor:
    """``net(x)`` with BatchNorm in ``bn_mode``: "eval" (stored running statistics) or "train" (statistics of
    ``x``, as TF1 code that never sets ``is_training=False`` computes at test time). Train mode leaves the
    stored running statistics as they were (they are restored after the call); the module's own
    train/eval flag is restored too."""
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    was_training = net.training
    if bn_mode == "eval":
        net.eval()
        try:
            return net(x)
        finally:
            net.train(was_training)
    saved = {k: v.clone() for k, v in net.state_dict().items() if "running_" in k or "num_batches" in k}
    net.train()
    try:
        return net(x)
    finally:
        net.train(was_training)
        with torch.no_grad():
            current = net.state_dict()
            for k, v in saved.items():
                current[k].copy_(v)


def _labels(label: Label, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(label, tuple | list):
        low, high = float(label[0]), float(label[1])
        return torch.rand(like.shape, dtype=like.dtype, device=like.device) * (high - low) + low
    return float(label)


def lsgan_loss(output: torch.Tensor, label: Label) -> torch.Tensor:
    """``mean((output - label)^2)``; a ``(low, high)`` label draws one uniform label per element."""
    return ((output - _labels(label, output)) ** 2).mean()


def interpolate(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Random per-sample interpolates ``a real + (1 - a) fake``, ``a ~ U[0, 1]``, requiring grad."""
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype, device=real.device)
    return (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)


def _input_gradient(disc: nn.Module, points: torch.Tensor) -> torch.Tensor:
    points = points.detach().requires_grad_(True)
    out = disc(points)
    (grad,) = torch.autograd.grad(out.sum(), points, create_graph=True)
    return grad.reshape(grad.shape[0], -1)


def gradient_penalty(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty ``E(||grad D(u)||_2 - 1)^2`` at random interpolates (unweighted)."""
    grad = _input_gradient(disc, interpolate(real, fake))
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def divergence_penalty(
    disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, p: float = 6.0, points: str = "interpolate"
) -> torch.Tensor:
    """WGAN-div penalty ``E ||grad D(u)||_2^p`` (unweighted); see :class:`WGANDiv` for ``points``."""
    if points == "interpolate":
        return (_input_gradient(disc, interpolate(real, fake)).norm(2, dim=1) ** p).mean()
    if points == "real_fake":
        g_real = _input_gradient(disc, real).norm(2, dim=1) ** p
        g_fake = _input_gradient(disc, fake).norm(2, dim=1) ** p
        return (g_real.mean() + g_fake.mean()) / 2
    raise ValueError(f"WGAN-div points must be 'interpolate' or 'real_fake', got {points!r}")


# -------------------------------------------------------------------------------------------- objectives
class Objective:
    """Base of the adversarial objectives (see the module docstring)."""

    name: ClassVar[str] = ""

    def discriminator_loss(
        self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class LSGAN(Objective):
    """Least-squares GAN with optional soft (range) labels and label flipping."""

    real_label: Label = 1.0
    fake_label: Label = 0.0
    generator_label: Label = 1.0
    flip: float = 0.0

    name: ClassVar[str] = "lsgan"

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip < 1.0:
            raise ValueError(f"LSGAN flip probability must be in [0, 1), got {self.flip}")

    def discriminator_loss(
        self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d_real, d_fake = disc(real), disc(fake)
        a, b = _labels(self.real_label, d_real), _labels(self.fake_label, d_fake)
        if self.flip > 0:
            a_t = torch.as_tensor(a, dtype=d_real.dtype, device=d_real.device).expand_as(d_real)
            b_t = torch.as_tensor(b, dtype=d_fake.dtype, device=d_fake.device).expand_as(d_fake)
            flip_r = torch.rand(d_real.shape, device=d_real.device) < self.flip
            flip_f = torch.rand(d_fake.shape, device=d_fake.device) < self.flip
            a, b = torch.where(flip_r, b_t, a_t), torch.where(flip_f, a_t, b_t)
        loss_real = ((d_real - a) ** 2).mean()
        loss_fake = ((d_fake - b) ** 2).mean()
        return loss_real + loss_fake, {"real": loss_real.detach(), "fake": loss_fake.detach()}

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return lsgan_loss(d_fake, self.generator_label)


@dataclass(frozen=True)
class WGANGP(Objective):
    """Wasserstein GAN with gradient penalty of weight ``weight``."""

    weight: float = 10.0

    name: ClassVar[str] = "wgan-gp"

    def discriminator_loss(
        self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d_real, d_fake = disc(real).mean(), disc(fake).mean()
        penalty = gradient_penalty(disc, real, fake)
        loss = d_fake - d_real + self.weight * penalty
        return loss, {"real": d_real.detach(), "fake": d_fake.detach(), "penalty": penalty.detach()}

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return -d_fake.mean()


@dataclass(frozen=True)
class WGANDiv(Objective):
    """Wasserstein divergence: ``k`` and ``p`` as in Wu et al. (k = 2, p = 6)."""

    k: float = 2.0
    p: float = 6.0
    points: str = "interpolate"

    name: ClassVar[str] = "wgan-div"

    def __post_init__(self) -> None:
        if self.points not in ("interpolate", "real_fake"):
            raise ValueError(f"WGAN-div points must be 'interpolate' or 'real_fake', got {self.points!r}")

    def discriminator_loss(
        self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d_real, d_fake = disc(real).mean(), disc(fake).mean()
        penalty = divergence_penalty(disc, real, fake, self.p, self.points)
        loss = d_fake - d_real + self.k * penalty
        return loss, {"real": d_real.detach(), "fake": d_fake.detach(), "penalty": penalty.detach()}

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return -d_fake.mean()


OBJECTIVES: dict[str, type[Objective]] = {"lsgan": LSGAN, "wgan-gp": WGANGP, "wgan-div": WGANDiv}


def make_objective(name: str, **options: Any) -> Objective:
    """An objective from its config name and options (ranges may be given as 2-element lists)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown adversarial objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return OBJECTIVES[name](**fixed)


# ------------------------------------------------------------------------------------------------ trainer
class AdversarialTrainer(Trainer):
    """Generator + named discriminators, k discriminator steps per generator step (see module docstring)."""

    #: name used in error messages
    method: ClassVar[str] = "gan"

    def __init__(
        self,
        device: str,
        *,
        generator: nn.Module,
        discriminators: Mapping[str, nn.Module],
        g_optimizer: torch.optim.Optimizer,
        d_optimizers: Mapping[str, torch.optim.Optimizer],
        objectives: Objective | Mapping[str, Objective],
        d_steps: int = 1,
        g_steps: int = 1,
        d_first: bool = True,
        d_generator_mode: str = "train",
        g_every: int = 1,
        schedulers: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(device)
        if set(d_optimizers) != set(discriminators):
            raise ValueError(f"{self.method}: one optimiser per discriminator is needed")
        if int(d_steps) < 0 or int(g_steps) < 1:
            raise ValueError(f"{self.method}: d_steps must be >= 0 and g_steps >= 1")
        if int(g_every) < 1:
            raise ValueError(f"{self.method}: g_every must be >= 1, got {g_every}")
        if d_generator_mode not in ("train", "eval"):
            raise ValueError(f"{self.method}: d_generator_mode must be 'train' or 'eval', got {d_generator_mode!r}")
        self.generator = generator.to(self.device).train()
        self.discriminators: dict[str, nn.Module] = {k: d.to(self.device).train() for k, d in discriminators.items()}
        self.g_optimizer = g_optimizer
        self.d_optimizers = dict(d_optimizers)
        if isinstance(objectives, Objective):
            objectives = {k: objectives for k in self.discriminators}
        if set(objectives) != set(self.discriminators):
            raise ValueError(f"{self.method}: one objective per discriminator is needed")
        self.objectives: dict[str, Objective] = dict(objectives)
        self.d_steps = int(d_steps)
        self.g_steps = int(g_steps)
        self.d_first = bool(d_first)
        self.d_generator_mode = d_generator_mode
        self.g_every = int(g_every)
        self.schedulers: dict[str, Any] = dict(schedulers or {})

    # -- to implement / override
    def generator_loss(self, batch: torch.Tensor, fused: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Generator loss terms; ``"loss"`` is the total that is back-propagated."""
        raise NotImplementedError

    def discriminator_inputs(
        self, name: str, batch: torch.Tensor, fused: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, fake) inputs of discriminator ``name``; ``fused`` is detached here."""
        raise NotImplementedError

    def generate(self, batch: torch.Tensor) -> torch.Tensor:
        return self.generator(batch)

    def prepare_batch(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"{self.method} trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        return batch.to(self.device, torch.float32)

    def after_step(self, step: int) -> None:
        for scheduler in self.schedulers.values():
            scheduler.step()

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    # -- helpers for subclasses
    def adversarial(self, name: str, fake: torch.Tensor) -> torch.Tensor:
        """Generator-side adversarial loss of discriminator ``name`` on a (non-detached) fake input."""
        return self.objectives[name].generator_loss(self.discriminators[name](fake))

    # -- the step
    def discriminator_step(self, batch: torch.Tensor) -> dict[str, float]:
        self.generator.train(self.d_generator_mode == "train")
        try:
            with torch.no_grad():
                fused = self.generate(batch).detach()
        finally:
            self.generator.train()
        logs: dict[str, float] = {}
        for name, disc in self.discriminators.items():
            real, fake = self.discriminator_inputs(name, batch, fused)
            optimizer = self.d_optimizers[name]
            optimizer.zero_grad(set_to_none=True)
            loss, _ = self.objectives[name].discriminator_loss(disc, real.detach(), fake.detach())
            loss.backward()
            optimizer.step()
            logs[f"d_{name}"] = float(loss.detach())
        return logs

    def generator_terms(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """The generator's loss terms without an update (logged on steps that skip the generator)."""
        with torch.no_grad():
            terms = self.generator_loss(batch, self.generate(batch), step)
        return {k: float(v) for k, v in terms.items()}

    def generator_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        flags = {n: [p.requires_grad for p in d.parameters()] for n, d in self.discriminators.items()}
        for d in self.discriminators.values():
            d.requires_grad_(False)
        try:
            self.g_optimizer.zero_grad(set_to_none=True)
            terms = self.generator_loss(batch, self.generate(batch), step)
            if "loss" not in terms:
                raise KeyError(f"{self.method}: generator_loss must return the total under 'loss'")
            terms["loss"].backward()
            self.g_optimizer.step()
        finally:
            for n, d in self.discriminators.items():
                for p, flag in zip(d.parameters(), flags[n], strict=True):
                    p.requires_grad_(flag)
        return {k: float(v.detach()) for k, v in terms.items()}

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        batch = self.prepare_batch(batch)
        self.generator.train()
        for d in self.discriminators.values():
            d.train()
        d_logs: dict[str, float] = {f"d_{n}": float("nan") for n in self.discriminators}
        g_logs: dict[str, float] = {}
        if self.d_first:
            for _ in range(self.d_steps):
                d_logs.update(self.discriminator_step(batch))
        if (step + 1) % self.g_every == 0:
            for _ in range(self.g_steps):
                g_logs = self.generator_step(batch, step)
        else:
            g_logs = self.generator_terms(batch, step)
        if not self.d_first:
            for _ in range(self.d_steps):
                d_logs.update(self.discriminator_step(batch))
        self.after_step(step)
        return {"loss": g_logs.pop("loss"), **g_logs, **d_logs}

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminators": {k: d.state_dict() for k, d in self.discriminators.items()},
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizers": {k: o.state_dict() for k, o in self.d_optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Optimisers keep CPU tensors of a loaded state dict as they are (no copy): copy them, so that a
        # state taken from another live trainer is not shared with (and updated by) that trainer.
        state = copy.deepcopy(state)
        self.generator.load_state_dict(state["generator"])
        for k, d in self.discriminators.items():
            d.load_state_dict(state["discriminators"][k])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        for k, o in self.d_optimizers.items():
            o.load_state_dict(state["d_optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.load_extra_state(state.get("extra", {}))

    def export(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.generator.state_dict().items()}


# ---------------------------------------------------------------------------------------- shared schemes
class CentreCropTrainer(AdversarialTrainer):
    """FusionGAN's scheme (also UFGAN's): batches of (ir, vi) patches scaled to [-1, 1]; the generator's VALID
    output, ``crop`` pixels smaller per side, is compared with the central crops of the sources ("labels");
    one discriminator ``vi`` tells the visible crop from the fused image; one Adam learning rate for both
    networks; generator loss ``adv + lam (intensity + xi grad)`` with the terms of :meth:`content_terms`."""

    #: pixels per side the generator's output is smaller than its input
    crop: ClassVar[int] = 0
    #: the smallest patch side the networks take
    min_patch: ClassVar[int] = 1

    def __init__(
        self,
        device: str,
        *,
        generator: nn.Module,
        discriminator: nn.Module,
        lr: float,
        lam: float,
        xi: float,
        objective: Objective,
        **schedule: Any,
    ) -> None:
        self.lam, self.xi = float(lam), float(xi)
        super().__init__(
            device,
            generator=generator,
            discriminators={"vi": discriminator},
            g_optimizer=torch.optim.Adam(generator.parameters(), lr=float(lr)),
            d_optimizers={"vi": torch.optim.Adam(discriminator.parameters(), lr=float(lr))},
            objectives=objective,
            **schedule,
        )

    def content_terms(
        self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (intensity, gradient) content terms of ``fused`` against the labels ``ir`` and ``vi``."""
        raise NotImplementedError

    def prepare_batch(self, batch: torch.Tensor) -> torch.Tensor:
        batch = super().prepare_batch(batch)
        if min(batch.shape[-2:]) < self.min_patch:
            side = f"{self.min_patch}x{self.min_patch}"
            raise ValueError(f"{self.method} trainer: patches must be at least {side}, got {tuple(batch.shape[-2:])}")
        return batch * 2.0 - 1.0

    def labels(self, batch: torch.Tensor) -> torch.Tensor:
        """Central crops matching the generator's VALID output (B x 2 x (H - 2 crop) x (W - 2 crop))."""
        c, (h, w) = self.crop, batch.shape[-2:]
        return batch[..., c : h - c, c : w - c]

    def discriminator_inputs(
        self, name: str, batch: torch.Tensor, fused: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.labels(batch)[:, 1:], fused

    def generator_loss(self, batch: torch.Tensor, fused: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        labels = self.labels(batch)
        intensity, grad = self.content_terms(fused, labels[:, :1], labels[:, 1:])
        content = intensity + self.xi * grad
        adv = self.adversarial("vi", fused)
        return {
            "loss": adv + self.lam * content,
            "adv": adv,
            "content": content,
            "intensity": intensity,
            "grad": grad,
        }


class ConditionalMapTrainer(AdversarialTrainer):
    """A decision-map cGAN on synthetic multi-focus triplets (FuseGAN, MFIF-GAN). ``prepare_batch`` turns the
    batch's sharp images into triplets with ``synthesis`` (``batch -> (A, B, M)``, e.g.
    :class:`~fusebench.methods.mfifgan.SyntheticFocus`), stacked N x 3 x H x W: A and B on [-1, 1], then the
    target map :meth:`map_target`; the generator (:meth:`generate`) maps (A, B) to a map; the one
    discriminator ``name`` tells ``[A, B, M]`` (real) from ``[A, B, G]`` (fake) and is updated once per step;
    the generator loss is its adversarial term plus ``map_weight |G - M|_1``, logged as ``adversarial`` and
    :attr:`map_term`. Both Adam optimisers take ``betas``."""

    #: the log name of the L1 map term
    map_term: ClassVar[str] = "l1"

    def __init__(
        self,
        device: str,
        *,
        synthesis: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        name: str,
        generator: nn.Module,
        discriminator: nn.Module,
        g_lr: float,
        d_lr: float,
        betas: tuple[float, float],
        objective: Objective,
        map_weight: float,
        **schedule: Any,
    ) -> None:
        self.synthesis = synthesis
        self.map_weight = float(map_weight)
        super().__init__(
            device,
            generator=generator,
            discriminators={name: discriminator},
            g_optimizer=torch.optim.Adam(generator.parameters(), lr=float(g_lr), betas=betas),
            d_optimizers={name: torch.optim.Adam(discriminator.parameters(), lr=float(d_lr), betas=betas)},
            objectives=objective,
            d_steps=1,
            **schedule,
        )
        self.disc_name = name

    def map_target(self, m: torch.Tensor) -> torch.Tensor:
        """The target the generator's map is compared with, from the synthetic map ``m`` in [0, 1]."""
        return m

    def prepare_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Bx2xHxW sharp images in [0, 1] -> N x 3 x H x W: A and B on [-1, 1] and the target map."""
        batch = super().prepare_batch(batch)
        a, b, m = self.synthesis(batch)
        return torch.cat([a * 2 - 1, b * 2 - 1, self.map_target(m)], dim=1)

    def discriminator_inputs(
        self, name: str, batch: torch.Tensor, fused: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return batch, torch.cat([batch[:, :2], fused], dim=1)

    def generator_loss(self, batch: torch.Tensor, fused: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        adversarial = self.adversarial(self.disc_name, torch.cat([batch[:, :2], fused], dim=1))
        distance = (fused - batch[:, 2:3]).abs().mean()
        return {"loss": adversarial + self.map_weight * distance, "adversarial": adversarial, self.map_term: distance}

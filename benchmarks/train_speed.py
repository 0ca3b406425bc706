"""Milliseconds per training step: fusebench's trainers against the authors' own training code, side by side.

One step = forward, loss, backward, optimiser step(s) on one batch, at the paper's batch and patch size (the
catalogue recipe; ``--batch`` / ``--patch`` override). Both sides get the same random batch (B x 2 x P x P in
[0, 1], fusebench's layout; each official side slices it the way its loader delivers data) and, where the
parameter names match, the same initial weights; the two sides alternate step by step in one process (``--steps``
timed steps each after one warm-up step), and the table gives min / median and the ratio of medians. The first
loss of each side is printed as a check that the two compute the same objective.

The official sides import the authors' network, loss and optimiser code from ``--official NAME=FOLDER`` (see
:mod:`official_code`) and run the body of their training loop for one batch:

* DenseFuse (densefuse-pytorch ``train_densefuse.py``): encoder/decoder, MSE + 100 (1 - ``pytorch_msssim.msssim``),
  Adam. fusebench's recipe uses SSIM (the paper's); the row ``densefuse ms_ssim`` runs fusebench with the
  release's MS-SSIM.
* TarDAL v0 (``pipeline/train.py``): its ``Train.train_generator``, ``train_dis_target`` and ``train_dis_detail``
  called as they are on the official modules (kornia's ``SSIMLoss`` and ``SpatialGradient``, RMSprop); the mask
  and the two visual-saliency maps, which the release reads from files, are random maps of the batch's size.
* CDDFuse (``train.py``, stage I): the loop body of phase I on the DataParallel-wrapped parts, kornia SSIM loss,
  ``utils.loss.cc``, gradient clipping, Adam.

ReFusion and IFCNN publish no training code: fusebench is timed alone. ``--profile`` splits fusebench's step into
data / forward / loss / backward / optimiser and reports its GFLOP/s against a plain 3x3 convolution (128 -> 128
channels, 256 x 256, fp32) on the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_code import official_imports, timm_stand_in, torchvision_stand_in, wandb_stand_in  # noqa: E402
from side_by_side import add_common_options, now, parse_official, report, run_methods, start, timed  # noqa: E402

from fusebench.methods import METHODS, create  # noqa: E402
from fusebench.training import Trainer  # noqa: E402

Step = Callable[[torch.Tensor], float]


@contextmanager
def cuda_calls_stay_on_cpu() -> Iterator[None]:
    """The training scripts call ``.cuda()`` unconditionally (TarDAL's ``div_loss``); on this CPU-only run those
    calls return the tensor itself, the only change made to run them."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def copy_weights(source: nn.Module, target: nn.Module) -> bool:
    """Load ``source``'s parameters into ``target`` when the names and shapes match; whether they did."""
    try:
        target.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError:
        return False
    return True


# ------------------------------------------------------------------------------------------- official steps
def densefuse_official(root: Path, trainer: Any, patch: int) -> tuple[Step, bool]:
    with official_imports(root):
        import pytorch_msssim
        from net import DenseFuse_net
    model = DenseFuse_net(1, 1)
    same = copy_weights(trainer.net, model)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    mse_loss = torch.nn.MSELoss()
    ssim_weight = 100  # args.ssim_weight[2], the release's default i = 2

    def step(batch: torch.Tensor) -> float:
        img = batch.reshape(-1, 1, *batch.shape[-2:]) * 255  # get_train_images_auto: 0..255 floats
        model.train()
        optimizer.zero_grad()
        outputs = model.decoder(model.encoder(img))
        x = img.data.clone()
        ssim_loss_value, pixel_loss_value = 0.0, 0.0
        for output in outputs:
            pixel_loss_value += mse_loss(output, x)
            ssim_loss_value += 1 - pytorch_msssim.msssim(output, x, normalize=True)
        total_loss = pixel_loss_value / len(outputs) + ssim_weight * ssim_loss_value / len(outputs)
        total_loss.backward()
        optimizer.step()
        return float(total_loss.item())

    return step, same


def tardal_official(root: Path, trainer: Any, patch: int) -> tuple[Step, bool]:
    from kornia.filters import SpatialGradient
    from kornia.losses import SSIMLoss

    with official_imports(root, {**torchvision_stand_in(), **wandb_stand_in()}):
        from modules.discriminator import Discriminator
        from modules.generator import Generator
        from pipeline.train import Train
    self = SimpleNamespace(
        config=SimpleNamespace(weight=(1.0, 20.0, 0.1), adv_weight=(1.0, 1.0)),
        generator=Generator(32, 3),
        dis_target=Discriminator(32, (patch, patch)),
        dis_detail=Discriminator(32, (patch, patch)),
        l1=nn.L1Loss(reduction="none"),
        ssim=SSIMLoss(window_size=11, reduction="none"),
        spatial=SpatialGradient("diff"),
        wk=2,
        wp=6,
    )
    same = all(
        copy_weights(ours, theirs)
        for ours, theirs in (
            (trainer.generator, self.generator),
            (trainer.discriminators["target"], self.dis_target),
            (trainer.discriminators["detail"], self.dis_detail),
        )
    )
    self.opt_generator = torch.optim.RMSprop(self.generator.parameters(), lr=1e-4)
    self.opt_dis_target = torch.optim.RMSprop(self.dis_target.parameters(), lr=1e-4)
    self.opt_dis_detail = torch.optim.RMSprop(self.dis_detail.parameters(), lr=1e-4)
    self.gradient = partial(Train.gradient, self)
    maps = torch.Generator().manual_seed(1)

    def step(batch: torch.Tensor) -> float:
        ir, vi = batch[:, :1], batch[:, 1:]
        mk = (torch.rand(ir.shape, generator=maps) > 0.8).float()  # stand-ins for the mask / saliency files
        s1, s2 = torch.rand(ir.shape, generator=maps), torch.rand(ir.shape, generator=maps)
        with cuda_calls_stay_on_cpu():
            g = Train.train_generator(self, ir, vi, mk, s1, s2)
            Train.train_dis_target(self, ir, vi, mk)
            Train.train_dis_detail(self, ir, vi, mk)
        return float(g["g_loss"])

    return step, same


def cddfuse_official(root: Path, trainer: Any, patch: int) -> tuple[Step, bool]:
    import kornia

    with official_imports(root, timm_stand_in()):
        from net import BaseFeatureExtraction, DetailFeatureExtraction, Restormer_Decoder, Restormer_Encoder
        from utils.loss import cc
    parts = [
        Restormer_Encoder(),
        Restormer_Decoder(),
        BaseFeatureExtraction(dim=64, num_heads=8),
        DetailFeatureExtraction(num_layers=1),
    ]
    ours = [trainer.net.encoder, trainer.net.decoder, trainer.net.base_fuse, trainer.net.detail_fuse]
    same = all(copy_weights(a, b) for a, b in zip(ours, parts, strict=True))
    encoder, decoder, base_fuse, detail_fuse = (nn.DataParallel(p) for p in parts)
    optimizers = [
        torch.optim.Adam(m.parameters(), lr=1e-4, weight_decay=0) for m in (encoder, decoder, base_fuse, detail_fuse)
    ]
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    loss_ssim = kornia.losses.SSIMLoss(11, reduction="mean")  # kornia.losses.SSIM of the release's kornia
    visible = 1 if trainer.visible == "b" else 0

    def step(batch: torch.Tensor) -> float:
        data_vis, data_ir = batch[:, visible : visible + 1], batch[:, 1 - visible : 2 - visible]
        for m in (encoder, decoder, base_fuse, detail_fuse):
            m.train()
            m.zero_grad()
        for opt in optimizers:
            opt.zero_grad()
        feature_v_b, feature_v_d, _ = encoder(data_vis)
        feature_i_b, feature_i_d, _ = encoder(data_ir)
        data_vis_hat, _ = decoder(data_vis, feature_v_b, feature_v_d)
        data_ir_hat, _ = decoder(data_ir, feature_i_b, feature_i_d)
        cc_loss_b = cc(feature_v_b, feature_i_b)
        cc_loss_d = cc(feature_v_d, feature_i_d)
        mse_loss_v = 5 * loss_ssim(data_vis, data_vis_hat) + mse(data_vis, data_vis_hat)
        mse_loss_i = 5 * loss_ssim(data_ir, data_ir_hat) + mse(data_ir, data_ir_hat)
        gradient_loss = l1(kornia.filters.SpatialGradient()(data_vis), kornia.filters.SpatialGradient()(data_vis_hat))
        loss_decomp = cc_loss_d**2 / (1.01 + cc_loss_b)
        loss = 1.0 * mse_loss_v + 1.0 * mse_loss_i + 2.0 * loss_decomp + 5.0 * gradient_loss
        loss.backward()
        nn.utils.clip_grad_norm_(encoder.parameters(), max_norm=0.01, norm_type=2)
        nn.utils.clip_grad_norm_(decoder.parameters(), max_norm=0.01, norm_type=2)
        optimizers[0].step()
        optimizers[1].step()
        return float(loss.item())

    return step, same


@dataclass
class Case:
    method: str
    official: Callable[[Path, Any, int], tuple[Step, bool]] | None
    options: dict[str, Any]
    note: str = ""


CASES = {
    "densefuse": Case("densefuse", densefuse_official, {}, "fusebench: SSIM (paper); release: MS-SSIM"),
    "densefuse ms_ssim": Case("densefuse", densefuse_official, {"ssim": "ms_ssim"}, "both MS-SSIM"),
    "tardal": Case("tardal", tardal_official, {}, "release's mask/saliency: random maps"),
    "cddfuse": Case("cddfuse", cddfuse_official, {}, "stage I"),
    "refusion": Case("refusion", None, {}, "no official training code: fusebench only; a meta-learning step"),
    "ifcnn": Case("ifcnn", None, {}, "no official training code: fusebench only"),
}
OFFICIAL_KEY = {"densefuse": "densefuse", "densefuse ms_ssim": "densefuse", "tardal": "tardal", "cddfuse": "cddfuse"}
OFFICIAL = sorted(set(OFFICIAL_KEY.values()))


def make_trainer(case: Case, batch: int | None, patch: int | None) -> tuple[Trainer, dict[str, Any]]:
    overrides: dict[str, Any] = {"options": case.options}
    if batch:
        overrides["batch_size"] = batch
    if patch:
        overrides["patch_size"] = patch
    recipe = METHODS.spec(case.method).training(overrides)
    method = create(case.method, task="ivif")
    trainer = method.trainer(
        "cpu",
        steps=recipe["steps"],
        patch_size=recipe["patch_size"],
        seed=0,  # type: ignore[attr-defined]
        **recipe["options"],
    )
    return trainer, recipe


def random_batch(batch: int, patch: int) -> torch.Tensor:
    """What the training loop hands a trainer: uint8 patches / 255, B x 2 x P x P float32."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 2, patch, patch), generator=g, dtype=torch.uint8).float() / 255.0


def total_loss(losses: dict[str, float]) -> float:
    """The logged total: ``loss``, or for ReFusion (no total) its fusion network's loss."""
    return float(losses["loss"] if "loss" in losses else losses["fusion"])


def run_case(name: str, official_root: Path | None, batch: int | None, patch: int | None, steps: int) -> dict:
    case = CASES[name]
    trainer, recipe = make_trainer(case, batch, patch)
    data = random_batch(recipe["batch_size"], recipe["patch_size"])
    theirs, same = None, None
    if case.official is not None and official_root is not None:
        theirs, same = case.official(official_root, trainer, recipe["patch_size"])
    t_ours, t_theirs = [], []
    first: dict[str, float] = {}
    for i in range(steps + 1):  # step 0 is the warm-up, not timed
        sec, losses = timed(trainer.train_step, data.clone(), 0)
        first.setdefault("fusebench", total_loss(losses))  # type: ignore[arg-type]
        if i:
            t_ours.append(sec)
        if theirs is not None:
            sec, loss = timed(theirs, data.clone())
            first.setdefault("official", float(loss))  # type: ignore[arg-type]
            if i:
                t_theirs.append(sec)
    row: dict[str, Any] = {
        "batch": recipe["batch_size"],
        "patch": recipe["patch_size"],
        "fusebench_min_ms": min(t_ours) * 1e3,
        "fusebench_median_ms": statistics.median(t_ours) * 1e3,
        "first_loss": first,
        "note": case.note,
    }
    if theirs is not None:
        row.update(
            {
                "official_min_ms": min(t_theirs) * 1e3,
                "official_median_ms": statistics.median(t_theirs) * 1e3,
                "ratio": statistics.median(t_theirs) / statistics.median(t_ours),
                "ratio_min": min(t_theirs) / min(t_ours),
                "same_initial_weights": same,
            }
        )
    elif case.official is not None:
        row["note"] = "official side skipped: no --official folder given"
    return row


# ------------------------------------------------------------------------------------------------ profile
class FlopCount(TorchDispatchMode):
    """FLOPs of the matmul/convolution ops run inside (forward and backward), by torch's own formulas
    (``FlopCounterMode`` itself installs module hooks that break TarDAL's double backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def conv_gflops(repeat: int = 3) -> float:
    """GFLOP/s of one plain 3x3 convolution, 128 -> 128 channels on 1 x 128 x 256 x 256, fp32 (best of
    ``repeat``): what this CPU does on dense convolution work with the current thread count."""
    x = torch.randn(1, 128, 256, 256)
    w = torch.randn(128, 128, 3, 3)
    with FlopCount() as counter:  # the same formulas as the steps' counts: 2 * 128 * 128 * 9 * 256 * 256
        F.conv2d(x, w, padding=1)
    best = min(timed(lambda: F.conv2d(x, w, padding=1))[0] for _ in range(repeat))
    return counter.total / best / 1e9


def networks_and_optimizers(trainer: Trainer) -> tuple[list[nn.Module], list[torch.optim.Optimizer]]:
    nets, opts = [], []
    for value in vars(trainer).values():
        for v in value.values() if isinstance(value, dict) else [value]:
            if isinstance(v, nn.Module) and any(True for _ in v.parameters()):
                nets.append(v)
            elif isinstance(v, torch.optim.Optimizer):
                opts.append(v)
    return nets, opts


def profile_step(trainer: Trainer, data: torch.Tensor, patches: np.ndarray, steps: int) -> dict[str, float]:
    """Seconds per step in data (making the batch as ``fusebench.training.train`` does), forward (the trainer's
    networks), backward (``Tensor.backward``), optimiser (``step`` / ``zero_grad``) and the rest (losses and glue),
    by timers around those calls; plus the step's FLOPs (forward + backward, :class:`FlopCount`)."""
    totals = dict.fromkeys(("forward", "backward", "optimiser"), 0.0)
    nets, opts = networks_and_optimizers(trainer)
    depth = [0]

    def pre(*_: object) -> None:
        if depth[0] == 0:
            depth.append(now())
        depth[0] += 1

    def post(*_: object) -> None:
        depth[0] -= 1
        if depth[0] == 0:
            totals["forward"] += now() - depth.pop()

    # every module of the networks (trainers call parts such as net.encoder directly); nested calls count once
    handles = [
        h for n in nets for m in n.modules() for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))
    ]

    def timer(key: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            start = now()
            try:
                return func(*args, **kwargs)
            finally:
                totals[key] += now() - start

        return wrapped

    backward, grad = torch.Tensor.backward, torch.autograd.grad
    torch.Tensor.backward = timer("backward", backward)  # type: ignore[method-assign]
    torch.autograd.grad = timer("backward", grad)  # gradient penalties and meta-learning steps
    for opt in opts:
        opt.step = timer("optimiser", opt.step)  # type: ignore[method-assign]
        opt.zero_grad = timer("optimiser", opt.zero_grad)  # type: ignore[method-assign]
    walls, data_s = [], []
    try:
        trainer.train_step(data.clone(), 0)
        for key in totals:
            totals[key] = 0.0
        for step in range(steps):
            idx = np.sort(np.random.default_rng([0, step]).choice(len(patches), size=len(data), replace=False))
            sec, _ = timed(lambda: torch.from_numpy(np.asarray(patches[idx], dtype=np.float32) / 255.0))  # noqa: B023
            data_s.append(sec)
            walls.append(timed(trainer.train_step, data.clone(), 0)[0])
        out = {k: v / steps for k, v in totals.items()}
        with FlopCount() as counter:
            trainer.train_step(data.clone(), 0)
    finally:
        torch.Tensor.backward = backward  # type: ignore[method-assign]
        torch.autograd.grad = grad
        for opt in opts:
            del opt.step, opt.zero_grad
        for h in handles:
            h.remove()
    out["step"] = statistics.mean(walls)
    out["loss and other"] = out["step"] - out["forward"] - out["backward"] - out["optimiser"]
    out["data"] = statistics.mean(data_s)
    out["gflop"] = counter.total / 1e9
    return out


def profile(names: list[str], batch: int | None, patch: int | None, steps: int) -> dict:
    results = {"conv3x3_gflops": conv_gflops()}
    for name in names:
        case = CASES[name]
        trainer, recipe = make_trainer(case, batch, patch)
        data = random_batch(recipe["batch_size"], recipe["patch_size"])
        patches = np.random.default_rng(0).integers(0, 256, (max(64, 4 * len(data)), 2, *data.shape[-2:]), np.uint8)
        prof = profile_step(trainer, data, patches, steps)
        prof["gflops_per_s"] = prof["gflop"] / prof["step"]
        results[name] = {"batch": recipe["batch_size"], "patch": recipe["patch_size"], **prof}
    return results


def markdown(rows: dict) -> str:
    lines = [
        "| method | batch x patch | fusebench ms/step (min / median) | official ms/step (min / median) "
        "| official / fusebench (min / median) | first loss (fusebench / official) | note |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for name, r in rows.items():
        ours = f"{r['fusebench_min_ms']:.0f} / {r['fusebench_median_ms']:.0f}"
        if "official_min_ms" in r:
            theirs = f"{r['official_min_ms']:.0f} / {r['official_median_ms']:.0f}"
            ratio = f"{r['ratio_min']:.2f}x / {r['ratio']:.2f}x"
            loss = f"{r['first_loss']['fusebench']:.4g} / {r['first_loss']['official']:.4g}"
            note = r["note"] + ("" if r["same_initial_weights"] else "; initial weights differ")
        else:
            theirs, ratio, loss, note = "-", "-", f"{r['first_loss']['fusebench']:.4g} / -", r["note"]
        lines.append(f"| {name} | {r['batch']} x {r['patch']}^2 | {ours} | {theirs} | {ratio} | {loss} | {note} |")
    return "\n".join(lines)


def profile_markdown(res: dict) -> str:
    lines = [
        "| method | batch x patch | step ms | data | forward | loss and other | backward | optimiser | GFLOP/step "
        "| GFLOP/s | of conv3x3 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    peak = res["conv3x3_gflops"]
    for name, r in res.items():
        if name == "conv3x3_gflops":
            continue
        parts = " | ".join(f"{r[k] * 1e3:.0f}" for k in ("data", "forward", "loss and other", "backward", "optimiser"))
        lines.append(
            f"| {name} | {r['batch']} x {r['patch']}^2 | {r['step'] * 1e3:.0f} | {parts} | {r['gflop']:.1f} "
            f"| {r['gflops_per_s']:.1f} | {r['gflops_per_s'] / peak:.0%} |"
        )
    lines.append(f"\nplain 3x3 conv, 128 -> 128 channels, 256 x 256, fp32: {peak:.1f} GFLOP/s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, OFFICIAL)
    parser.add_argument("--methods", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--batch", type=int, help="pairs per batch for every method (default: each recipe's)")
    parser.add_argument("--patch", type=int, help="patch side for every method (default: each recipe's)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per side, after one warm-up step")
    parser.add_argument("--profile", action="store_true", help="split fusebench's step and report GFLOP/s instead")
    args = parser.parse_args()
    official = parse_official(args.official, OFFICIAL)
    load_before = start(args)
    if args.profile:
        results: dict = profile(args.methods, args.batch, args.patch, args.steps)
        table = profile_markdown(results)
    else:

        def run_one(name: str) -> dict:
            return run_case(name, official.get(OFFICIAL_KEY.get(name, "")), args.batch, args.patch, args.steps)

        results = run_methods(args.methods, run_one, markdown)
        table = markdown(results)
    report(args, table, load_before, {"steps": args.steps, "profile": args.profile, "results": results})


if __name__ == "__main__":
    main()

"""CrossFuse training losses, as computed by the official code (``network/loss.py``, ``pytorch_msssim``).

Every loss works on the **0..255 scale** (the release feeds uint8 images cast to float and multiplies network
outputs by 255 before the losses), on N x 1 x H x W tensors.

Stage 1 (auto-encoders): ``MSE(O, I) + 1e4 * (1 - MS-SSIM(O, I))``.
Stage 2 (CAM + decoder): ``intensity + 10 * gradient``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...losses import MS_SSIM_WEIGHTS, laplacian, ms_ssim, ssim_map

EPSILON = 1e-6
MS_SSIM_KINDS = ("official", "standard")
MASK_KINDS = ("binary", "soft")


def guessed_range(image: torch.Tensor) -> float:
    """``pytorch_msssim``'s dynamic range when none is given: 255 if max > 128 else 1, minus -1 if
    min < -0.5 else 0 (decided from the *first* image, here the network output)."""
    image = image.detach()
    high = 255.0 if float(image.max()) > 128 else 1.0
    low = -1.0 if float(image.min()) < -0.5 else 0.0
    return high - low


def official_ms_ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``pytorch_msssim.msssim(output, target, normalize=True)`` as the release calls it.

    * the SSIM constants use the range guessed from ``output`` at every scale (:func:`guessed_range`);
    * 11x11 Gaussian window (sigma 1.5; smaller at coarse scales, ``min(11, H, W)``), valid windows only, the
      means taken over the whole batch (one value per batch, not per image);
    * each scale's SSIM and contrast-structure value mapped to [0, 1] by ``(v + 1) / 2`` before the powers;
    * combined as ``prod_{i<5}(cs_i^w_i * ssim_5^w_5)``, i.e. the coarsest SSIM term enters with exponent
      ``4 * w_5`` instead of ``w_5`` (a slip in that module, kept here because the published auto-encoders
      were trained with it).
    """
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=output.dtype, device=output.device)
    sims, css = [], []
    for level in range(len(MS_SSIM_WEIGHTS)):
        s, cs = ssim_map(output, target, data_range=guessed_range(output))
        sims.append(s.mean())
        css.append(cs.mean())
        if level < len(MS_SSIM_WEIGHTS) - 1:
            output, target = F.avg_pool2d(output, 2), F.avg_pool2d(target, 2)
    sim = (torch.stack(sims) + 1) / 2
    cs = (torch.stack(css) + 1) / 2
    return torch.prod(cs[:-1] ** weights[:-1] * sim[-1] ** weights[-1])


def reconstruction_loss(
    output: torch.Tensor, target: torch.Tensor, ssim_weight: float = 1e4, kind: str = "official"
) -> dict[str, torch.Tensor]:
    """Stage-1 loss ``MSE + ssim_weight * (1 - MS-SSIM)`` on the 0..255 scale.

    ``kind="official"``: :func:`official_ms_ssim`; ``"standard"``: :func:`fusebench.losses.ms_ssim` with a
    fixed range of 255, per-image values averaged, the published exponents (each scale still mapped to
    [0, 1]).
    """
    mse = F.mse_loss(output, target)
    if kind == "official":
        similarity = official_ms_ssim(output, target)
    elif kind == "standard":
        similarity = ms_ssim(output, target, data_range=255.0, normalize=True)
    else:
        raise ValueError(f"crossfuse: ms_ssim must be one of {', '.join(MS_SSIM_KINDS)}, got {kind!r}")
    return {"loss": mse + ssim_weight * (1 - similarity), "mse": mse, "ms_ssim": similarity}


def mean_filter(x: torch.Tensor, size: int = 11) -> torch.Tensor:
    """size x size box mean with **zero** padding (the release's ``Conv2d(padding=size // 2)``)."""
    kernel = torch.full((1, 1, size, size), 1.0 / (size * size), dtype=x.dtype, device=x.device)
    return F.conv2d(x, kernel, padding=size // 2)


def intensity_target(ir: torch.Tensor, vi: torch.Tensor, size: int = 11, mask: str = "binary") -> torch.Tensor:
    """The intensity target built from 11x11 local means ``m_ir``, ``m_vi``.

    ``w_ir = m_ir / (m_ir + m_vi + 1e-6)`` (``w_vi`` alike). ``mask="binary"`` (release ``Order_loss``):
    ``M = 1 where w_ir > w_vi else 0``, target ``M * ir + (1 - M) * vi`` (ties go to the visible image).
    ``mask="soft"``: target ``w_ir * ir + w_vi * vi``.
    """
    m_ir, m_vi = mean_filter(ir, size), mean_filter(vi, size)
    w_ir = m_ir / (m_ir + m_vi + EPSILON)
    w_vi = m_vi / (m_ir + m_vi + EPSILON)
    if mask == "binary":
        m = (w_ir - w_vi > 0).to(ir.dtype)
        return m * ir + (1 - m) * vi
    if mask == "soft":
        return w_ir * ir + w_vi * vi
    raise ValueError(f"crossfuse: intensity_mask must be one of {', '.join(MASK_KINDS)}, got {mask!r}")


def intensity_loss(
    output: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor, size: int = 11, mask: str = "binary"
) -> torch.Tensor:
    """MSE between the output and :func:`intensity_target`."""
    return F.mse_loss(output, intensity_target(ir, vi, size, mask))


def positive_laplacian(x: torch.Tensor) -> torch.Tensor:
    """``max(0, Laplacian(x))`` with the 4-neighbour kernel and zero padding (release ``Gradient_loss``)."""
    return torch.clamp(laplacian(x, padding="zeros"), min=0)


def gradient_loss(output: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
    """``MSE(L+(O), max(L+(I_ir), L+(I_vi)))`` with ``L+`` :func:`positive_laplacian`."""
    target = torch.maximum(positive_laplacian(ir), positive_laplacian(vi))
    return F.mse_loss(positive_laplacian(output), target)


def fusion_loss(
    output: torch.Tensor,
    ir: torch.Tensor,
    vi: torch.Tensor,
    gradient_weight: float = 10.0,
    mask_size: int = 11,
    mask: str = "binary",
) -> dict[str, torch.Tensor]:
    """Stage-2 loss ``intensity + gradient_weight * gradient`` (release weights ``[1, 10, 0, 1]`` with the
    mean and feature terms set to zero)."""
    intensity = intensity_loss(output, ir, vi, mask_size, mask)
    gradient = gradient_loss(output, ir, vi)
    return {"loss": intensity + gradient_weight * gradient, "intensity": intensity, "gradient": gradient}

"""One Sobel, one Laplacian, one SSIM for every training loss (fusebench.losses), each method calling them with
its official padding and scale: checked against straightforward float64 filtering (scipy.ndimage) on a real
image pair, so a method that lost its official border handling fails here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from fusebench.imageio import read_uint8
from fusebench.losses import conv3x3, gaussian_window, gradient_magnitude, laplacian, ms_ssim, sobel, ssim_map
from fusebench.methods import cddfuse, mffgan, refusion, ufgan
from fusebench.methods.crossfuse import losses as crossfuse_losses

SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
#: fusebench.losses padding -> scipy.ndimage mode (torch "reflect" does not repeat the edge: scipy "mirror")
MODES = {"zeros": "constant", "replicate": "nearest", "reflect": "mirror"}


@pytest.fixture(scope="module")
def pair(mirror: Path) -> np.ndarray:
    """TNO infrared and visible crops in [0, 1], float64, 2 x H x W."""
    ir = read_uint8(mirror / "TNO/test/ir/01.png")[40:104, 60:140]
    vi = read_uint8(mirror / "TNO/test/vi/01.png")[40:104, 60:140]
    return np.stack([ir, vi]) / 255.0


def _filter(x: np.ndarray, kernel: np.ndarray, padding: str) -> np.ndarray:
    return np.stack([ndimage.correlate(c, kernel, mode=MODES[padding]) for c in x])


def _torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).float()[None]  # 1 x C x H x W


def _sobel_l1(padding: str, scale: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.abs(_filter(x, SOBEL_X * scale, padding)) + np.abs(_filter(x, SOBEL_X.T * scale, padding))


CASES = {
    # method building block: (the method's function, the float64 reference with its official padding)
    "cddfuse Sobelxy (zeros)": (cddfuse.sobel_abs, _sobel_l1("zeros")),
    "cddfuse kornia SpatialGradient (replicate, /8)": (
        cddfuse.spatial_gradient,
        lambda x: np.stack([_filter(x, SOBEL_X / 8, "replicate"), _filter(x, SOBEL_X.T / 8, "replicate")], 1).reshape(
            -1, *x.shape[1:]
        ),
    ),
    "refusion Sobel (zeros)": (refusion.sobel_gradient, _sobel_l1("zeros")),
    "mffgan Laplacian (SAME)": (mffgan.laplacian_same, lambda x: _filter(x, LAPLACIAN, "zeros")),
    "ufgan Laplacian (zeros)": (ufgan.laplacian_zero, lambda x: _filter(x, LAPLACIAN, "zeros")),
    "crossfuse positive Laplacian (zeros)": (
        crossfuse_losses.positive_laplacian,
        lambda x: np.maximum(_filter(x, LAPLACIAN, "zeros"), 0.0),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_method_keeps_its_official_padding(pair: np.ndarray, case: str) -> None:
    method_function, reference = CASES[case]
    inputs = pair[:1] if "crossfuse" in case else pair  # CrossFuse's loss is single-channel
    got = method_function(_torch(inputs))[0].double().numpy()
    np.testing.assert_allclose(got, reference(inputs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padding", sorted(MODES))
def test_shared_filters_pad_as_asked(pair: np.ndarray, padding: str) -> None:
    x = _torch(pair)
    gx, gy = sobel(x, padding, scale=0.5)
    np.testing.assert_allclose(gx[0].numpy(), _filter(pair, SOBEL_X / 2, padding), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gy[0].numpy(), _filter(pair, SOBEL_X.T / 2, padding), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(laplacian(x, padding)[0].numpy(), _filter(pair, LAPLACIAN, padding), atol=1e-6)
    assert torch.equal(gradient_magnitude(x, "l1", padding), gx.abs() * 2 + gy.abs() * 2)
    with pytest.raises(ValueError, match="padding must be one of reflect, zeros, replicate"):
        conv3x3(x, LAPLACIAN.tolist(), "circular")


def test_cddfuse_ssim_loss_is_kornias_reflect_padded_ssim(pair: np.ndarray) -> None:
    """kornia 0.2 SSIM loss: mean(clamp(1 - SSIM_map, 0, 1) / 2), 11x11 Gaussian 1.5, reflect-padded maps."""
    x, y = pair[0], np.clip(0.7 * pair[0] + 0.3 * pair[1], 0, 1)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def blur(t: np.ndarray) -> np.ndarray:
        return ndimage.correlate(t, window, mode="mirror")

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    expected = np.mean(np.clip(1 - s, 0, 1) / 2)
    got = cddfuse.ssim_loss(_torch(x[None]), _torch(y[None]))
    assert float(got) == pytest.approx(expected, rel=1e-4)
    same, _ = ssim_map(_torch(x[None]), _torch(y[None]), padding="reflect")
    assert same.shape[-2:] == x.shape  # padded: maps of the input's size


def _ssim_map_2d(x: torch.Tensor, y: torch.Tensor, padding: str | None, size: int = 11) -> torch.Tensor:
    """The former ssim_map: one 11x11 2-D Gaussian filter per local mean (gaussian_window), in x's dtype."""
    if padding is not None:
        x, y = (torch.nn.functional.pad(t, (size // 2,) * 4, mode=padding) for t in (x, y))
    size = min(size, x.shape[-2], x.shape[-1])
    window = gaussian_window(size, 1.5, x.shape[1], x.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, window, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return (2 * mx * my + 1e-4) * (2 * cov + 9e-4) / ((mx * mx + my * my + 1e-4) * (vx + vy + 9e-4))


@pytest.mark.parametrize("padding", [None, "reflect"])
def test_separable_ssim_keeps_fp32_results(pair: np.ndarray, padding: str | None) -> None:
    """ssim_map filters separably (7x faster). Its float64 maps equal the 2-D filtering's; in float32 both
    differ from float64 where E[x^2] - mu^2 cancels (flat areas: up to ~1e-3 of SSIM), and the separable maps
    are no further from the float64 result than the 2-D ones were, so fp32 losses are unchanged to rounding."""
    x = _torch(pair)  # 1 x 2 x H x W: two channels, filtered independently
    y = _torch(np.clip(0.7 * pair + 0.3 * pair[::-1], 0, 1))
    new, _ = ssim_map(x, y, padding=padding)
    old = _ssim_map_2d(x, y, padding)
    exact = _ssim_map_2d(x.double(), y.double(), padding)
    assert new.dtype == torch.float32 and new.shape == old.shape
    np.testing.assert_allclose(ssim_map(x.double(), y.double(), padding=padding)[0].numpy(), exact.numpy(), atol=1e-12)
    err_new, err_old = (new.double() - exact).abs(), (old.double() - exact).abs()
    assert float(err_new.max()) <= float(err_old.max()) and float(err_new.mean()) <= float(err_old.mean())
    np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=0, atol=2e-3)
    # the losses built on it: DenseFuse's MS-SSIM (small last scale: shrunken window) and CDDFuse's SSIM loss
    for loss in (lambda a, b: ms_ssim(a, b, normalize=True), cddfuse.ssim_loss):
        assert float(loss(x, y)) == pytest.approx(float(loss(x.double(), y.double())), rel=1e-5)

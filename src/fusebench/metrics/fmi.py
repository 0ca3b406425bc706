"""Feature mutual information (FMI): Haghighat's fast-FMI on w x w sliding windows of a feature image.

For each window position and each source X, the window's feature values of X and of F are min-max normalised,
turned into marginal distributions over the w^2 positions (MATLAB's column-major order), and their joint
distribution is estimated by Nelsen's method: a mixture of the Frechet bound copula (upper bound for a
non-negative correlation c of the two marginals, lower bound otherwise) and independence, weighted by c over
the bound's own correlation. FMI_XF = 2 MI / (H_X + H_F) in the window; the map of (FMI_AF + FMI_BF) / 2 is
averaged. All windows are processed at once, vectorised in chunks.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sfft

from ._ops import channel_mean
from .base import Images, per_source, register_metric

#: The 62-tap discrete Meyer ("dmey") FIR lowpass analysis filter as tabulated by PyWavelets (and PETSc): a
#: leading 0, then a symmetric 61-tap filter given here by its first 31 taps (the 31st is the centre).
#: MATLAB's wfilters('dmey') is a longer (102-tap) approximation of the same filter; see docs/metrics.md.
_DMEY_HALF = (
    -1.0099999569414229e-12, 8.519459636796214e-09, -1.111944952595278e-08, -1.0798819539621958e-08,
    6.0669757413511352e-08, -1.0866516536735883e-07, 8.2006806503864813e-08, 1.1783004497663934e-07,
    -5.5063405652522782e-07, 1.1307947017916706e-06, -1.4895492164971559e-06, 7.367572885903746e-07,
    3.2054419133447798e-06, -1.6312699734552807e-05, 6.5543059305751491e-05, -0.00060115023435160925,
    -0.002704672124643725, 0.0022025341009110021, 0.006045814097323304, -0.0063877183184971563,
    -0.011061496392513451, 0.015270015130934803, 0.017423434103729693, -0.032130793990211758,
    -0.024348745906078023, 0.063739024322801596, 0.030655091960824263, -0.13284520043622938,
    -0.035087555656258346, 0.44459300275757724, 0.74458559231880628,
)  # fmt: skip


def dmey_filters() -> tuple[np.ndarray, np.ndarray]:
    """(Lo_D, Hi_D) of the discrete Meyer wavelet; Hi_D[k] = (-1)^(k+1) Lo_D[L-1-k] (quadrature mirror)."""
    half = np.asarray(_DMEY_HALF)
    lo = np.concatenate([[0.0], half, half[-2::-1]])
    hi = lo[::-1] * np.where(np.arange(len(lo)) % 2 == 0, -1.0, 1.0)
    return lo, hi


def _analysis(x: np.ndarray, filt: np.ndarray, axis: int) -> np.ndarray:
    """One MATLAB ``dwt`` analysis step along ``axis`` ('sym' extension): extend both ends by L-1 samples by
    half-point symmetry, convolve ('valid'), keep the odd (1-based even) samples: floor((n + L - 1) / 2)."""
    n_ext = len(filt) - 1
    pad = [(0, 0)] * x.ndim
    pad[axis] = (n_ext, n_ext)
    y = np.moveaxis(np.pad(x, pad, mode="symmetric"), axis, -1)
    windows = sliding_window_view(y, len(filt), axis=-1)
    full = windows @ filt[::-1]  # convolution = correlation with the reversed filter
    return np.moveaxis(full[..., 1::2], -1, axis)


def dwt2_feature(x: np.ndarray) -> np.ndarray:
    """``rerange([cA, cH; cV, cD])`` of a one-level 2-D DMEY transform (as fmi.m's 'wavelet' feature): the four
    subbands tiled and min-max scaled to [0, 1] (all ones for a flat result)."""
    lo, hi = dmey_filters()
    rows_lo, rows_hi = _analysis(x, lo, 1), _analysis(x, hi, 1)
    ca, ch = _analysis(rows_lo, lo, 0), _analysis(rows_lo, hi, 0)
    cv, cd = _analysis(rows_hi, lo, 0), _analysis(rows_hi, hi, 0)
    tiled = np.block([[ca, ch], [cv, cd]])
    low, high = tiled.min(), tiled.max()
    return np.ones_like(tiled) if high == low else (tiled - low) / (high - low)


def feature_image(x: np.ndarray, feature: str) -> np.ndarray:
    """fmi.m's features of a 2-D image: "none" (raw pixels), "dct" (orthonormal 2-D DCT-II, MATLAB dct2),
    "wavelet" (:func:`dwt2_feature`), "gradient" (MATLAB gradient: the horizontal central difference)."""
    if feature == "none":
        return x
    if feature == "dct":
        return sfft.dctn(x, type=2, norm="ortho")
    if feature == "wavelet":
        return dwt2_feature(x)
    if feature == "gradient":
        return np.gradient(x, axis=1)
    raise ValueError(f"feature must be 'none', 'dct', 'wavelet' or 'gradient', not {feature!r}")


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    """(w*w, n_windows) window values: rows in MATLAB's column-major order (x(:)), windows in row-major order
    along the last (contiguous) axis, so that per-window reductions run across windows."""
    h, wd = x.shape[0] - w + 1, x.shape[1] - w + 1
    out = np.empty((w * w, h, wd), dtype=x.dtype)
    for j in range(w):
        for i in range(w):
            out[j * w + i] = x[i : i + h, j : j + wd]
    return out.reshape(w * w, -1)


def _normalise(x: np.ndarray) -> np.ndarray:
    """Min-max scaling of each window (column) to [0, 1]; all ones for a flat window."""
    low = x.min(axis=0)
    span = x.max(axis=0) - low
    flat = span == 0
    out = (x - low) / np.where(flat, 1.0, span)
    out[:, flat] = 1.0
    return out


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    """-sum p log2 |p| over the leading axes (MATLAB's real(-p log2 p) for p < 0; 0 log 0 = 0), float64."""
    logs = np.abs(p)
    np.maximum(logs, np.finfo(p.dtype).tiny, out=logs)  # p = 0 then contributes 0 * finite = 0
    np.log2(logs, out=logs)
    logs *= p
    return -logs.reshape(-1, p.shape[-1]).sum(axis=0, dtype=np.float64)


def _cell_weights(length: int) -> np.ndarray:
    """w_kl = (length - k)(length - l): sum_ij C(i, j) = sum_kl mass_kl w_kl for a copula's cumulative C."""
    steps = np.arange(length, 0, -1, dtype=np.float64)
    return np.outer(steps, steps)


def _window_fmi(xn: np.ndarray, fn: np.ndarray, same: np.ndarray) -> np.ndarray:
    """fast-FMI of each window pair given their normalised values (l, n); ``same`` marks the windows whose raw
    values are equal (FMI 1).

    The bound copula's mass on cell (i, j) is the overlap of F's i-th CDF step (P_F,i-1, P_F,i] with X's j-th
    one (P_X,j-1, P_X,j] (upper bound) or with its mirror (1 - P_X,j, 1 - P_X,j-1] (lower bound); these masses
    are fmi.m's double differences of min(u, v) or max(u + v - 1, 0). The l x l cells are processed in float32
    (probabilities to ~1e-7), per-window sums in float64.
    """
    length, n = xn.shape
    xp = xn / xn.sum(axis=0)
    fp = fn / fn.sum(axis=0)
    xc = np.cumsum(xp, axis=0)
    fc = np.cumsum(fp, axis=0)
    xt = xp - xp.mean(axis=0)
    ft = fp - fp.mean(axis=0)
    dot = (xt * ft).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(dot == 0, 0.0, dot / np.sqrt((xt * xt).sum(axis=0) * (ft * ft).sum(axis=0)))
    # A flat window's marginal is uniform and its deviations from the mean are rounding noise: fmi.m's
    # c = sum(aTemp .* fTemp) / sqrt(...) is then noise / noise. With MATLAB's sequential mean the noise of
    # two flat windows is the same (c = 1, identical marginals: FMI 1) and a single flat window gives c ~ 0;
    # both are set exactly here, independently of the summation order.
    flat_x, flat_f = (xn == 1).all(axis=0), (fn == 1).all(axis=0)
    c = np.where(flat_x & flat_f, 1.0, np.where(flat_x | flat_f, 0.0, c))
    idx = np.arange(1, length + 1, dtype=np.float64)
    x_sd = np.sqrt(np.maximum((idx * idx) @ xp - (idx @ xp) ** 2, 0.0))
    f_sd = np.sqrt(np.maximum((idx * idx) @ fp - (idx @ fp) ** 2, 0.0))
    upper = c >= 0
    zeros = np.zeros((1, n))
    x_prev = np.concatenate([zeros, xc[:-1]], axis=0)
    x_lo = np.where(upper, x_prev, 1.0 - xc).astype(np.float32)
    x_hi = np.where(upper, xc, 1.0 - x_prev).astype(np.float32)
    f_hi = fc.astype(np.float32)
    f_lo = np.concatenate([zeros, fc[:-1]], axis=0).astype(np.float32)
    mass = np.minimum(f_hi[:, None, :], x_hi[None, :, :])  # (i of F, j of X, window)
    mass -= np.maximum(f_lo[:, None, :], x_lo[None, :, :])
    np.maximum(mass, 0.0, out=mass)
    # covariance of the bound copula: sum_ij C_ij - sum_i P_F,i sum_j P_X,j, with C_ij = sum_{k<=i, l<=j} mass_kl
    cumulative = np.einsum("k,kn->n", _cell_weights(length).ravel(), mass.reshape(length * length, n), dtype=np.float64)
    cov = cumulative - fc.sum(axis=0) * xc.sum(axis=0)
    degenerate = (x_sd == 0) | (f_sd == 0) | (upper & (c == 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(degenerate, 0.0, c * (f_sd * x_sd) / np.where(cov == 0, 1.0, cov))
    joint = fp.astype(np.float32)[:, None, :] * xp.astype(np.float32)[None, :, :]
    mass -= joint
    mass *= weight.astype(np.float32)
    joint += mass  # (1 - t) p_F p_X + t mass
    h_joint = _entropy_bits(joint)
    h_x, h_f = _entropy_bits(xp), _entropy_bits(fp)
    mi = h_x + h_f - h_joint
    with np.errstate(divide="ignore", invalid="ignore"):
        fmi = np.where(mi == 0, 0.0, 2.0 * mi / (h_x + h_f))
    return np.where(same, 1.0, fmi)


def fmi_map(
    fa: np.ndarray, fb: np.ndarray, ff: np.ndarray, window: int = 3, literal: bool = False, chunk: int = 8192
) -> float:
    """Mean over the window positions of (FMI_AF + FMI_BF) / 2 for 2-D feature images of equal size.

    ``literal`` reproduces a quirk of fmi.m: it overwrites F's window with its normalised values while scoring
    A, so B's "identical window" test compares B's raw window with F's normalised one and rarely fires; a B
    window equal to F's then goes through the full computation, which gives 1 for most windows but 0 where the
    normalised window puts all its mass on one pixel (a single differing pixel: zero entropies). By default
    each source is tested against F's raw window (symmetric in A and B).
    """
    rows = max(1, chunk // max(1, ff.shape[1] - window + 1))
    total, count = 0.0, 0
    for top in range(0, ff.shape[0] - window + 1, rows):
        band = slice(top, min(top + rows, ff.shape[0] - window + 1) + window - 1)
        a, b, f = _windows(fa[band], window), _windows(fb[band], window), _windows(ff[band], window)
        fn = _normalise(f)
        same_a = (a == f).all(axis=0)
        same_b = (b == np.where(same_a, f, fn)).all(axis=0) if literal else (b == f).all(axis=0)
        total += (_window_fmi(_normalise(a), fn, same_a) + _window_fmi(_normalise(b), fn, same_b)).sum()
        count += f.shape[1]
    return float(total / (2 * count))


def _fmi(images: Images, feature: str, window: int, literal: bool) -> float:
    if min(images.shape) < window:
        raise ValueError(f"FMI window {window} must fit in the {images.shape} image")

    def features(x: np.ndarray) -> list[np.ndarray]:
        return [feature_image(channel, feature) for channel in x]

    fa, fb = per_source(images, ("FMI feature", feature), features)
    ff = features(images.fused)
    scores = [
        fmi_map(fa[min(c, len(fa) - 1)], fb[min(c, len(fb) - 1)], ff[min(c, len(ff) - 1)], window, literal)
        for c in range(images.channels)
    ]
    return channel_mean(np.asarray(scores))


_REFERENCE = (
    "M. B. A. Haghighat, A. Aghagolzadeh, H. Seyedarabi, A non-reference image fusion metric based on mutual "
    "information of image features, Computers & Electrical Engineering 37(5):744-756, 2011; M. Haghighat, "
    "M. A. Razian, Fast-FMI: non-reference image fusion metric, AICT 2014 (fmi.m)"
)
_DOC = """FMI = mean over w x w windows of (FMI_AF + FMI_BF) / 2, FMI_XF = 2 I(X; F) / (H(X) + H(F)) with
    I(X; F) = H(X) + H(F) - H(X, F) in bits, from the window's normalised {feature} values.

    Marginals p_i = v_i / sum v (v: window values min-max scaled to [0, 1], all ones if flat); joint
    p_ij = t dd C(P_F,i, P_X,j) + (1 - t) p_F,i p_X,j with C the upper Frechet bound min(u, v) when the Pearson
    correlation r of the marginals is >= 0 (else the lower bound max(u + v - 1, 0)), t = r / r_C, r_C the
    correlation of C; windows equal in X and F score 1 (two flat windows too). ``window``: w (3);
    ``literal``: fmi.m's B-window quirk (see :func:`fusebench.metrics.fmi.fmi_map`).
    """


def _documented(feature: str):  # noqa: ANN202
    def decorate(func):  # noqa: ANN001, ANN202
        func.__doc__ = _DOC.format(feature=feature)
        return func

    return decorate


@register_metric("FMI_pixel", higher_is_better=True, reference=_REFERENCE)
@_documented("pixel")
def fmi_pixel(images: Images, *, window: int = 3, literal: bool = False) -> float:
    return _fmi(images, "none", window, literal)


@register_metric("FMI_dct", higher_is_better=True, reference=_REFERENCE)
@_documented("DCT (orthonormal 2-D DCT-II of the whole image)")
def fmi_dct(images: Images, *, window: int = 3, literal: bool = False) -> float:
    return _fmi(images, "dct", window, literal)


@register_metric("FMI_w", higher_is_better=True, reference=_REFERENCE)
@_documented("wavelet (one-level DMEY subbands, tiled and scaled to [0, 1])")
def fmi_wavelet(images: Images, *, window: int = 3, literal: bool = False) -> float:
    return _fmi(images, "wavelet", window, literal)

"""Edge-, structure- and perception-based metrics comparing F with both sources: Qabf, Nabf, Qcb, Qcv, Qy, Qp."""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from ._ops import (
    block_sum,
    channel_mean,
    fft_filter,
    fft_radius,
    gaussian_1d,
    gaussian_filters,
    sobel,
    stretch,
)
from .base import Images, per_source, register_metric


def _safe_ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), fill)


def _ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den with ``fill`` where den is 0 (a new array; fast when den has no zeros)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(num, den)
    zero = den == 0
    if zero.any():
        out[np.broadcast_to(zero, out.shape)] = fill
    return out


def _edges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared Sobel strength, strength and orientation atan(Sy / Sx) (pi/2 where Sx = 0), in float32.

    Sx, Sy are the *convolutions* (MATLAB ``conv2``, ``scipy.signal.convolve2d``) with [-1 0 1; -2 0 2;
    -1 0 1] and [1 2 1; 0 0 0; -1 -2 -1], i.e. Sx = -dx and Sy = dy of :func:`sobel`. The signs matter: the
    fixed pi/2 where Sx = 0 is compared with atan(Sy / Sx) elsewhere. On 8-bit data the Sobel responses and
    squared strengths are integers below 2^24, hence exact in float32 (and so are equality tests on them).
    """
    dx, dy = sobel(x.astype(np.float32), "zero")
    square = dx * dx
    square += dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arctan(dy / -dx)
    np.putmask(angle, dx == 0, np.float32(np.pi / 2))
    return square, np.sqrt(square), angle


def _sigmoid(x: np.ndarray, top: float, slope: float, center: float) -> np.ndarray:
    """top / (1 + exp(slope (x - center))), in place on float32 ``x``."""
    x -= center
    x *= slope
    np.exp(x, out=x)
    x += 1.0
    np.divide(top, x, out=x)
    return x


@register_metric(
    "Qabf",
    higher_is_better=True,
    reference="C. S. Xydeas, V. Petrovic, Objective image fusion performance measure, "
    "Electronics Letters 36(4):308-309, 2000",
)
def qabf(
    images: Images,
    *,
    tg: float = 0.9994,
    kg: float = -15.0,
    dg: float = 0.5,
    ta: float = 0.9879,
    ka: float = -22.0,
    da: float = 0.8,
    gain: float = 1.0,
    equal_gradients: str = "one",
) -> float:
    """Qabf = sum(Q^AF g_A + Q^BF g_B) / sum(g_A + g_B), Q^XF = Q_g Q_a, Q_g = Tg / (1 + e^(kg (G - Dg))),
    Q_a = Ta / (1 + e^(ka (A - Da))).

    g, a: Sobel strength and orientation; G = min(g_X, g_F) / max(g_X, g_F), A = 1 - |a_X - a_F| / (pi/2).
    Where g_X = g_F, ``equal_gradients`` "one" sets G = 1; "fused" sets G = gain * g_F, the quirk of the
    widely copied MATLAB/Python code (G = 0 where both are flat, Q_g saturated where both are equal edges),
    ``gain`` being the factor that code applied to the images (VIFB's ``255 * im2double`` of 0-255 data: 255).
    Where neither source has an edge the score is 0.
    """
    if equal_gradients not in ("one", "fused"):
        raise ValueError(f"equal_gradients must be 'one' or 'fused', not {equal_gradients!r}")
    sq_f, g_f, a_f = _edges(images.fused)
    num = np.zeros(images.channels)
    den = np.zeros(images.channels)
    for sq_x, g_x, a_x in per_source(images, "Sobel edges", _edges):
        with np.errstate(divide="ignore", invalid="ignore"):
            strength = np.minimum(g_x, g_f)
            strength /= np.maximum(g_x, g_f)
        equal = sq_x == sq_f
        np.copyto(strength, g_f * np.float32(gain) if equal_gradients == "fused" else 1.0, where=equal)
        orientation = np.abs(a_x - a_f)
        orientation *= -2.0 / np.pi
        orientation += 1.0
        q = _sigmoid(strength, tg, kg, dg)
        q *= _sigmoid(orientation, ta, ka, da)
        q *= g_x
        num += q.sum(axis=(1, 2), dtype=np.float64)
        den += g_x.sum(axis=(1, 2), dtype=np.float64)
    return channel_mean(_safe_ratio(num, den, 0.0))


@register_metric(
    "Qcb",
    higher_is_better=True,
    reference="Y. Chen, R. S. Blum, A new automated quality assessment algorithm for image fusion, "
    "Image and Vision Computing 27(10):1421-1432, 2009",
)
def chen_blum(
    images: Images,
    *,
    f0: float = 15.3870,
    f1: float = 1.3456,
    a: float = 0.7622,
    csf_divisor: float = 30.0,
    sigma1: float = 2.0,
    sigma2: float = 4.0,
    radius: int = 15,
    k: float = 1.0,
    h: float = 1.0,
    p: float = 3.0,
    q: float = 2.0,
    z: float = 1e-4,
) -> float:
    """Qcb = mean(l_A Q_AF + l_B Q_BF), Q_XF = min(C_X, C_F) / max(C_X, C_F), l_X = C_X^2 / (C_A^2 + C_B^2).

    Each image is min-max stretched to rounded 0-255 levels and filtered by the DoG contrast sensitivity
    S(r) = exp(-(r/f0)^2) - a exp(-(r/f1)^2) (r: DFT index * 2 / ``csf_divisor``); its local contrast is
    c = |G1 * I / G2 * I - 1| with unnormalised Gaussians of ``sigma1``, ``sigma2`` (radius ``radius``, zero
    padding) and masked as C = k c^p / (h c^q + Z) (Z.Liu's metricChenBlum.m, as in VIFB).
    """
    height, width = images.shape
    r = fft_radius(height, width, csf_divisor)
    sensitivity = np.exp(-((r / f0) ** 2)) - a * np.exp(-((r / f1) ** 2))
    kernels = [gaussian_1d(s, radius, normalize=False) for s in (sigma1, sigma2)]

    def masked_contrast(x: np.ndarray) -> np.ndarray:
        center, surround = gaussian_filters(fft_filter(stretch(x), sensitivity, np.float64), kernels)
        contrast = _ratio(center, surround, 1.0)
        contrast -= 1.0
        np.abs(contrast, out=contrast)
        if (k, h, p, q) == (1.0, 1.0, 3.0, 2.0):  # the usual constants, without pow()
            square = contrast * contrast
            masked = square * contrast
            square += z
            masked /= square
            return masked
        return k * contrast**p / (h * contrast**q + z)

    key = ("Qcb contrast", f0, f1, a, csf_divisor, sigma1, sigma2, radius, k, h, p, q, z)
    m_a, m_b = per_source(images, key, masked_contrast)
    m_f = masked_contrast(images.fused)
    a_sq, b_sq = m_a * m_a, m_b * m_b
    total = a_sq + b_sq
    score = _ratio(np.minimum(m_a, m_f), np.maximum(m_a, m_f), 1.0) * _ratio(a_sq, total, 0.5)
    score += _ratio(np.minimum(m_b, m_f), np.maximum(m_b, m_f), 1.0) * _ratio(b_sq, total, 0.5)
    return channel_mean(score.mean(axis=(1, 2), dtype=np.float64))


def _strength_power(x: np.ndarray, alpha: float) -> np.ndarray:
    """(Sobel strength) ** alpha, zero padding, in float32."""
    dx, dy = sobel(x.astype(np.float32), "zero")
    square = dx * dx
    square += dy * dy
    if alpha == 5.0:
        return square * square * np.sqrt(square)
    return square ** (alpha / 2.0)


@register_metric(
    "Qcv",
    higher_is_better=False,
    reference="H. Chen, P. K. Varshney, A human perception inspired quality metric for image fusion based on "
    "regional information, Information Fusion 8(2):193-207, 2007",
)
def chen_varshney(
    images: Images,
    *,
    window: int = 16,
    alpha: float = 5.0,
    csf: str = "mannos_sakrison",
    csf_divisor: float = 8.0,
) -> float:
    """Qcv = sum_w (l_A(w) D_A(w) + l_B(w) D_B(w)) / sum_w (l_A(w) + l_B(w)) over ``window``-sized blocks w.

    Images are min-max stretched to rounded 0-255 levels; l_X(w) = sum_w g_X^alpha (g: Sobel strength);
    D_X(w) = mean_w ((X - F) filtered by the CSF)^2, the CSF ("mannos_sakrison" 2.6 (0.0192 + 0.144 r)
    e^(-(0.144 r)^1.1), or "ahumada") on r = DFT index * 2 / ``csf_divisor``. Partial blocks are zero-padded
    (MATLAB blkproc). Lower is better; 0 when no source has an edge.
    """
    f = stretch(images.fused)
    x_a, x_b = per_source(images, "stretched", lambda x: stretch(x).astype(np.float32))  # exact: integers
    height, width = images.shape
    r = fft_radius(height, width, csf_divisor)
    if csf == "mannos_sakrison":
        response = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    elif csf == "ahumada":
        response = np.exp(-((r / 97.3227) ** 2)) - 0.685 * np.exp(-((r / 12.1653) ** 2))
    else:
        raise ValueError(f"csf must be 'mannos_sakrison' or 'ahumada', not {csf!r}")
    weights = per_source(
        images,
        ("Qcv weights", window, alpha),
        lambda x: block_sum(_strength_power(stretch(x), alpha), window, np.float64),
    )
    diffs = fft_filter(np.concatenate([x_a - f, x_b - f]), response, np.float32)
    diffs *= diffs
    blocks = block_sum(diffs, window, np.float64) / (window * window)
    n_a = max(x_a.shape[0], f.shape[0])
    num = (weights[0] * blocks[:n_a]).sum(axis=(1, 2)) + (weights[1] * blocks[n_a:]).sum(axis=(1, 2))
    den = weights[0].sum(axis=(1, 2)) + weights[1].sum(axis=(1, 2))
    return channel_mean(_safe_ratio(num, den, 0.0))


def _kumar_edges(x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Strength and orientation of B. K. Shreyamsha Kumar's ``sobel_fn``: Sobel kernels / 8 on the image
    mirrored by one pixel (``per_extn_im_fn``, a reflection without repeating the edge), orientation
    atan(gv / gh) (0 where both are 0); computed on ``x * scale``."""
    dx, dy = sobel(np.pad(x * scale, ((0, 0), (1, 1), (1, 1)), mode="reflect"), "zero")
    gv, gh = -dx[:, 1:-1, 1:-1] / 8.0, -dy[:, 1:-1, 1:-1] / 8.0
    strength = np.sqrt(gv * gv + gh * gh)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arctan(gv / gh)
    angle[(gv == 0) & (gh == 0)] = 0.0
    return strength, angle


@register_metric(
    "Nabf",
    higher_is_better=False,
    reference="B. K. Shreyamsha Kumar, Multifocus and multispectral image fusion based on pixel significance "
    "using discrete cosine harmonic wavelet transform, Signal, Image and Video Processing 7:1125-1143, 2013 "
    "(modified fusion artifacts measure of V. Petrovic, C. Xydeas, 2005)",
)
def nabf(
    images: Images,
    *,
    scale: float = 255.0,
    td: float = 2.0,
    wt_min: float = 0.001,
    lg: float = 1.5,
    nrg: float = 0.9999,
    kg: float = 19.0,
    sigma_g: float = 0.5,
    nra: float = 0.9995,
    ka: float = 22.0,
    sigma_a: float = 0.5,
) -> float:
    """Nabf = sum_i n_i ((1 - Q^AF_i) w^A_i + (1 - Q^BF_i) w^B_i) / sum_i (w^A_i + w^B_i), n_i = 1 where
    g_F > g_A and g_F > g_B (an edge stronger than in either source: an artifact), else 0.

    Q^XF = sqrt(Q_g Q_a), Q_g = Nrg / (1 + e^(-kg (G - sigma_g))), Q_a = Nra / (1 + e^(-ka (A - sigma_a))),
    G = min(g_X, g_F) / max(g_X, g_F) (0 where either is 0), A = | |a_X - a_F| - pi/2 | * 2 / pi;
    w^X = g_X^lg where g_X >= Td, else ``wt_min``. Gradients are Kumar's Sobel / 8 with mirrored borders on
    images scaled to 0..``scale`` (Td and wt_min make the value scale-dependent). Lower is better.
    """
    factor = scale / images.value_range
    g_f, a_f = _kumar_edges(images.fused, factor)
    (g_a, a_a), (g_b, a_b) = per_source(images, ("Kumar edges", factor), lambda x: _kumar_edges(x, factor))
    num = np.zeros(images.channels)
    den = np.zeros(images.channels)
    artifact = (g_f > g_a) & (g_f > g_b)
    for g_x, a_x in ((g_a, a_a), (g_b, a_b)):
        with np.errstate(divide="ignore", invalid="ignore"):
            strength = np.where((g_x == 0) | (g_f == 0), 0.0, np.minimum(g_x, g_f) / np.maximum(g_x, g_f))
        orientation = np.abs(np.abs(a_x - a_f) - np.pi / 2) * (2 / np.pi)
        q = np.sqrt(
            nrg / (1 + np.exp(-kg * (strength - sigma_g))) * (nra / (1 + np.exp(-ka * (orientation - sigma_a))))
        )
        weight = np.where(g_x >= td, g_x**lg, wt_min)
        num += (np.where(artifact, 1.0 - q, 0.0) * weight).sum(axis=(1, 2))
        den += np.broadcast_to(weight, artifact.shape).sum(axis=(1, 2))
    return channel_mean(num / den)


@register_metric(
    "Qy",
    higher_is_better=True,
    reference="C. Yang, J.-Q. Zhang, X.-R. Wang, X. Liu, A novel similarity based quality metric for image "
    "fusion, Information Fusion 9(2):156-160, 2008 (Z. Liu's metricYang.m, as in MEFB)",
)
def yang(
    images: Images,
    *,
    size: int = 7,
    sigma: float = 1.5,
    c: float = 2e-16,
    threshold: float = 0.75,
    flat_windows: str = "drop",
) -> float:
    """Qy = mean over the 'valid' windows w of
    lambda_w SSIM(A, F|w) + (1 - lambda_w) SSIM(B, F|w)   where SSIM(A, B|w) >= ``threshold``,
    max(SSIM(A, F|w), SSIM(B, F|w))                        elsewhere,
    lambda_w = s_A^2 / (s_A^2 + s_B^2) (local variances; 1/2 where both sources are flat).

    SSIM maps with a ``size`` x ``size`` Gaussian window (``sigma``) and C1 = C2 = ``c`` (on 0-255 values).
    Variances below 1e-10 of the squared range count as 0, so flat windows score their luminance term.
    Windows where both sources are flat have lambda = 0/0: ``flat_windows="drop"`` leaves them out of the
    mean, as Liu's metricYang.m does (``A(~isnan(A))``; a score of NaN if every window is flat), "keep"
    counts them with lambda = 1/2.
    """
    if flat_windows not in ("drop", "keep"):
        raise ValueError(f"flat_windows must be 'drop' or 'keep', not {flat_windows!r}")
    from .similarity import centred, local_stats, moments, ssim_and_cs

    kernel = gaussian_1d(sigma, size // 2)
    unit = (images.value_range / 255.0) ** 2
    tiny = 1e-10 * images.value_range**2

    def prepare(x: np.ndarray) -> tuple:
        xs, shift = centred(x)
        return xs, shift, moments(xs, kernel)

    def clean(stats: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        mu_x, mu_f, var_x, var_f, cov = stats
        var_x = np.where(var_x < tiny, 0.0, var_x)
        var_f = np.where(var_f < tiny, 0.0, var_f)
        cov = np.where((var_x == 0) | (var_f == 0), 0.0, cov)
        return mu_x, mu_f, var_x, var_f, cov

    a, b = per_source(images, ("Qy moments", size, sigma), prepare)
    f = prepare(images.fused)
    stats_ab = clean(local_stats(a, b, kernel))
    s_ab, _ = ssim_and_cs(stats_ab, c * unit, c * unit)
    s_af, _ = ssim_and_cs(clean(local_stats(a, f, kernel)), c * unit, c * unit)
    s_bf, _ = ssim_and_cs(clean(local_stats(b, f, kernel)), c * unit, c * unit)
    var_a, var_b = stats_ab[2], stats_ab[3]
    total = var_a + var_b
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(total > 0, var_a / np.where(total > 0, total, 1.0), 0.5)
    q = np.where(s_ab >= threshold, lam * s_af + (1 - lam) * s_bf, np.maximum(s_af, s_bf))
    if flat_windows == "keep":
        return channel_mean(q.mean(axis=(1, 2)))
    kept = np.broadcast_to(total > 0, q.shape)
    with np.errstate(invalid="ignore"):
        return channel_mean(np.where(kept, q, 0.0).sum(axis=(1, 2)) / kept.sum(axis=(1, 2)))


@functools.lru_cache(maxsize=4)
def _log_gabor_bank(
    rows: int,
    cols: int,
    nscale: int,
    norient: int,
    min_wavelength: float,
    mult: float,
    sigma_onf: float,
    d_theta_on_sigma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kovesi's log-Gabor filters (norient, nscale, rows, cols) on the unshifted FFT grid, with the
    image-independent noise terms of each orientation: sum of squared filters at the smallest scale, and
    sum(An^2), sum(Ai Aj) of the filters' spatial responses (phasecong3's EM_n, sumEstSumAn2,
    sumEstSumAiAj)."""

    def axis_range(n: int) -> np.ndarray:
        if n % 2:
            return np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1)
        return np.arange(-n / 2, n / 2) / n

    x, y = np.meshgrid(axis_range(cols), axis_range(rows))
    radius = np.sqrt(x * x + y * y)
    radius[rows // 2, cols // 2] = 1.0
    theta = np.arctan2(-y, x)
    radius, theta = np.fft.ifftshift(radius), np.fft.ifftshift(theta)
    sin_t, cos_t = np.sin(theta), np.cos(theta)
    # Kovesi's lowpassfilter([rows cols], 0.45, 15), built centred then fftshift-ed
    lx = (np.arange(cols) - cols // 2) / cols
    ly = (np.arange(rows) - rows // 2) / rows
    lr = np.sqrt(lx[None, :] ** 2 + ly[:, None] ** 2)
    lowpass = np.fft.fftshift(1.0 / (1.0 + (lr / 0.45) ** 30))
    radial = []
    for s in range(nscale):
        fo = 1.0 / (min_wavelength * mult**s)
        gabor = np.exp(-(np.log(radius / fo) ** 2) / (2 * np.log(sigma_onf) ** 2)) * lowpass
        gabor[0, 0] = 0.0
        radial.append(gabor)
    theta_sigma = np.pi / norient / d_theta_on_sigma
    bank = np.empty((norient, nscale, rows, cols))
    em_n = np.empty(norient)
    sum_an2 = np.empty(norient)
    sum_aiaj = np.empty(norient)
    for o in range(norient):
        angle = o * np.pi / norient
        ds = sin_t * np.cos(angle) - cos_t * np.sin(angle)
        dc = cos_t * np.cos(angle) + sin_t * np.sin(angle)
        spread = np.exp(-(np.abs(np.arctan2(ds, dc)) ** 2) / (2 * theta_sigma**2))
        for s in range(nscale):
            bank[o, s] = radial[s] * spread
        em_n[o] = np.sum(bank[o, 0] ** 2)
        spatial = np.real(np.fft.ifft2(bank[o])) * np.sqrt(rows * cols)
        sum_an2[o] = np.sum(spatial**2)
        total = spatial.sum(axis=0)
        sum_aiaj[o] = (np.sum(total**2) - sum_an2[o]) / 2.0
    return bank, em_n, np.stack([sum_an2, sum_aiaj])


def phase_congruency(
    image: np.ndarray,
    nscale: int = 4,
    norient: int = 6,
    min_wavelength: float = 3.0,
    mult: float = 2.1,
    sigma_onf: float = 0.55,
    d_theta_on_sigma: float = 1.2,
    k: float = 2.0,
    cutoff: float = 0.5,
    g: float = 10.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phase congruency, maximum moment M, minimum moment m) of a 2-D image: Kovesi's phasecong3 as revised
    by Z. Liu (myphasecong3.m): log-Gabor filters over ``nscale`` scales and ``norient`` orientations, noise
    threshold from the median energy at the smallest scale, frequency-spread weighting."""
    eps = 1e-4
    rows, cols = image.shape
    bank, em_n, noise = _log_gabor_bank(rows, cols, nscale, norient, min_wavelength, mult, sigma_onf, d_theta_on_sigma)
    spectrum = np.fft.fft2(image)
    total_energy = np.zeros((rows, cols))
    total_sum_an = np.zeros((rows, cols))
    covx2 = np.zeros((rows, cols))
    covy2 = np.zeros((rows, cols))
    covxy = np.zeros((rows, cols))
    for o in range(norient):
        angle = o * np.pi / norient
        eo = np.fft.ifft2(spectrum[None] * bank[o])
        an = np.abs(eo)
        sum_an = an.sum(axis=0)
        sum_e = eo.real.sum(axis=0)
        sum_o = eo.imag.sum(axis=0)
        max_an = an.max(axis=0)
        x_energy = np.sqrt(sum_e**2 + sum_o**2) + eps
        mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
        energy = (eo.real * mean_e + eo.imag * mean_o - np.abs(eo.real * mean_o - eo.imag * mean_e)).sum(axis=0)
        median_e2n = np.median(an[0] ** 2)
        noise_power = -median_e2n / np.log(0.5) / em_n[o]
        est_noise_energy2 = 2 * noise_power * noise[0, o] + 4 * noise_power * noise[1, o]
        tau = np.sqrt(est_noise_energy2 / 2)
        threshold = (tau * np.sqrt(np.pi / 2) + k * np.sqrt((2 - np.pi / 2) * tau**2)) / 1.7
        energy = np.maximum(energy - threshold, 0.0)
        width = sum_an / (max_an + eps) / nscale
        weight = 1.0 / (1.0 + np.exp((cutoff - width) * g))
        weighted = weight * energy
        total_sum_an += sum_an
        total_energy += weighted
        with np.errstate(divide="ignore", invalid="ignore"):
            pc = np.where(sum_an > 0, weighted / np.where(sum_an > 0, sum_an, 1.0), 0.0)
        covx, covy = pc * np.cos(angle), pc * np.sin(angle)
        covx2 += covx * covx
        covy2 += covy * covy
        covxy += covx * covy
    covx2 /= norient / 2
    covy2 /= norient / 2
    covxy /= norient
    denom = np.sqrt(covxy**2 + (covx2 - covy2) ** 2) + eps
    return total_energy / (total_sum_an + eps), (covy2 + covx2 + denom) / 2, (covy2 + covx2 - denom) / 2


def _zhao_correlation(
    x1: np.ndarray, x2: np.ndarray, x_max: np.ndarray, xf: np.ndarray, masks: tuple[np.ndarray, ...], c: float
) -> float:
    """Zhao's correlation_coeffcient: max over the three feature maps (masked) of the local correlation
    (s_xf + C) / (sqrt(|s_x^2 s_f^2|) + C) (11x11 Gaussian, sigma 1.5, zero-padded 'same'), summed and
    divided by the number of feature pixels of the max map."""
    kernel = gaussian_1d(1.5, 5)

    def smooth(x: np.ndarray) -> np.ndarray:
        return ndimage.correlate1d(
            ndimage.correlate1d(x, kernel, axis=0, mode="constant"), kernel, axis=1, mode="constant"
        )

    mu_f = smooth(xf)
    var_f = smooth(xf * xf) - mu_f * mu_f
    results = []
    for x, mask in zip((x1, x2, x_max), masks, strict=True):
        x = mask * x
        mu = smooth(x)
        var = smooth(x * x) - mu * mu
        cov = smooth(x * xf) - mu * mu_f
        results.append(np.where(mask, (cov + c) / (np.sqrt(np.abs(var * var_f)) + c), 0.0))
    best = np.maximum.reduce(results)
    count = masks[2].sum()
    return float(best.sum() / count) if count else 0.0


@register_metric(
    "Qp",
    higher_is_better=True,
    reference="J. Zhao, R. Laganiere, Z. Liu, Performance assessment of combinative pixel-level image fusion "
    "based on an absolute feature measurement, Int. J. Innovative Computing, Information and Control "
    "3(6A):1433-1447, 2007 (Z. Liu's metricZhao.m / myphasecong3.m, as in MEFB)",
)
def zhao(images: Images, *, threshold: float = 0.1, c: float = 1e-4, nscale: int = 4, norient: int = 6) -> float:
    """Qp = P_pc * P_M * P_m, each P = sum_i max_k r_k,i / |{pc_max > threshold}| over the feature maps
    (phase congruency pc, maximum moment M, minimum moment m) of A, B and their pixelwise max (by pc),
    r_k = (s_kf + C) / (sqrt(|s_k^2 s_f^2|) + C) the local correlation with F's map where pc_k > ``threshold``.

    Phase congruency by Kovesi's method (Liu's myphasecong3: ``nscale`` log-Gabor scales, ``norient``
    orientations) on 0-255 values; 0 when no source pixel is a feature. A constant fused channel scores 0,
    the worst value (Liu's code gives NaN: its phase congruency of a flat image is 0/0; computed on flat
    feature maps the correlations would be C/C = 1, a near-perfect score for a blank image).
    """
    factor = 255.0 / images.value_range

    def features(x: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        return [phase_congruency(channel * factor, nscale, norient) for channel in x]

    fa, fb = per_source(images, ("phase congruency", factor, nscale, norient), features)
    ff = features(images.fused)
    scores = []
    for ch in range(images.channels):
        fused = images.fused[min(ch, images.fused.shape[0] - 1)]
        if fused.min() == fused.max():
            scores.append(0.0)
            continue
        (pa, ma, na), (pb, mb, nb), (pf, mf, nf) = (fx[min(ch, len(fx) - 1)] for fx in (fa, fb, ff))
        choose_a = pa > pb
        masks = (pa > threshold, pb > threshold, np.where(choose_a, pa, pb) > threshold)
        score = 1.0
        for xa, xb, xf in ((pa, pb, pf), (ma, mb, mf), (na, nb, nf)):
            score *= _zhao_correlation(xa, xb, np.where(choose_a, xa, xb), xf, masks, c)
        scores.append(score)
    return channel_mean(np.asarray(scores))

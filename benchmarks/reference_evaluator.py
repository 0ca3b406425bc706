"""A straightforward numpy/scipy port of the MMIF-CDDFuse evaluator (``utils/Evaluator.py`` @ 40de0585).

It is the *reference* the ``cddfuse`` convention of :mod:`fusebench.metrics` is tested against, and the speed
baseline of ``benchmarks/metrics_speed.py``. It follows the evaluator's formulas operation by operation, with
the same libraries where they are available here: ``scipy.signal.convolve2d`` for every filter (direct 2-D
convolution, as the evaluator does) and ``skimage.metrics.structural_similarity`` for SSIM. Two dependencies of
the original are not installed and are replaced by equivalent code:

* ``sklearn.metrics.mutual_info_score`` (scikit-learn 1.1.3): the contingency table of the two label arrays and
  its mutual information in nats, with the same per-term formula.
* ``cv2.imread(path)`` + ``cv2.cvtColor(float32 BGR, COLOR_BGR2GRAY)`` + ``np.round`` (``image_read_cv2(path,
  'GRAY')``): Pillow decodes the file to 8-bit RGB (a gray file becomes three equal channels, as OpenCV's
  ``imread`` does), then Y = fma(R, 0.299f, fma(G, 0.587f, B * 0.114f)) in float32 (OpenCV 4.x's SIMD path for
  float BGR->gray), rounded half to even.

scikit-image 0.19.2 (the evaluator's pinned version) used ``data_range = 2`` for float images when none was
given (``dtype_range[float32] = (-1, 1)``); newer versions refuse to guess, so it is passed explicitly here.

Use: ``Evaluator.EN(fused)``, ``Evaluator.MI(fused, ir, vi)``... on float32 gray arrays holding 0-255 values, as
returned by :func:`image_read_gray`. This file is intentionally slow; do not optimise it.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity

SKIMAGE_0_19_FLOAT_DATA_RANGE = 2.0


def bgr2gray_float32(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's float32 BGR->gray: fma(R, 0.299f, fma(G, 0.587f, B * 0.114f)), each step rounded to float32.

    The products of 8-bit values with float32 coefficients and their sums are exact in float64, so computing
    each fused multiply-add in float64 and rounding once to float32 reproduces the FMA instruction.
    """
    r, g, b = (rgb[..., k].astype(np.float64) for k in range(3))
    cr, cg, cb = (float(np.float32(c)) for c in (0.299, 0.587, 0.114))
    t = (b * cb).astype(np.float32).astype(np.float64)
    t = (g * cg + t).astype(np.float32).astype(np.float64)
    return (r * cr + t).astype(np.float32)


def image_read_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """``image_read_cv2(path, 'GRAY')``: float32 HxW array of integers 0-255."""
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    return np.round(bgr2gray_float32(rgb))


def mutual_info_score(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """scikit-learn 1.1.3's ``mutual_info_score`` (nats) from the contingency table of two label arrays."""
    _, true_idx = np.unique(labels_true, return_inverse=True)
    _, pred_idx = np.unique(labels_pred, return_inverse=True)
    n_pred = int(pred_idx.max()) + 1
    counts = np.bincount(true_idx.ravel() * n_pred + pred_idx.ravel())
    nz = np.flatnonzero(counts)
    nzx, nzy, nz_val = nz // n_pred, nz % n_pred, counts[nz].astype(np.float64)
    contingency_sum = nz_val.sum()
    pi = np.bincount(nzx, weights=nz_val)
    pj = np.bincount(nzy, weights=nz_val)
    if pi.size == 1 or pj.size == 1:  # a single cluster: zero entropy, hence MI = 0
        return 0.0
    log_contingency_nm = np.log(nz_val)
    contingency_nm = nz_val / contingency_sum
    outer = pi.take(nzx).astype(np.int64, copy=False) * pj.take(nzy).astype(np.int64, copy=False)
    log_outer = -np.log(outer) + math.log(pi.sum()) + math.log(pj.sum())
    mi = contingency_nm * (log_contingency_nm - math.log(contingency_sum)) + contingency_nm * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


class Evaluator:
    """The evaluator's metrics, formula by formula (class methods, as in the original)."""

    @classmethod
    def EN(cls, img: np.ndarray) -> float:
        a = np.uint8(np.round(img)).flatten()
        h = np.bincount(a) / a.shape[0]
        return float(-sum(h * np.log2(h + (h == 0))))

    @classmethod
    def SD(cls, img: np.ndarray) -> float:
        return float(np.std(img))

    @classmethod
    def SF(cls, img: np.ndarray) -> float:
        return float(np.sqrt(np.mean((img[:, 1:] - img[:, :-1]) ** 2) + np.mean((img[1:, :] - img[:-1, :]) ** 2)))

    @classmethod
    def AG(cls, img: np.ndarray) -> float:
        gx, gy = np.zeros_like(img), np.zeros_like(img)
        gx[:, 0] = img[:, 1] - img[:, 0]
        gx[:, -1] = img[:, -1] - img[:, -2]
        gx[:, 1:-1] = (img[:, 2:] - img[:, :-2]) / 2
        gy[0, :] = img[1, :] - img[0, :]
        gy[-1, :] = img[-1, :] - img[-2, :]
        gy[1:-1, :] = (img[2:, :] - img[:-2, :]) / 2
        return float(np.mean(np.sqrt((gx**2 + gy**2) / 2)))

    @classmethod
    def MI(cls, image_f: np.ndarray, image_a: np.ndarray, image_b: np.ndarray) -> float:
        return mutual_info_score(image_f.flatten(), image_a.flatten()) + mutual_info_score(
            image_f.flatten(), image_b.flatten()
        )

    @classmethod
    def MSE(cls, image_f: np.ndarray, image_a: np.ndarray, image_b: np.ndarray) -> float:
        return float((np.mean((image_a - image_f) ** 2) + np.mean((image_b - image_f) ** 2)) / 2)

    @classmethod
    def CC(cls, image_f: np.ndarray, image_a: np.ndarray, image_b: np.ndarray) -> float:
        def r(x: np.ndarray) -> float:
            dx, df = x - np.mean(x), image_f - np.mean(image_f)
            return float(np.sum(dx * df) / np.sqrt(np.sum(dx**2) * np.sum(df**2)))

        return (r(image_a) + r(image_b)) / 2

    @classmethod
    def PSNR(cls, image_f: np.ndarray, image_a: np.ndarray, image_b: np.ndarray) -> float:
        return float(10 * np.log10(np.max(image_f) ** 2 / cls.MSE(image_f, image_a, image_b)))

    @classmethod
    def SCD(cls, image_f: np.ndarray, image_a: np.ndarray, image_b: np.ndarray) -> float:
        def corr(x: np.ndarray, d: np.ndarray) -> float:
            dx, dd = x - np.mean(x), d - np.mean(d)
            return float(np.sum(dx * dd) / np.sqrt(np.sum(dx**2) * np.sum(dd**2)))

        return corr(image_a, image_f - image_b) + corr(image_b, image_f - image_a)

    @classmethod
    def VIFF(cls, image_f: np.ndarray, image_a: np.ndarray, image_b: np.ndarray) -> float:
        """The evaluator's "VIFF": Sheikh's pixel-domain multiscale VIF(A, F) + VIF(B, F)."""
        return cls.compare_viff(image_a, image_f) + cls.compare_viff(image_b, image_f)

    @classmethod
    def compare_viff(cls, ref: np.ndarray, dist: np.ndarray) -> float:
        sigma_nsq = 2
        eps = 1e-10
        num = 0.0
        den = 0.0
        for scale in range(1, 5):
            n = 2 ** (4 - scale + 1) + 1
            sd = n / 5.0
            m = (n - 1.0) / 2.0
            y, x = np.ogrid[-m : m + 1, -m : m + 1]
            h = np.exp(-(x * x + y * y) / (2.0 * sd * sd))
            h[h < np.finfo(h.dtype).eps * h.max()] = 0
            win = h / h.sum()
            kernel = np.rot90(win, 2)
            if scale > 1:
                ref = convolve2d(ref, kernel, mode="valid")[::2, ::2]
                dist = convolve2d(dist, kernel, mode="valid")[::2, ::2]
            mu1 = convolve2d(ref, kernel, mode="valid")
            mu2 = convolve2d(dist, kernel, mode="valid")
            sigma1_sq = convolve2d(ref * ref, kernel, mode="valid") - mu1 * mu1
            sigma2_sq = convolve2d(dist * dist, kernel, mode="valid") - mu2 * mu2
            sigma12 = convolve2d(ref * dist, kernel, mode="valid") - mu1 * mu2
            sigma1_sq[sigma1_sq < 0] = 0
            sigma2_sq[sigma2_sq < 0] = 0
            g = sigma12 / (sigma1_sq + eps)
            sv_sq = sigma2_sq - g * sigma12
            g[sigma1_sq < eps] = 0
            sv_sq[sigma1_sq < eps] = sigma2_sq[sigma1_sq < eps]
            sigma1_sq[sigma1_sq < eps] = 0
            g[sigma2_sq < eps] = 0
            sv_sq[sigma2_sq < eps] = 0
            sv_sq[g < 0] = sigma2_sq[g < 0]
            g[g < 0] = 0
            sv_sq[sv_sq <= eps] = eps
            num += np.sum(np.log10(1 + g * g * sigma1_sq / (sv_sq + sigma_nsq)))
            den += np.sum(np.log10(1 + sigma1_sq / sigma_nsq))
        vifp = num / den
        return 1.0 if np.isnan(vifp) else float(vifp)

    @classmethod
    def Qabf(cls, image_f: np.ndarray, image_a: np.ndarray, image_b: np.ndarray) -> float:
        g_a, a_a = cls.Qabf_getArray(image_a)
        g_b, a_b = cls.Qabf_getArray(image_b)
        g_f, a_f = cls.Qabf_getArray(image_f)
        q_af = cls.Qabf_getQabf(a_a, g_a, a_f, g_f)
        q_bf = cls.Qabf_getQabf(a_b, g_b, a_f, g_f)
        deno = np.sum(g_a + g_b)
        nume = np.sum(np.multiply(q_af, g_a) + np.multiply(q_bf, g_b))
        return float(nume / deno)

    @classmethod
    def Qabf_getArray(cls, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]).astype(np.float32)
        h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]).astype(np.float32)
        s_x = convolve2d(img, h3, mode="same")
        s_y = convolve2d(img, h1, mode="same")
        g = np.sqrt(np.multiply(s_x, s_x) + np.multiply(s_y, s_y))
        a = np.zeros_like(img)
        a[s_x == 0] = math.pi / 2
        a[s_x != 0] = np.arctan(s_y[s_x != 0] / s_x[s_x != 0])
        return g, a

    @classmethod
    def Qabf_getQabf(cls, a_a: np.ndarray, g_a: np.ndarray, a_f: np.ndarray, g_f: np.ndarray) -> np.ndarray:
        tg, kg, dg, ta, ka, da = 0.9994, -15, 0.5, 0.9879, -22, 0.8
        g_af = np.zeros_like(a_a)
        g_af[g_a > g_f] = g_f[g_a > g_f] / g_a[g_a > g_f]
        g_af[g_a == g_f] = g_f[g_a == g_f]
        g_af[g_a < g_f] = g_a[g_a < g_f] / g_f[g_a < g_f]
        a_af = 1 - np.abs(a_a - a_f) / (math.pi / 2)
        q_g = tg / (1 + np.exp(kg * (g_af - dg)))
        q_a = ta / (1 + np.exp(ka * (a_af - da)))
        return q_g * q_a

    @classmethod
    def SSIM(cls, image_f: np.ndarray, image_a: np.ndarray, image_b: np.ndarray) -> float:
        r = SKIMAGE_0_19_FLOAT_DATA_RANGE
        return float(
            structural_similarity(image_f, image_a, data_range=r)
            + structural_similarity(image_f, image_b, data_range=r)
        )


#: the eight metrics of the CDDFuse paper's tables, in its column order, as called by its test scripts
PAPER_METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")


def paper_metrics(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> dict[str, float]:
    """The row ``test_IVF.py`` computes for one image: ``Evaluator.X(fi, ir, vi)`` for the eight metrics."""
    return {
        "EN": Evaluator.EN(fused),
        "SD": Evaluator.SD(fused),
        "SF": Evaluator.SF(fused),
        "MI": Evaluator.MI(fused, ir, vi),
        "SCD": Evaluator.SCD(fused, ir, vi),
        "VIF": Evaluator.VIFF(fused, ir, vi),
        "Qabf": Evaluator.Qabf(fused, ir, vi),
        "SSIM": Evaluator.SSIM(fused, ir, vi),
    }

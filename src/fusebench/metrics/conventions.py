"""Registered conventions: parameter sets reproducing one codebase's numbers with the shared metrics.

* ``vifb``: VIFB's MATLAB metrics (per-channel colour, MI in nats after a stretch, SSIM summed...).
* ``cddfuse``: MMIF-CDDFuse's Python evaluator and its reading of images (rounded OpenCV luma).
* ``fusebench``: the project's documented default (8-bit luma, textbook definitions, pairs averaged).

Each is a :class:`Convention`: input scale, colour handling and per-metric parameters; docs/metrics.md
gives the reasons and how each was verified.
"""

from __future__ import annotations

import math

from .base import CONVENTIONS, Convention

#: VIFB's metric names (MATLAB metrics<Name>.m, values.csv) -> fusebench names
VIFB_NAMES = {
    "Entropy": "EN",
    "Variance": "SD",
    "Spatial_frequency": "SF",
    "Avg_gradient": "AG",
    "Mutinf": "MI",
    "Qabf": "Qabf",
    "Qcb": "Qcb",
    "Qcv": "Qcv",
    "Ssim": "SSIM",
    "Psnr": "PSNR",
    "Rmse": "RMSE",
    "Cross_entropy": "CE",
    "Edge_intensity": "EI",
}

VIFB = CONVENTIONS.add(
    "vifb",
    Convention(
        name="vifb",
        description=(
            "VIFB's MATLAB metrics: 0-255 values (uint8, or floats holding 0-255 values), colour images "
            "scored per RGB channel and averaged (a gray image used for every channel), MI in nats after a "
            "min-max stretch and summed over the sources, SSIM with an 11x11 Gaussian window summed over "
            "the sources, VIFB's own RMSE/PSNR, Qabf with the 'equal gradients' quirk."
        ),
        reference="X. Zhang, P. Ye, G. Xiao, VIFB: a visible and infrared image fusion benchmark, CVPR "
        "Workshops 2020; github.com/xingchenzhang/VIFB (metrics/metrics*.m)",
        input_range=255.0,
        value_range=255.0,
        color="per_channel",
        params={
            "EN": {"log_base": 2.0},
            "SD": {"ddof": 0},
            "SF": {"layout": "side_by_side"},
            "AG": {},
            "EI": {"padding": "replicate"},
            "MI": {"log_base": math.e, "stretched": True, "pair": "sum"},
            "CE": {"log_base": 2.0, "pair": "mean"},
            "SSIM": {
                "window": "gaussian",
                "size": 11,
                "sigma": 1.5,
                "k1": 0.01,
                "k2": 0.03,
                "data_range": 255.0,
                "sample_covariance": False,
                "pair": "sum",
            },
            "PSNR": {"error": "vifb", "peak": 255.0},
            "RMSE": {"error": "vifb"},
            "Qabf": {
                "tg": 0.9994,
                "kg": -15.0,
                "dg": 0.5,
                "ta": 0.9879,
                "ka": -22.0,
                "da": 0.8,
                "gain": 255.0,
                "equal_gradients": "fused",
            },
            "Qcb": {
                "f0": 15.3870,
                "f1": 1.3456,
                "a": 0.7622,
                "csf_divisor": 30.0,
                "sigma1": 2.0,
                "sigma2": 4.0,
                "radius": 15,
                "k": 1.0,
                "h": 1.0,
                "p": 3.0,
                "q": 2.0,
                "z": 1e-4,
            },
            "Qcv": {"window": 16, "alpha": 5.0, "csf": "mannos_sakrison", "csf_divisor": 8.0},
        },
    ),
)

FUSEBENCH = CONVENTIONS.add(
    "fusebench",
    Convention(
        name="fusebench",
        description=(
            "fusebench's default (docs/metrics.md): every image scored as the 8-bit gray image a viewer "
            "would see - colour images by their BT.601 luma (0.299 R + 0.587 G + 0.114 B), all values rounded "
            "to whole 0-255 levels; uint8 arrays are 0-255, float arrays [0, 1] (fusebench.imageio.read_image, "
            "model outputs). Textbook definitions: entropies and MI in bits, MI and SCD summed over the two "
            "sources (their definitions), every similarity (SSIM, MS-SSIM, VIF, CC, MSE, RMSE, PSNR) averaged "
            "over the two sources so that F = A = B scores the single-pair value, Qabf without the "
            "equal-gradient quirk."
        ),
        reference="docs/metrics.md",
        input_range=1.0,
        value_range=255.0,
        color="luma",
        luma_weights=(0.299, 0.587, 0.114),
        luma_round="half_even",
        round_input=True,
        params={
            "EN": {"log_base": 2.0},
            "SD": {"ddof": 0},
            "SF": {"layout": "per_channel", "normalize": "pixels"},
            "AG": {"denominator": "pixels"},
            "EI": {"padding": "replicate"},
            "MI": {"log_base": 2.0, "stretched": False, "pair": "sum"},
            "CE": {"log_base": 2.0, "pair": "mean", "constant_fused": "worst"},
            "SSIM": {
                "window": "gaussian",
                "size": 11,
                "sigma": 1.5,
                "k1": 0.01,
                "k2": 0.03,
                "data_range": 255.0,
                "sample_covariance": False,
                "pair": "mean",
            },
            "MS-SSIM": {"size": 11, "sigma": 1.5, "data_range": 255.0, "pair": "mean"},
            "PSNR": {"error": "mse", "peak": 255.0},
            "RMSE": {"error": "rmse"},
            "CC": {"pair": "mean"},
            "VIF": {"sigma_nsq": 2.0, "scales": 4, "pair": "mean"},
            "Qabf": {"equal_gradients": "one"},
            "Nabf": {"scale": 255.0},
            "Qy": {"flat_windows": "keep"},
            "FMI_pixel": {"window": 3, "literal": False},
            "FMI_dct": {"window": 3, "literal": False},
            "FMI_w": {"window": 3, "literal": False},
        },
    ),
)

CDDFUSE = CONVENTIONS.add(
    "cddfuse",
    FUSEBENCH.derive(
        "cddfuse",
        (
            "MMIF-CDDFuse's utils/Evaluator.py with the reading of its test scripts: every image read by "
            "image_read_cv2(path, 'GRAY') - OpenCV's float32 BGR->gray (0.299 R + 0.587 G + 0.114 B by fused "
            "multiply-adds) rounded half to even, so colour is scored as rounded luma and gray files as they "
            "are; arrays hold 0-255 values (uint8, or floats on 0-255 as the evaluator takes them), rounded to "
            "whole levels like the PNG files the scripts score. EN in bits; MI in nats (scikit-learn) summed; "
            "SF as the mean of each set of differences; AG the plain mean; SSIM from scikit-image 0.19 "
            "defaults (7x7 uniform window, sample covariance, data_range 2 for float input) summed over the "
            "sources; VIF is Sheikh's multiscale pixel VIF summed over the sources (the evaluator calls it "
            "VIFF); Qabf with the equal-gradient quirk; PSNR peak max(F); MSE and CC averaged. Metrics the "
            "evaluator lacks keep the fusebench parameters."
        ),
        reference="github.com/Zhaozixiang1228/MMIF-CDDFuse utils/Evaluator.py, test_IVF.py @ 40de0585",
        input_range=255.0,
        luma_arithmetic="opencv_float32",
        luma_round="half_even",
        round_input=True,
        params={
            "EN": {"log_base": 2.0},
            "SF": {"normalize": "differences"},
            "AG": {"denominator": "pixels"},
            "MI": {"log_base": math.e, "stretched": False, "pair": "sum"},
            "SSIM": {
                "window": "uniform",
                "size": 7,
                "k1": 0.01,
                "k2": 0.03,
                "data_range": 2.0,
                "sample_covariance": True,
                "pair": "sum",
            },
            "VIF": {"sigma_nsq": 2.0, "scales": 4, "pair": "sum"},
            "Qabf": {"equal_gradients": "fused", "gain": 1.0},
            "PSNR": {"error": "mse", "peak": "fused_max"},
            "CC": {"pair": "mean"},
        },
    ),
)

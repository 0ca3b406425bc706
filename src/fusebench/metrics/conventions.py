"""Registered conventions: parameter sets reproducing one codebase's numbers with the shared metrics.

Only ``vifb`` exists so far. Others are added as entries, e.g. (sketch, to be checked against their code)
``cddfuse`` = VIFB.derive("cddfuse", ..., color="luma", luma_round=True, params={"SF": {"layout":
"per_channel"}, "MI": {"stretched": False}, "SSIM": {"window": "uniform", "size": 7, "sample_covariance":
True}, "Qabf": {"gain": 1.0}, ...}), and a ``fusebench`` default with the textbook definitions (PSNR/RMSE
``error`` "mse"/"rmse", Qabf ``equal_gradients`` "one").
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

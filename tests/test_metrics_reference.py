"""Metrics against the reference MATLAB code on medical images, and collapsed (blank) fused images.

Reference values were computed with the unmodified MATLAB files run under GNU Octave 7.3.0 (Debian
``octave`` + ``octave-image`` 2.14.0; ``freqspace``, absent from Octave, written from MATLAB's documented
definition ``((0:n-1) - floor(n/2)) * 2/n``). The fused image of each pair is ``(A + B) // 2`` (uint8), so
the test recomputes it from the sources in ../shared; the script is in docs/metrics.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fusebench.imageio import read_uint8
from fusebench.metrics import METRICS, compute

#: VIFB metrics/metricsQcb.m (xingchenzhang/VIFB @ 22b2ea9), Harvard MRI-CT test pairs, full 256x256
QCB_VIFB_OCTAVE = {"16009": 0.627803037103, "16010": 0.6235822534, "16011": 0.638811298252}


def _pair(mirror: Path, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = read_uint8(mirror / f"Harvard-MRI-CT/test/mri/{stem}.png")
    b = read_uint8(mirror / f"Harvard-MRI-CT/test/ct/{stem}.png")
    return ((a.astype(np.uint16) + b) // 2).astype(np.uint8), a, b


@pytest.mark.parametrize("stem", sorted(QCB_VIFB_OCTAVE))
def test_qcb_matches_vifb_matlab_on_medical_images(mirror: Path, stem: str) -> None:
    """Flat black backgrounds make the local contrast 0/0-like: float32 filtering gave 0.566 here."""
    fused, a, b = _pair(mirror, stem)
    assert compute(fused, a, b, ["Qcb"], "vifb")["Qcb"] == pytest.approx(QCB_VIFB_OCTAVE[stem], abs=5e-7)


def _sources(mirror: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Real source pairs, cropped for speed: medical (flat black background), infrared-visible."""
    mri = _pair(mirror, "16009")
    ir = read_uint8(mirror / "MSRS/test/ir/00004N.png")[200:296, 300:396]
    vi = read_uint8(mirror / "MSRS/test/vi/00004N.png")[200:296, 300:396]
    return {"MRI-CT": (mri[1][64:160, 64:160], mri[2][64:160, 64:160]), "MSRS": (ir, vi)}


@pytest.mark.parametrize("convention", ["fusebench", "cddfuse", "vifb"])
def test_a_blank_fused_image_never_beats_the_average(mirror: Path, convention: str) -> None:
    """A collapsed model (constant or all-black output) scores worse than the plain average of the sources on
    every metric, except the two whose reference code rewards it (documented in docs/metrics.md): Nabf
    (artifacts only: a blank image has none, 0 in Kumar's code too) and VIFB's CE (common levels only)."""
    exempt = {"Nabf"} | ({"CE"} if convention == "vifb" else set())
    for label, (a, b) in _sources(mirror).items():
        gray_b = b if b.ndim == 2 else np.round(b @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
        average = ((a.astype(np.uint16) + gray_b) // 2).astype(np.uint8)
        good = compute(average, a, b, convention=convention)
        for blank_label, blank in (("constant", np.full_like(a, 128)), ("black", np.zeros_like(a))):
            bad = compute(blank, a, b, convention=convention)
            wrong = {}
            for name, value in bad.items():
                if name in exempt:
                    continue
                better = value >= good[name] if METRICS.get(name).higher_is_better else value <= good[name]
                if math.isnan(value) or better:
                    wrong[name] = (value, good[name])
            assert not wrong, f"{convention} {label} {blank_label}: (blank, average) {wrong}"
        assert compute(np.full_like(a, 128), a, b, ["Qp"], convention)["Qp"] == 0.0  # was 0.998


#: MEFB metrics/metricsQy.m (Liu's metricYang.m; xingchenzhang/MEFB), full images: the MRI-CT test pairs and
#: MSRS 00004N (visible as rounded BT.601 luma)
QY_MEFB_OCTAVE = {"16009": 0.658924930072, "16010": 0.650145597172, "16011": 0.659788898222}
QY_MEFB_OCTAVE_MSRS = 0.644225240362


@pytest.mark.parametrize("stem", sorted(QY_MEFB_OCTAVE))
def test_qy_drops_flat_windows_like_liu_code(mirror: Path, stem: str) -> None:
    """Liu's code drops the windows where both sources are flat (lambda = 0/0): 20% lower than keeping them
    on these black-background pairs. vifb (MATLAB code family) drops them; fusebench keeps them (lambda 1/2)."""
    fused, a, b = _pair(mirror, stem)
    assert compute(fused, a, b, ["Qy"], "vifb")["Qy"] == pytest.approx(QY_MEFB_OCTAVE[stem], abs=1e-9)
    kept = compute(fused, a, b, ["Qy"], "fusebench")["Qy"]
    assert kept > 1.15 * QY_MEFB_OCTAVE[stem]


def test_qy_on_an_infrared_visible_pair(mirror: Path) -> None:
    ir = read_uint8(mirror / "MSRS/test/ir/00004N.png")
    vi = np.round(read_uint8(mirror / "MSRS/test/vi/00004N.png") @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    fused = ((ir.astype(np.uint16) + vi) // 2).astype(np.uint8)
    # 6e-6 relative: windows flat at a non-zero level, where MATLAB's variance is rounding noise, not 0
    assert compute(fused, ir, vi, ["Qy"], "vifb")["Qy"] == pytest.approx(QY_MEFB_OCTAVE_MSRS, rel=1e-5)


def test_ms_ssim_uses_the_published_weights_at_five_scales(mirror: Path) -> None:
    """msssim.m raises each scale to its published weight (they sum to 1.0001); renormalising them moved
    MS-SSIM by ~1e-4 |log|. fusebench.losses.ms_ssim (float64, same definition) is the independent check."""
    import torch

    from fusebench.losses import ms_ssim

    ir = read_uint8(mirror / "MSRS/test/ir/00004N.png")[100:292, 200:392]  # 192 px: 5 scales, even sizes
    vi = np.round(read_uint8(mirror / "MSRS/test/vi/00004N.png")[100:292, 200:392] @ [0.299, 0.587, 0.114])
    fused = ((ir + vi.astype(np.uint8).astype(np.uint16)) // 2).astype(np.uint8)
    ours = compute(fused, ir, ir, ["MS-SSIM"], "fusebench")["MS-SSIM"]  # both sources ir: MS-SSIM(ir, F)
    as_tensor = lambda x: torch.from_numpy(x.astype(np.float64))[None, None]  # noqa: E731
    expected = float(ms_ssim(as_tensor(ir), as_tensor(fused), data_range=255.0))
    assert ours == pytest.approx(expected, rel=1e-9)

"""fusebench.metrics beyond VIFB: the cddfuse and fusebench conventions, the new metrics, the torch backend.

* cddfuse reproduces MMIF-CDDFuse's utils/Evaluator.py: against values computed with the straightforward
  port benchmarks/reference_evaluator.py (written below with their source) and against the port itself;
* FMI against a per-window port of Haghighat's fmi.m (benchmarks/reference_fmi.py) on small crops;
* properties every metric must have under every convention; torch (CPU) against numpy; batching.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_helpers import synthetic_triplet
from PIL import Image

from fusebench.imageio import read_uint8, to_uint8
from fusebench.metrics import CONVENTIONS, METRICS, compute
from fusebench.metrics.base import luma_uint8

REPO = Path(__file__).resolve().parents[1]
ALL = METRICS.names()
PAPER = ["EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM"]
TORCH_METRICS = [m for m in ALL if METRICS.get(m).has_torch]


def _load(name: str):  # noqa: ANN202
    """A module of benchmarks/ (not a package) by file name."""
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_fusebench_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def port():  # noqa: ANN201
    return _load("reference_evaluator")


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _triplet(mirror: Path, rel: str, port) -> tuple:  # noqa: ANN001
    """(fused uint8 gray, source files as decoded RGB, the evaluator's gray float32 arrays) for one pair,
    the fused image being round((ir + vi) / 2) of the evaluator's gray readings (half to even)."""
    paths = [mirror / rel.format(m) for m in ("ir", "vi")]
    ir, vi = (port.image_read_gray(p) for p in paths)
    fused = np.round((ir + vi) / 2)
    return fused.astype(np.uint8), [_rgb(p) for p in paths], (fused, ir, vi)


# ---------------------------------------------------------------- cddfuse: published-port values

#: The eight paper metrics of three real triplets (sources from the bundle, fused = round((ir + vi) / 2)),
#: computed with benchmarks/reference_evaluator.py (python paper_metrics(fused, ir, vi) on the arrays of
#: image_read_gray), 10 significant digits.
PORT_VALUES = {
    "MSRS/test/{}/00004N.png": {
        "EN": 5.347274117, "SD": 17.29730415, "SF": 3.639889479, "MI": 1.704099859,
        "SCD": 1.152036175, "VIF": 0.6159836129, "Qabf": 0.3313171566, "SSIM": 0.9660286379,
    },
    "TNO/test/{}/01.png": {
        "EN": 6.248375208, "SD": 23.31606293, "SF": 6.672202587, "MI": 1.454989732,
        "SCD": 1.765993297, "VIF": 0.5083120153, "Qabf": 0.3311440647, "SSIM": 1.023162283,
    },
    "RoadScene/all/{}/FLIR_00006.jpg": {
        "EN": 6.242375338, "SD": 21.99065971, "SF": 7.828857422, "MI": 1.667397661,
        "SCD": 1.83396858, "VIF": 0.5392943417, "Qabf": 0.3667392433, "SSIM": 0.7975195946,
    },
}  # fmt: skip

#: relative tolerances against the port: its SSIM runs in float32 (scikit-image on float32 input) and
#: fusebench's VIF filters in float32 with a precision check (docs/metrics.md); the rest is ~1e-7
TOLERANCE = {"SSIM": 2e-5, "VIF": 3e-5}


def _assert_close(ours: dict, reference: dict, label: str) -> None:
    bad = {}
    for name, ref in reference.items():
        tol = TOLERANCE.get(name, 1e-6)
        if not math.isclose(ours[name], ref, rel_tol=tol, abs_tol=1e-9):
            bad[name] = (ours[name], ref, (ours[name] - ref) / ref)
    assert not bad, f"{label}: (fusebench, reference, relative error) {bad}"


@pytest.mark.parametrize("rel", list(PORT_VALUES))
def test_cddfuse_reproduces_the_port_values(mirror: Path, port, rel: str) -> None:  # noqa: ANN001
    """The sources go in as decoded colour files: the convention's reading (rounded OpenCV luma) is tested."""
    fused, sources, _ = _triplet(mirror, rel, port)
    ours = compute(fused, sources[0], sources[1], PAPER, "cddfuse")
    _assert_close(ours, {k: float(f"{v:.10g}") for k, v in PORT_VALUES[rel].items()}, rel)


@pytest.mark.parametrize(
    "rel, crop",
    [
        ("Harvard-MRI-PET/test/{}/25015.png", None),
        ("Harvard-MRI-CT/test/{}/16009.png", None),
        ("MSRS/test/{}/00537D.png", (slice(100, 300), slice(200, 440))),
    ],
)
def test_cddfuse_against_the_port(mirror: Path, port, rel: str, crop: tuple | None) -> None:  # noqa: ANN001
    """Direct comparison with the port (medical pairs: large flat backgrounds, colour PET)."""
    modalities = ("pet", "mri") if "PET" in rel else ("ct", "mri") if "CT" in rel else ("ir", "vi")
    paths = [mirror / rel.format(m) for m in modalities]
    raw = [_rgb(p) for p in paths]
    gray = [port.image_read_gray(p) for p in paths]
    if crop is not None:
        raw, gray = [x[crop] for x in raw], [x[crop] for x in gray]
    fused = np.round((gray[0] + gray[1]) / 2)
    reference = port.paper_metrics(fused, gray[0], gray[1])
    ours = compute(fused.astype(np.uint8), raw[0], raw[1], PAPER, "cddfuse")
    _assert_close(ours, reference, rel)
    # the evaluator's own arrays (float32 on 0-255) give the same values
    _assert_close(compute(fused, gray[0], gray[1], PAPER, "cddfuse"), reference, rel + " (float input)")


def test_cddfuse_reads_colour_as_rounded_opencv_luma(mirror: Path, port) -> None:  # noqa: ANN001
    vi = _rgb(mirror / "MSRS/test/vi/00004N.png")
    gray = luma_uint8(vi, (0.299, 0.587, 0.114), "opencv_float32", "half_even")
    np.testing.assert_array_equal(gray, port.image_read_gray(mirror / "MSRS/test/vi/00004N.png"))
    ir = read_uint8(mirror / "MSRS/test/ir/00004N.png")
    fused = ((vi.astype(np.float64) + ir[..., None]) / 2).astype(np.uint8)
    as_colour = compute(fused, ir, vi, PAPER, "cddfuse")
    f_gray = luma_uint8(fused, (0.299, 0.587, 0.114), "opencv_float32", "half_even").astype(np.uint8)
    assert as_colour == compute(f_gray, ir, gray.astype(np.uint8), PAPER, "cddfuse")


def test_opencv_float_gray_conversion_is_fma() -> None:
    """A tie case: 0.299 * 0 + 0.587 * 0 + 0.114 * 250 = 28.5 exactly in reals; float32 keeps 28.5 and
    np.round gives 28 (half to even)."""
    pixel = np.array([[[0, 0, 250]]], dtype=np.uint8)  # RGB
    assert luma_uint8(pixel, (0.299, 0.587, 0.114), "opencv_float32", "half_even")[0, 0] == 28.0
    assert luma_uint8(pixel, (0.299, 0.587, 0.114), "opencv_float32", False)[0, 0] == 28.5


# ---------------------------------------------------------------- FMI against fmi.m, window by window


@pytest.fixture(scope="module")
def crop(mirror: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ir = read_uint8(mirror / "MSRS/test/ir/00004N.png")[200:224, 300:332]
    vi = read_uint8(mirror / "MSRS/test/vi/00004N.png")[200:224, 300:332]
    vi = luma_uint8(vi, (0.299, 0.587, 0.114), "float64", True).astype(np.uint8)
    fused = ((ir.astype(np.float64) + vi) / 2).round().astype(np.uint8)
    return fused, ir, vi


@pytest.mark.parametrize("name, feature", [("FMI_pixel", "none"), ("FMI_dct", "dct"), ("FMI_w", "wavelet")])
def test_fmi_matches_the_per_window_port(crop: tuple, name: str, feature: str) -> None:
    reference_fmi = _load("reference_fmi")
    fused, ir, vi = crop
    if feature == "wavelet":  # the 62-tap filter makes the feature image large: a smaller crop
        fused, ir, vi = fused[:12, :14], ir[:12, :14], vi[:12, :14]
    expected = reference_fmi.fmi(ir, vi, fused, feature, 3)
    assert compute(fused, ir, vi, [name], "fusebench")[name] == pytest.approx(expected, rel=1e-5)


def test_fmi_flat_windows_and_the_f_window_overwrite(crop: tuple) -> None:
    """Flat windows (equal in B and F, or flat in both with different values) and fmi.m's overwriting of F's
    window while scoring A (B then compared with the normalised window): fusebench agrees with the per-window
    port, with the quirk (``literal``) and without."""
    reference_fmi = _load("reference_fmi")
    _, ir, vi = crop
    vi = vi.copy()
    vi[:8, :10] = 90  # a flat patch shared by F and B ...
    fused = vi.copy()
    fused[8:14, 12:20] = 40  # ... and one flat in F only
    vi[8:14, 12:20] = 70
    conv = CONVENTIONS.get("fusebench").derive("fmi-literal", "test", params={"FMI_pixel": {"literal": True}})
    for convention, literal in ((conv, True), ("fusebench", False)):
        expected = reference_fmi.fmi(ir, vi, fused, "none", 3, literal=literal)
        assert compute(fused, ir, vi, ["FMI_pixel"], convention)["FMI_pixel"] == pytest.approx(expected, rel=1e-5)
    # the quirk scores 0 the B windows equal to F's whose normalised values are one pixel of mass
    assert reference_fmi.fmi(ir, vi, fused, "none", 3, literal=True) < reference_fmi.fmi(
        ir, vi, fused, "none", 3, literal=False
    )


# ---------------------------------------------------------------- properties under every convention


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fused RGB, visible RGB, infrared gray), 48x64."""
    return synthetic_triplet(11, 48, 64)


CONVENTION_NAMES = ["cddfuse", "fusebench", "vifb"]


def _inputs(image: np.ndarray, convention: str) -> np.ndarray:
    """uint8 for every convention (fusebench floats are [0, 1], the others 0-255: uint8 is unambiguous)."""
    return image


#: F = A = B: the known value of each metric (None: no closed form, only finite)
def _identical_value(name: str, convention: str, en_bits: float) -> float | None:
    pair_sum = {"cddfuse": {"SSIM", "VIF", "MI"}, "vifb": {"SSIM", "VIF", "MI"}, "fusebench": {"MI"}}[convention]
    unit = {"cddfuse": math.e, "vifb": math.e, "fusebench": 2.0}[convention]
    ones = {"SSIM", "MS-SSIM", "VIF", "VIFF", "CC", "Qy", "FMI_pixel", "FMI_dct", "FMI_w", "Qcb"}
    zeros = {"MSE", "RMSE", "SCD", "Nabf", "CE", "Qcv"}
    if name in zeros:
        return 0.0
    if name == "PSNR":
        return math.inf
    if name == "MI":
        return 2 * en_bits * math.log(2) / math.log(unit)
    if name in ones:
        return 2.0 if name in pair_sum else 1.0
    return None


@pytest.mark.parametrize("convention", CONVENTION_NAMES)
def test_identical_images(synthetic: tuple, convention: str) -> None:
    _, vi, _ = synthetic
    gray = vi[..., 1]
    scores = compute(gray, gray, gray, convention=convention)
    en_bits = compute(gray, gray, gray, ["EN"], "fusebench")["EN"]
    wrong = {}
    for name, value in scores.items():
        expected = _identical_value(name, convention, en_bits)
        assert not math.isnan(value), name
        if expected is not None and not (
            value == expected or math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-9)
        ):
            wrong[name] = (value, expected)
    assert not wrong, f"{convention}: (value, expected) {wrong}"


@pytest.mark.parametrize("convention", CONVENTION_NAMES)
def test_symmetric_in_the_sources(synthetic: tuple, convention: str) -> None:
    fused, vi, ir = synthetic
    other = np.roll(vi, 9, axis=1)
    for f, a, b in ((fused, vi, ir), (fused[..., 0], other, ir), (fused, ir, other[..., 2])):
        x, y = compute(f, a, b, convention=convention), compute(f, b, a, convention=convention)
        bad = [k for k in x if not (x[k] == y[k] or math.isclose(x[k], y[k], rel_tol=1e-9, abs_tol=1e-12))]
        assert not bad, convention


@pytest.mark.parametrize("convention", CONVENTION_NAMES)
def test_flat_images_give_no_nan(synthetic: tuple, convention: str) -> None:
    fused, vi, ir = synthetic
    zero, grey = np.zeros_like(ir), np.full_like(ir, 128)
    cases = {
        "all flat": (grey, grey, zero),
        "all zero": (zero, zero, zero),
        "flat sources": (fused, grey, zero),
        "flat fused": (grey, vi, ir),
        "identical flat": (grey, grey, grey),
    }
    for label, (f, a, b) in cases.items():
        scores = compute(f, a, b, convention=convention)
        nan = [k for k, v in scores.items() if math.isnan(v)]
        # Liu's Qy (vifb) drops the windows where both sources are flat: none left, NaN as in its code
        expected = ["Qy"] if convention == "vifb" and a.min() == a.max() and b.min() == b.max() else []
        assert nan == expected, (convention, label)


@pytest.mark.parametrize("convention", CONVENTION_NAMES)
def test_gray_equals_rgb_encoded_gray(synthetic: tuple, convention: str) -> None:
    fused, vi, ir = synthetic
    as_rgb = lambda x: np.repeat(x[..., None], 3, axis=2)  # noqa: E731
    f, a = fused[..., 0], vi[..., 2]
    assert compute(f, a, ir, convention=convention) == compute(as_rgb(f), as_rgb(a), as_rgb(ir), convention=convention)
    # a gray fused image with a colour source is used for every channel, like the RGB file holding it
    assert compute(f, vi, ir, convention=convention) == compute(as_rgb(f), vi, as_rgb(ir), convention=convention)


def test_fusebench_float_input_is_the_saved_8bit_image(synthetic: tuple) -> None:
    """fusebench reads floats as [0, 1] and rounds to 8-bit levels: scoring a float output equals scoring the
    PNG it would be saved as (fusebench.imageio.to_uint8)."""
    fused, vi, ir = synthetic
    rng = np.random.default_rng(0)
    output = np.clip(fused / 255.0 + rng.normal(0, 0.002, fused.shape), 0, 1).astype(np.float32)
    names = ["EN", "MI", "SSIM", "VIF", "Qabf", "SD"]
    assert compute(output, vi / 255.0, ir / 255.0, names, "fusebench") == compute(
        to_uint8(output), vi, ir, names, "fusebench"
    )
    with pytest.warns(UserWarning, match="expects values on 0-1"):
        compute(fused.astype(np.float32), vi, ir, ["SD"], "fusebench")


def test_invariances(synthetic: tuple) -> None:
    fused, vi, ir = synthetic
    f, a, b = fused[..., 0].astype(np.float64), vi[..., 1], ir
    plain = CONVENTIONS.get("vifb")  # no rounding: float input kept as is
    base = compute(f, a, b, ["CC", "SCD", "FMI_pixel", "FMI_dct"], plain)
    # correlations are invariant to a positive affine change of F, FMI's windows are min-max normalised
    moved = compute(0.5 * f + 40.0, a, b, ["CC", "FMI_pixel"], plain)
    assert moved["CC"] == pytest.approx(base["CC"], rel=1e-12)
    assert moved["FMI_pixel"] == pytest.approx(base["FMI_pixel"], rel=1e-5)
    # histogram metrics only count: flipping all three images changes nothing
    flip = lambda x: np.ascontiguousarray(x[::-1, ::-1])  # noqa: E731
    for convention in CONVENTION_NAMES:
        names = ["EN", "MI", "SD", "CE", "MSE", "CC", "SCD"]
        x = compute(fused, vi, ir, names, convention)
        y = compute(flip(fused), flip(vi), flip(ir), names, convention)
        assert all(math.isclose(x[k], y[k], rel_tol=1e-9) for k in names), convention
    # the no-reference metrics ignore the sources
    for name in ("EN", "SD", "SF", "AG", "EI"):
        assert compute(fused, vi, ir, [name], "fusebench") == compute(fused, ir, ir, [name], "fusebench")


def test_conventions_differ_where_documented(synthetic: tuple) -> None:
    """Same triplet, three conventions: the documented relations between their parameters hold."""
    fused, vi, ir = synthetic
    g = lambda x: luma_uint8(x, (0.299, 0.587, 0.114), "float64", "half_even").astype(np.uint8)  # noqa: E731
    f, a = g(fused), g(vi)
    cdd = compute(f, a, ir, ["MI", "VIF", "SSIM", "EN", "SF"], "cddfuse")
    fb = compute(f, a, ir, ["MI", "VIF", "SSIM", "EN", "SF"], "fusebench")
    assert cdd["MI"] == pytest.approx(fb["MI"] * math.log(2), rel=1e-12)  # nats vs bits
    assert cdd["VIF"] == pytest.approx(2 * fb["VIF"], rel=1e-12)  # summed vs averaged
    assert cdd["EN"] == pytest.approx(fb["EN"], rel=1e-12)
    h, w = f.shape
    assert cdd["SF"] > fb["SF"] > cdd["SF"] * math.sqrt((h - 1) / h * (w - 1) / w)


# ---------------------------------------------------------------- API: torch backend and batches


@pytest.fixture(scope="module")
def real_crops(mirror: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real colour triplet, 96x128: (fused RGB, visible RGB, infrared gray)."""
    ir = read_uint8(mirror / "MSRS/test/ir/00008N.png")[150:246, 250:378]
    vi = read_uint8(mirror / "MSRS/test/vi/00008N.png")[150:246, 250:378]
    fused = ((vi.astype(np.float64) + ir[..., None]) / 2).round().astype(np.uint8)
    return fused, vi, ir


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0) if x.ndim == 3 else x))


@pytest.mark.parametrize("convention", CONVENTION_NAMES)
def test_torch_cpu_matches_numpy(real_crops: tuple, convention: str) -> None:
    fused, vi, ir = real_crops
    reference = compute(fused, vi, ir, TORCH_METRICS, convention)
    ours = compute(_tensor(fused), _tensor(vi), _tensor(ir), TORCH_METRICS, convention)
    bad = {
        k: (ours[k], reference[k])
        for k in TORCH_METRICS
        if not math.isclose(ours[k], reference[k], rel_tol=1e-4, abs_tol=1e-9)
    }
    assert not bad, f"{convention}: (torch, numpy) {bad}"


def test_torch_batches_and_shared_sources(real_crops: tuple) -> None:
    fused, vi, ir = real_crops
    batch = np.stack([fused, fused[::-1], np.roll(fused, 5, axis=1)])
    per_image = [compute(f, vi, ir, TORCH_METRICS, "fusebench") for f in batch]
    numpy_batch = compute(batch, vi, ir, TORCH_METRICS, "fusebench")  # sources shared by the batch
    fused_t = torch.from_numpy(np.moveaxis(batch, -1, 1).copy())
    torch_batch = compute(fused_t, _tensor(vi)[None], _tensor(ir), TORCH_METRICS, "fusebench")  # (1, 3, H, W) shared
    for name in TORCH_METRICS:
        expected = np.array([row[name] for row in per_image])
        assert numpy_batch[name].shape == (3,)
        np.testing.assert_allclose(numpy_batch[name], expected, rtol=0, atol=0)
        np.testing.assert_allclose(torch_batch[name], expected, rtol=1e-4, atol=1e-9)
    # gray tensors (N, H, W) and (N, 1, H, W) are the same batch
    gray = torch.from_numpy(np.stack([ir, ir[::-1]]))
    x = compute(gray, gray[:1, None], gray[1:, None], ["SSIM", "MI"], "cddfuse", batch=True)
    y = compute(gray[:, None], gray[0], gray[1], ["SSIM", "MI"], "cddfuse", batch=True)
    assert all(np.array_equal(x[k], y[k]) for k in x)


def test_backend_choice_and_fallback(real_crops: tuple) -> None:
    """Metrics without a torch implementation run in numpy inside a torch call; numpy input can use torch."""
    fused, vi, ir = real_crops
    names = ["FMI_dct", "Qy", "SSIM", "VIF"]
    from_torch = compute(_tensor(fused), _tensor(vi), _tensor(ir), names, "fusebench")
    reference = compute(fused, vi, ir, names, "fusebench")
    assert from_torch["FMI_dct"] == reference["FMI_dct"] and from_torch["Qy"] == reference["Qy"]
    forced = compute(fused, vi, ir, names, "fusebench", backend="torch")
    assert all(math.isclose(forced[k], reference[k], rel_tol=1e-4) for k in names)
    with pytest.raises(ValueError, match="backend"):
        compute(fused, vi, ir, names, "fusebench", backend="jax")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_numpy(real_crops: tuple) -> None:
    fused, vi, ir = real_crops
    reference = compute(fused, vi, ir, TORCH_METRICS, "cddfuse")
    ours = compute(*(_tensor(x).cuda() for x in (fused, vi, ir)), TORCH_METRICS, "cddfuse")
    assert all(math.isclose(ours[k], reference[k], rel_tol=1e-4, abs_tol=1e-9) for k in TORCH_METRICS)


# ---------------------------------------------------------------- registry and CLI


def test_every_metric_is_documented() -> None:
    docs = (REPO / "docs" / "metrics.md").read_text()
    for name in ALL:
        metric = METRICS.get(name)
        assert metric.reference and "=" in metric.description, name
        assert f"`{name}`" in docs, f"{name} missing from docs/metrics.md"
    for name in CONVENTIONS.names():
        assert f"`{name}`" in docs


def test_cli_with_the_cddfuse_convention(tmp_path: Path, real_crops: tuple) -> None:
    import pandas as pd
    import typer
    from typer.testing import CliRunner

    from fusebench.metrics.cli import metrics_command

    fused, vi, ir = real_crops
    for folder, image in (("vi", vi), ("ir", ir), ("fused", fused)):
        (tmp_path / folder).mkdir()
        Image.fromarray(image).save(tmp_path / folder / "p01.png")
    app = typer.Typer()
    app.command("metrics")(metrics_command)
    app.command("noop")(lambda: None)
    out = tmp_path / "scores.csv"
    args = ["metrics", "--sources", str(tmp_path / "ir"), str(tmp_path / "vi"), "--fused", str(tmp_path / "fused")]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--convention", "cddfuse", "--metrics", "VIF,SSIM"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, index_col="image")
    expected = compute(fused, ir, vi, ["SSIM", "VIF"], "cddfuse")
    assert table.loc["p01", "VIF"] == pytest.approx(expected["VIF"], rel=1e-9)


@pytest.mark.slow
def test_speed_benchmark_runs(tmp_path: Path) -> None:
    """benchmarks/metrics_speed.py end to end on one triplet (slow: the reference takes ~1.3 s per triplet)."""
    import json
    import subprocess

    out = tmp_path / "speed.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "metrics_speed.py"),
            "--pairs",
            "1",
            "--repeat",
            "1",
            "--fmi-pairs",
            "1",
            "--json",
            str(out),
        ],
        check=True,
    )
    results = json.loads(out.read_text())
    assert set(results["cpu"]) >= set(PAPER) and results["fmi_seconds_per_triplet"]["FMI_pixel"] > 0

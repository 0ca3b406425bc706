"""fusebench.metrics: VIFB's published values, metric properties, folder scoring and the CLI."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from metrics_helpers import synthetic_triplet
from PIL import Image
from typer.testing import CliRunner

from fusebench.imageio import list_images, read_uint8
from fusebench.metrics import (
    CONVENTIONS,
    METRICS,
    VIFB,
    VIFB_NAMES,
    Convention,
    Metric,
    PairingError,
    clear_source_memo,
    compute,
    score_folders,
)
from fusebench.metrics.cli import metrics_command
from fusebench.registry import UnknownNameError

ALL = METRICS.names()
VIFB_METRICS = sorted(VIFB_NAMES.values())  # the 13 metrics VIFB publishes values of
VIFB_TOLERANCE = 1e-3  # relative; values.csv holds 5 significant digits, we reproduce them to ~5e-5


# ---------------------------------------------------------------- VIFB reference values


@pytest.fixture(scope="session")
def vifb_scores(shared: Path) -> pd.DataFrame:
    """Every metric for every (image, method) of values.csv, each triplet decoded and scored once."""
    reference = pd.read_csv(shared / "reference" / "vifb" / "values.csv")
    reference["name"] = reference["metric"].map(VIFB_NAMES)
    assert reference["name"].notna().all(), "values.csv has a metric missing from VIFB_NAMES"
    test = shared / "datasets" / "VIFB" / "test"
    visible, infrared = list_images(test / "vi"), list_images(test / "ir")
    fused = list_images(shared / "reference" / "vifb" / "fused")
    computed = []
    for image, group in reference.groupby("image"):
        vi, ir = read_uint8(visible[image]), read_uint8(infrared[image])  # VIFB calls these img1, img2
        for method in sorted(group["method"].unique()):
            scores = compute(read_uint8(fused[f"{image}_{method}"]), vi, ir, VIFB_METRICS, convention="vifb")
            computed += [(image, method, name, value) for name, value in scores.items()]
    ours = pd.DataFrame(computed, columns=["image", "method", "name", "ours"])
    return reference.merge(ours, on=["image", "method", "name"], how="left", validate="one_to_one")


def test_vifb_names_are_registered() -> None:
    assert set(VIFB_METRICS) <= set(ALL) and len(VIFB_METRICS) == 13


@pytest.mark.parametrize("metric", VIFB_METRICS)
def test_reproduces_vifb(vifb_scores: pd.DataFrame, metric: str) -> None:
    """Every image x method of VIFB's published table, to 1e-3 relative; no row is excluded.

    (VIFB's README notes that 2 of its 25 methods do not reproduce; neither is among the 12 in the bundle.)
    """
    rows = vifb_scores[vifb_scores["name"] == metric]
    assert len(rows) == 21 * 12
    assert rows["ours"].notna().all()
    rel = (rows["ours"] - rows["value"]).abs() / rows["value"].abs()
    worst = rows.assign(rel=rel).sort_values("rel", ascending=False)
    bad = worst[worst["rel"] > VIFB_TOLERANCE]
    assert bad.empty, f"{metric}: {len(bad)} values off by > {VIFB_TOLERANCE:g}:\n{bad.head(10).to_string()}"


# ---------------------------------------------------------------- synthetic images


@pytest.fixture(scope="module")
def triplet() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fused RGB, visible RGB, infrared gray), 40x56."""
    return synthetic_triplet(7, 40, 56)


def _close(a: dict[str, float], b: dict[str, float], rel: float = 1e-9) -> list[str]:
    """Names of the metrics whose values differ (NaN never equals; inf equals inf)."""
    return [k for k in a if not (a[k] == b[k] or math.isclose(a[k], b[k], rel_tol=rel, abs_tol=1e-12))]


def test_identical_images_give_the_known_values(triplet: tuple[np.ndarray, ...]) -> None:
    _, vi, _ = triplet
    for image in (vi, vi[..., 1]):  # colour and gray
        s = compute(image, image, image)
        assert s["SSIM"] == pytest.approx(2.0, abs=1e-9)  # VIFB sums SSIM(A, F) + SSIM(B, F)
        assert s["RMSE"] == 0.0
        assert s["PSNR"] == math.inf
        assert s["CE"] == pytest.approx(0.0, abs=1e-12)
        assert s["Qcv"] == pytest.approx(0.0, abs=1e-9)
        assert s["Qcb"] == pytest.approx(1.0, abs=1e-6)
        # every edge equal: Q_g = Tg (VIFB's equal-gradient quirk), Q_a = Ta / (1 + exp(-22 * 0.2))
        assert s["Qabf"] == pytest.approx(0.9994 * 0.9879 / (1 + math.exp(-22 * 0.2)), rel=1e-6)
        # MI(X, X) = H(X); the images span 0..255 already so VIFB's min-max stretch changes nothing
        en = compute(image, image, image, metrics=["EN"])["EN"]
        assert s["MI"] == pytest.approx(2 * en * math.log(2), rel=1e-9)


def test_qabf_without_the_quirk_is_nearly_one(triplet: tuple[np.ndarray, ...]) -> None:
    _, vi, _ = triplet
    plain = VIFB.derive("plain-qabf", "test", params={"Qabf": {"equal_gradients": "one"}})
    value = compute(vi, vi, vi, metrics=["Qabf"], convention=plain)["Qabf"]
    assert value == pytest.approx(0.9994 / (1 + math.exp(-7.5)) * 0.9879 / (1 + math.exp(-4.4)), rel=1e-6)


@pytest.mark.parametrize("colour", ["FAB", "FA", "F", "AB", "B", ""])
def test_symmetric_in_the_sources(triplet: tuple[np.ndarray, ...], colour: str) -> None:
    """Every mix of colour and gray images (named in ``colour``) scores the same with A and B swapped."""
    fused, vi, _ = triplet
    a = vi if "A" in colour else vi[..., 0]
    b = np.roll(vi, 7, axis=1) if "B" in colour else np.roll(vi[..., 2], 7, axis=0)
    f = fused if "F" in colour else fused[..., 1]
    assert _close(compute(f, a, b), compute(f, b, a)) == []


def test_colour_is_the_mean_of_the_channels(triplet: tuple[np.ndarray, ...]) -> None:
    """VIFB scores RGB per channel (a gray source for every channel) and averages; SF is the exception."""
    fused, vi, ir = triplet
    names = [n for n in ALL if n != "SF"]
    colour = compute(fused, vi, ir, metrics=names)
    channels = [compute(fused[..., c], vi[..., c], ir, metrics=names) for c in range(3)]
    mean = {n: float(np.mean([ch[n] for ch in channels])) for n in names}
    assert _close(colour, mean, 1e-6) == []
    gray = fused[..., 1]  # a gray fused image with a colour source: the same rule
    channels = [compute(gray, vi[..., c], ir, metrics=names) for c in range(3)]
    mean = {n: float(np.mean([ch[n] for ch in channels])) for n in names}
    assert _close(compute(gray, vi, ir, metrics=names), mean, 1e-6) == []
    # VIFB's SF scores the channels placed side by side as one H x 3W image
    side_by_side = np.concatenate([fused[..., c] for c in range(3)], axis=1)
    flat = np.zeros_like(side_by_side)
    sf = compute(side_by_side, flat, flat, metrics=["SF"])["SF"]
    assert compute(fused, vi, ir, metrics=["SF"])["SF"] == pytest.approx(sf, rel=1e-12)


def test_fft_gaussian_filter_equals_direct_correlation() -> None:
    """The FFT route Qcb uses for its 31x31 Gaussians equals zero-padded direct filtering, tiny images too."""
    from fusebench.metrics._ops import correlate_separable, gaussian_1d, gaussian_filters

    rng = np.random.default_rng(3)
    for shape in ((2, 30, 41), (1, 5, 3)):
        x = rng.standard_normal(shape)
        kernels = [gaussian_1d(2.0, 15, normalize=False), gaussian_1d(1.0, 3)]
        for fast, kernel in zip(gaussian_filters(x, kernels), kernels, strict=True):
            np.testing.assert_allclose(fast, correlate_separable(x, kernel), rtol=0, atol=1e-12)


def test_source_memo_changes_nothing(triplet: tuple[np.ndarray, ...]) -> None:
    """Source-only intermediates are remembered across calls with the same sources (content-addressed)."""
    fused, vi, ir = triplet
    other = np.ascontiguousarray(fused[:, ::-1])
    compute(fused, vi, ir)
    remembered = compute(other, vi, ir)
    clear_source_memo()
    assert _close(remembered, compute(other, vi, ir), 0) == []
    changed = vi.copy()
    changed[5, 5] ^= 1  # same shape, different content: a new entry, not a stale one
    fresh = compute(other, changed, ir)
    clear_source_memo()
    assert _close(fresh, compute(other, changed, ir), 0) == []


def test_float_input_on_the_convention_scale(triplet: tuple[np.ndarray, ...]) -> None:
    fused, vi, ir = triplet
    as_float = compute(fused.astype(np.float32), vi.astype(np.float64), ir.astype(np.float32))
    assert _close(compute(fused, vi, ir), as_float, 1e-12) == []
    with pytest.warns(UserWarning, match="expects values on 0-255"):
        compute(fused / 255.0, vi / 255.0, ir / 255.0, metrics=["SD"])


def test_input_errors(triplet: tuple[np.ndarray, ...]) -> None:
    fused, vi, ir = triplet
    with pytest.raises(ValueError, match="differ in size"):
        compute(fused[:-1], vi, ir)
    with pytest.raises(ValueError, match="uint8 or float"):
        compute(fused.astype(np.int32), vi, ir)
    with pytest.raises(UnknownNameError, match="known: AG, CC, CE"):
        compute(fused, vi, ir, metrics=["EN", "VIFX"])
    with pytest.raises(UnknownNameError, match="known: cddfuse, fusebench, vifb"):
        compute(fused, vi, ir, convention="matlab")


def test_compute_returns_registry_order(triplet: tuple[np.ndarray, ...]) -> None:
    fused, vi, ir = triplet
    assert list(compute(fused, vi, ir, metrics=["SSIM", "EN", "AG"])) == ["AG", "EN", "SSIM"]
    assert list(compute(fused, vi, ir)) == ALL


def test_registry_records() -> None:
    for name in ALL:
        metric = METRICS.get(name)
        assert isinstance(metric, Metric) and metric.name == name
        assert metric.reference and "=" in metric.description
        with pytest.raises(dataclasses.FrozenInstanceError):
            metric.name = "x"  # type: ignore[misc]
    assert [m for m in ALL if METRICS.get(m).higher_is_better is False] == ["CE", "MSE", "Nabf", "Qcv", "RMSE"]


@pytest.mark.parametrize("convention", CONVENTIONS.names())
def test_convention_parameters_exist(convention: str) -> None:
    """A typo in a convention's parameter set fails here, not at scoring time."""
    conv = CONVENTIONS.get(convention)
    for metric, params in conv.params.items():
        assert metric in METRICS, f"{convention}: unknown metric {metric}"
        unknown = set(params) - set(METRICS.get(metric).parameters())
        assert not unknown, f"{convention}: {metric} has no parameter(s) {sorted(unknown)}"


def test_luma_convention_scores_gray(triplet: tuple[np.ndarray, ...]) -> None:
    fused, vi, ir = triplet
    luma = VIFB.derive("luma-test", "VIFB metrics on luma", color="luma")
    assert isinstance(luma, Convention) and luma.params["SSIM"] == VIFB.params["SSIM"]
    with pytest.raises(TypeError):
        VIFB.params["SSIM"]["size"] = 7  # type: ignore[index]
    weights = luma.luma_weights
    gray = lambda x: x[..., 0] * weights[0] + x[..., 1] * weights[1] + x[..., 2] * weights[2]  # noqa: E731
    assert _close(compute(fused, vi, ir, convention=luma), compute(gray(fused), gray(vi), ir), 1e-12) == []


# ---------------------------------------------------------------- folders and the CLI


def _write(folder: Path, name: str, image: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(image).save(path)
    return path


@pytest.fixture()
def folders(tmp_path: Path, triplet: tuple[np.ndarray, ...]) -> tuple[Path, Path, Path]:
    fused, vi, ir = triplet
    for stem, shift in (("p01", 0), ("p02", 3)):
        _write(tmp_path / "vi", f"{stem}.png", np.roll(vi, shift, axis=1))
        _write(tmp_path / "ir", f"{stem}.png", np.roll(ir, shift, axis=0))
        _write(tmp_path / "fused", f"{stem}.png", np.roll(fused, shift, axis=1))
    (tmp_path / "fused" / "runtime.csv").write_text("image,seconds\n")  # not an image: ignored
    return tmp_path / "vi", tmp_path / "ir", tmp_path / "fused"


def test_score_folders(folders: tuple[Path, Path, Path]) -> None:
    vi, ir, fused = folders
    table = score_folders(vi, ir, fused, metrics=["SSIM", "EN"])
    assert table.index.name == "image" and list(table.index) == ["p01", "p02"]
    assert list(table.columns) == ["EN", "SSIM"]
    expected = compute(read_uint8(fused / "p02.png"), read_uint8(vi / "p02.png"), read_uint8(ir / "p02.png"))
    assert table.loc["p02", "SSIM"] == expected["SSIM"]
    assert list(score_folders(vi, ir, fused).columns) == ALL


def test_score_folders_gray_file_equals_rgb_encoded_gray(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    vi, ir, fused = folders
    gray = read_uint8(fused / "p01.png")[..., 0]
    _write(tmp_path / "gray", "p01.png", gray)
    _write(tmp_path / "rgbgray", "p01.png", np.repeat(gray[..., None], 3, axis=2))
    for folder in (vi, ir):
        (folder / "p02.png").unlink()
    pd.testing.assert_frame_equal(score_folders(vi, ir, tmp_path / "gray"), score_folders(vi, ir, tmp_path / "rgbgray"))


def test_score_folders_missing_fused_file(folders: tuple[Path, Path, Path]) -> None:
    vi, ir, fused = folders
    (fused / "p02.png").unlink()
    with pytest.raises(PairingError, match=r"missing fused image .*p02"):
        score_folders(vi, ir, fused)


def test_score_folders_unmatched_files(folders: tuple[Path, Path, Path], triplet: tuple[np.ndarray, ...]) -> None:
    vi, ir, fused = folders
    _write(fused, "p03.png", triplet[0])
    with pytest.raises(PairingError, match=r"p03.png has no source pair"):
        score_folders(vi, ir, fused)
    (fused / "p03.png").unlink()
    (ir / "p01.png").unlink()
    with pytest.raises(PairingError, match=r"p01.png has no counterpart"):
        score_folders(vi, ir, fused)


def test_score_folders_size_mismatch(folders: tuple[Path, Path, Path], triplet: tuple[np.ndarray, ...]) -> None:
    vi, ir, fused = folders
    _write(fused, "p02.png", triplet[0][:-2])
    with pytest.raises(ValueError, match=r"p02: sizes differ: .*fused.*p02.png is 38x56"):
        score_folders(vi, ir, fused)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("metrics")(metrics_command)

    @app.command("noop")
    def noop() -> None:  # a second command so that "metrics" must be named, as in fusebench's app
        pass

    return app


def test_cli_writes_the_table(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    vi, ir, fused = folders
    out = tmp_path / "out" / "scores.csv"
    args = ["metrics", "--sources", str(vi), str(ir), "--fused", str(fused), "--out", str(out)]
    result = CliRunner().invoke(_app(), [*args, "--metrics", "SSIM, Qabf,EN"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, index_col="image")
    assert list(table.columns) == ["EN", "Qabf", "SSIM"] and list(table.index) == ["p01", "p02"]
    expected = score_folders(vi, ir, fused, metrics=["EN", "Qabf", "SSIM"])
    np.testing.assert_allclose(table.to_numpy(), expected.to_numpy(), rtol=1e-9)
    assert not [p for p in out.parent.iterdir() if p.name != "scores.csv"]  # no temporary file left behind

    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out, index_col="image").columns) == ALL


def test_cli_errors(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    vi, ir, fused = folders
    out = tmp_path / "scores.csv"
    base = ["metrics", "--sources", str(vi), str(ir), "--fused", str(fused), "--out", str(out)]
    result = CliRunner().invoke(_app(), [*base, "--metrics", "EN,VIFX"])
    assert result.exit_code == 2 and "unknown metric 'VIFX'" in result.output
    result = CliRunner().invoke(_app(), [*base, "--convention", "matlab"])
    assert result.exit_code == 2 and "unknown convention 'matlab'" in result.output and "fusebench" in result.output
    (fused / "p01.png").unlink()
    result = CliRunner().invoke(_app(), base)
    assert result.exit_code == 1 and "p01" in result.output
    result = CliRunner().invoke(_app(), ["metrics", "--sources", str(vi), "--fused", str(fused), "--out", str(out)])
    assert result.exit_code == 2
    assert not out.exists()

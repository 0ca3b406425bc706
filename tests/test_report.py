"""The HTML report, rendered from a small real results tree (TNO and Harvard MRI-CT test pairs)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fusebench.imageio import list_images, read_image, write_png
from fusebench.report import MissingResultError, render_report
from fusebench.report.cli import parse_modalities

DATASETS = {"TNO": ("ir", "vi"), "Harvard-MRI-CT": ("mri", "ct")}
SCRIPT = "<script>"
METHODS = ["average", "max", SCRIPT]
FUSE = {"average": lambda a, b: (a + b) / 2, "max": np.maximum, SCRIPT: np.minimum}
SECONDS = {"average": 0.02, "max": 0.01, SCRIPT: 0.03}


@dataclass(frozen=True)
class _Metric:
    name: str
    higher_is_better: bool
    reference: str
    description: str


@pytest.fixture(scope="module", autouse=True)
def metric_registry():
    """fusebench.metrics.METRICS; a stand-in with the same API only while that module cannot be imported."""
    try:
        from fusebench.metrics import METRICS  # noqa: F401

        yield
        return
    except ImportError:
        pass
    import fusebench.metrics as module
    from fusebench.registry import Registry

    standin = Registry("metric")
    standin.add("EN", _Metric("EN", True, "Roberts et al. 2008", "Shannon entropy of the fused image"))
    standin.add("SD", _Metric("SD", True, "Rao 1997", "Standard deviation (contrast) of the fused image"))
    standin.add("RMSE", _Metric("RMSE", False, "Jagalingam 2015", "Root mean squared error to the sources"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "METRICS", standin, raising=False)
        yield


def _gray(path: Path) -> np.ndarray:
    image = read_image(path)
    return image.mean(axis=2) if image.ndim == 3 else image


def _entropy(image: np.ndarray) -> float:
    hist = np.bincount(np.rint(image * 255).astype(np.int64).ravel(), minlength=256) / image.size
    hist = hist[hist > 0]
    return float(-(hist * np.log2(hist)).sum())


def build_results(root: Path, mirror: Path, pairs: int = 2) -> Path:
    """results/ with sources, fused images, runtime and metrics CSVs for METHODS, and one training log."""
    results = root / "results"
    for dataset, (mod_a, mod_b) in DATASETS.items():
        found = {m: list_images(mirror / dataset / "test" / m) for m in (mod_a, mod_b)}
        names = sorted(set(found[mod_a]) & set(found[mod_b]))[:pairs]
        rows: dict[str, list[dict]] = {m: [] for m in METHODS}
        for name in names:
            for mod in (mod_a, mod_b):
                target = results / "data" / dataset / "test" / mod / found[mod][name].name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(found[mod][name], target)
            a, b = _gray(found[mod_a][name]), _gray(found[mod_b][name])
            for method in METHODS:
                fused = np.clip(FUSE[method](a, b), 0, 1).astype(np.float32)
                write_png(results / "fused" / dataset / method / f"{name}.png", fused)
                rmse = float(np.mean([np.sqrt(np.mean((fused - s) ** 2)) for s in (a, b)]))
                rows[method].append({"image": name, "EN": _entropy(fused), "SD": fused.std() * 255, "RMSE": rmse})
        for method in METHODS:
            runtime = results / "fused" / dataset / method / "runtime.csv"
            pd.DataFrame({"image": names, "seconds": SECONDS[method]}).to_csv(runtime, index=False)
            if method == "max":  # written by `fusebench fuse`; the other methods stand for older results
                (runtime.parent / "fusion.json").write_text('{"method": "max", "protocol": "official"}')
            metrics = results / "metrics" / dataset / f"{method}.csv"
            metrics.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows[method]).to_csv(metrics, index=False)
    log = results / "models" / "max" / "MSRS" / "loss.csv"
    log.parent.mkdir(parents=True)
    steps = np.arange(1, 201)
    pd.DataFrame({"step": steps, "loss": 1 / np.sqrt(steps), "ssim": 0.5 / steps**0.3}).to_csv(log, index=False)
    return results


class _Page(HTMLParser):
    """Collects the marked leaderboard cells and every local asset link of the report."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.marked: dict[tuple[str, str, str], str] = {}  # (dataset, metric, method) -> flag
        self.dataset = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith(("#", "http:", "https:", "data:")):
                self.links.append(a[key])
        if tag == "table" and "data-dataset" in a:
            self.dataset = a["data-dataset"]
        if tag == "td" and "data-metric" in a and self.dataset:
            classes = (a.get("class") or "").split()
            flag = "best" if "best" in classes else "second" if "second" in classes else ""
            self.marked[(self.dataset, a["data-metric"], a["data-method"])] = flag

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.dataset = ""


@pytest.fixture(scope="module")
def report(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    results = build_results(root, mirror)
    out = results / "report" / "index.html"
    render_report(
        results,
        list(DATASETS),
        METHODS,
        out,
        dict(DATASETS),
        title="fusebench <test> report",
        descriptions={SCRIPT: "minimum of the sources & a hostile name"},
    )
    return out


def test_page_names_everything(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    for name in [*DATASETS, "average", "max", "EN", "SD", "RMSE", "ir", "vi", "mri", "ct"]:
        assert name in html
    assert "fusebench &lt;test&gt; report" in html
    assert re.search(r"<dt>test images</dt><dd>4</dd>", html)
    assert "vifb" in html
    assert 'id="training"' in html and "MSRS" in html  # max's loss log (trained on MSRS)
    assert "minimum of the sources &amp; a hostile name" in html


def test_methods_table_shows_the_protocol(report: Path) -> None:
    """The protocol recorded in fusion.json beside the fused images; a dash where none is recorded."""
    html = report.read_text(encoding="utf-8")
    glossary = html[html.index('<section id="methods">') :]
    assert re.search(r">max</td>\s*<td>[^<]*</td>\s*<td>official</td>", glossary)
    assert re.search(r">average</td>\s*<td>[^<]*</td>\s*<td>\u2013</td>", glossary)


def test_method_names_are_escaped(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "&lt;script&gt;" in html
    assert html.count("<script>") == 1  # only the page's own table-sorting script


def test_best_values_are_marked(report: Path) -> None:
    page = _Page()
    page.feed(report.read_text(encoding="utf-8"))
    results = report.parent.parent
    for dataset in DATASETS:
        means = {m: pd.read_csv(results / "metrics" / dataset / f"{m}.csv").mean(numeric_only=True) for m in METHODS}
        for metric, higher in (("EN", True), ("SD", True), ("RMSE", False)):
            values = {m: means[m][metric] for m in METHODS}
            best = (max if higher else min)(values, key=values.get)
            marked = {m for m in METHODS if page.marked[(dataset, metric, m)] == "best"}
            assert marked == {best}, (dataset, metric, values)
            second = sorted(values, key=values.get, reverse=higher)[1]
            assert page.marked[(dataset, metric, second)] == "second"
        assert {m for m in METHODS if page.marked[(dataset, "runtime", m)] == "best"} == {"max"}


def test_assets_exist_and_stay_small(report: Path) -> None:
    page = _Page()
    page.feed(report.read_text(encoding="utf-8"))
    assert page.links
    for link in page.links:
        assert not Path(link).is_absolute() and ".." not in link
        assert (report.parent / link).is_file(), link
    assets = report.parent / "assets"
    thumbs = [p for p in assets.rglob("*.jpg")]
    assert len(thumbs) == 2 * 2 * (2 + len(METHODS))  # datasets x pairs x (sources + methods)
    for thumb in thumbs:
        with Image.open(thumb) as image:
            assert max(image.size) <= 256
    assert len(list(assets.glob("*/metrics.png"))) == len(DATASETS)
    assert (assets / "training" / "max.png").is_file()
    assert sum(p.stat().st_size for p in assets.rglob("*") if p.is_file()) < 5_000_000
    # nothing half-written left behind
    assert not [p.name for p in report.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("missing", "rule"),
    [("metrics/TNO/max.csv", "metrics"), ("fused/Harvard-MRI-CT/average/runtime.csv", "fuse")],
)
def test_missing_input_names_file_and_rule(mirror: Path, tmp_path: Path, missing: str, rule: str) -> None:
    results = build_results(tmp_path, mirror, pairs=1)
    (results / missing).unlink()
    out = results / "report" / "index.html"
    with pytest.raises(MissingResultError) as info:
        render_report(results, list(DATASETS), METHODS, out, dict(DATASETS))
    assert str(results / missing) in str(info.value) and f"rule '{rule}'" in str(info.value)
    assert not out.exists()
    assert not list(out.parent.iterdir())  # the staging folder is cleaned up


def test_missing_fused_image_names_file(mirror: Path, tmp_path: Path) -> None:
    results = build_results(tmp_path, mirror, pairs=1)
    fused = next((results / "fused" / "TNO" / SCRIPT).glob("*.png"))
    fused.unlink()
    with pytest.raises(MissingResultError, match="rule 'fuse'") as info:
        render_report(results, ["TNO"], METHODS, results / "report" / "index.html", dict(DATASETS))
    assert str(fused) in str(info.value)


def test_parse_modalities() -> None:
    assert parse_modalities("TNO=ir,vi; Harvard-MRI-CT=mri,ct;") == {
        "TNO": ("ir", "vi"),
        "Harvard-MRI-CT": ("mri", "ct"),
    }
    assert parse_modalities("") == {}
    with pytest.raises(Exception, match="e.g. TNO=ir,vi"):
        parse_modalities("TNO=ir")


def test_report_command(mirror: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from fusebench.report.cli import report_command

    app = typer.Typer()
    app.command()(report_command)
    results = build_results(tmp_path, mirror, pairs=1)
    out = tmp_path / "site" / "index.html"
    (results / "metrics" / "Harvard-MRI-CT" / "max.csv").unlink()  # max is not run on Harvard-MRI-CT
    args = ["--results", str(results), "--datasets", "TNO,Harvard-MRI-CT", "--methods", "average,max"]
    args += ["--out", str(out), "--modalities", "TNO=vi,ir", "--title", "CLI report", "--examples", "1"]
    args += ["--methods-for", "Harvard-MRI-CT=average"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert "CLI report" in html and "&lt;script&gt;" not in html  # only the methods asked for
    assert html.index("source: vi") < html.index("source: ir")  # the order given
    assert "source: mri" in html  # Harvard-MRI-CT's registered modalities
    assert 'title="not run on this dataset"' in html

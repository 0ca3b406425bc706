"""`fusebench summarize` and the HTML report, from a small real results tree (TNO, MSRS, Harvard MRI-CT pairs
scored by fusebench's metrics under two conventions; see report_helpers)."""

from __future__ import annotations

import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_helpers import CONVENTIONS, DATASETS, RUN_ON, SCRIPT, SECONDS, TITLE, build_results, plan_dict

from fusebench.report import MissingResultError, Plan, PlanError, plan_from_dict, render_report, summarize
from fusebench.report import summary as summary_module
from fusebench.report.render import disagreement_region


@pytest.fixture(scope="module")
def tree(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Plan]:
    results, plan = build_results(tmp_path_factory.mktemp("report"), mirror)
    summarize(results, plan, results / "summary")
    return results, plan


@pytest.fixture(scope="module")
def report(tree: tuple[Path, Plan]) -> Path:
    results, plan = tree
    return render_report(results, plan, results / "summary", results / "report" / "index.html")


@pytest.fixture
def fresh(tree: tuple[Path, Plan], tmp_path: Path) -> Path:
    """A copy of the summarized results tree that a test may break (without its report)."""
    copy = tmp_path / "results"
    shutil.copytree(tree[0], copy, ignore=shutil.ignore_patterns("report"))
    return copy


def _summary(results: Path, name: str) -> pd.DataFrame:
    return summary_module.read_csv(results / "summary" / name)


# --------------------------------------------------------------------------- summary tables


def test_dataset_summary_matches_the_per_image_values(tree: tuple[Path, Plan]) -> None:
    results, _ = tree
    for dataset in DATASETS:
        table = _summary(results, f"{dataset}.csv")
        assert list(dict.fromkeys(table["convention"])) == CONVENTIONS
        for convention in CONVENTIONS:
            part = table[table["convention"] == convention].set_index(["method", "metric"])
            for method in RUN_ON[dataset]:
                sub = ["metrics"] if convention == CONVENTIONS[0] else ["metrics-by-convention", convention]
                values = pd.read_csv(results.joinpath(*sub, dataset, f"{method}.csv")).set_index("image")
                for metric, column in values.items():
                    row = part.loc[(method, metric)]
                    assert row["n"] == len(column)
                    assert row["mean"] == pytest.approx(column.mean())
                    assert row["std"] == pytest.approx(column.std(ddof=1))
                    assert row["median"] == pytest.approx(column.median())
                    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
            for metric, higher in (("EN", True), ("RMSE", False)):
                means = part.xs(metric, level="metric")["mean"]
                best = means.idxmax() if higher else means.idxmin()
                assert part.loc[(best, metric), "rank"] == part.xs(metric, level="metric")["rank"].min()


def test_summary_csvs_carry_the_provenance_header(tree: tuple[Path, Plan]) -> None:
    results, _ = tree
    record = json.loads((results / "summary" / "provenance.json").read_text())
    assert record["metric_convention"] == "vifb" and record["config_sha256"] == "0" * 64
    assert set(record["test_set_sha256"]) == set(DATASETS)
    assert record["weights"]["densefuse-gray"]["git_blob_sha1"] == "50b73dfbbcbcce4198afbce192d1a43a8d3ad826"
    text = (results / "summary" / "TNO.csv").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert f"# git_commit: {record['git_commit']}" in header
    assert f"# test_set_sha256 TNO: {record['test_set_sha256']['TNO']}" in header
    assert not any("MSRS" in line for line in header)  # only this dataset's test set
    assert any(line.startswith("# weights densefuse-gray: ") for line in header)


def test_test_set_hash_changes_with_any_image(tree: tuple[Path, Plan], tmp_path: Path) -> None:
    from fusebench.report.provenance import folder_sha256

    results, _ = tree
    folder = results / "data" / "TNO" / "test"
    before = folder_sha256(folder)
    copy = tmp_path / "test"
    shutil.copytree(folder, copy)
    assert folder_sha256(copy) == before
    image = next((copy / "ir").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert folder_sha256(copy) != before


def test_ranks_and_overall_rank_within_tasks_on_common_datasets(tree: tuple[Path, Plan]) -> None:
    results, _ = tree
    ranks = _summary(results, "ranks.csv")
    assert set(ranks["task"]) == {"ivif", "mif"} and set(ranks["convention"]) == set(CONVENTIONS)
    mean = ranks[(ranks["metric"] == "mean") & (ranks["convention"] == "vifb") & (ranks["dataset"] == "TNO")]
    per_metric = ranks[(ranks["metric"] != "mean") & (ranks["convention"] == "vifb") & (ranks["dataset"] == "TNO")]
    expected = per_metric.groupby("method")["rank"].mean()
    assert mean.set_index("method")["rank"].to_dict() == pytest.approx(expected.to_dict())

    overall = _summary(results, "overall.csv")
    ivif = overall[overall["task"] == "ivif"].set_index("method")
    assert math.isnan(ivif.loc["minimum", "mean_rank"])  # run on TNO only: listed, not ranked
    assert ivif.loc["minimum", "datasets_run"] == 1 and ivif.loc["minimum", "datasets_in_task"] == 2
    ranked = ivif.dropna(subset=["mean_rank"])
    assert set(ranked.index) == {"average", "max", SCRIPT}
    for method, row in ranked.iterrows():
        assert row["mean_rank"] == pytest.approx((row["TNO"] + row["MSRS"]) / 2), method
    assert set(overall[overall["task"] == "mif"]["method"]) == set(RUN_ON["Harvard-MRI-CT"])


def test_significance_and_conventions_tables(tree: tuple[Path, Plan]) -> None:
    results, _ = tree
    significance = _summary(results, "significance.csv").set_index(["dataset", "metric"])
    tno = significance.loc[("TNO", "EN")]
    assert tno["methods"] == 4 and tno["images"] == 2 and 0 <= tno["friedman_p"] <= 1
    assert tno["nemenyi_cd"] == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 2)), abs=5e-3)
    conventions = _summary(results, "conventions.csv")
    assert set(zip(conventions["convention_a"], conventions["convention_b"], strict=True)) == {tuple(CONVENTIONS)}
    for _, row in conventions.iterrows():
        changed = row["changed"] if isinstance(row["changed"], str) else ""
        assert (row["kendall_tau"] == 1) == (changed == ""), row.to_dict()


def test_efficiency_table(tree: tuple[Path, Plan]) -> None:
    results, _ = tree
    efficiency = _summary(results, "efficiency.csv").set_index(["dataset", "method"])
    for dataset in DATASETS:
        for method in RUN_ON[dataset]:
            assert efficiency.loc[(dataset, method), "seconds_per_pair"] == pytest.approx(SECONDS[method])
    script = efficiency.loc[("TNO", SCRIPT)]
    assert script["device"] == "cpu" and script["protocol"] == "official"  # from fusion.json
    assert script["settings"] == "bf16, channels_last"  # its non-default accel settings
    assert pd.isna(efficiency.loc[("TNO", "average"), "settings"])  # defaults (and classical): an empty cell
    assert efficiency.loc[("TNO", "average"), "parameters"] == 0  # classical
    trained = efficiency.loc[("TNO", "max")]
    assert trained["train_steps"] == 200 and trained["train_seconds"] == 12.5  # loss.csv, recipe.json


def test_summarize_names_a_missing_input(tree: tuple[Path, Plan], fresh: Path) -> None:
    results, plan = fresh, tree[1]
    shutil.rmtree(results / "summary")
    missing = results / "metrics-by-convention" / "cddfuse" / "MSRS" / "max.csv"
    missing.unlink()
    with pytest.raises(MissingResultError, match="rule 'convention_metrics'") as info:
        summarize(results, plan, results / "summary")
    assert str(missing) in str(info.value)
    assert not (results / "summary" / "TNO.csv").exists()  # nothing written before the inputs are all there


def test_plan_errors_name_the_key(tmp_path: Path) -> None:
    data = plan_dict()
    data["datasets"][0]["methods"] = ["average", "nope"]
    with pytest.raises(PlanError, match=r"datasets\['TNO'\]\.methods names methods not in 'methods'"):
        plan_from_dict(data, "p.json")
    del data["convention"]
    with pytest.raises(PlanError, match="p.json: missing key 'convention'"):
        plan_from_dict(data, "p.json")


# --------------------------------------------------------------------------- the page


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
        if tag == "table" and "leaderboard" in (a.get("class") or ""):
            self.dataset = a["data-dataset"]
        if tag == "td" and "data-metric" in a and self.dataset:
            classes = (a.get("class") or "").split()
            flag = "best" if "best" in classes else "second" if "second" in classes else ""
            self.marked[(self.dataset, a["data-metric"], a["data-method"])] = flag

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.dataset = ""


def test_page_shows_every_part(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    for name in [*DATASETS, "average", "max", "EN", "SD", "RMSE", "ir", "vi", "mri", "ct"]:
        assert name in html
    assert "Lee&#39;s &lt;fusion&gt; benchmark $(touch hacked) &#34;quoted&#34;" in html  # autoescaped
    assert re.search(r"<dt>test images</dt><dd>6</dd>", html)
    for part in ("Leaderboard", "Significance", "Convention sensitivity", "Per-image table", "Zoomed", "Efficiency"):
        assert part in html, part
    assert 'id="training"' in html and "batch_size = 8" in html  # the recipe read from recipe.json
    assert "options = {&#34;lr&#34;: 0.001}" in html
    assert 'id="provenance"' in html and "50b73dfbbcbcce4198afbce192d1a43a8d3ad826" in html
    assert "minimum (1/2 datasets)" in html  # coverage instead of a rank
    badge = '<span class="protocol" title="test-time protocol and non-default performance settings (fusion.json)">'
    assert badge + "official · bf16, channels_last</span>" in html
    assert "of the sources &amp; co" in html
    # an entry that ran nowhere for want of its weights: listed under "Not run", not in any table
    assert "cddfuse-official did not run on TNO, MSRS: its weights cddfuse-ivf, cddfuse-mif" in html


def test_method_names_are_escaped(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "&lt;script&gt;" in html
    assert html.count("<script>") == 1  # only the page's own table-sorting script


def test_best_values_are_marked(report: Path) -> None:
    page = _Page()
    page.feed(report.read_text(encoding="utf-8"))
    results = report.parent.parent
    for dataset in DATASETS:
        methods = RUN_ON[dataset]
        means = {m: pd.read_csv(results / "metrics" / dataset / f"{m}.csv").mean(numeric_only=True) for m in methods}
        for metric, higher in (("EN", True), ("SD", True), ("Qabf", True)):
            values = {m: means[m][metric] for m in methods}
            best = (max if higher else min)(values, key=values.get)
            assert {m for m in methods if page.marked[(dataset, metric, m)] == "best"} == {best}, (dataset, metric)
            second = sorted(values, key=values.get, reverse=higher)[1]
            assert page.marked[(dataset, metric, second)] == "second"
        assert {m for m in methods if page.marked[(dataset, "runtime", m)] == "best"} == {"max"}


def test_assets_exist_and_stay_small(report: Path) -> None:
    page = _Page()
    page.feed(report.read_text(encoding="utf-8"))
    assert page.links
    for link in page.links:
        assert not Path(link).is_absolute() and ".." not in link
        assert (report.parent / link).is_file(), link
    assets = report.parent / "assets"
    tiles = sum(2 + len(RUN_ON[d]) for d in DATASETS)  # one example pair: sources + methods
    assert len(list(assets.rglob("*.jpg"))) == tiles and len(list(assets.rglob("*__crop.png"))) == tiles
    for thumb in assets.rglob("*.jpg"):
        with Image.open(thumb) as image:
            assert max(image.size) <= 256
    for figure in ("metrics.png", "cd.png", "ranks.png"):
        assert len(list(assets.glob(f"*/{figure}"))) == len(DATASETS), figure
    assert (assets / "training" / "max.png").is_file()
    assert sum(p.stat().st_size for p in assets.rglob("*") if p.is_file()) < 5_000_000
    assert not [p.name for p in report.parent.iterdir() if p.name.startswith(".")]  # nothing half-written


def test_crop_region_is_where_methods_differ() -> None:
    a = np.zeros((64, 80), np.uint8)
    b = a.copy()
    b[40:56, 60:76] = 255
    top, left, side = disagreement_region([a, b], fraction=0.25)
    assert side == 16 and (top, left) == (40, 60)


@pytest.mark.parametrize(
    ("pattern", "rule"),
    [("summary/overall.csv", "summarize"), ("fused/Harvard-MRI-CT/average/*.png", "fuse")],
)
def test_missing_input_names_file_and_rule(tree: tuple[Path, Plan], fresh: Path, pattern: str, rule: str) -> None:
    results, plan = fresh, tree[1]
    missing = sorted(results.glob(pattern))[0]
    missing.unlink()
    out = results / "report" / "index.html"
    with pytest.raises(MissingResultError) as info:
        render_report(results, plan, results / "summary", out)
    assert str(missing) in str(info.value) and f"rule '{rule}'" in str(info.value)
    assert not out.parent.exists() or not list(out.parent.iterdir())  # the staging folder is cleaned up


def test_commands_read_the_plan_file(fresh: Path, tmp_path: Path) -> None:
    import typer
    from markupsafe import escape
    from typer.testing import CliRunner

    from fusebench.report.cli import report_command, summarize_command

    results, summary, page = fresh, tmp_path / "summary", tmp_path / "site" / "index.html"
    plan = tmp_path / "plan.json"
    data = plan_dict()
    data["datasets"] = data["datasets"][:1]  # TNO only: one dataset's figures are enough here
    plan.write_text(json.dumps(data))
    runner = CliRunner()

    def invoke(command, *args: str):  # noqa: ANN202
        app = typer.Typer()
        app.command()(command)
        return runner.invoke(app, ["--plan", str(plan), "--results", str(results), *args])

    result = invoke(summarize_command, "--out", str(summary))
    assert result.exit_code == 0, result.output
    result = invoke(report_command, "--summary", str(summary), "--out", str(page))
    assert result.exit_code == 0, result.output
    assert str(escape(TITLE)) in page.read_text(encoding="utf-8")
    plan = tmp_path / "nope.json"
    result = invoke(summarize_command)
    assert result.exit_code != 0 and "rule 'report_plan'" in result.output

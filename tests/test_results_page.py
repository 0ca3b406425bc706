"""`fusebench results-page`: committed tables and the Markdown page, published numbers side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from fusebench.cli import app
from fusebench.metrics import METRICS
from fusebench.report.summary import read_csv, write_csv

PAPER = {"EN": 6.84, "SD": 45.63, "SF": 8.68, "MI": 1.86, "SCD": 1.52, "VIF": 0.53, "Qabf": 0.32, "SSIM": 0.88}


def fake_summary(folder: Path) -> Path:
    """A summary folder as `fusebench summarize` writes it: TarDAL's official row on TNO-cddfuse25 equals
    CDDFuse's Table 1 except SD (far off), plus an average baseline and a fusebench-protocol row."""
    folder.mkdir(parents=True)
    plan = {
        "title": "paper run",
        "convention": "cddfuse",
        "datasets": [
            {
                "name": "TNO-cddfuse25",
                "task": "ivif",
                "modalities": ["ir", "vi"],
                "methods": ["average", "tardal-official", "tardal-official-fb"],
            }
        ],
        "methods": [
            {"key": "average", "method": "average"},
            {"key": "tardal-official", "method": "tardal"},
            {"key": "tardal-official-fb", "method": "tardal"},
            {"key": "cddfuse-official", "method": "cddfuse"},
        ],
        "skipped": [{"key": "cddfuse-official", "datasets": ["TNO-cddfuse25"], "missing": ["cddfuse-ivf"]}],
    }
    (folder / "plan.json").write_text(json.dumps(plan))
    rows = []
    for key, shift in (("average", -1.0), ("tardal-official", 0.0), ("tardal-official-fb", 0.3)):
        for metric, value in PAPER.items():
            mean = value + shift + (10.0 if key == "tardal-official" and metric == "SD" else 0.0)
            for convention in ("cddfuse", "vifb"):
                rows.append((convention, key, metric, 25, mean, 0.1, mean, mean - 0.1, mean + 0.1, 1.0, 1.0))
    columns = [
        "convention",
        "method",
        "metric",
        "n",
        "mean",
        "std",
        "median",
        "ci_low",
        "ci_high",
        "rank",
        "image_rank",
    ]
    write_csv(pd.DataFrame(rows, columns=columns), folder / "TNO-cddfuse25.csv", ["# fusebench: test"])
    efficiency = pd.DataFrame(
        {
            "dataset": ["TNO-cddfuse25"] * 3,
            "method": ["average", "tardal-official", "tardal-official-fb"],
            "protocol": ["fusebench", "official", "fusebench"],
        }
    )
    write_csv(efficiency, folder / "efficiency.csv", [])
    record = {
        "fusebench": "0",
        "git_commit": "abc",
        "config_sha256": "c0ffee",
        "metric_convention": "cddfuse",
        "date": "2026-12-06 00:00 UTC",
        "test_set_sha256": {"TNO-cddfuse25": "f" * 64},
        "weights": {"tardal-v0": {"repo": "JinyuanLiu-CV/TarDAL"}},
    }
    (folder / "provenance.json").write_text(json.dumps(record))
    return folder


def test_results_page_tables_comparison_and_page(tmp_path: Path) -> None:
    summary = fake_summary(tmp_path / "summary")
    args = [
        "results-page",
        "--plan",
        str(summary / "plan.json"),
        "--summary",
        str(summary),
        "--tables",
        str(tmp_path / "docs" / "results"),
        "--page",
        str(tmp_path / "docs" / "results.md"),
        "--note",
        "FMI and Qp are left to config/paper-all-metrics.yaml",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = read_csv(tmp_path / "docs" / "results" / "TNO-cddfuse25.csv")
    assert list(table.columns) == ["convention", "method", "metric", "n", "mean", "std"] and len(table) == 48
    comparison = read_csv(tmp_path / "docs" / "results" / "published-vs-reproduced.csv")
    # only the official-protocol row is compared, in the convention the paper used
    assert set(comparison["entry"]) == {"tardal-official"} and set(comparison["convention"]) == {"cddfuse"}
    flags = dict(zip(comparison["metric"], comparison["agrees"], strict=True))
    assert not flags.pop("SD") and all(flags.values()) and len(flags) == 7
    page = (tmp_path / "docs" / "results.md").read_text()
    assert "## TNO-cddfuse25 (ivif, 25 pairs)" in page and "| tardal-official | TarDAL | SD | 45.63 | 55.63 |" in page
    assert "commit `abc`" in page and "JinyuanLiu-CV/TarDAL" in page
    unscored = [m for m in METRICS.names() if m not in PAPER]
    assert f"- metrics not scored in this run: {', '.join(unscored)}\n" in page and "FMI_dct" in unscored
    assert "- FMI and Qp are left to config/paper-all-metrics.yaml\n" in page
    # an entry left out for want of its weights is listed, with the weights and how to get them
    assert "## Not run\n\n- cddfuse-official did not run on TNO-cddfuse25: its weights cddfuse-ivf" in page
    assert "`fusebench fetch-weights NAME --out results/weights`" in page
    # generated, not hand-written: the same summary gives the same files
    first = {p: p.read_bytes() for p in (tmp_path / "docs").rglob("*") if p.is_file()}
    assert CliRunner().invoke(app, args).exit_code == 0
    assert first == {p: p.read_bytes() for p in (tmp_path / "docs").rglob("*") if p.is_file()}

"""The workflow side of the report: the plan rule, the summary and convention rules in the DAG, config checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_helpers import REPO, small_config, write_config

from fusebench.report import read_plan

TITLE = 'Lee\'s benchmark $(touch hacked) `touch hacked2` "quoted" ; echo'


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # a workflow run of 20-60 s: the default suite stays under 15 minutes
def test_plan_rule_writes_what_the_run_benchmarks(tmp_path: Path, shared: Path) -> None:
    config = small_config(shared)
    config["report"]["title"] = TITLE
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake("results/summary/plan.json", "--configfile", str(configfile), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.glob("hacked*"))

    plan = read_plan(tmp_path / "results" / "summary" / "plan.json")
    assert plan.title == TITLE
    assert plan.convention == config["metrics"]["convention"]
    assert [d.name for d in plan.datasets] == config["datasets"]
    assert plan.method_keys == list(config["methods"])
    tno, lytro, mri = plan.dataset("TNO"), plan.dataset("MFIFB-lytro"), plan.dataset("Harvard-MRI-CT")
    assert tno.task == "ivif" and tno.modalities == ("ir", "vi")
    assert "tardal-official" in tno.methods and "mffgan-official" not in tno.methods
    assert "mffgan-official" in lytro.methods and "densefuse" not in lytro.methods
    assert tno.conventions == ["cddfuse", "fusebench"] and mri.conventions == []  # metrics.sensitivity
    weights = plan.weights
    assert weights["TNO"]["densefuse-l1"] == {"model": "densefuse/MSRS"}  # weights_of: one trained model
    assert weights["Harvard-MRI-CT"]["refusion-official"] == {"official": ["refusion-mif"]}
    assert "average" not in weights["TNO"]
    assert re.fullmatch(r"[0-9a-f]{64}", plan.config_sha256)


def test_dry_run_schedules_convention_scores_summary_and_report(tmp_path: Path, shared: Path) -> None:
    config = small_config(shared)
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake("-n", "--configfile", str(configfile), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.M))
    plan_methods_on_tno = 7  # config/test.yaml: average, laplacian, densefuse(-l1, -official), refusion, tardal
    assert int(counts["convention_metrics"]) == 2 * plan_methods_on_tno
    assert counts["summarize"] == counts["report"] == counts["report_plan"] == "1"


@pytest.mark.parametrize(
    ("sensitivity", "message"),
    [
        ({"conventions": ["cddfuse"], "datasets": ["MSRS-x"]}, "metrics.sensitivity.datasets: 'MSRS-x'"),
        ({"conventions": ["nope"]}, "nope"),
    ],
)
def test_bad_sensitivity_config_stops_the_run(tmp_path: Path, shared: Path, sensitivity: dict, message: str) -> None:
    config = small_config(shared)
    config["metrics"]["sensitivity"] = sensitivity
    result = snakemake("-n", "--configfile", str(write_config(tmp_path / "c.yaml", config)), cwd=tmp_path)
    assert result.returncode != 0 and message in result.stdout + result.stderr

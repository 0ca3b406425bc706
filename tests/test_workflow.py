"""End-to-end: the real Snakemake workflow on real images from the mirror, small config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_helpers import REPO, small_config, write_config


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1200)


def test_lint_passes() -> None:
    result = snakemake("--lint", "--configfile", str(REPO / "config" / "test.yaml"), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_bad_config_value_fails_with_a_clear_message(tmp_path: Path, shared: Path) -> None:
    bad = small_config(shared)
    bad["training"]["patch"]["min_contrast"] = 2
    result = snakemake("-n", "--configfile", str(write_config(tmp_path / "bad.yaml", bad)), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "min_contrast" in output and "exclusiveMaximum" in output
    typo = small_config(shared, datasets=["TN0"])
    result = snakemake("-n", "--configfile", str(write_config(tmp_path / "typo.yaml", typo)), cwd=tmp_path)
    assert result.returncode != 0 and "unknown dataset 'TN0'" in result.stdout + result.stderr


#: the default run's slice of config/test.yaml: every kind of job (download, patches, training with a shared
#: model, official weights under the official protocol, metrics in three conventions, report) on one dataset; the
#: whole quick-start config (five datasets of four tasks) runs under -m slow
LEAN = {"datasets": ["TNO"], "methods": ["average", "densefuse", "densefuse-l1", "tardal-official"]}


@pytest.mark.parametrize("size", ["lean", pytest.param("quick-start", marks=pytest.mark.slow)])
def test_small_benchmark_end_to_end(size: str, tmp_path: Path, shared: Path) -> None:
    config = small_config(shared)
    if size == "lean":
        config["datasets"] = LEAN["datasets"]
        config["methods"] = {key: config["methods"][key] for key in LEAN["methods"]}
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake("--configfile", str(configfile), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-5000:]

    results = tmp_path / "results"
    html = (results / "report" / "index.html").read_text()
    for dataset in config["datasets"]:
        assert dataset in html
    for method in config["methods"]:
        assert method in html
    # one metrics row per test pair, every configured metric a column, no NaN
    table = pd.read_csv(results / "metrics" / "TNO" / "densefuse.csv")
    assert len(table) == config["max_pairs"]
    assert set(config["metrics"]["names"]) <= set(table.columns)
    assert not table[config["metrics"]["names"]].isna().any().any()
    # training logged every step; the strategy variant reused the same model instead of training again
    steps = config["training"]["defaults"]["steps"]
    assert len(pd.read_csv(results / "models" / "densefuse" / "MSRS" / "loss.csv")) == steps
    assert not (results / "models" / "densefuse-l1").exists()
    meta = yaml.safe_load((results / "patches" / "MSRS_64.json").read_text())
    assert meta["count"] > 0 and meta["size"] == 64

    again = snakemake("-n", "--configfile", str(configfile), cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize("target", ["data", "models"])
def test_dvc_stage_targets_exist(target: str, tmp_path: Path, shared: Path) -> None:
    configfile = write_config(tmp_path / "config.yaml", small_config(shared))
    result = snakemake(target, "-n", "--configfile", str(configfile), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

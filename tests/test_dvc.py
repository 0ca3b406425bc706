"""DVC: `dvc repro` runs the workflow's stages in a fresh git repository; a second repro does nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO, small_config, write_config

pytestmark = pytest.mark.slow


def run(*cmd: str, cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


@pytest.fixture
def project(tmp_path: Path, shared: Path) -> Path:
    """A copy of the tracked project files in a new git repository, set to the small config."""
    project = tmp_path / "project"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (REPO / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, project / name)
    write_config(project / "config" / "ci.yaml", small_config(shared, steps=20, datasets=["TNO", "Harvard-MRI-CT"]))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update(configfile="config/ci.yaml", cores=2)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run("git", "init", "-q", cwd=project)
    run("git", "add", "-A", cwd=project)
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=project)
    return project


def test_dvc_repro_then_nothing_to_do_then_push(project: Path) -> None:
    out = run("dvc", "repro", cwd=project)
    for stage in ("data", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out
    assert (project / "results" / "report" / "index.html").is_file()
    assert (project / "results" / "models" / "densefuse" / "MSRS" / "model.pt").is_file()
    assert (project / "dvc.lock").is_file()

    again = run("dvc", "repro", cwd=project)
    assert "Running stage" not in again
    assert "up to date" in again

    run("dvc", "push", cwd=project)
    assert any((project / "dvc-storage").rglob("*")), "the default local remote received nothing"
    assert "Data and pipelines are up to date" in run("dvc", "status", cwd=project)

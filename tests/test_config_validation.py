"""What the workflow checks when it builds its DAG (`snakemake -n`), before any job runs: method options and trainer
options against the catalogue, `weights_of` targets, options implied by official weights; and that building the DAG
imports no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from workflow_helpers import REPO, small_config, write_config

from fusebench.metrics import METRICS
from fusebench.weights import registry


def dry_run(cwd: Path, configfile: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--configfile", str(configfile)]
    result = subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    return result.returncode, result.stdout + result.stderr


BAD_ENTRIES: list[tuple[str, dict[str, Any], str]] = [
    ("densefuse", {"options": {"stratgy": "l1"}}, "methods.densefuse: densefuse: unknown option(s) stratgy; valid"),
    ("densefuse", {"options": {"strategy": "max"}}, "option strategy must be one of addition, sum, l1, got 'max'"),
    (
        "densefuse",
        {"options": {"strategy": "addition"}, "train": {"options": {"learning_rate": 1e-3}}},
        "unknown option(s) learning_rate; valid options: lr, ssim, ssim_weight",
    ),
    (
        "densefuse-l1",
        {"method": "densefuse", "options": {"strategy": "l1"}, "weights_of": "../../x"},
        "methods.densefuse-l1: weights_of: '../../x' is not another trained entry of this config; trained entries: "
        "densefuse",
    ),
    (
        "densefuse-l1",
        {"method": "densefuse", "options": {"strategy": "l1"}, "weights_of": "densefuse-official"},
        "weights_of: 'densefuse-official' is not another trained entry",
    ),
    (
        "tardal-official",
        {"method": "tardal", "options": {"variant": "tardal"}, "official": "tardal-v0-plus"},
        "methods.tardal-official: tardal: weights tardal-v0-plus are the variant='tardal+' model",
    ),
    ("average", {"train": {"steps": 10}}, "methods.average: `train` is given but this entry is not trained"),
]


@pytest.mark.parametrize(("key", "entry", "message"), BAD_ENTRIES, ids=[m[:30] for _, _, m in BAD_ENTRIES])
def test_bad_method_entries_fail_at_dag_build(
    key: str, entry: dict[str, Any], message: str, tmp_path: Path, shared: Path
) -> None:
    config = small_config(shared)
    config["methods"][key] = entry
    code, output = dry_run(tmp_path, write_config(tmp_path / "bad.yaml", config))
    assert code != 0 and message in output, output[-3000:]


def test_full_dry_run_imports_no_torch_and_trains_with_the_recipe_and_task(tmp_path: Path) -> None:
    """`snakemake -n` on config/config.yaml with a torch that cannot be imported: the DAG builds, and the train jobs
    get each method's paper recipe (CrossFuse: 160,000 steps on 256 px patches) and their train set's task."""
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch imported while building the DAG')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(REPO / "src")])}
    code, output = dry_run(tmp_path, REPO / "config" / "config.yaml", "--printshellcmds", env=env)
    assert code == 0, output[-3000:]
    assert "--method crossfuse --task ivif" in output and "results/patches/MSRS_256.npy" in output
    assert "--steps 160000 --batch-size 8" in output
    assert "--method densefuse --task mif" in output  # trained on Harvard-MRI-CT for the MIF test sets


def test_paper_config_builds_every_official_row_under_both_protocols(tmp_path: Path) -> None:
    """config/paper.yaml: each method with official weights fuses each standard test set of its tasks under the
    official protocol, and again under fusebench's (the -fb rows)."""
    code, output = dry_run(tmp_path, REPO / "config" / "paper.yaml", "--printshellcmds")
    assert code == 0, output[-3000:]
    for method in ("densefuse", "refusion", "tardal", "mffgan", "ifcnn", "u2fusion", "pmgi", "sdnet"):
        assert f"--method {method} " in output
    assert "--out results/fused/MEFB/pmgi-official --official" in output
    assert "--out results/fused/MEFB/pmgi-official-fb --official" in output
    assert output.count("--protocol official") > output.count("--protocol fusebench") > 0


@pytest.mark.slow  # a workflow run of 20-60 s: the default suite stays under 15 minutes
def test_paper_config_runs_large_upstream_weights_only_where_present(tmp_path: Path) -> None:
    """CDDFuse, CrossFuse and SwinFusion (if_weights_present): left out, with a note naming the missing weights,
    where their files are not here; in the DAG once a weights mirror holds them."""
    code, output = dry_run(tmp_path, REPO / "config" / "paper.yaml", "--printshellcmds")
    assert code == 0, output[-3000:]
    assert "--method cddfuse" not in output and "--method swinfusion" not in output
    assert "not running cddfuse-official on TNO, TNO-cddfuse25" in output
    assert "weights cddfuse-ivf, cddfuse-mif are neither in results/weights nor in the weights mirror" in output

    mirror = tmp_path / "weights-mirror"
    for name in ("cddfuse-ivf", "crossfuse-ae-ir", "crossfuse-ae-vi", "crossfuse-fusion"):
        (mirror / registry()[name].local_path).parent.mkdir(parents=True, exist_ok=True)
        (mirror / registry()[name].local_path).touch()  # the DAG looks for the files; fetch_weights verifies them
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["weights_mirror"] = str(mirror)
    code, output = dry_run(tmp_path, write_config(tmp_path / "paper.yaml", config), "--printshellcmds")
    assert code == 0, output[-3000:]
    assert "--out results/fused/TNO/cddfuse-official --official results/weights/cddfuse/CDDFuse_IVF.pth" in output
    assert "--out results/fused/MSRS/crossfuse-official --official" in output
    # CDDFuse's medical model is still missing: the MIF test sets go without it, and the note says so
    assert "Harvard-MRI-CT-cddfuse/cddfuse-official" not in output
    assert "not running cddfuse-official on Harvard-MRI-CT-cddfuse" in output and "weights cddfuse-mif are" in output
    assert "not running crossfuse-official" not in output


def test_if_weights_present_needs_official_weights(tmp_path: Path, shared: Path) -> None:
    config = small_config(shared)
    config["methods"]["densefuse"]["if_weights_present"] = True
    code, output = dry_run(tmp_path, write_config(tmp_path / "bad.yaml", config))
    assert code != 0 and "methods.densefuse: if_weights_present needs `official` weights" in output, output[-3000:]


def test_paper_overlay_scores_all_25_metrics(tmp_path: Path) -> None:
    """config/paper-all-metrics.yaml on top of config/paper.yaml: the same fused folders, scored with the costly
    metrics (FMI, Qp) added."""
    configs = [str(REPO / "config" / f) for f in ("paper.yaml", "paper-all-metrics.yaml")]
    # the later --configfile option (both files, merged in order) replaces the helper's first one
    code, output = dry_run(tmp_path, Path(configs[0]), "--printshellcmds", "--configfile", *configs)
    assert code == 0, output[-3000:]
    commands = [line for line in output.splitlines() if "fusebench metrics " in line]
    assert commands and all("FMI_pixel,FMI_dct,FMI_w" in c and ",Qp" in c for c in commands)
    assert any("--convention fusebench" in c for c in commands)
    names = yaml.safe_load((REPO / "config" / "paper-all-metrics.yaml").read_text())["metrics"]["names"]
    assert sorted(names) == sorted(METRICS.names())

"""`fusebench fuse --protocol official` reproduces the authors' own outputs, colour pairs included.

Data-driven over the data bundle's ``reference/official-outputs/<folder>/outputs.csv``: :data:`RUNS` maps each
(folder, ``weights`` column) to a registered method, its options and the weights file, and every output listed
there is a test case (within 1 grey level, same shape and channel count). A method that is not registered, or
has no ``fuse_official`` yet, is skipped with the reason, so new methods are covered once they register.

Each case lays the pair out like a downloaded dataset split (``<modality>/<file>`` links into the bundle) and
runs the CLI's ``fuse`` command in-process (the same Typer app the ``fusebench`` executable runs); one real
``fusebench`` process per method checks the installed entry point as well. By default a representative subset
runs (per weights file the smallest pair and the smallest pair with a colour source); the rest is
``-m slow``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED
from PIL import Image
from typer.testing import CliRunner
from workflow_helpers import REPO, small_config, write_config

from fusebench.cli import app
from fusebench.datasets import DATASETS
from fusebench.fuse import FUSION_JSON
from fusebench.imageio import read_uint8
from fusebench.methods import METHODS

OUTPUTS = Path("reference") / "official-outputs"
WEIGHTS = Path("weights") / "official"


@dataclass(frozen=True)
class Run:
    """How fusebench runs one official weights file: registered method, options, file under weights/official."""

    method: str
    weights: str
    options: Mapping[str, Any] = field(default_factory=dict)


#: (official-outputs folder, ``weights`` column of its outputs.csv) -> how fusebench runs it. The task comes from
#: the dataset, as in the workflow. New methods: adjust the options here if their weights need any.
RUNS: dict[tuple[str, str], Run] = {
    ("densefuse", "densefuse_gray.model"): Run("densefuse", "densefuse-pytorch/densefuse_gray.model"),
    ("densefuse", "densefuse_rgb.model"): Run("densefuse", "densefuse-pytorch/densefuse_rgb.model"),
    **{
        ("refusion", f"ReFusion_{t}.pth"): Run("refusion", f"refusion/ReFusion_{t}.pth")
        for t in ("IVIF", "MIF", "MFIF", "MEIF")
    },
    **{
        ("tardal", f"{v}.pt"): Run("tardal", f"tardal-v0/{v}.pt", {"variant": v})
        for v in ("tardal", "tardal+", "tardal++")
    },
    ("mffgan", "Lytro"): Run("mffgan", "mffgan-tf/Lytro_model/CGAN.model-19.index"),
    ("mffgan", "MFI-WHU"): Run("mffgan", "mffgan-tf/MFI-WHU_model/CGAN.model-19.index"),
    **{("ifcnn", f"IFCNN-{r}.pth"): Run("ifcnn", f"ifcnn/IFCNN-{r}.pth") for r in ("MAX", "MEAN", "SUM")},
    ("pmgi", "IR_VI"): Run("pmgi", "pmgi-tf/IR_VI/CGAN.model-1.index"),
    ("pmgi", "Medical"): Run("pmgi", "pmgi-tf/Medical/CGAN.model-29.index"),
    ("pmgi", "Multi-exp"): Run("pmgi", "pmgi-tf/Multi-exp/CGAN.model-9.index"),
    ("pmgi", "Multi-focus"): Run("pmgi", "pmgi-tf/Multi-focus/CGAN.model-1.index"),
    ("sdnet", "IR_VIS"): Run("sdnet", "sdnet-tf/IR_VIS/IRVIS.model-10.index"),
    ("sdnet", "Medical"): Run("sdnet", "sdnet-tf/Medical/Medical.model-29.index"),
    ("sdnet", "Multi_exposure"): Run("sdnet", "sdnet-tf/Multi_exposure/MEF.model-11.index"),
    ("sdnet", "Multi_focus"): Run("sdnet", "sdnet-tf/Multi_focus/MFF.model-19.index"),
    ("u2fusion", "model"): Run("u2fusion", "u2fusion-tf/model.ckpt.index"),
}


@dataclass(frozen=True)
class Case:
    folder: str
    row: Mapping[str, str]

    @property
    def run(self) -> Run:
        return RUNS[(self.folder, self.row["weights"])]

    @property
    def area(self) -> int:
        return int(self.row["height"]) * int(self.row["width"])

    @property
    def id(self) -> str:
        return f"{self.folder}/{self.row['output']}"


def _cases() -> list[Case]:
    """The final output of every pair (ReFusion's secondary ``_gray.png`` of colour pairs: see its own test)."""
    found = []
    for outputs in sorted((SHARED / OUTPUTS).glob("*/outputs.csv")):
        with outputs.open(newline="") as f:
            rows = list(csv.DictReader(f))
        finals = {(r["weights"], r["dataset"], r["pair"]): r for r in rows if not r["output"].endswith("_gray.png")}
        found += [Case(outputs.parent.name, row) for row in finals.values()]
    return found


def _has_colour_source(case: Case) -> bool:
    return any(read_uint8(SHARED / "datasets" / case.row[k]).ndim == 3 for k in ("source_a", "source_b"))


def _default_subset(cases: list[Case]) -> set[str]:
    """Per weights file: the smallest pair, and the smallest pair with a colour source."""
    chosen: set[str] = set()
    for key in {(c.folder, c.row["weights"]) for c in cases}:
        group = sorted((c for c in cases if (c.folder, c.row["weights"]) == key), key=lambda c: (c.area, c.id))
        chosen.add(group[0].id)
        colour = next((c for c in group if _has_colour_source(c)), None)
        if colour is not None:
            chosen.add(colour.id)
    return chosen


CASES = _cases()
FAST = _default_subset(CASES)


def _params(cases: list[Case], fast: set[str]) -> list[Any]:
    return [pytest.param(c, id=c.id, marks=() if c.id in fast else pytest.mark.slow) for c in cases]


def _require(case: Case) -> None:
    if (case.folder, case.row["weights"]) not in RUNS:
        pytest.fail(f"official-outputs/{case.folder}: weights {case.row['weights']!r} has no entry in RUNS")
    name = case.run.method
    if name not in METHODS:
        pytest.skip(f"method {name!r} is not registered (yet)")
    if not callable(getattr(METHODS.get(name), "fuse_official", None)):
        pytest.skip(f"method {name!r} has no fuse_official (yet)")


def lay_out_split(case: Case, root: Path) -> Path:
    """A folder laid out like a downloaded split: ``<modality>/<file>`` links to the bundle's sources."""
    split = root / "split"
    for key in ("source_a", "source_b"):
        source = SHARED / "datasets" / case.row[key]
        link = split / source.parent.name / source.name  # <dataset>/<split>/<modality>/<file>
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source)
    return split


def fuse_args(case: Case, split: Path, out: Path) -> list[str]:
    run = case.run
    return [
        "fuse",
        "--method",
        run.method,
        "--dataset",
        case.row["dataset"],
        "--sources",
        str(split),
        "--out",
        str(out),
        "--options",
        json.dumps(dict(run.options)),
        "--official",
        str(SHARED / WEIGHTS / run.weights),
        "--device",
        "cpu",
        "--protocol",
        "official",
    ]


#: (folder, task) -> (max levels, share of values allowed above 1 level): the one documented exception. IFCNN's
#: multi-exposure branch ends with CLAHE, whose 8x8 tiles amplify the network's float noise (about 2e-6 against the
#: official .npy): a pixel crossing a rounding boundary shifts a whole tile's mapping (docs/methods/ifcnn.md)
TOLERANCE_EXCEPTIONS = {("ifcnn", "mef"): (3, 0.03)}


def check_output(case: Case, out: Path) -> None:
    ours = np.asarray(Image.open(out / f"{case.row['pair']}.png"))
    ref = np.asarray(Image.open(SHARED / OUTPUTS / case.folder / case.row["output"]))
    assert ours.shape == ref.shape, f"shape {ours.shape}, official {ref.shape}"
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    print(f"\n{case.id}: max {int(diff.max())} levels, {float((diff > 0).mean()):.4%} of values differ")
    task = DATASETS.get(case.row["dataset"]).task
    levels, share = TOLERANCE_EXCEPTIONS.get((case.folder, task), (1, 0.0))
    assert int(diff.max()) <= levels, f"{case.id}: differs by up to {int(diff.max())} grey levels"
    assert float((diff > 1).mean()) <= share, f"{case.id}: {float((diff > 1).mean()):.4%} of values beyond 1 level"


@pytest.mark.parametrize("case", _params(CASES, FAST))
def test_cli_official_protocol_reproduces_official_output(shared: Path, tmp_path: Path, case: Case) -> None:
    _require(case)
    out = tmp_path / "fused"
    result = CliRunner().invoke(app, fuse_args(case, lay_out_split(case, tmp_path), out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    check_output(case, out)
    record = json.loads((out / FUSION_JSON).read_text())
    assert record["method"] == case.run.method and record["protocol"] == "official"
    assert record["weights"][0]["file"] == Path(case.run.weights).name
    assert all(len(w["sha256"]) == 64 for w in record["weights"])


def _one_per_folder(cases: list[Case]) -> list[Case]:
    """The smallest output of each official-outputs folder (one folder per method)."""
    smallest: dict[str, Case] = {}
    for case in sorted(cases, key=lambda c: (c.area, c.id)):
        smallest.setdefault(case.folder, case)
    return list(smallest.values())


PER_METHOD = _one_per_folder(CASES)


@pytest.mark.parametrize("case", _params(PER_METHOD, {c.id for c in PER_METHOD if c.folder == "densefuse"}))
def test_fusebench_executable_official_protocol(shared: Path, tmp_path: Path, case: Case) -> None:
    """One real ``fusebench fuse --protocol official`` process per method."""
    _require(case)
    out = tmp_path / "fused"
    done = subprocess.run(["fusebench", *fuse_args(case, lay_out_split(case, tmp_path), out)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    check_output(case, out)


# ------------------------------------------------------------------------------ the other outputs and errors
def test_refusion_grey_outputs_of_colour_pairs(shared: Path) -> None:
    """ReFusion's script also writes the fused luminance of colour pairs (``<pair>_gray.png``): the same procedure
    gives it (fast: the smallest such pair per weights file; all of them are in ``-m slow`` through the RGB)."""
    from fusebench.methods import create

    with (shared / OUTPUTS / "refusion" / "outputs.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["output"].endswith("_gray.png")]
    assert rows
    by_weights: dict[str, dict[str, str]] = {}
    for row in sorted(rows, key=lambda r: int(r["height"]) * int(r["width"])):
        by_weights.setdefault(row["weights"], row)
    for row in by_weights.values():
        run = RUNS[("refusion", row["weights"])]
        method = create("refusion", task=_task(row["dataset"]))
        method.load_official(shared / WEIGHTS / run.weights)  # type: ignore[attr-defined]
        split = {Path(row[k]).parent.name: shared / "datasets" / row[k] for k in ("source_a", "source_b")}
        a, b = (split[m] for m in _modalities(row["dataset"]))
        gray, rgb = method.official_outputs(a, b)  # type: ignore[attr-defined]
        ref = np.asarray(Image.open(shared / OUTPUTS / "refusion" / row["output"]))
        assert rgb is not None and gray.shape == ref.shape
        assert int(np.abs(gray.astype(np.int16) - ref).max()) <= 1, row["output"]


def _task(dataset: str) -> str:
    from fusebench.datasets import DATASETS

    return DATASETS.get(dataset).task


def _modalities(dataset: str) -> tuple[str, str]:
    from fusebench.datasets import DATASETS

    a, b = DATASETS.get(dataset).modalities
    return a, b


def _tiny_split(root: Path) -> Path:
    for modality, value in (("ir", 40), ("vi", 200)):
        (root / modality).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(root / modality / "p.png")
    return root


def test_official_protocol_refuses_a_method_without_the_procedure(tmp_path: Path) -> None:
    split = _tiny_split(tmp_path / "split")
    args = ["fuse", "--method", "average", "--dataset", "TNO", "--sources", str(split), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--protocol", "official"])
    assert result.exit_code != 0
    assert "no official test-time procedure" in result.output and "protocol fusebench" in result.output
    assert not (tmp_path / "o").exists()


def test_official_protocol_needs_official_weights(tmp_path: Path) -> None:
    split = _tiny_split(tmp_path / "split")
    args = ["fuse", "--method", "densefuse", "--dataset", "TNO", "--sources", str(split), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--protocol", "official", "--weights", str(tmp_path / "model.pt")])
    assert result.exit_code != 0 and "authors' weights" in result.output
    result = CliRunner().invoke(app, [*args, "--protocol", "unknown"])
    assert result.exit_code != 0 and "unknown protocol" in result.output


def test_fusebench_protocol_writes_fusion_json(tmp_path: Path) -> None:
    split = _tiny_split(tmp_path / "split")
    out = tmp_path / "o"
    args = ["fuse", "--method", "average", "--dataset", "TNO", "--sources", str(split), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / FUSION_JSON).read_text())
    assert record.pop("device").startswith("cpu (")  # where it ran, for the report's efficiency table
    assert record == {"method": "average", "options": {}, "task": "ivif", "protocol": "fusebench", "weights": []}
    assert np.asarray(Image.open(out / "p.png")).tolist() == np.full((8, 8), 120).tolist()


# ------------------------------------------------------------------------------------------------ workflow
def _snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # a workflow run of 20-60 s: the default suite stays under 15 minutes
def test_workflow_passes_each_entrys_protocol(tmp_path: Path, shared: Path) -> None:
    """`protocol:` of a config entry reaches `fusebench fuse --protocol` (quoted), default fusebench; an entry
    with protocol official but no official weights, or a method without the procedure, fails at `snakemake -n`."""
    config = small_config(shared, datasets=["TNO"])
    config["methods"] = {
        "tardal-official": {"method": "tardal", "official": "tardal-v0", "protocol": "official"},
        "average": {},
    }
    result = _snakemake("-n", "-p", "--configfile", str(write_config(tmp_path / "c.yaml", config)), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    commands = [line for line in output.splitlines() if "fusebench fuse " in line]
    assert any("tardal" in c and "--protocol official" in c for c in commands), commands
    assert any("average" in c and "--protocol fusebench" in c for c in commands), commands
    for entry, message in (
        ({"method": "tardal", "protocol": "official"}, "'official' is a required property"),
        ({"method": "average", "official": "tardal-v0", "protocol": "official"}, "no official test-time procedure"),
    ):
        config["methods"] = {"bad": entry}
        result = _snakemake("-n", "--configfile", str(write_config(tmp_path / "bad.yaml", config)), cwd=tmp_path)
        assert result.returncode != 0 and message in result.stdout + result.stderr, result.stderr[-2000:]

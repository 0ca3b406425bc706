"""``fusebench metrics --backend numpy|torch --device cpu``: both backends through the command line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from fusebench.cli import app
from fusebench.imageio import read_uint8
from fusebench.metrics import METRICS

TORCH_METRICS = [m for m in METRICS.names() if METRICS.get(m).has_torch]


@pytest.fixture(scope="module")
def folders(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two MSRS pairs (gray infrared, colour visible; 120x160 crops) and their average as the fused image."""
    root = tmp_path_factory.mktemp("cli_metrics")
    out = {name: root / name for name in ("ir", "vi", "fused")}
    for folder in out.values():
        folder.mkdir()
    for stem in ("00004N", "00008N"):
        ir = read_uint8(mirror / f"MSRS/test/ir/{stem}.png")[180:300, 240:400]
        vi = read_uint8(mirror / f"MSRS/test/vi/{stem}.png")[180:300, 240:400]
        Image.fromarray(ir).save(out["ir"] / f"{stem}.png")
        Image.fromarray(vi).save(out["vi"] / f"{stem}.png")
        Image.fromarray(((ir[..., None].astype(np.uint16) + vi) // 2).astype(np.uint8)).save(
            out["fused"] / f"{stem}.png"
        )
    return out


def _score(folders: dict[str, Path], out: Path, convention: str, *backend: str) -> pd.DataFrame:
    names = ",".join([*TORCH_METRICS, "Qy"])  # Qy has no torch twin: it runs in numpy under --backend torch
    args = ["metrics", "--sources", str(folders["ir"]), str(folders["vi"]), "--fused", str(folders["fused"])]
    result = CliRunner().invoke(
        app, [*args, "--out", str(out), "--convention", convention, "--metrics", names, *backend]
    )
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, index_col="image")


@pytest.mark.parametrize("convention", ["fusebench", "vifb", "cddfuse"])
def test_torch_cpu_and_numpy_agree_through_the_cli(folders: dict[str, Path], tmp_path: Path, convention: str) -> None:
    numpy = _score(folders, tmp_path / "numpy.csv", convention, "--backend", "numpy")
    torch = _score(folders, tmp_path / "torch.csv", convention, "--backend", "torch", "--device", "cpu")
    assert list(torch.columns) == list(numpy.columns) and len(torch) == 2
    np.testing.assert_allclose(torch.to_numpy(), numpy.to_numpy(), rtol=1e-6, atol=1e-9)


def test_backend_options_are_checked(folders: dict[str, Path], tmp_path: Path) -> None:
    args = ["metrics", "--sources", str(folders["ir"]), str(folders["vi"]), "--fused", str(folders["fused"])]
    args += ["--out", str(tmp_path / "x.csv"), "--metrics", "EN"]
    wrong = CliRunner().invoke(app, [*args, "--backend", "jax"])
    assert wrong.exit_code == 2 and "must be numpy or torch" in wrong.output
    device_without_torch = CliRunner().invoke(app, [*args, "--device", "cuda"])
    assert device_without_torch.exit_code == 2 and "--backend torch only" in device_without_torch.output


def test_torch_twins_are_checked_against_the_numpy_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch implementation whose keyword parameters drift from its numpy metric's is refused at import."""
    from fusebench.metrics import base

    base.check_torch_twins()  # the registered ones agree
    twins = dict(base.TORCH_IMPLEMENTATIONS)
    twins["EN"] = lambda images, *, log_base=math.e: None  # another default
    monkeypatch.setattr(base, "TORCH_IMPLEMENTATIONS", twins)
    with pytest.raises(TypeError, match=r"EN: torch \{'log_base': 2.718.*\} != numpy \{'log_base': 2.0\}"):
        base.check_torch_twins()

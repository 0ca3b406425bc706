"""The CPU settings of the network commands: huge pages and freed-memory reuse (values unchanged), thread count
from the rule's ``threads``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fusebench.cli import app
from fusebench.cpu import set_threads, use_fast_cpu_memory
from fusebench.fuse import FUSION_JSON


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """Restores torch's thread count after a test that changes it (the rest of the session runs with it)."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_huge_pages_are_the_default_but_the_users_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    use_fast_cpu_memory()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    use_fast_cpu_memory()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"


def test_zero_threads_leaves_torchs_default(torch_threads: int) -> None:
    set_threads(0)
    assert torch.get_num_threads() == torch_threads
    set_threads(1)
    assert torch.get_num_threads() == 1


def test_fuse_runs_with_the_threads_it_is_given(shared: Path, tmp_path: Path, torch_threads: int) -> None:
    """`fusebench fuse --threads 1` (what the workflow's fuse rule passes) runs torch on one thread, and
    fusion.json says so next to the run times."""
    pair = shared / "datasets" / "TNO" / "test"
    sources = tmp_path / "test"
    for modality in ("ir", "vi"):
        (sources / modality).mkdir(parents=True)
        first = sorted((pair / modality).iterdir())[0]
        (sources / modality / first.name).symlink_to(first)
    weights = shared / "weights" / "official" / "densefuse-pytorch" / "densefuse_gray.model"
    out = tmp_path / "fused"
    args = ["fuse", "--method", "densefuse", "--dataset", "TNO", "--sources", str(sources), "--out", str(out),
            "--official", str(weights), "--device", "cpu", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / FUSION_JSON).read_text())["device"] == "cpu (1 threads)"

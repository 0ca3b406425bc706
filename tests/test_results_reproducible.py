"""The published results stay reproducible: one dataset x method slice of docs/results, rerun from scratch through
the CLI (download, official-protocol fusion, metrics), equals the committed table to its printed digits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from fusebench.cli import app
from fusebench.report.stats import describe
from fusebench.report.summary import metric_directions, read_csv

REPO = Path(__file__).resolve().parents[1]
DATASET, ENTRY, METHOD = "TNO-cddfuse25", "sdnet-official", "sdnet"
WEIGHTS = "weights/official/sdnet-tf/IR_VIS/IRVIS.model-10.index"


def run(*args: str) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_committed_sdnet_slice_is_reproduced_exactly(shared: Path, tmp_path: Path) -> None:
    committed = read_csv(REPO / "docs" / "results" / f"{DATASET}.csv")
    committed = committed[(committed["method"] == ENTRY) & (committed["convention"] == "cddfuse")]
    metrics = sorted(committed["metric"])
    split, fused = tmp_path / "test", tmp_path / "fused"
    run("download", "--dataset", DATASET, "--split", "test", "--out", split, "--mirror", shared / "datasets")
    run("fuse", "--method", METHOD, "--dataset", DATASET, "--sources", split, "--out", fused,
        "--official", shared / WEIGHTS, "--protocol", "official", "--device", "cpu")  # fmt: skip
    scores = tmp_path / "scores.csv"
    run("metrics", "--convention", "cddfuse", "--metrics", ",".join(metrics), "--sources", split / "ir",
        split / "vi", "--fused", fused, "--out", scores)  # fmt: skip
    table = pd.read_csv(scores, dtype={"image": str}).set_index("image")
    ours = describe({ENTRY: table}, metric_directions(metrics)).set_index("metric")
    for row in committed.itertuples():
        for column in ("n", "mean", "std"):
            value = float(f"{ours.loc[row.metric, column]:.10g}")  # the committed tables' precision
            assert value == getattr(row, column), (row.metric, column, value, getattr(row, column))

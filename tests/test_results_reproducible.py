"""The published results stay reproducible: one dataset x method slice of docs/results, rerun from scratch through
the CLI (download, official-protocol fusion, metrics), equals the committed table: n exactly, mean and std to a
relative 1e-5. Not to the last printed digit: the network runs in float32, and on another CPU (AVX2 vs AVX-512
kernels, another thread count) a convolution can round a few pixels of the 8-bit fused image the other way. One
such pixel moves a 25-image mean in the 8th digit (seen in CI: AG 4.63793885 vs 4.637938678), hundreds stay below
1e-5; a real change (another procedure, weights or metric) moves the means in the 3rd digit or earlier."""

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
def test_committed_sdnet_slice_is_reproduced(shared: Path, tmp_path: Path) -> None:
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
        assert ours.loc[row.metric, "n"] == row.n, (row.metric, ours.loc[row.metric, "n"], row.n)
        for column in ("mean", "std"):
            value, expected = ours.loc[row.metric, column], getattr(row, column)
            assert value == pytest.approx(expected, rel=1e-5, abs=1e-9), (row.metric, column, value, expected)

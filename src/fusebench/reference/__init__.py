"""Published numbers of fusion methods on the standard test sets, and their comparison with fusebench's.

``published.csv`` holds only numbers that can be pointed to: each row names its source (paper table or README,
with the repository commit) and the exact place in it. ``method`` is the fusebench method name, or empty for a
method fusebench does not implement (kept so that a table can be read whole). ``weights_task`` is the task the
scored model was trained for (CDDFuse's medical tables score IVIF-trained and MIF-trained models separately).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

PUBLISHED_CSV = "published.csv"
COLUMNS = [
    "method",
    "published_name",
    "dataset",
    "weights_task",
    "metric",
    "value",
    "convention",
    "test_set",
    "source",
    "location",
]
#: published values carry two decimals; a reproduction within this relative distance (or the rounding step) agrees
RELATIVE_TOLERANCE = 0.05
ROUNDING = 0.005

#: why a reproduction on the bundled data can differ from a published number, by dataset
KNOWN_GAPS = {
    "MSRS": "different test subset: the paper scores all 361 MSRS test pairs, fusebench's bundled MSRS has 22",
}


def published() -> pd.DataFrame:
    """Every published number (one row per method, dataset, weights task and metric), as in published.csv."""
    with resources.files(__package__).joinpath(PUBLISHED_CSV).open() as f:
        table = pd.read_csv(f, dtype={"method": str}, keep_default_na=False)
    if list(table.columns) != COLUMNS:
        raise ValueError(f"{PUBLISHED_CSV}: columns must be {COLUMNS}, got {list(table.columns)}")
    table["value"] = table["value"].astype(float)
    return table


def compare(reproduced: pd.DataFrame, convention: str = "cddfuse") -> pd.DataFrame:
    """Published next to reproduced values, for the published rows of fusebench methods in ``convention``.

    ``reproduced`` has columns method, dataset, weights_task, metric and mean (fusebench's value). The result
    has one row per published number that was reproduced: published, reproduced, difference, relative
    difference, ``agrees`` (within RELATIVE_TOLERANCE or the rounding step) and ``note`` (a known reason for a
    gap, and the source of the published number).
    """
    pub = published()
    pub = pub[(pub["method"] != "") & (pub["convention"] == convention)]
    merged = pub.merge(
        reproduced[["method", "dataset", "weights_task", "metric", "mean"]],
        on=["method", "dataset", "weights_task", "metric"],
        how="inner",
    )
    merged = merged.rename(columns={"value": "published", "mean": "reproduced"})
    merged["difference"] = merged["reproduced"] - merged["published"]
    merged["relative"] = merged["difference"] / merged["published"].abs().where(merged["published"] != 0, np.nan)
    limit = np.maximum(RELATIVE_TOLERANCE * merged["published"].abs(), ROUNDING)
    merged["agrees"] = merged["difference"].abs() <= limit
    merged["note"] = merged["dataset"].map(KNOWN_GAPS).fillna("")
    columns = [
        "method",
        "published_name",
        "dataset",
        "weights_task",
        "metric",
        "published",
        "reproduced",
        "difference",
        "relative",
        "agrees",
        "note",
        "source",
        "location",
    ]
    return merged[columns].reset_index(drop=True)

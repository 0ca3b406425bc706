"""Published numbers: well-formed, tied to registered datasets, and compared with a stated tolerance."""

from __future__ import annotations

import pandas as pd

from fusebench.datasets import DATASETS
from fusebench.reference import compare, published


def test_published_rows_name_registered_datasets_and_a_source():
    table = published()
    assert len(table) > 400
    assert set(table["dataset"]) <= set(DATASETS.names())
    assert (table["source"].str.len() > 20).all() and (table["location"].str.len() > 10).all()
    assert set(table["weights_task"]) <= {"ivif", "mif", "mff", "mef"}
    # one number per (source, method, dataset, weights task, metric, place in the source)
    key = ["source", "published_name", "dataset", "weights_task", "metric", "location"]
    assert not table.duplicated(key).any()


def test_published_values_transcribed_from_cddfuse_table_1():
    rows = published()
    tno = rows[(rows["dataset"] == "TNO-cddfuse25") & (rows["published_name"] == "TarDAL")]
    assert dict(zip(tno["metric"], tno["value"], strict=True)) == {
        "EN": 6.84,
        "SD": 45.63,
        "SF": 8.68,
        "MI": 1.86,
        "SCD": 1.52,
        "VIF": 0.53,
        "Qabf": 0.32,
        "SSIM": 0.88,
    }
    readme = rows[(rows["dataset"] == "Harvard-MRI-SPECT-cddfuse") & rows["source"].str.contains("printed output")]
    assert sorted(readme.loc[readme["metric"] == "SD", "value"]) == [58.31, 71.81]


def test_compare_flags_disagreement_and_explains_known_gaps():
    reproduced = pd.DataFrame(
        [
            ("tardal", "TNO-cddfuse25", "ivif", "EN", 6.85),  # within rounding and 5%
            ("tardal", "TNO-cddfuse25", "ivif", "SD", 30.0),  # far off
            ("tardal", "MSRS", "ivif", "EN", 6.0),
            ("tardal", "TNO-cddfuse25", "mif", "EN", 1.0),  # no published number for MIF weights on TNO
        ],
        columns=["method", "dataset", "weights_task", "metric", "mean"],
    )
    table = compare(reproduced).set_index(["dataset", "metric"])
    assert len(table) == 3
    assert bool(table.loc[("TNO-cddfuse25", "EN"), "agrees"])
    assert not bool(table.loc[("TNO-cddfuse25", "SD"), "agrees"])
    assert table.loc[("TNO-cddfuse25", "SD"), "difference"] == 30.0 - 45.63
    assert "361" in table.loc[("MSRS", "EN"), "note"]

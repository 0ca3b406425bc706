"""The report's statistics against published values and textbook formulas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fusebench.report import stats

# Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7, Table 5(a):
# critical values of the two-tailed Nemenyi test for k = 2..10 methods.
NEMENYI_Q = {
    0.05: [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164],
    0.10: [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920],
}


@pytest.mark.parametrize("alpha", sorted(NEMENYI_Q))
def test_nemenyi_critical_values_match_demsar(alpha: float) -> None:
    for k, published in zip(range(2, 11), NEMENYI_Q[alpha], strict=True):
        assert stats.nemenyi_q(k, alpha) == pytest.approx(published, abs=1.5e-3), k  # the table has 3 decimals


def test_critical_difference_of_demsars_example() -> None:
    # Demšar's worked example: 4 classifiers on 14 data sets, CD = 2.569 sqrt(4 * 5 / (6 * 14)) = 1.25
    assert stats.critical_difference(4, 14) == pytest.approx(1.25, abs=5e-3)


def test_friedman_statistic_is_the_textbook_formula() -> None:
    rng = np.random.default_rng(3)
    table = pd.DataFrame(rng.normal(size=(12, 5)), columns=list("abcde"))  # continuous: no ties
    n, k = table.shape
    mean_ranks = table.rank(axis=1).mean(axis=0)
    expected = 12 * n / (k * (k + 1)) * (float((mean_ranks**2).sum()) - k * (k + 1) ** 2 / 4)
    result = stats.friedman(table)
    assert result is not None
    assert result.statistic == pytest.approx(expected)
    assert result.p_value == pytest.approx(sps.chi2.sf(expected, k - 1))
    assert (result.methods, result.images) == (5, 12)
    assert result.cd == pytest.approx(stats.critical_difference(5, 12))


def test_friedman_needs_three_methods_and_complete_images() -> None:
    assert stats.friedman(pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, 1.0]})) is None
    table = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 1.0, np.nan], "c": [0.0, 5.0, 1.0]})
    assert stats.friedman(table).images == 2  # the image with a missing value drops out


def test_tied_groups_are_the_maximal_cliques_within_cd() -> None:
    ranks = {"a": 1.0, "b": 1.5, "c": 2.4, "d": 3.9}
    assert stats.tied_groups(ranks, cd=1.0) == [["a", "b"], ["b", "c"]]
    assert stats.tied_groups(ranks, cd=3.0) == [["a", "b", "c", "d"]]
    assert stats.tied_groups(ranks, cd=0.1) == []


def test_bootstrap_ci_is_reproducible_and_close_to_the_normal_interval() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, size=400)
    low, high = stats.bootstrap_ci(x)
    assert (low, high) == stats.bootstrap_ci(x)  # fixed seed
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert low == pytest.approx(x.mean() - half, rel=5e-3) and high == pytest.approx(x.mean() + half, rel=5e-3)
    assert stats.bootstrap_ci([3.0]) == (3.0, 3.0)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([np.nan]))


def test_kendall_tau() -> None:
    a = {"w": 1, "x": 2, "y": 3, "z": 4}
    assert stats.kendall_tau(a, a) == 1
    assert stats.kendall_tau(a, {m: 5 - r for m, r in a.items()}) == -1
    assert stats.kendall_tau(a, {"w": 2, "x": 1, "y": 3, "z": 4}) == pytest.approx(4 / 6)  # one swapped pair
    assert math.isnan(stats.kendall_tau(a, {"w": 1}))


def test_describe_ranks_means_and_images() -> None:
    tables = {
        "good": pd.DataFrame({"EN": [7.0, 6.0, 8.0], "RMSE": [0.1, 0.2, 0.1]}, index=["i1", "i2", "i3"]),
        "poor": pd.DataFrame({"EN": [5.0, 6.5, 4.0], "RMSE": [0.3, 0.3, np.nan]}, index=["i1", "i2", "i3"]),
    }
    table = stats.describe(tables, {"EN": True, "RMSE": False}).set_index(["method", "metric"])
    assert table.loc[("good", "EN"), "mean"] == pytest.approx(7.0)
    assert table.loc[("good", "EN"), "std"] == pytest.approx(1.0)
    assert table.loc[("poor", "RMSE"), "n"] == 2 and table.loc[("poor", "RMSE"), "median"] == pytest.approx(0.3)
    assert table.loc[("good", "EN"), "rank"] == 1 and table.loc[("good", "RMSE"), "rank"] == 1
    assert table.loc[("good", "EN"), "image_rank"] == pytest.approx(4 / 3)  # loses image i2
    assert table.loc[("good", "EN"), "ci_low"] <= 7.0 <= table.loc[("good", "EN"), "ci_high"]


def test_a_method_run_on_one_dataset_is_not_ranked_first_overall() -> None:
    """Issue 11, item 6: ranks were averaged over different subsets of datasets, so a method run on one easy
    dataset came first. Only methods run on every dataset of the task are ranked, over the same datasets."""
    rows = []
    for dataset, means in {"A": {"x": 1.0, "y": 2.0, "solo": 9.0}, "B": {"x": 3.0, "y": 1.0}}.items():
        rows += [{"dataset": dataset, "method": m, "metric": "EN", "mean": v} for m, v in means.items()]
    (ranking,) = stats.task_rankings(pd.DataFrame(rows), {"A": "ivif", "B": "ivif"}, {"EN": True})
    assert ranking.partial == {"solo": ["A"]}
    assert "solo" not in ranking.overall
    # re-ranked among x and y only: on A y beats x (2 > 1), on B x beats y
    assert ranking.per_dataset == {"x": {"A": 2.0, "B": 1.0}, "y": {"A": 1.0, "B": 2.0}}
    assert ranking.overall == {"x": 1.5, "y": 1.5}

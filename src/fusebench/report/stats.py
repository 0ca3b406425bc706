"""Statistics of the report: per-method summaries, ranks, significance tests, rank agreement.

Plain numpy/pandas/scipy, no I/O. Conventions: rank 1 is best; tied values share the average rank (the
convention of the Friedman test and of Demšar's critical-difference diagrams).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: resamples of the bootstrap CI and its seed: fixed, so the summary is reproducible to the last digit
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
SUMMARY_COLUMNS = ["method", "metric", "n", "mean", "std", "median", "ci_low", "ci_high", "rank", "image_rank"]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    level: float = CONFIDENCE,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of the finite ``values`` (NaN, NaN when none).

    One value gives a zero-width interval: the data cannot say more.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def rank_values(values: pd.Series, higher_is_better: bool) -> pd.Series:
    """Rank 1 = best; ties share the average rank; NaN stays NaN."""
    return values.rank(ascending=not higher_is_better, method="average")


def per_image_ranks(table: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    """``table`` is images x methods; each image (row) ranks the methods. Images with a missing value drop out
    (the Friedman test needs complete blocks)."""
    complete = table.dropna(axis=0, how="any")
    return complete.rank(axis=1, ascending=not higher_is_better, method="average")


def describe(
    tables: Mapping[str, pd.DataFrame], metrics: Mapping[str, bool | None], seed: int = BOOTSTRAP_SEED
) -> pd.DataFrame:
    """One row per (method, metric) with :data:`SUMMARY_COLUMNS`.

    ``tables`` maps method -> per-image table (index image, one column per metric); ``metrics`` maps metric ->
    higher_is_better (None: not ranked). ``rank`` ranks the means; ``image_rank`` is the mean over images of
    the per-image rank (what the Friedman test and the critical-difference diagram use).
    """
    rows = []
    for metric, higher in metrics.items():
        columns = {m: column(t, metric) for m, t in tables.items()}
        means = pd.Series({m: float(c.mean()) if c.notna().any() else math.nan for m, c in columns.items()})
        ranks = rank_values(means, higher) if higher is not None else pd.Series(math.nan, index=means.index)
        image_ranks = (
            per_image_ranks(pd.DataFrame(columns), higher).mean(axis=0)
            if higher is not None
            else pd.Series(dtype=float)
        )
        for m, c in columns.items():
            finite = c.dropna()
            low, high = bootstrap_ci(finite.to_numpy(), seed=seed)
            rows.append(
                {
                    "method": m,
                    "metric": metric,
                    "n": int(finite.size),
                    "mean": means[m],
                    "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
                    "median": float(finite.median()) if finite.size else math.nan,
                    "ci_low": low,
                    "ci_high": high,
                    "rank": float(ranks[m]),
                    "image_rank": float(image_ranks.get(m, math.nan)),
                }
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def column(table: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in table.columns:
        return pd.Series(math.nan, index=table.index, dtype=float)
    return pd.to_numeric(table[metric], errors="coerce").replace([np.inf, -np.inf], np.nan)


# --------------------------------------------------------------------------- significance


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha of the two-tailed Nemenyi test for ``k`` methods: the studentized range
    quantile (infinite degrees of freedom) divided by sqrt(2) (Demšar 2006, Table 5a)."""
    if k < 2:
        raise ValueError(f"the Nemenyi test compares at least 2 methods, got {k}")
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks for ``k`` methods over ``n`` images:
    ``q_alpha * sqrt(k (k + 1) / (6 n))``. Two methods whose mean ranks differ by less are not significantly
    different at level ``alpha``."""
    if n < 1:
        raise ValueError("the critical difference needs at least one image")
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


@dataclass(frozen=True)
class Friedman:
    """Friedman test over images (blocks) of one metric, with the Nemenyi critical difference."""

    methods: int
    images: int
    statistic: float
    p_value: float
    cd: float


def friedman(table: pd.DataFrame, alpha: float = 0.05) -> Friedman | None:
    """Friedman test of ``table`` (images x methods, complete rows only); None with fewer than 3 methods or
    2 complete images (scipy's test is undefined there). All-equal blocks give p = NaN (nothing to test)."""
    complete = table.dropna(axis=0, how="any")
    k, n = complete.shape[1], complete.shape[0]
    if k < 3 or n < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.friedmanchisquare(*(complete[c].to_numpy(dtype=float) for c in complete.columns))
    return Friedman(k, n, float(result.statistic), float(result.pvalue), critical_difference(k, n, alpha))


def tied_groups(mean_ranks: Mapping[str, float], cd: float) -> list[list[str]]:
    """Maximal groups of methods (in rank order) whose mean ranks lie within ``cd`` of each other: the bars of a
    critical-difference diagram. Groups contained in another group are dropped; single methods are not groups."""
    order = sorted((r, m) for m, r in mean_ranks.items() if math.isfinite(r))
    groups: list[list[str]] = []
    last_end = -1
    for i, (r, _) in enumerate(order):
        j = i
        while j + 1 < len(order) and order[j + 1][0] - r < cd:
            j += 1
        if j > i and j > last_end:
            groups.append([m for _, m in order[i : j + 1]])
            last_end = j
    return groups


# --------------------------------------------------------------------------- agreement between rankings


def kendall_tau(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Kendall's tau-b between two rankings of the same methods (NaN with fewer than 2 common, finite ranks
    or when one ranking is constant)."""
    common = [m for m in a if m in b and math.isfinite(a[m]) and math.isfinite(b[m])]
    if len(common) < 2:
        return math.nan
    x, y = [a[m] for m in common], [b[m] for m in common]
    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


# --------------------------------------------------------------------------- ranking across datasets


@dataclass(frozen=True)
class TaskRanking:
    """Overall ranking within one task: only methods run on every dataset of the task are ranked, over those
    datasets, so every ranked method is compared on the same data (others are listed with their coverage)."""

    task: str
    datasets: list[str]
    #: method -> dataset -> mean rank over the metrics among the ranked methods
    per_dataset: dict[str, dict[str, float]]
    overall: dict[str, float]
    #: method -> datasets it ran on, for the methods left unranked
    partial: dict[str, list[str]]


def task_rankings(
    means: pd.DataFrame, tasks: Mapping[str, str], higher_is_better: Mapping[str, bool | None]
) -> list[TaskRanking]:
    """``means`` has columns dataset, method, metric, mean (one convention); ``tasks`` maps dataset -> task.
    Per task, the methods present on all its datasets are re-ranked among themselves per dataset and metric
    (1 = best), averaged over the metrics, then over the datasets."""
    out = []
    for task in dict.fromkeys(tasks.values()):
        datasets = [d for d, t in tasks.items() if t == task]
        part = means[means["dataset"].isin(datasets)]
        coverage = part.groupby("method", sort=False)["dataset"].unique()
        ranked = [m for m, ds in coverage.items() if set(ds) == set(datasets)]
        partial = {m: [d for d in datasets if d in set(ds)] for m, ds in coverage.items() if m not in ranked}
        per_dataset: dict[str, dict[str, float]] = {m: {} for m in ranked}
        for d in datasets:
            table = part[(part["dataset"] == d) & part["method"].isin(ranked)].pivot(
                index="method", columns="metric", values="mean"
            )
            columns = [c for c in table.columns if higher_is_better.get(c) is not None]
            if not columns:
                continue
            ranks = pd.DataFrame({c: rank_values(table[c], bool(higher_is_better[c])) for c in columns})
            for m, r in ranks.mean(axis=1).items():
                per_dataset[str(m)][d] = float(r)
        overall = {m: float(np.mean(list(v.values()))) if v else math.nan for m, v in per_dataset.items()}
        out.append(TaskRanking(task, datasets, per_dataset, overall, partial))
    return out

"""Figures for the report (seaborn on matplotlib's Agg backend, written as PNG)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..atomic import atomic_path  # noqa: E402

DPI = 100
#: loss-log columns that are not losses
NOT_LOSSES = {"step", "epoch", "iteration", "iter", "lr", "learning_rate", "time", "seconds", "wall_s"}


def method_palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per method, the same in every figure."""
    colours = sns.color_palette("tab10" if len(methods) <= 10 else "husl", len(methods))
    return dict(zip(methods, colours, strict=True))


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def metric_distributions(
    values: pd.DataFrame,
    metrics: Sequence[str],
    arrows: Mapping[str, str],
    palette: Mapping[str, tuple[float, float, float]],
    path: Path,
) -> None:
    """Box plot (plus the individual images as dots) of each metric per method, one panel per metric.

    ``values`` is long-format: columns ``method``, ``metric``, ``value`` (one row per image).
    """
    methods = list(dict.fromkeys(values["method"]))
    n_cols = min(4, max(1, len(metrics)))
    n_rows = int(np.ceil(len(metrics) / n_cols))
    panel_h = 0.32 * len(methods) + 0.9
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.4 * n_cols, panel_h * n_rows), squeeze=False, layout="constrained"
    )
    for ax, metric in zip(axes.flat, metrics, strict=False):
        data = values[values["metric"] == metric]
        with warnings.catch_warnings():  # seaborn 0.13 passes vert=, deprecated in matplotlib 3.11
            warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
            sns.boxplot(
                data=data,
                x="value",
                y="method",
                hue="method",
                order=methods,
                hue_order=methods,
                palette=palette,
                ax=ax,
                fliersize=0,
                width=0.6,
                linewidth=0.8,
                legend=False,
                boxprops={"alpha": 0.55},
            )
        sns.stripplot(
            data=data,
            x="value",
            y="method",
            order=methods,
            color="#333333",
            ax=ax,
            size=2.2,
            alpha=0.7,
            jitter=0.12,
        )
        ax.set_title(f"{metric} {arrows.get(metric, '')}".strip(), fontsize=10, fontweight="bold")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.tick_params(labelsize=8)
        sns.despine(ax=ax, left=True)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    _save(fig, path)


def loss_curves(logs: Mapping[str, pd.DataFrame], method: str, path: Path) -> None:
    """Training loss per step, one panel per training dataset, one line per logged loss term."""
    n = len(logs)
    n_cols = min(3, n)
    n_rows = int(np.ceil(n / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.6 * n_cols, 3.0 * n_rows), squeeze=False, layout="constrained")
    colours = sns.color_palette("deep")
    for ax, (train_dataset, log) in zip(axes.flat, logs.items(), strict=False):
        steps = log["step"] if "step" in log.columns else pd.Series(np.arange(1, len(log) + 1))
        terms = loss_terms(log)
        window = max(1, len(log) // 50)
        positive = True
        for colour, term in zip(colours * (len(terms) // len(colours) + 1), terms, strict=False):
            y = pd.to_numeric(log[term], errors="coerce")
            positive &= bool((y.dropna() > 0).all())
            if window > 1:
                ax.plot(steps, y, color=colour, alpha=0.2, linewidth=0.7)
                y = y.rolling(window, min_periods=1, center=True).mean()
            ax.plot(steps, y, color=colour, linewidth=1.5, label=term)
        if positive and terms:
            finite = log[terms].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
            finite = finite[np.isfinite(finite)]
            if finite.size and finite.max() / finite.min() > 30:
                ax.set_yscale("log")
        ax.set_title(f"{method} on {train_dataset}", fontsize=10, fontweight="bold")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(color="#e5e5e5", linewidth=0.6)
        if len(terms) > 1:
            ax.legend(fontsize=8, frameon=False)
        sns.despine(ax=ax)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    _save(fig, path)


def loss_terms(log: pd.DataFrame) -> list[str]:
    """The loss columns of a training log: every numeric column except step, epoch, learning rate, time."""
    return [c for c in log.columns if c.lower() not in NOT_LOSSES and pd.api.types.is_numeric_dtype(log[c])]


def rank_heatmap(ranks: pd.DataFrame, path: Path) -> None:
    """Methods x metrics coloured by rank (1 = best, dark), the rank written in each cell; the last column is the
    mean rank over the metrics."""
    n_methods, n_metrics = ranks.shape
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * n_metrics, 0.9 + 0.34 * n_methods), layout="constrained")
    sns.heatmap(
        ranks,
        annot=True,
        fmt=".3g",
        cmap="YlGn_r",
        vmin=1,
        vmax=max(2, n_methods),
        cbar=False,
        linewidths=0.6,
        linecolor="white",
        annot_kws={"fontsize": 8},
        ax=ax,
    )
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(labelsize=8, length=0)
    ax.xaxis.tick_top()
    plt.setp(ax.get_xticklabels(), rotation=0)
    plt.setp(ax.get_yticklabels(), rotation=0)
    _save(fig, path)


#: vertical layout of a critical-difference diagram, in data units below the rank axis
_CD_GROUP_STEP = 0.3
_CD_LABEL_STEP = 0.6


def _cd_height(n_methods: int, n_groups: int) -> float:
    """Data units a diagram needs: the CD bar above the axis, the group bars, then one label row per method on
    the side with more labels."""
    return 1.8 + _CD_GROUP_STEP * n_groups + _CD_LABEL_STEP * ((n_methods + 1) // 2) + 0.4


def cd_diagram(ax: plt.Axes, mean_ranks: Mapping[str, float], cd: float, groups: Sequence[Sequence[str]]) -> None:
    """One critical-difference diagram (Demšar 2006): the methods' mean ranks on an axis (1 = best, left), the
    critical difference as a bar, and a thick line joining each group of methods not significantly different.
    The better half of the methods is labelled on the left, the rest on the right."""
    order = sorted((r, m) for m, r in mean_ranks.items() if np.isfinite(r))
    k = max(2, len(mean_ranks))
    margin = max(1.0, 0.5 * (k - 1))  # the axis takes the middle half of the panel; labels the sides
    half = (len(order) + 1) // 2
    first_row = -0.5 - _CD_GROUP_STEP * len(groups) - 0.3
    ax.set_xlim(1 - margin, k + margin)
    ax.set_ylim(1.4 - _cd_height(len(order), len(groups)), 1.4)
    ax.axis("off")
    ax.hlines(0, 1, k, color="#333333", linewidth=1)
    for tick in range(1, k + 1):
        ax.vlines(tick, 0, 0.15, color="#333333", linewidth=1)
        ax.text(tick, 0.22, str(tick), ha="center", va="bottom", fontsize=8)
    if np.isfinite(cd):
        ax.hlines(0.95, 1, 1 + cd, color="#b91c1c", linewidth=2)
        ax.text(1, 1.05, f"CD = {cd:.2f}", ha="left", va="bottom", fontsize=8, color="#b91c1c")
    for i, (rank, method) in enumerate(order):
        left = i < half
        y = first_row - _CD_LABEL_STEP * (i if left else len(order) - 1 - i)
        end = 1 - 0.15 * margin if left else k + 0.15 * margin
        ax.plot([rank, rank, end], [0, y, y], color="#555555", linewidth=0.8)
        label = f"{method} ({rank:.2f})" if left else f"({rank:.2f}) {method}"
        ax.text(end + (-0.05 if left else 0.05), y, label, ha="right" if left else "left", va="center", fontsize=8)
    for j, group in enumerate(groups):
        ranks = [mean_ranks[m] for m in group]
        y = -0.35 - _CD_GROUP_STEP * j
        ax.hlines(y, min(ranks) - 0.04, max(ranks) + 0.04, color="#111111", linewidth=3.2)


def cd_diagrams(panels: Sequence[tuple[str, Mapping[str, float], float, Sequence[Sequence[str]]]], path: Path) -> None:
    """One critical-difference diagram per (title, mean ranks, critical difference, tied groups), two per row."""
    n_cols = 2 if len(panels) > 1 else 1
    n_rows = int(np.ceil(len(panels) / n_cols))
    height = max(_cd_height(len(p[1]), len(p[3])) for p in panels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(6.4 * n_cols, (0.3 * height + 0.35) * n_rows), squeeze=False)
    for ax, (title, ranks, cd, groups) in zip(axes.flat, panels, strict=False):
        cd_diagram(ax, ranks, cd, groups)
        ax.set_title(title, fontsize=10, fontweight="bold", loc="left")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    _save(fig, path)

"""Figures of chapter 06 (baselines): every row of the leaderboard placed by quality and measured speed-up, and the
retention of the teacher's quality by method, each with its confidence interval. Each function takes the chapter's
leaderboard frame (`lab.chapters.c06_baselines.leaderboard`) and returns the figure; `lab.viz.save` writes it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .core import place_labels

__all__ = ["VERDICT_COLOURS", "pareto_front", "quality_vs_speed", "retention_by_method"]

VERDICT_COLOURS = {"the method": "black", "method better": "tab:green", "method worse": "tab:red",
                   "on par": "tab:blue", "inconclusive": "tab:grey"}


def pareto_front(x, y) -> np.ndarray:
    """Indices of the points no other point beats on both x and y (higher is better on both), by increasing x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(-x, kind="stable")
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(front[::-1], dtype=int)


def quality_vs_speed(board: pd.DataFrame, metric: str = "ndcg@10", batch: int | None = None):
    """Test `metric` (95% CI bars) against measured speed-up over the teacher (log scale), one point per measured
    row, coloured by family (the method a star), with the Pareto front (no row both faster and better) drawn as a
    step line. Rows that share a timing (`timed_as`: students of the method's shape) share one label.

    Args:
        board: rows with name, family, status, speedup, test_<metric> and its _low/_high (and optionally timed_as).
        batch: the batch size `speedup` was timed at (for the axis label).
    """
    col = f"test_{metric}"
    df = board[(board["status"] == "ok") & board["speedup"].notna()].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    palette = dict(zip(sorted(df["family"].unique()), sns.color_palette("tab10")))
    for _, r in df.iterrows():
        star = r["family"] == "method"
        ax.errorbar(r["speedup"], r[col], yerr=[[r[col] - r[f"{col}_low"]], [r[f"{col}_high"] - r[col]]],
                    fmt="*" if star else "o", color=palette[r["family"]], capsize=3, ms=11 if star else 5,
                    zorder=5 if star else 3)
    front = pareto_front(df["speedup"], df[col])
    ax.step(df.loc[front, "speedup"], df.loc[front, col], where="post", color="k", lw=0.8, ls=":")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    handles = [plt.Line2D([], [], marker="*" if f == "method" else "o", ls="", color=c, label=f)
               for f, c in palette.items()]
    ax.legend(handles=handles + [plt.Line2D([], [], color="k", ls=":", label="Pareto front")], fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set(xlabel=f"speed-up over the teacher (measured{f', batch {batch}' if batch else ''}; log scale)",
           ylabel=f"test {metric.upper()} (95% CI)", title="Quality against measured speed, every row")
    groups = df.groupby(df["timed_as"] if "timed_as" in df else df["name"], sort=False)
    tops = [g.loc[g[col].idxmax()] for _, g in groups]  # rows timed alike: one label at the best of them
    names = [", ".join(g.sort_values(col, ascending=False)["name"]) if len(g) <= 2 else
             f"{g.loc[g[col].idxmax(), 'name']} (+{len(g) - 1} timed alike)" for _, g in groups]
    place_labels(ax, [t["speedup"] for t in tops], [t[col] for t in tops], names, fontsize=7)
    return fig


def retention_by_method(board: pd.DataFrame, metric: str = "ndcg@10", goal: float | None = None):
    """Retention of the teacher's `metric` per measured row with its paired 95% CI, sorted, coloured by the
    verdict of the paired test against the method."""
    col = f"ret_{metric}"
    df = board[board["status"] == "ok"].sort_values(col).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.3 * len(df) + 1.5)))
    for i, r in df.iterrows():
        ax.errorbar(r[col], i, xerr=[[r[col] - r[f"{col}_low"]], [r[f"{col}_high"] - r[col]]], fmt="o", capsize=3,
                    color=VERDICT_COLOURS.get(r["verdict"], "tab:grey"))
    ax.set_yticks(range(len(df)), df["name"])
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    if goal is not None:
        ax.axvline(goal, color="k", ls="--", lw=1)
    seen = [v for v in VERDICT_COLOURS if v in set(df["verdict"])]
    ax.legend(handles=[plt.Line2D([], [], marker="o", ls="", color=VERDICT_COLOURS[v], label=v) for v in seen],
              fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set(xlabel=f"retention of {metric.upper()} (row / teacher, test, paired 95% CI)", ylabel="",
           title="How much of the teacher each method keeps")
    return fig

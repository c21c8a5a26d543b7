"""Figures of chapter 05 (distillation): retention with paired CIs per setting, and retention against training cost
and inference speed-up. Each function takes the chapter's tidy results frame and returns the figure;
`lab.viz.save` writes it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def retention_bars(results: pd.DataFrame, metric: str = "ndcg@10", goal: float = 0.95):
    """Retention (student ÷ teacher) of `metric` per trained student, with its paired bootstrap 95% CI.

    Args:
        results: one row per student with `name`, `variant`, `ret_<metric>`, `ret_<metric>_low`, `ret_<metric>_high`.
    """
    col = f"ret_{metric}"
    df = results.sort_values(col).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(df) + 1.4))
    palette = dict(zip(sorted(df["variant"].unique()), sns.color_palette("tab10")))
    for i, r in df.iterrows():
        c = palette[r["variant"]]
        ax.errorbar(r[col], i, xerr=[[r[col] - r[f"{col}_low"]], [r[f"{col}_high"] - r[col]]], fmt="o", color=c,
                    capsize=3)
    ax.set_yticks(range(len(df)), df["name"])
    ax.axvline(goal, color="k", ls="--", lw=1, label=f"goal {goal:.0%}")
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in palette.items()]
    ax.legend(handles=handles + [plt.Line2D([], [], color="k", ls="--", label=f"goal {goal:.0%}")], fontsize=8,
              loc="lower right")
    ax.set(xlabel=f"retention of {metric.upper()} (student / teacher, test, paired 95% CI)", ylabel="",
           title="How much of the teacher each student keeps")
    fig.tight_layout()
    return fig


def cost_and_speed(results: pd.DataFrame, metric: str = "ndcg@10", goal: float = 0.95, speed_goal: float = 3.0,
                   batch: int | None = None):
    """Two panels: retention against training seconds (marker = adapter), and retention against inference speed-up
    with the goal region (retention ≥ `goal`, speed-up ≥ `speed_goal`) shaded.

    Args:
        results: rows with `ret_<metric>`, `total_seconds`, `speedup`, `adapter`, `variant`.
        batch: the batch size `speedup` was timed at (for the axis label).
    """
    col = f"ret_{metric}"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.scatterplot(data=results, x="total_seconds", y=col, hue="variant", style="adapter", s=70, ax=axes[0])
    axes[0].axhline(goal, color="k", ls="--", lw=1)
    axes[0].set(xlabel="training wall time incl. teacher cache (s)", ylabel=f"retention of {metric.upper()}",
                title="quality kept vs training cost")
    ax = axes[1]
    x_hi = max(float(results["speedup"].max()) * 1.15, speed_goal * 1.2)
    y_lo = min(float(results[col].min()) * 0.95, goal * 0.9)
    y_hi = max(float(results[col].max()) * 1.05, 1.02)
    ax.axvspan(speed_goal, x_hi, ymin=(goal - y_lo) / (y_hi - y_lo), ymax=1, color="tab:green", alpha=0.12,
               label="goal region")
    sns.scatterplot(data=results, x="speedup", y=col, hue="variant", style="adapter", s=70, ax=ax, legend=False)
    timed_at = f", batch {batch}" if batch else ""
    ax.set(xlim=(0, x_hi), ylim=(y_lo, y_hi), xlabel=f"inference speed-up vs teacher (merged model{timed_at})",
           ylabel=f"retention of {metric.upper()}", title="quality kept vs speed gained")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig

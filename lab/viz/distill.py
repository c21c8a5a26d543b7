"""Figures of chapter 05 (distillation): retention with paired CIs per setting, and retention against training cost
and against inference speed-up with its CIs (`retention_vs_speedup`). Each function takes the chapter's tidy results
frame and returns the figure; `lab.viz.save` writes it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import PercentFormatter

from ..hypotheses import C1_RETENTION
from .core import fig_ax, place_labels

__all__ = ["retention_bars", "cost_and_speed", "retention_vs_speedup", "compression_curves"]


def retention_bars(results: pd.DataFrame, metric: str = "ndcg@10", goal: float = 0.95):
    """Retention (student ÷ teacher) of `metric` per trained student, with its paired bootstrap 95% CI.

    Args:
        results: one row per student with `name`, `variant`, `ret_<metric>`, `ret_<metric>_low`, `ret_<metric>_high`.
    """
    col = f"ret_{metric}"
    df = results.sort_values(col).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, max(3.2, 0.3 * len(df) + 1.4)))
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
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set(xlabel=f"retention of {metric.upper()} (student / teacher, test, paired 95% CI)", ylabel="",
           title="How much of the teacher each student keeps")
    return fig


def cost_and_speed(results: pd.DataFrame, metric: str = "ndcg@10", goal: float = 0.95, speed_goal: float = 3.0,
                   batch: int | None = None):
    """Two panels: retention against training seconds (marker = adapter), and `retention_vs_speedup` (retention with
    its CIs against inference speed-up, lines at 100% and C1's bound, the goal region shaded).

    Args:
        results: rows with `name`, `ret_<metric>` (and its `_low` / `_high`), `total_seconds`, `speedup`, `adapter`,
            `variant`.
        batch: the batch size `speedup` was timed at (for the axis label).
    """
    col = f"ret_{metric}"
    fig, axes = plt.subplots(2, 1, figsize=(8.0, 8.6), height_ratios=[1, 1.5])
    sns.scatterplot(data=results, x="total_seconds", y=col, hue="variant", style="adapter", s=60, ax=axes[0])
    axes[0].axhline(goal, color="k", ls="--", lw=1)
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0].set(xlabel="training wall time incl. teacher cache (s)", ylabel=f"{metric.upper()} kept",
                title=f"Quality kept vs training cost (dashed: goal {goal:.0%})")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    retention_vs_speedup(results, metric, goal=goal, speed_goal=speed_goal, batch=batch, ax=axes[1])
    return fig


def retention_vs_speedup(results: pd.DataFrame, metric: str = "ndcg@10", claim: float = C1_RETENTION,
                         goal: float | None = None, speed_goal: float | None = None, batch: int | None = None,
                         ax=None):
    """Retention of `metric` (student ÷ teacher, test) against the measured inference speed-up, one labelled point per
    student with its paired bootstrap 95% CI as a vertical error bar; horizontal lines at 100% (the teacher) and at
    `claim` (C1's retention bound, `lab.hypotheses.C1_RETENTION`), and the chapter's goal region shaded when `goal`
    and `speed_goal` are given (chapter 05). Students timed alike share a speed-up (chapter 05 times one full student
    for all): their points are set side by side around it, ordered by retention, and labelled in a column.

    Args:
        results: one row per student with `name`, `variant`, `speedup`, `ret_<metric>`, `ret_<metric>_low`,
            `ret_<metric>_high`.
        batch: the batch size `speedup` was timed at (for the axis label).
    """
    col = f"ret_{metric}"
    df = results.sort_values(["speedup", col]).reset_index(drop=True)
    fig, ax = fig_ax(ax, (8.0, 5.0))
    x_lo = min(float(df["speedup"].min()), speed_goal or np.inf) * 0.93
    x_hi = max(float(df["speedup"].max()) * 1.12, (speed_goal or 0) * 1.1)
    y_lo = min(float(df[f"{col}_low"].min()), claim, goal or 1.0) - 0.03
    y_hi = max(float(df[f"{col}_high"].max()), 1.0) + 0.03
    same = df.groupby(df["speedup"].round(2), sort=False)  # students timed alike: spread apart side by side
    step = 0.008 * (x_hi - x_lo)
    df["x"] = df["speedup"] + (same.cumcount() - (same[col].transform("size") - 1) / 2) * step
    if goal is not None and speed_goal is not None:
        ax.axvspan(speed_goal, x_hi, ymin=(goal - y_lo) / (y_hi - y_lo), ymax=1, color="tab:green", alpha=0.10,
                   label=f"goal: ≥ {goal:.0%} at ≥ {speed_goal:g}x")
    variants = list(dict.fromkeys(results["variant"]))  # the order (and colours) of `cost_and_speed`'s top panel
    palette = dict(zip(variants, sns.color_palette(n_colors=len(variants))))
    for v, d in df.groupby("variant", sort=False):
        err = np.clip([d[col] - d[f"{col}_low"], d[f"{col}_high"] - d[col]], 0, None)
        ax.errorbar(d["x"], d[col], yerr=err, fmt="o", ms=4, capsize=2, elinewidth=1, color=palette[v], label=v)
    ax.axhline(1.0, color="grey", ls=":", lw=1, label="100%: the teacher")
    ax.axhline(claim, color="k", ls="--", lw=1, label=f"{claim:.0%}: claim C1's bound")
    timed_at = f", batch {batch}" if batch else ""
    ax.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi), title="Quality kept vs speed gained (bars: paired 95% CI)",
           xlabel=f"measured inference speed-up vs teacher (x, merged model{timed_at})",
           ylabel=f"test {metric.upper()} kept (student / teacher, %, 95% CI)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    place_labels(ax, df["x"].to_numpy(), df[col].to_numpy(), df["name"].tolist(), fontsize=6.5)
    return fig


def compression_curves(summary: pd.DataFrame, metric: str = "ndcg@10", batch: int = 256, goal: float | None = None):
    """Issue 27's curve: distilled retention of `metric` (test, of the same seed's teacher, mean over seeds; random:
    the mean over draws) against the measured speed-up at `batch`, one line per selection rule, the k-layer model from
    scratch dashed and black, the teacher at (1, 100%); each rule's zero-shot retention as a faint line of its colour.

    Args:
        summary: `lab.bench.sweep.sweep_summary` (k, rule, distilled_retention, zero_shot_retention,
            speedup_b<batch>).
    """
    speed = f"speedup_b{batch}"
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    rules = [r for r in dict.fromkeys(summary["rule"]) if r not in ("teacher", "scratch")]
    palette = dict(zip(rules, sns.color_palette("tab10", len(rules))))
    for rule in rules:
        d = summary[summary["rule"] == rule].sort_values(speed)
        ax.plot(d[speed], d["distilled_retention"], marker="o", ms=4, color=palette[rule], label=rule,
                lw=2.2 if rule == "fisher_topk" else 1.2)
        if "zero_shot_retention" in d:
            ax.plot(d[speed], d["zero_shot_retention"], color=palette[rule], alpha=0.25, lw=1)
    sc = summary[summary["rule"] == "scratch"].sort_values(speed)
    if len(sc):
        ax.plot(sc[speed], sc["distilled_retention"], color="k", ls="--", marker="s", ms=4,
                label="from scratch (teacher's recipe)")
    ax.plot([1.0], [1.0], marker="*", ms=12, color="k", ls="", label="teacher")
    for r in summary[summary["rule"] == "uniform"].itertuples():  # budgets along the top of one line
        ax.annotate(f"k={r.k}", (getattr(r, speed), r.distilled_retention), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    if goal is not None:
        ax.axhline(goal, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    top = float(np.nanmax(summary[speed])) if summary[speed].notna().any() else 1.0
    ticks = [t for t in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32) if t <= top * 1.2]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(xlabel=f"measured inference speed-up over the teacher (batch {batch}, log scale)",
           ylabel=f"test {metric.upper()} kept (of the teacher)",
           title="Quality kept against speed, every budget (faint: zero-shot)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig

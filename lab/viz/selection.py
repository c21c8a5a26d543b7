"""Figures of chapter 04: zero-shot quality per selection rule and budget, the selected layers, measured speed-up.

Each function draws one figure from the chapter's tidy frames (matplotlib) and returns it; `lab.viz.save` writes it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .core import MAX_ASPECT

__all__ = ["plot_rules_by_budget", "plot_quality_vs_k", "plot_selection_grid", "plot_speedup"]


def plot_rules_by_budget(sel: pd.DataFrame, metric: str = "test_ndcg@10", teacher: float | None = None):
    """A dot plot: one row per rule (named on the axis, no legend to decode), one marker per budget k; the random
    draws as a box per budget on the first row, the teacher as a dashed line."""
    ks = sorted(sel.loc[sel["rule"] != "teacher", "k"].unique())
    rules = [r for r in dict.fromkeys(sel["rule"]) if r not in ("random", "teacher")]
    rows = (["random"] if (sel["rule"] == "random").any() else []) + rules
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.3 * len(rows) + 1.5)))
    colours = dict(zip(ks, sns.color_palette("viridis", len(ks))))
    markers = dict(zip(ks, "osD^vP*X"))
    nudge = {k: (i - (len(ks) - 1) / 2) * 0.22 for i, k in enumerate(ks)}
    for k in ks:
        d = sel[sel["k"] == k]
        rnd = d.loc[d["rule"] == "random", metric].to_numpy(dtype=float)
        if len(rnd):
            ax.boxplot([rnd], positions=[rows.index("random") + nudge[k]], orientation="horizontal", widths=0.18,
                       showfliers=False, patch_artist=True, boxprops=dict(facecolor=colours[k], alpha=0.35),
                       medianprops=dict(color=colours[k]), manage_ticks=False)
        y = [rows.index(r) + nudge[k] for r in d["rule"] if r in rules]
        x = d.loc[d["rule"].isin(rules), metric].to_numpy(dtype=float)
        ax.scatter(x, y, color=colours[k], marker=markers[k], s=36, edgecolor="k", linewidth=0.4, zorder=3,
                   label=f"k = {k}")
    if teacher is not None:
        ax.axvline(teacher, ls="--", color="k", lw=1, label="teacher (all layers)")
    ax.set_yticks(range(len(rows)), [f"random ({(sel['rule'] == 'random').sum() // max(1, len(ks))} draws, box)"
                                     if r == "random" else r for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (zero-shot, layers kept from the teacher)")
    ax.set_title("Zero-shot quality of truncated students, by rule and budget k")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncol=len(ks) + 1,
               frameon=False)  # below the axes: the rules' names take the left, the data the rest
    return fig


def plot_quality_vs_k(sel: pd.DataFrame, metric: str = "test_ndcg@10", teacher: float | None = None):
    """Quality against budget k per rule; random as its mean with a band of one standard deviation."""
    d = sel[sel["rule"] != "teacher"]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    rnd = d[d["rule"] == "random"].groupby("k")[metric].agg(["mean", "std"]).reset_index()
    if len(rnd):
        ax.plot(rnd["k"], rnd["mean"], color="0.3", lw=2, label="random (mean ± sd)")
        ax.fill_between(rnd["k"], rnd["mean"] - rnd["std"].fillna(0), rnd["mean"] + rnd["std"].fillna(0),
                        color="0.6", alpha=0.3)
    main = [r for r in d["rule"].unique() if r != "random" and "[" not in r]
    for r, c in zip(main, sns.color_palette("tab10", len(main))):
        g = d[d["rule"] == r].sort_values("k")
        greedy = r == "greedy_valid"
        ax.plot(g["k"], g[metric], marker="o", color=c, lw=2.2 if greedy else 1.3, ls="--" if greedy else "-",
                label="greedy_valid (greedy validation search)" if greedy else r)
    if teacher is not None:
        ax.axhline(teacher, ls=":", color="k", lw=1, label="teacher")
    ax.set_xscale("log", base=2)
    ks = sorted(d["k"].unique())
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("layers kept (k)")
    ax.set_ylabel(metric)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    ax.set_title("Zero-shot quality vs budget")
    return fig


def plot_selection_grid(sel: pd.DataFrame, num_layers: int):
    """For each budget k, a rule-by-layer grid: filled where the rule keeps the layer (random: share of draws)."""
    d = sel[sel["rule"] != "teacher"]
    ks = sorted(d["k"].unique())
    rules = list(dict.fromkeys(d["rule"]))
    width, panel = max(5.0, 0.28 * num_layers + 3.2), 0.2 * len(rules) + 0.9  # one panel's size (in)
    cols = 1  # panels stacked, the layer axis keeping the page's width; side by side while that is too tall
    while cols < len(ks) and panel * -(-len(ks) // cols) + 0.4 > 0.95 * MAX_ASPECT * min(8.0, width * cols):
        cols += 1
    rows = -(-len(ks) // cols)
    fig, grid_axes = plt.subplots(rows, cols, figsize=(min(8.0, width * cols), panel * rows + 0.4), squeeze=False)
    for ax in grid_axes.ravel()[len(ks):]:
        ax.set_visible(False)
    for n, (ax, k) in enumerate(zip(grid_axes.ravel(), ks)):
        grid = np.zeros((len(rules), num_layers))
        for i, r in enumerate(rules):
            g = d[(d["k"] == k) & (d["rule"] == r)]
            for s in g["layers"]:
                for l in _layers(s):
                    grid[i, l] += 1.0 / len(g)
        sns.heatmap(pd.DataFrame(grid, index=rules, columns=range(num_layers)), ax=ax, cmap="Blues", vmin=0, vmax=1,
                    cbar_kws={"label": "share kept", "fraction": 0.04},
                    linewidths=0.3, linecolor="0.9")
        ax.set_title(f"k = {k}")
        ax.set_xlabel("teacher layer" if n >= len(ks) - cols else "")  # the lowest panel of each column
        ax.tick_params(axis="x", rotation=0, labelsize=7 if num_layers > 16 else None)
        ax.tick_params(axis="y", rotation=0, labelsize=8)
    fig.suptitle("Layers kept by each rule")
    return fig


def plot_speedup(speed: pd.DataFrame, reference: str = "teacher"):
    """Measured speed-up (median throughput ratio) vs layers kept, per batch size, against the ideal L/k line."""
    d = speed[speed["model"] != reference].copy()
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    ks = sorted(d["n_layers"].unique())
    for b, c in zip(sorted(d["batch"].unique()), sns.color_palette("viridis", d["batch"].nunique())):
        g = d[d["batch"] == b].sort_values("n_layers")
        ax.plot(g["n_layers"], g["speedup"], marker="o", color=c, label=f"batch {b}")
    ideal = d.drop_duplicates("n_layers").sort_values("n_layers")
    ax.plot(ideal["n_layers"], ideal["ideal"], ls="--", color="k", label="ideal L/k (layer stack only)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("layers kept (k)")
    ax.set_ylabel("throughput / teacher throughput")
    dev = f"{speed['device'].iloc[0]}, {speed['threads'].iloc[0]} threads" if "device" in speed else ""
    ax.set_title(f"Measured speed-up of compact students ({dev})")
    ax.legend(fontsize=8)
    return fig


def _layers(s) -> list[int]:
    if isinstance(s, str):
        return [int(x) for x in s.split(",") if x != ""]
    return [int(x) for x in s]

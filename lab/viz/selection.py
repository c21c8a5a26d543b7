"""Figures of chapter 04: zero-shot quality per selection rule and budget, the selected layers, measured speed-up.

Each function draws one figure from the chapter's tidy frames (matplotlib) and returns it; `lab.viz.save` writes it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def plot_rules_by_budget(sel: pd.DataFrame, metric: str = "test_ndcg@10", teacher: float | None = None):
    """One panel per budget k: the random draws as box + strip, every other rule as a labelled marker."""
    ks = sorted(sel.loc[sel["rule"] != "teacher", "k"].unique())
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 4.4), sharey=True, squeeze=False)
    rules = [r for r in sel["rule"].unique() if r not in ("random", "teacher")]
    pal = dict(zip(rules, sns.color_palette("tab20", len(rules))))
    for ax, k in zip(axes[0], ks):
        d = sel[sel["k"] == k]
        rnd = d[d["rule"] == "random"]
        if len(rnd):
            sns.boxplot(y=rnd[metric], ax=ax, color="0.85", width=0.35, fliersize=0)
            sns.stripplot(y=rnd[metric], ax=ax, color="0.35", size=4, jitter=0.08)
        for i, r in enumerate(rules):
            v = d.loc[d["rule"] == r, metric]
            if len(v):
                ax.scatter([0.35 + 0.02 * (i % 5)], [v.iloc[0]], color=pal[r], s=45, zorder=3,
                           label=r, edgecolor="k", linewidth=0.4)
        if teacher is not None:
            ax.axhline(teacher, ls="--", color="k", lw=1, label="teacher (all layers)")
        ax.set_xlim(-0.5, 0.6)
        ax.set_xticks([0])
        ax.set_xticklabels([f"random ({len(rnd)} draws)"])
        ax.set_title(f"k = {k}")
        ax.set_ylabel(metric)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(f"Zero-shot quality of truncated students ({metric})")
    fig.tight_layout()
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
    fig.tight_layout()
    return fig


def plot_selection_grid(sel: pd.DataFrame, num_layers: int):
    """For each budget k, a rule-by-layer grid: filled where the rule keeps the layer (random: share of draws)."""
    d = sel[sel["rule"] != "teacher"]
    ks = sorted(d["k"].unique())
    rules = list(dict.fromkeys(d["rule"]))
    fig, axes = plt.subplots(1, len(ks), figsize=(max(4.0, 0.28 * num_layers + 2.2) * len(ks),
                                                  0.32 * len(rules) + 1.6), squeeze=False)
    for ax, k in zip(axes[0], ks):
        grid = np.zeros((len(rules), num_layers))
        for i, r in enumerate(rules):
            g = d[(d["k"] == k) & (d["rule"] == r)]
            for s in g["layers"]:
                for l in _layers(s):
                    grid[i, l] += 1.0 / len(g)
        sns.heatmap(pd.DataFrame(grid, index=rules, columns=range(num_layers)), ax=ax, cmap="Blues", vmin=0, vmax=1,
                    cbar=ax is axes[0][-1], linewidths=0.3, linecolor="0.9")
        ax.set_title(f"k = {k}")
        ax.set_xlabel("teacher layer")
        if ax is not axes[0][0]:
            ax.set_yticklabels([])
    fig.suptitle("Layers kept by each rule")
    fig.tight_layout()
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
    fig.tight_layout()
    return fig


def _layers(s) -> list[int]:
    if isinstance(s, str):
        return [int(x) for x in s.split(",") if x != ""]
    return [int(x) for x in s]

"""Figures of the Fisher chapter (chapter 03): the layer x parameter-group matrix and its heatmap, per-layer bars with
CIs, an estimator-vs-estimator scatter, and the probes' held-out accuracy by layer (`probe_accuracy`). Each function
draws and returns a matplotlib Figure; `lab.viz.save` writes it.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats as sps

from ..fisher import order_groups
from .core import fig_ax

__all__ = ["group_matrix", "heatmap_layer_group", "layer_bars", "estimator_scatter", "probe_accuracy",
           "signals_by_layer"]


def group_matrix(groups_df: pd.DataFrame, estimator: str = "fisher_empirical", norm: str = "per_param",
                 subset: str = "all", seed=None, stack_only: bool = True) -> pd.DataFrame:
    """The layer x group matrix of one estimator / normalisation / subset / seed (rows layer_idx, columns group)."""
    d = groups_df
    d = d[(d["estimator"] == estimator) & (d["norm"] == norm) & (d["subset"] == subset)]
    if seed is not None and "seed" in d:
        d = d[d["seed"] == seed]
    elif "seed" in d and len(d):
        d = d[d["seed"] == d["seed"].min()]
    if stack_only and len(d):  # the decoder layers only (not the embedding / head groups outside the stack)
        inside = d[(d["layer_idx"] >= 0) & ~d["group"].isin(["embedding", "final_norm", "out_proj"])]
        d = inside if len(inside) else d
    if d.empty:
        raise ValueError(f"no rows for estimator={estimator!r}, norm={norm!r}, subset={subset!r}, seed={seed!r}")
    m = d.pivot_table(index="layer_idx", columns="group", values="value", aggfunc="mean")
    return m[order_groups(m.columns)]


def heatmap_layer_group(groups_df: pd.DataFrame, estimator: str = "fisher_empirical", norm: str = "per_param",
                        subset: str = "all", seed=None, log: bool = False, ax=None, title: str | None = None):
    """Seaborn heatmap of layer (rows) x parameter group (columns); `log` uses a log10 colour scale."""
    m = group_matrix(groups_df, estimator, norm, subset, seed)
    fig, ax = fig_ax(ax, (min(8.0, max(4.5, 1.6 + 0.7 * m.shape[1])), 1.6 + 0.28 * m.shape[0]))
    data = np.log10(m.clip(lower=1e-30)) if log else m
    sns.heatmap(data, ax=ax, cmap="viridis", cbar_kws={"label": f"log10 {norm}" if log else norm})
    ax.set_xlabel("parameter group")
    ax.set_ylabel("layer")
    ax.tick_params(axis="y", rotation=0)  # layer numbers read upright
    for t in ax.get_xticklabels():  # group names slanted, each ending under its column
        t.set(rotation=60, ha="right", rotation_mode="anchor")  # 30 degrees: 12 names ran into each other
    ax.set_title(title or f"{estimator} · {norm} · {subset}")
    return fig


def layer_bars(df: pd.DataFrame, hue: str | None = None, ax=None, title: str = "", ylabel: str = "value",
               log: bool = False):
    """Per-layer bars (layer_idx, value) with CI error bars (ci_low, ci_high) when present; `hue` side by side."""
    bars = df["layer_idx"].nunique() * (df[hue].nunique() if hue else 1)
    fig, ax = fig_ax(ax, (min(8.0, max(6.0, 0.35 * bars)), 3.6 if bars <= 24 else 4.0))  # a page's width at most
    hues = list(dict.fromkeys(df[hue])) if hue else [None]
    width = 0.8 / len(hues)
    colors = sns.color_palette(n_colors=len(hues))
    for k, h in enumerate(hues):
        d = (df[df[hue] == h] if hue else df).sort_values("layer_idx")
        x = d["layer_idx"].to_numpy() + (k - (len(hues) - 1) / 2) * width
        v = d["value"].to_numpy(dtype=float)
        err = None
        if {"ci_low", "ci_high"} <= set(d.columns) and d[["ci_low", "ci_high"]].notna().all().all():
            err = np.vstack([v - d["ci_low"].to_numpy(dtype=float), d["ci_high"].to_numpy(dtype=float) - v])
            err = np.clip(err, 0, None)
        ax.bar(x, v, width=width, yerr=err, capsize=2, color=colors[k], label=None if h is None else str(h))
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    if hue:  # beside the bars, never over them
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def estimator_scatter(x, y, xlabel: str, ylabel: str, labels=None, log: bool = False, ax=None):
    """Scatter of two per-layer score vectors, annotated with layer indices and Spearman / Kendall rank correlations."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    fig, ax = fig_ax(ax, (4.6, 4.2))
    ax.scatter(x, y, s=28)
    for i, (a, b) in enumerate(zip(x, y)):
        ax.annotate(str(labels[i] if labels is not None else i), (a, b), fontsize=7, xytext=(2, 2),
                    textcoords="offset points")
    rho, tau = sps.spearmanr(x, y).statistic, sps.kendalltau(x, y).statistic
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(textwrap.fill(xlabel, 34))  # panels side by side: long labels wrap instead of running into
    ax.set_ylabel(textwrap.fill(ylabel, 30))  # the next panel
    ax.set_title(f"Spearman ρ = {rho:.2f}\nKendall τ = {tau:.2f}", fontsize="medium")
    return fig


def probe_accuracy(accuracy: pd.DataFrame, majority: pd.Series, ax=None, title: str = ""):
    """Held-out probe accuracy by layer_idx, one line per variable, each variable's majority baseline dashed in
    the same colour (chapter 03's planted layer roles; `lab.fisher.probes.layer_probes`). layer_idx -1 is the
    input embeddings, l the output of decoder layer l."""
    acc = accuracy.sort_index()
    fig, ax = fig_ax(ax, (min(8.0, max(6.0, 0.3 * len(acc))), 3.8))
    colors = sns.color_palette(n_colors=len(acc.columns))
    for color, var in zip(colors, acc.columns):
        ax.plot(acc.index, acc[var], marker="o", ms=3, color=color, label=var)
        ax.axhline(float(majority[var]), color=color, ls="--", lw=1)
    ax.set_xticks(acc.index)
    ax.set_xticklabels(["emb" if i == -1 else str(i) for i in acc.index], fontsize=7 if len(acc) > 12 else None)
    ax.set_xlabel("layer_idx (emb = input embeddings; l = output of layer l)")
    ax.set_ylabel("held-out probe accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "linear probes of the planted variables (dashed: majority baseline)")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def signals_by_layer(fisher_total, ablation_drop, probe_gain=None, ax=None, title: str = ""):
    """Chapter 03's three views of a layer on one `layer_idx` axis: the layer's share of the empirical Fisher (trace),
    the drop in validation NDCG@10 when it alone is removed, and, in the depth world, the probes' gain (accuracy(l) −
    accuracy(l − 1) summed over the planted variables; `lab.fisher.probes.probe_gains`). Each line is divided by
    its own largest |value| so the three share the axis; the legend gives each one's largest value in its units.

    Args:
        fisher_total: (L,) Fisher trace per decoder layer (any scale: it is turned into shares of the sum).
        ablation_drop: (L,) teacher minus student validation NDCG@10 per removed layer.
        probe_gain: summed probe gain indexed by layer_idx 0..L-1 (a Series), or None (nothing probed).
    """
    share = np.asarray(fisher_total, dtype=float) / float(np.sum(fisher_total))
    drop = np.asarray(ablation_drop, dtype=float)
    lines = [("Fisher share of the layer trace", np.arange(len(share)), share, "{:.1%}", "o", "-"),
             ("single-layer ablation drop, validation NDCG@10", np.arange(len(drop)), drop, "{:+.4f}", "s", "--")]
    if probe_gain is not None:
        g = pd.Series(probe_gain, dtype=float).sort_index()
        lines.append(("probe gain, accuracy summed over variables", g.index.to_numpy(), g.to_numpy(), "{:+.3f}",
                      "^", ":"))
    own = ax is None  # a figure of its own: the legend goes below the axes, off the lines
    fig, ax = fig_ax(ax, (min(8.0, max(6.5, 0.32 * len(share))), 4.6))
    for (label, x, v, fmt, marker, ls), color in zip(lines, sns.color_palette(n_colors=len(lines))):
        top = float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else 0.0
        ax.plot(x, v / (top or 1.0), marker=marker, ms=4, ls=ls, color=color,
                label=f"{label} (max |value| {fmt.format(top)})")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(share)))
    ax.tick_params(axis="x", labelsize=7 if len(share) > 16 else None)
    ax.set_xlabel("layer_idx (decoder layer)")
    ax.set_ylabel("value ÷ its largest |value|")
    shown = "Fisher share, ablation drop" + (" and probe gain" if probe_gain is not None else "")
    ax.set_title(title or f"{shown} per layer")
    if own:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize="small", frameon=False)
    else:
        ax.legend(fontsize="small", loc="best", framealpha=0.9)
    return fig

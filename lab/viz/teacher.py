"""Figures of chapter 02: learning curves and the evaluation table as bars (drawn and returned; `lab.viz.save` writes
them)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

__all__ = ["learning_curves", "metric_bars", "quality_by_depth"]


def learning_curves(histories: dict[str, pd.DataFrame]):
    """Training loss and validation NDCG@10 per epoch, one line per model (chapter 02)."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.5))
    for name, h in histories.items():
        axes[0].plot(h["epoch"], h["train_loss"], marker="o", label=name)
        axes[1].plot(h["epoch"], h["valid_ndcg@10"], marker="o", label=name)
    axes[0].set(xlabel="epoch", ylabel="train CE loss", title="training loss")
    axes[1].set(xlabel="epoch", ylabel="NDCG@10 (validation, full ranking)", title="validation quality")
    axes[1].legend()
    return fig


def metric_bars(table: pd.DataFrame, metrics=("ndcg@10", "hr@10", "mrr")):
    """Grouped bars of test metrics per model; `table` has a `model` column and one column per metric."""
    long = table.melt(id_vars="model", value_vars=list(metrics), var_name="metric", value_name="value")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    sns.barplot(data=long, x="metric", y="value", hue="model", ax=ax)
    ax.set(title="test split, full ranking", ylabel="")
    return fig


def quality_by_depth(table: pd.DataFrame, refs: dict):
    """Test NDCG@10 against the number of layers (`lab.bench.depth.DepthCurve.table`, log2 axis), with the data's
    references as horizontal lines: the Bayes ceiling, last-item Bayes, Markov and popularity (chapter 02)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(table.index, table["ndcg@10"], marker="o", color="k", label="model of that depth")
    styles = {"bayes": ("C2", "-"), "last_item_bayes": ("C2", ":"), "markov": ("C1", "--"), "popularity": ("C7", "--")}
    for name, (color, ls) in styles.items():
        if refs.get(name) is not None:
            ax.axhline(refs[name], color=color, ls=ls, lw=1, label=name.replace("_", " "))
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(table.index), [str(L) for L in table.index])
    ax.set(xlabel="decoder layers", ylabel="NDCG@10 (test, full ranking)", title="does depth buy quality?")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    return fig

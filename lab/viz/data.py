"""Figures of the data chapter (chapter 01): popularity long tail, sequence lengths, ratings, activity over time and
the sequential-structure check. Each function takes the interactions table of `lab.data.prepare_data`
(`user`, `item`, `timestamp`, `rating`), draws with seaborn and returns the figure; `lab.viz.save` writes it.
"""
from __future__ import annotations

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = ["popularity_tail", "seq_length_hist", "rating_distribution", "activity_over_time", "structure_bars"]


def popularity_tail(inter: pd.DataFrame, title: str = "Item popularity (long tail)"):
    """Interactions per item against the item's popularity rank, on log-log axes."""
    counts = np.sort(inter["item"].value_counts().to_numpy())[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sns.lineplot(x=np.arange(1, len(counts) + 1), y=counts, ax=ax, drawstyle="steps-post")
    ax.set(xscale="log", yscale="log", xlabel="item rank (by interactions)", ylabel="interactions", title=title)
    return fig


def seq_length_hist(inter: pd.DataFrame, title: str = "Interactions per user"):
    """Histogram of sequence lengths (interactions per user), log-scaled counts."""
    lens = inter.groupby("user").size().to_numpy()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sns.histplot(x=lens, bins=min(60, max(10, int(lens.max() - lens.min() + 1))), ax=ax)
    ax.axvline(float(np.median(lens)), color="k", ls="--", lw=1, label=f"median {np.median(lens):.0f}")
    ax.set(yscale="log", xlabel="interactions per user (after k-core)", ylabel="users", title=title)
    ax.legend()
    return fig


def rating_distribution(inter: pd.DataFrame, title: str = "Ratings"):
    """Share of interactions per star rating."""
    share = inter["rating"].round().astype(int).value_counts(normalize=True).reindex(range(1, 6), fill_value=0.0)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    sns.barplot(x=share.index.astype(str), y=share.to_numpy(), ax=ax, color=sns.color_palette()[0])
    ax.set(xlabel="stars", ylabel="share of interactions", title=title)
    return fig


def activity_over_time(inter: pd.DataFrame, valid_from_ms: int | None = None, test_from_ms: int | None = None,
                       title: str = "Interactions per month"):
    """Interactions per month, with the timestamp split's cut-offs marked."""
    month = pd.to_datetime(inter["timestamp"], unit="ms").dt.to_period("M").dt.to_timestamp()
    per = month.value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    sns.lineplot(x=per.index, y=per.to_numpy(), ax=ax)
    for ms, name, c in ((valid_from_ms, "validation from", "tab:orange"), (test_from_ms, "test from", "tab:red")):
        if ms is not None:
            ax.axvline(pd.to_datetime(ms, unit="ms"), color=c, ls="--", lw=1, label=name)
    ax.set(xlabel="month", ylabel="interactions", title=title)
    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if valid_from_ms is not None or test_from_ms is not None:
        ax.legend()
    return fig


def structure_bars(struct: dict, k: int = 10, title: str = "Next-item baselines (validation, full ranking)"):
    """HR@k of the count baselines of `lab.data.sequential_structure`, with chance marked."""
    names = ["popularity", "markov_reversed", "markov"]
    df = pd.DataFrame({"baseline": names, f"HR@{k}": [struct[f"hr@{k}_{n}"] for n in names]})
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.barplot(data=df, x="baseline", y=f"HR@{k}", ax=ax, color=sns.color_palette()[0])
    ax.axhline(struct["chance_hr"], color="k", ls=":", lw=1, label=f"chance ({struct['chance_hr']:.3f})")
    ax.set(title=title, xlabel="")
    ax.legend()
    return fig

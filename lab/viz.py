"""The book's shared plotting functions: figures saved atomically as PNG under `paths.figures`, a layer x group
heatmap, per-layer bars with CIs, an estimator-vs-estimator scatter, and the ipywidgets layer explorer (chapter 03).

Every function returns a matplotlib Figure (Agg-safe) and leaves saving to `save_fig`, so chapters stay thin.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats as sps

from .io import atomic_path


def write_png(fig, path, dpi: int = 120) -> Path:
    """Write `fig` as a PNG at `path`, atomically (every figure of the book goes through here)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def save_figure(fig, path=None, dpi: int = 120):
    """Write `fig` as a PNG at `path` when one is given (plot functions take an optional path); return the figure."""
    if path is not None:
        write_png(fig, path, dpi)
    return fig


def save_fig(fig, name: str, paths, dpi: int = 120) -> Path:
    """Save `fig` as `<paths.figures>/<name>.png` atomically; return the path."""
    return write_png(fig, Path(paths.figures) / (name if name.endswith(".png") else f"{name}.png"), dpi)


def _order_groups(groups) -> list:
    from .fisher import order_groups

    return order_groups(groups)


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
    return m[_order_groups(m.columns)]


def heatmap_layer_group(groups_df: pd.DataFrame, estimator: str = "fisher_empirical", norm: str = "per_param",
                        subset: str = "all", seed=None, log: bool = False, ax=None, title: str | None = None):
    """Seaborn heatmap of layer (rows) x parameter group (columns); `log` uses a log10 colour scale."""
    m = group_matrix(groups_df, estimator, norm, subset, seed)
    fig, ax = _fig_ax(ax, (1.0 + 0.7 * m.shape[1], 1.2 + 0.28 * m.shape[0]))
    data = np.log10(m.clip(lower=1e-30)) if log else m
    sns.heatmap(data, ax=ax, cmap="viridis", cbar_kws={"label": f"log10 {norm}" if log else norm})
    ax.set_xlabel("parameter group")
    ax.set_ylabel("layer")
    ax.set_title(title or f"{estimator} · {norm} · {subset}")
    fig.tight_layout()
    return fig


def layer_bars(df: pd.DataFrame, hue: str | None = None, ax=None, title: str = "", ylabel: str = "value",
               log: bool = False):
    """Per-layer bars (layer_idx, value) with CI error bars (ci_low, ci_high) when present; `hue` side by side."""
    fig, ax = _fig_ax(ax, (max(6.0, 0.35 * df["layer_idx"].nunique() * (df[hue].nunique() if hue else 1)), 3.6))
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
    if hue:
        ax.legend(fontsize="small", ncol=min(4, len(hues)))
    fig.tight_layout()
    return fig


def estimator_scatter(x, y, xlabel: str, ylabel: str, labels=None, log: bool = False, ax=None):
    """Scatter of two per-layer score vectors, annotated with layer indices and Spearman / Kendall rank correlations."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    fig, ax = _fig_ax(ax, (4.6, 4.2))
    ax.scatter(x, y, s=28)
    for i, (a, b) in enumerate(zip(x, y)):
        ax.annotate(str(labels[i] if labels is not None else i), (a, b), fontsize=7, xytext=(2, 2),
                    textcoords="offset points")
    rho, tau = sps.spearmanr(x, y).statistic, sps.kendalltau(x, y).statistic
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Spearman ρ = {rho:.2f}, Kendall τ = {tau:.2f}")
    fig.tight_layout()
    return fig


def _fig_ax(ax, size):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


class LayerExplorer:
    """Interactive layer x group heatmap: choose estimator, normalisation, subset, seed and colour scale.

    `widget` is the ipywidgets box to display; every control change calls `redraw()` into one Output, so JupyterLab
    updates in place. Without a front end (papermill) the box is simply displayed; static figures are saved elsewhere.
    """

    def __init__(self, groups_df: pd.DataFrame, estimator: str | None = None, norm: str = "per_param"):
        import ipywidgets as w

        self.df = groups_df
        opts = lambda c: sorted(groups_df[c].unique().tolist(), key=str)  # noqa: E731
        est = opts("estimator")
        subsets = sorted(opts("subset"), key=lambda s: (s != "all", s))
        self.controls = {
            "estimator": w.Dropdown(options=est, value=estimator if estimator in est else est[0],
                                    description="estimator"),
            "norm": w.Dropdown(options=opts("norm"), value=norm if norm in opts("norm") else opts("norm")[0],
                               description="norm"),
            "subset": w.Dropdown(options=subsets, value=subsets[0], description="subset"),
            "seed": w.Dropdown(options=opts("seed"), value=opts("seed")[0], description="seed"),
            "scale": w.ToggleButtons(options=["linear", "log"], value="linear", description="colour"),
        }
        self.out = w.Output()
        self.n_redraws = 0
        self.matrix: pd.DataFrame | None = None
        self.error: str | None = None
        for c in self.controls.values():
            c.observe(lambda change: self.redraw(), names="value")
        self.widget = w.VBox([w.HBox([self.controls["estimator"], self.controls["norm"]]),
                              w.HBox([self.controls["subset"], self.controls["seed"]]),
                              self.controls["scale"], self.out])
        self.redraw()

    @property
    def state(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def redraw(self):
        """Redraw the heatmap for the current control values (called on every change)."""
        from IPython.display import display

        s = self.state
        self.n_redraws += 1
        with self.out:
            self.out.clear_output(wait=True)
            try:
                self.matrix = group_matrix(self.df, s["estimator"], s["norm"], s["subset"], s["seed"])
                self.error = None
                fig = heatmap_layer_group(self.df, s["estimator"], s["norm"], s["subset"], s["seed"],
                                          log=s["scale"] == "log")
                display(fig)
                plt.close(fig)
            except ValueError as e:  # a combination without rows (e.g. no subset for this estimator)
                self.matrix, self.error = None, str(e)
                print(self.error)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def layer_explorer(groups_df: pd.DataFrame, estimator: str | None = None, norm: str = "per_param") -> LayerExplorer:
    """Build the interactive layer explorer over a `fisher_groups` frame (display it, or its `.widget`)."""
    return LayerExplorer(groups_df, estimator, norm)

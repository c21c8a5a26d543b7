"""Plotting: figures are written atomically as PNGs, the heatmap shows the chosen slice, and the explorer redraws
when a control changes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import lab  # noqa: E402
from lab import viz  # noqa: E402


def groups_df() -> pd.DataFrame:
    rows = []
    for est, scale in (("fisher_empirical", 1.0), ("fisher_true", 2.0)):
        for subset in ("all", "item:tail"):
            for seed in (0, 1):
                for norm, f in (("total", 10.0), ("per_param", 1.0), ("max", 0.1)):
                    for layer in range(4):
                        for g in ("q", "o", "down", "input_norm"):
                            v = scale * f * (layer + 1) * (1 + seed) * (2 if subset == "all" else 1) * (1 + len(g))
                            rows.append((layer, g, est, subset, seed, norm, v))
                    rows.append((-1, "embedding", est, subset, seed, norm, 99.0))
    return pd.DataFrame(rows, columns=["layer_idx", "group", "estimator", "subset", "seed", "norm", "value"])


def test_save_fig_and_static_plots(tmp_path):
    P = lab.Paths(root=tmp_path / "a", figures=tmp_path / "figs")
    df = groups_df()
    m = viz.group_matrix(df, "fisher_true", "total", "all", 1)
    assert m.shape == (4, 4) and list(m.columns) == ["q", "o", "down", "input_norm"]  # stack only, book order
    assert m.loc[3, "q"] == 2.0 * 10 * 4 * 2 * 2 * 2
    fig = viz.heatmap_layer_group(df, log=True)
    path = viz.save_fig(fig, "heat", P)
    assert path == tmp_path / "figs" / "heat.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert not list(path.parent.glob(".*tmp"))  # nothing half-written left behind
    bars = pd.DataFrame({"layer_idx": [0, 1, 0, 1], "value": [1.0, 2.0, 1.5, 0.5], "ci_low": [0.8, 1.5, 1.0, 0.2],
                         "ci_high": [1.2, 2.5, 2.0, 0.9], "signal": ["a", "a", "b", "b"]})
    fig = viz.layer_bars(bars, hue="signal", title="t")
    assert len(fig.axes[0].patches) == 4
    fig = viz.estimator_scatter(np.arange(5.0), np.arange(5.0) ** 2, "x", "y")
    assert "Spearman ρ = 1.00" in fig.axes[0].get_title()
    with pytest.raises(ValueError):
        viz.group_matrix(df, "nope")


def test_explorer_redraws_on_control_change():
    ex = viz.layer_explorer(groups_df(), "fisher_empirical", "per_param")
    assert ex.n_redraws == 1 and ex.matrix is not None
    first = ex.matrix.copy()
    assert set(ex.controls) == {"estimator", "norm", "subset", "seed", "scale"}
    ex.controls["norm"].value = "total"  # the observer redraws
    assert ex.n_redraws == 2 and np.allclose(ex.matrix.to_numpy(), 10 * first.to_numpy())
    ex.controls["estimator"].value = "fisher_true"
    assert np.allclose(ex.matrix.to_numpy(), 20 * first.to_numpy())
    ex.controls["subset"].value = "item:tail"
    ex.controls["seed"].value = 1
    assert np.allclose(ex.matrix.to_numpy(), 20 * first.to_numpy())  # tail halves, seed 1 doubles
    ex.controls["scale"].value = "log"
    assert ex.n_redraws == 6 and ex.error is None
    assert ex.state == {"estimator": "fisher_true", "norm": "total", "subset": "item:tail", "seed": 1, "scale": "log"}
    assert ex.widget.children[-1] is ex.out
    ex.df = ex.df[ex.df.subset == "all"]  # a combination with no rows reports instead of failing
    ex.redraw()
    assert ex.matrix is None and "no rows" in ex.error

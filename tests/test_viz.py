"""Plotting (lab.viz): one saver writes every figure atomically as a PNG and an SVG, figure functions only draw, the
heatmap shows the chosen slice, the explorer redraws when a control changes, and every chapter's figures draw."""
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


def test_save_and_static_plots(tmp_path):
    P = lab.Paths(root=tmp_path / "a", figures=tmp_path / "figs")
    df = groups_df()
    m = viz.group_matrix(df, "fisher_true", "total", "all", 1)
    assert m.shape == (4, 4) and list(m.columns) == ["q", "o", "down", "input_norm"]  # stack only, book order
    assert m.loc[3, "q"] == 2.0 * 10 * 4 * 2 * 2 * 2
    fig = viz.heatmap_layer_group(df, log=True)
    assert viz.save(fig, "heat", P) is None  # a cell ending in save(...) shows the figure, not a path
    path = tmp_path / "figs" / "heat.png"
    assert path.read_bytes()[:4] == b"\x89PNG"
    svg = path.with_suffix(".svg").read_text()
    assert "<svg" in svg and "<dc:date>" not in svg  # the SVG beside it, without a timestamp
    assert not list(path.parent.glob(".*tmp"))  # nothing half-written left behind
    path.unlink()
    viz.save(fig, "heat.png", P)  # the suffix may be given or not
    assert path.is_file() and not (tmp_path / "figs" / "heat.png.png").exists()
    from PIL import Image

    with Image.open(path) as im:  # the title travels in the PNG: the site's alt text
        assert im.info["Title"] == "fisher_empirical · per_param · all"
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


def _backend_in_fresh_python(env: dict, before: str = "") -> str:
    """The backend matplotlib reports after `import lab.viz` in a new interpreter with `env` (DISPLAY and
    MPLBACKEND removed unless given), running `before` first."""
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    code = f"{before}\nimport lab.viz\nimport matplotlib\nprint(matplotlib.get_backend())"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip().splitlines()[-1].lower()


def test_backend_policy_and_one_saver():
    """The policy (lab.viz.core), each branch in a fresh interpreter: headless with nothing chosen -> Agg; a backend
    the user chose (MPLBACKEND) is kept. (Comparing `use_backend()` with
    `matplotlib.get_backend()` in this process, as before, was true by construction.)"""
    assert _backend_in_fresh_python({}) == "agg"
    assert _backend_in_fresh_python({"MPLBACKEND": "svg"}) == "svg"
    for name in ("write_png", "save_figure", "save_fig"):  # the old savers are gone: one way to save
        assert not hasattr(viz, name)


def test_chapter_figures_draw_and_save(tmp_path):
    """Every chapter's figure functions return a figure and save nothing themselves; `viz.save` names the file."""
    import matplotlib.pyplot as plt

    from lab.selection import select_layers

    L = 8
    P = lab.Paths(root=tmp_path / "a", figures=tmp_path / "figs")
    rng = np.random.default_rng(0)
    inter = pd.DataFrame({"user": rng.integers(0, 20, 200), "item": rng.integers(1, 30, 200),
                          "timestamp": 1_600_000_000_000 + rng.integers(0, 10**10, 200),
                          "rating": rng.integers(1, 6, 200).astype(float)})
    struct = {"hr@10_popularity": 0.1, "hr@10_markov_reversed": 0.15, "hr@10_markov": 0.3, "chance_hr": 0.05}
    hist = pd.DataFrame({"epoch": [1, 2], "train_loss": [3.0, 2.5], "valid_ndcg@10": [0.1, 0.2]})
    table = pd.DataFrame({"model": ["teacher", "small"], "ndcg@10": [0.3, 0.2], "hr@10": [0.5, 0.4], "mrr": [0.2, 0.1]})
    rows = [{"rule": r, "k": k, "draw": d, "layers": ",".join(map(str, select_layers(L, k, r, seed=d))),
             "test_ndcg@10": 0.1 + 0.01 * k + 0.001 * d}
            for k in (1, 2) for r in ("uniform", "top", "random") for d in range(3 if r == "random" else 1)]
    rows += [{"rule": "greedy_valid", "k": k, "draw": 0, "layers": ",".join(map(str, range(k))),
              "test_ndcg@10": 0.2 + 0.01 * k} for k in (1, 2)]
    sel = pd.DataFrame(rows + [{"rule": "teacher", "k": L, "draw": 0, "layers": "0,1,2,3,4,5,6,7",
                                "test_ndcg@10": 0.2}])
    speed = pd.DataFrame({"model": ["teacher", "k=2"] * 2, "n_layers": [8, 2] * 2, "batch": [1, 1, 4, 4],
                          "speedup": [1.0, 3.5, 1.0, 3.7], "ideal": [1.0, 4.0] * 2, "device": "cpu", "threads": 2})
    results = pd.DataFrame({"name": ["a", "b"], "variant": ["kd", "ce"], "adapter": ["full", "lora"],
                            "ret_ndcg@10": [0.97, 0.9], "ret_ndcg@10_low": [0.95, 0.85],
                            "ret_ndcg@10_high": [0.99, 0.95], "total_seconds": [10.0, 5.0], "speedup": [3.5, 3.9]})
    board = pd.DataFrame({"name": ["method", "student b", "student c", "ease", "popularity", "teacher"],
                          "family": ["method", "distilled", "distilled", "baseline", "baseline", "teacher"],
                          "status": "ok", "speedup": [3.5, 3.5, 3.5, 14.0, 30.0, 1.0],
                          "timed_as": ["s", "s", "s", "ease", "popularity", "teacher"],
                          "test_ndcg@10": [0.15, 0.149, 0.151, 0.146, 0.084, 0.152],
                          "verdict": ["the method", "on par", "on par", "inconclusive", "method better", "on par"],
                          "ret_ndcg@10": [0.99, 0.98, 1.0, 0.96, 0.55, 1.0]})
    for c in ("test_ndcg@10", "ret_ndcg@10"):
        board[f"{c}_low"], board[f"{c}_high"] = board[c] - 0.01, board[c] + 0.01
    per_layer = pd.DataFrame({"layer_idx": np.tile(np.arange(24), 3), "value": rng.random(72),
                              "signal": np.repeat(["fisher_empirical", "fisher_true", "batchgrad_squared"], 24)})
    scatter, axes = plt.subplots(2, 2, figsize=(8.0, 7.0))  # chapter 03's three estimator panels
    for ax, label in zip(axes.ravel(), ("true Fisher per parameter", "squared batch gradient per parameter (wrong)",
                                        "validation NDCG@10 drop if removed")):
        viz.estimator_scatter(rng.random(8), rng.random(8), "empirical Fisher per parameter", label, ax=ax)
    axes[1, 1].set_visible(False)
    figs = {
        "03_estimator_scatter": scatter,
        "03_fisher_heatmap": viz.heatmap_layer_group(groups_df(), log=True),
        "03_signals": viz.layer_bars(per_layer, hue="signal", title="three estimators", ylabel="share"),
        "06_quality_vs_speed": viz.quality_vs_speed(board, batch=256),
        "06_retention": viz.retention_by_method(board, goal=0.95),
        "01_popularity_tail": viz.popularity_tail(inter), "01_sequence_lengths": viz.seq_length_hist(inter),
        "01_ratings": viz.rating_distribution(inter),
        "01_activity": viz.activity_over_time(inter, 1_603_000_000_000, 1_606_000_000_000),
        "01_structure": viz.structure_bars(struct),
        "02_learning_curves": viz.learning_curves({"teacher": hist, "small": hist}),
        "02_test_metrics": viz.metric_bars(table),
        "04_rules_by_budget": viz.plot_rules_by_budget(sel, teacher=0.2),
        "04_quality_vs_k": viz.plot_quality_vs_k(sel, teacher=0.2),
        "04_selection_grid": viz.plot_selection_grid(sel, L), "04_speedup": viz.plot_speedup(speed),
        "05_retention": viz.retention_bars(results, "ndcg@10", 0.95),
        "05_cost_speed": viz.cost_and_speed(results, "ndcg@10", 0.95, 3.0, batch=4),
        "03_signals_by_layer": viz.signals_by_layer([1.0, 2.0], [0.1, 0.0], pd.Series([0.2, -0.1], index=[0, 1])),
    }
    assert not P.figures.exists() or not list(P.figures.iterdir())  # drawing saves nothing
    labels = figs["04_quality_vs_k"].axes[0].get_legend_handles_labels()[1]
    assert "greedy_valid (greedy validation search)" in labels and not any("oracle" in x for x in labels)
    for name, fig in figs.items():
        assert isinstance(fig, plt.Figure)
        assert viz.layout_problems(fig) == [], name  # a page's width, aspect <= 2.5, no text clipped or overlapping
        viz.save(fig, name, P)
        plt.close(fig)
    from PIL import Image

    for png in P.figures.glob("*.png"):  # as saved (bbox "tight"): what a page shows
        with Image.open(png) as im:
            w, h = im.size
        assert w <= viz.MAX_WIDTH_PX and w / h <= viz.MAX_ASPECT, f"{png.name}: {w}x{h}"
    assert {p.name for p in P.figures.glob("*.png")} == {f"{n}.png" for n in figs}
    assert {p.name for p in P.figures.glob("*.svg")} == {f"{n}.svg" for n in figs}


def test_layout_problems_name_what_a_page_cannot_show():
    """The check every chapter figure passes: too wide, too flat, and two texts on top of each other are found."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 3))
    ax.text(0.5, 0.5, "one label")
    ax.text(0.5, 0.5, "another label")
    found = viz.layout_problems(fig)
    assert any("1440 px wide" in f for f in found) and any("aspect 4.00:1" in f for f in found)
    assert any("overlapping: 'one label' and 'another label'" in f for f in found)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    viz.place_labels(ax, [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], ["a long label", "another", "a third one"])
    assert viz.layout_problems(fig) == []  # three labels on one point, nudged apart
    plt.close(fig)


def test_signals_by_layer_one_line_per_signal():
    """Chapter 03: Fisher share, ablation drop and (where probed) probe gain, each scaled to its largest |value|."""
    fisher, drop = np.array([1.0, 3.0, 4.0, 2.0]), np.array([0.02, -0.01, 0.04, 0.0])
    gain = pd.Series([0.5, 0.1, -0.2, 0.0], index=[0, 1, 2, 3])
    ax = viz.signals_by_layer(fisher, drop, gain).axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label()[0] != "_"]  # the signals (not the zero line)
    assert len(lines) == 3 and all(len(ln.get_xdata()) == 4 for ln in lines)
    np.testing.assert_allclose(lines[0].get_ydata(), fisher / 4.0)  # shares of the sum, scaled to the largest
    np.testing.assert_allclose(lines[1].get_ydata(), drop / 0.04)
    np.testing.assert_allclose(lines[2].get_ydata(), gain / 0.5)
    assert "40.0%" in lines[0].get_label() and "NDCG@10" in lines[1].get_label()
    assert "layer_idx" in ax.get_xlabel() and "largest" in ax.get_ylabel() and "probe gain" in ax.get_title()
    ax = viz.signals_by_layer(fisher, drop, None).axes[0]  # outside the depth world: nothing probed
    assert len([ln for ln in ax.get_lines() if ln.get_label()[0] != "_"]) == 2 and "probe" not in ax.get_title()


def test_retention_vs_speedup_points_cis_and_reference_lines():
    """Chapter 05: one labelled point per student with its CI, lines at 100% and at C1's retention bound."""
    from lab.hypotheses import C1_RETENTION

    results = pd.DataFrame({"name": ["a:kd", "b:kd", "c:ce", "a:kd:lora"], "variant": ["kd", "kd", "ce", "kd"],
                            "ret_ndcg@10": [0.97, 0.99, 0.90, 0.96], "ret_ndcg@10_low": [0.95, 0.96, 0.85, 0.9],
                            "ret_ndcg@10_high": [0.99, 1.02, 0.95, 1.0], "speedup": [3.5, 3.5, 3.5, 3.6]})
    ax = viz.retention_vs_speedup(results, "ndcg@10", batch=256).axes[0]
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]  # errorbar's data points, one line per variant
    assert len(markers) == 2 and sum(len(ln.get_xdata()) for ln in markers) == 4
    xs = np.concatenate([np.asarray(ln.get_xdata(), dtype=float) for ln in markers])
    assert len(set(xs.round(6))) == 4 and np.all(np.abs(xs - 3.55) < 0.2)  # equal speed-ups set side by side
    levels = {round(float(ln.get_ydata()[0]), 6) for ln in ax.get_lines()
              if ln.get_marker() != "o" and ln.get_label()[0] != "_"}  # the labelled horizontal lines
    assert levels == {1.0, C1_RETENTION}  # the teacher and claim C1's bound
    assert sorted(t.get_text() for t in ax.texts) == sorted(results["name"])  # every student labelled
    bars = [c for c in ax.collections if hasattr(c, "get_segments") and c.get_label()[0] == "_"]
    assert sum(len(c.get_segments()) for c in bars) == 4  # one CI bar per student
    assert "batch 256" in ax.get_xlabel() and "%" in ax.get_ylabel() and "CI" in ax.get_ylabel()


def test_tables_a_reader_can_read():
    """A config as field and value; chapter 06's leaderboard in eight columns with each CI in its cell."""
    from lab.distill import DistillConfig

    t = viz.config_table(DistillConfig(temperature=2.0))
    assert t.index.name == "DistillConfig" and t.loc["temperature", "value"] == "2" and t.shape[1] == 1
    board = pd.DataFrame({"name": ["method", "ease"], "family": ["method", "recommender"],
                          "test_ndcg@10": [0.152, 0.146], "test_ndcg@10_low": [0.14, 0.13],
                          "test_ndcg@10_high": [0.16, float("nan")], "ret_ndcg@10": [0.999, 0.965],
                          "ret_ndcg@10_low": [0.97, 0.94], "ret_ndcg@10_high": [1.02, 0.99], "speedup": [3.9, 14.0],
                          "diff": [float("nan"), 0.006], "holm_p": [float("nan"), 0.2],
                          "verdict": [None, "inconclusive"], "params": [1, 2], "peak_mb": [3.0, 4.0]})
    view = viz.leaderboard_view(board)
    assert list(view.columns) == list(viz.tables.LEADERBOARD_COLUMNS[1:])
    assert view.loc["method", "test NDCG@10 (95% CI)"] == "0.152 (0.140–0.160)"
    assert view.loc["ease", "test NDCG@10 (95% CI)"] == "0.146"  # an end missing: no interval
    assert view.loc["method", "kept (95% CI)"] == "99.9% (97.0%–102.0%)"
    assert view.loc["ease", "method − row"] == "+0.0060" and view.loc["method", "verdict"] == "—"
    styled = viz.text_left(pd.DataFrame({"claim": ["upper layers matter more"], "estimate": [0.123456]})).to_html()
    assert "text-align: left" in styled and "0.1235" in styled  # sentences left, numbers as numbers


def test_selection_grid_stays_within_the_aspect_limit():
    """Many rules at four budgets of a shallow teacher (the smoke book's chapter 04: 665 x 1,681 px when stacked):
    the panels go side by side before the figure gets taller than MAX_ASPECT times its width, and every budget keeps
    its panel."""
    from lab.viz.core import MAX_ASPECT
    from lab.viz.selection import plot_selection_grid

    rules = [f"rule{i}" for i in range(13)]
    sel = pd.DataFrame([{"rule": r, "k": k, "layers": ",".join(map(str, range(k)))}
                        for k in (1, 2, 3, 4) for r in rules])
    fig = plot_selection_grid(sel, 8)
    w, h = fig.get_size_inches()
    assert h / w <= MAX_ASPECT and viz.layout_problems(fig) == []
    titles = sorted(a.get_title() for a in fig.axes if a.get_visible() and a.get_title())
    assert titles == [f"k = {k}" for k in (1, 2, 3, 4)]

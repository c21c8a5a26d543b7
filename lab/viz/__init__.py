"""The book's figures: one module per chapter's figures, one saver, one backend policy.

Every figure function draws and returns a matplotlib Figure; a chapter saves it with `save(fig, name, P)`
(`<P.figures>/<name>.png` and `.svg`, atomic). `core` holds the saver and the backend policy (Agg when headless
and nothing chose a backend; Jupyter's inline backend is left alone); it is imported first, before any module imports
pyplot.

- `core`: the backend, constrained layout, `save`, and what a page can show (`layout_problems`: at most
  `MAX_WIDTH_PX` wide at the saved dpi, aspect at most `MAX_ASPECT`, no text clipped or overlapping; `place_labels`).
- `data` (chapter 01): popularity tail, sequence lengths, ratings, activity over time, sequential structure.
- `teacher` (chapter 02): learning curves, test metrics as bars.
- `fisher` (chapter 03): layer x group matrix and heatmap, per-layer bars with CIs, estimator scatter, probe
  accuracy, and Fisher share, probe gain and ablation drop on one layer axis (`signals_by_layer`).
- `explorer` (chapter 03): the interactive `LayerExplorer` widget.
- `selection` (chapter 04): rules by budget, quality vs k, selected layers, measured speed-up.
- `distill` (chapter 05): retention with CIs, retention vs training cost and vs speed-up with CIs
  (`retention_vs_speedup`, the right panel of `cost_and_speed`).
- `tables`: a configuration as field and value, a value with its CI in one cell, chapter 06's leaderboard view.
- `baselines` (chapter 06): quality vs measured speed-up of every leaderboard row, retention by method.
"""
# first: the backend policy runs before pyplot is imported
from .core import MAX_ASPECT, MAX_WIDTH_PX, layout_problems, place_labels, save, use_backend  # noqa: I001
from .baselines import quality_vs_speed, retention_by_method
from .data import activity_over_time, popularity_tail, rating_distribution, seq_length_hist, structure_bars
from .distill import compression_curves, cost_and_speed, retention_bars, retention_vs_speedup
from .explorer import LayerExplorer, layer_explorer
from .fisher import (estimator_scatter, group_matrix, heatmap_layer_group, layer_bars, probe_accuracy,
                     signals_by_layer)
from .tables import config_table, leaderboard_view, text_left, with_interval
from .selection import plot_quality_vs_k, plot_rules_by_budget, plot_selection_grid, plot_speedup
from .teacher import learning_curves, metric_bars, quality_by_depth

__all__ = [
    "save", "use_backend", "layout_problems", "place_labels", "MAX_WIDTH_PX", "MAX_ASPECT",
    "popularity_tail", "seq_length_hist", "rating_distribution", "activity_over_time", "structure_bars",
    "learning_curves", "metric_bars", "quality_by_depth",
    "group_matrix", "heatmap_layer_group", "layer_bars", "estimator_scatter", "probe_accuracy", "signals_by_layer",
    "LayerExplorer", "layer_explorer",
    "plot_rules_by_budget", "plot_quality_vs_k", "plot_selection_grid", "plot_speedup",
    "retention_bars", "cost_and_speed", "retention_vs_speedup", "compression_curves",
    "quality_vs_speed", "retention_by_method",
    "config_table", "leaderboard_view", "text_left", "with_interval",
]

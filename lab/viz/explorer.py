"""The interactive layer explorer of chapter 03: an ipywidgets layer x group heatmap over a `fisher_groups` frame."""
from __future__ import annotations

import pandas as pd

import matplotlib.pyplot as plt
from .fisher import group_matrix, heatmap_layer_group

__all__ = ["LayerExplorer", "layer_explorer"]


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

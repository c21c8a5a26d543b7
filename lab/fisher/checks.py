"""Checks of a Fisher estimate (chapter 03): every fast method against the per-user loop, and the rank stability of
the layer scores across halves of the users."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from ..evaluation import kendall_tau
from .estimators import compare, draw_labels, estimate_fisher, fisher_hooks, fisher_loop

__all__ = ["exactness_table", "kendall_halves"]


def exactness_table(model, inputs: torch.Tensor, labels: torch.Tensor, methods=("hooks", "ghost", "vmap"),
                    chunk_size: int = 128, seed: int = 0) -> pd.DataFrame:
    """Every fast Fisher method against the per-user loop, on a float64 copy of `model` (chapter 03).

    One row per method on the observed labels, plus the hooks on two label draws from the model (the true Fisher's
    label sets) for the first half of the users; columns rel_diff_<part> are `compare`'s largest relative differences
    (groups, layers, per_sample, diag, and their max). float64 keeps summation-order noise far below a real error.
    """
    m64 = copy.deepcopy(model).double()
    ref = fisher_loop(m64, inputs, labels)
    rows = []
    for method in methods:
        est = estimate_fisher(m64, inputs, labels, method=method, chunk_size=chunk_size)
        rows.append({"method": method, **{f"rel_diff_{k}": v for k, v in compare(est, ref).items()}})
    n = max(2, len(inputs) // 2)
    ys = draw_labels(m64, inputs[:n], labels[:n], 2, seed=seed)  # (2, n, T) two label draws per user
    diff = compare(fisher_hooks(m64, inputs[:n], {"t": ys}, chunk_size)["t"], fisher_loop(m64, inputs[:n], ys))
    rows.append({"method": "hooks (true Fisher, 2 draws)", **{f"rel_diff_{k}": v for k, v in diff.items()}})
    return pd.DataFrame(rows)


def kendall_halves(per_layer, n_splits: int = 20, seed: int = 0) -> tuple[float, np.ndarray]:
    """Rank stability: Kendall tau between the layer scores of two random halves of the samples (mean, all splits)."""
    v = np.asarray(per_layer, dtype=float)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(n_splits):
        perm = rng.permutation(len(v))
        a, b = perm[: len(v) // 2], perm[len(v) // 2:]
        taus.append(kendall_tau(v[a].mean(0), v[b].mean(0)))
    taus = np.asarray(taus)
    return float(np.nanmean(taus)), taus

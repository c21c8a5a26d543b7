"""Checks of a Fisher estimate (chapter 03): every fast method against the per-user loop, their speed on the same
users, the rank stability of the layer scores across halves of the users, and how each signal agrees with the
single-layer ablation drop."""
from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd

from scipy.stats import spearmanr

from ..evaluation import kendall_tau, spearman_ci
from .estimators import (SIGNALS, compare, draw_labels, estimate_fisher, fisher_hooks, fisher_loop,
                         method_attention)

__all__ = ["exactness_table", "kendall_halves", "users_per_second", "signal_agreement"]


def exactness_table(model, inputs: torch.Tensor, labels: torch.Tensor, methods=("hooks", "ghost", "vmap"),
                    chunk_size: int = 128, seed: int = 0) -> pd.DataFrame:
    """Every fast Fisher method against the per-user loop, on a float64 copy of `model` (chapter 03).

    One row per method on the observed labels, plus the hooks on two label draws from the model (the true Fisher's
    label sets) for the first half of the users; columns rel_diff_<part> are `compare`'s largest relative differences
    (groups, layers, per_sample, diag, and their max). float64 keeps summation-order noise far below a real error.
    Each method is compared with the loop run through the same attention (`method_attention`, column
    loop_attention), so the check tests the gradients, not two attention kernels' float64 rounding.
    """
    m64 = copy.deepcopy(model).double()
    refs = {}  # attention implementation -> the loop through it
    rows = []
    for method in methods:
        attn = method_attention(m64, method)
        if attn not in refs:
            refs[attn] = fisher_loop(m64, inputs, labels, attn=attn)
        est = estimate_fisher(m64, inputs, labels, method=method, chunk_size=chunk_size)
        rows.append({"method": method, "loop_attention": attn or "model's own",
                     **{f"rel_diff_{k}": v for k, v in compare(est, refs[attn]).items()}})
    n = max(2, len(inputs) // 2)
    ys = draw_labels(m64, inputs[:n], labels[:n], 2, seed=seed)  # (2, n, T) two label draws per user
    diff = compare(fisher_hooks(m64, inputs[:n], {"t": ys}, chunk_size)["t"], fisher_loop(m64, inputs[:n], ys))
    rows.append({"method": "hooks (true Fisher, 2 draws)", "loop_attention": "model's own",
                 **{f"rel_diff_{k}": v for k, v in diff.items()}})
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


def users_per_second(model, inputs: torch.Tensor, labels: torch.Tensor, methods=("loop", "hooks"),
                     chunk_size: int = 128) -> dict:
    """Users per second of each Fisher method on these users, after a warm-up on two of them (chapter 03)."""
    rates = {}
    for method in methods:
        estimate_fisher(model, inputs[:2], labels[:2], method=method, chunk_size=chunk_size)  # warm-up
        t0 = time.perf_counter()
        estimate_fisher(model, inputs, labels, method=method, chunk_size=chunk_size)
        rates[method] = len(inputs) / (time.perf_counter() - t0)
    return rates


def signal_agreement(vec: dict[str, np.ndarray], n_boot: int = 500, seed: int = 0,
                     truth: str = "ablation_drop", reference: str = "fisher_empirical") -> pd.DataFrame:
    """One row per signal (`SIGNALS` but `truth`): Spearman against the ablation drop with a bootstrap CI over
    layers, Kendall tau against it, and Spearman against the empirical Fisher (chapter 03)."""
    rows = []
    for s in SIGNALS:
        if s == truth:
            continue
        rho, lo, hi = spearman_ci(vec[s], vec[truth], n_boot=n_boot, seed=seed)
        rows.append({"signal": s, "spearman_vs_ablation": rho, "ci_low": lo, "ci_high": hi,
                     "kendall_vs_ablation": kendall_tau(vec[s], vec[truth]),
                     f"spearman_vs_{reference}": spearmanr(vec[s], vec[reference]).statistic})
    return pd.DataFrame(rows)

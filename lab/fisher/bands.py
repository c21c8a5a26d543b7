"""Where the important layers sit by depth (chapter 03, issue 13): shares of the layer Fisher held by depth bands,
with bootstrap CIs over users."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..constants import DEPTH_BAND
from ..evaluation import bootstrap_ci

__all__ = ["share_ci", "BANDS", "depth_bands", "band_table"]


def share_ci(values, mask, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(share, low, high): the share of the column means of `values` (S, K) held by the columns in `mask` (K,), with
    a bootstrap CI over rows (chapter 03: the lower half's share of the layer Fisher, resampling users)."""
    m = np.asarray(mask, dtype=bool)
    f = lambda v: np.array([v[m].sum() / max(v.sum(), 1e-300)])  # noqa: E731
    est, lo, hi = bootstrap_ci(values, n_boot, seed=seed, transform=f)
    return float(est[0]), float(lo[0]), float(hi[0])


BANDS = ("lower", "middle", "upper")


def depth_bands(num_layers: int, share: float = DEPTH_BAND) -> np.ndarray:
    """The band of each layer by depth: the bottom round(share·L) layers "lower", the top as many "upper", the rest
    "middle" (chapter 03; H1's top-bottom gap counts the same layers).  # -> (L,)"""
    k = max(1, int(round(share * num_layers)))
    band = np.full(num_layers, "middle", dtype=object)
    band[:k], band[num_layers - k:] = "lower", "upper"
    return band


def band_table(fisher_rows, ablation_drop, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Where the important layers sit (chapter 03, issue 13): per depth band (`depth_bands`) its layers, its share of
    the layer Fisher with a bootstrap CI over users, that share per layer, and the mean single-layer ablation drop of
    its layers. `fisher_rows` (S, L): per-user layer Fisher (`FisherEstimate.per_layer()`); `ablation_drop` (L,)."""
    v = np.asarray(fisher_rows, dtype=float)
    drop = np.asarray(ablation_drop, dtype=float)
    band = depth_bands(v.shape[1])
    masks = [band == name for name in BANDS if (band == name).any()]
    shares = lambda m: np.array([m[b].sum() for b in masks]) / max(m.sum(), 1e-300)  # noqa: E731
    share, lo, hi = bootstrap_ci(v, n_boot, seed=seed, transform=shares)  # one bootstrap for every band
    rows = []
    for b, s, low, high in zip(masks, share, lo, hi):
        idx = np.flatnonzero(b)
        rows.append({"band": band[idx[0]], "layers": f"{idx[0]}-{idx[-1]}", "n_layers": int(b.sum()),
                     "fisher_share": float(s), "share_low": float(low), "share_high": float(high),
                     "share_per_layer": float(s) / b.sum(), "mean_ablation_drop": float(drop[b].mean())})
    return pd.DataFrame(rows).set_index("band")



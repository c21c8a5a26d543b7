"""Fisher estimates as tidy frames: layer and group scores with bootstrap CIs, and the `importance.parquet` /
`fisher_groups.parquet` contract read by chapters 04 and 05 (chapter 03)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluation import bootstrap_ci, bootstrap_means
from ..io import write_parquet
from .estimators import GROUP_ORDER, NORMS, SIGNALS, FisherEstimate, normalise

__all__ = ["IMPORTANCE_COLUMNS", "GROUP_COLUMNS", "importance_rows", "fisher_importance_rows", "group_frame",
           "order_groups", "save_tables", "read_importance", "load_groups", "default_norm", "importance_vector"]

IMPORTANCE_COLUMNS = ["layer_idx", "signal", "norm", "value", "ci_low", "ci_high"]
GROUP_COLUMNS = ["layer_idx", "group", "estimator", "subset", "seed", "norm", "value", "ci_low", "ci_high",
                 "n_params", "n_samples"]


def importance_rows(signal: str, values, norm: str = "raw", ci_low=None, ci_high=None) -> pd.DataFrame:
    """Rows of the importance table for one signal: layer_idx, signal, norm, value, ci_low, ci_high (NaN if none)."""
    v = np.asarray(values, dtype=float)
    nan = np.full(len(v), np.nan)
    return pd.DataFrame({"layer_idx": np.arange(len(v), dtype=int), "signal": signal, "norm": norm, "value": v,
                         "ci_low": nan if ci_low is None else np.asarray(ci_low, dtype=float),
                         "ci_high": nan if ci_high is None else np.asarray(ci_high, dtype=float)})


def fisher_importance_rows(est: FisherEstimate, n_boot: int = 1000, seed: int = 0, rows=None) -> pd.DataFrame:
    """Importance rows of a Fisher estimate for every normalisation, with bootstrap CIs over samples."""
    pl = est.per_layer() if rows is None else est.per_layer()[rows]
    numel = est.layer_numel()
    frames = []
    for norm in NORMS:
        v, lo, hi = bootstrap_ci(pl, n_boot, seed=seed, transform=lambda m, n=norm: normalise(m, numel, n))
        frames.append(importance_rows(est.estimator, v, norm, lo, hi))
    return pd.concat(frames, ignore_index=True)


def group_frame(est: FisherEstimate, subset: str = "all", seed: int = 0, rows=None, n_boot: int = 200,
                boot_seed: int = 0) -> pd.DataFrame:
    """Tidy (layer_idx, group) scores of an estimate for every normalisation, with bootstrap CIs.

    "max" divides by the largest layer of the same group. `rows` restricts to a subset of samples (user buckets).
    """
    ps = est.per_sample if rows is None else est.per_sample[rows]
    keys = pd.DataFrame(est.keys, columns=["layer_idx", "group"])
    boots = bootstrap_means(ps, n_boot, boot_seed) if n_boot and len(ps) > 1 else None
    groups = [np.asarray(ix) for ix in keys.groupby("group").indices.values()]

    def tf(m, norm):  # (..., K) means -> normalised
        if norm == "total":
            return m
        if norm == "per_param":
            return m / np.maximum(est.numel, 1)
        out = np.empty_like(m)
        for ix in groups:
            out[..., ix] = m[..., ix] / np.maximum(m[..., ix].max(-1, keepdims=True), 1e-300)
        return out

    frames = []
    for norm in NORMS:
        v = tf(ps.mean(0), norm)
        if boots is not None:
            b = tf(boots, norm)
            lo, hi = np.quantile(b, 0.025, axis=0), np.quantile(b, 0.975, axis=0)
        else:
            lo = hi = np.full(len(v), np.nan)
        frames.append(keys.assign(estimator=est.estimator, subset=subset, seed=seed, norm=norm, value=v, ci_low=lo,
                                  ci_high=hi, n_params=est.numel.astype(int), n_samples=len(ps)))
    df = pd.concat(frames, ignore_index=True)
    df["layer_idx"] = df["layer_idx"].astype(int)
    return df[GROUP_COLUMNS]


def order_groups(groups) -> list[str]:
    """Groups in the book's order (attention, MLP, norms, then outside the stack)."""
    g = list(dict.fromkeys(groups))
    return sorted(g, key=lambda x: (GROUP_ORDER.index(x) if x in GROUP_ORDER else 99, x))


# ---------------------------------------------------------------------------------------------------------------------
# the contract with chapters 04 and 05
def save_tables(paths, importance: pd.DataFrame, groups: pd.DataFrame | None = None) -> None:
    """Write `importance.parquet` (exactly IMPORTANCE_COLUMNS) and `fisher_groups.parquet`, atomically."""
    missing = set(IMPORTANCE_COLUMNS) - set(importance.columns)
    if missing:
        raise ValueError(f"importance table lacks {sorted(missing)}")
    unknown = set(importance["signal"]) - set(SIGNALS)
    if unknown:
        raise ValueError(f"unknown signals {sorted(unknown)}; the contract allows {SIGNALS}")
    imp = importance[IMPORTANCE_COLUMNS].reset_index(drop=True).astype(
        {"layer_idx": int, "signal": str, "norm": str, "value": float, "ci_low": float, "ci_high": float})
    write_parquet(paths.file("importance.parquet"), imp)
    if groups is not None:
        write_parquet(paths.file("fisher_groups.parquet"), groups.reset_index(drop=True))


def read_importance(path) -> pd.DataFrame:
    """An importance table from a parquet file (chapter 03's `importance.parquet`, `python -m lab fisher`'s
    `fisher_layers.parquet`), exactly IMPORTANCE_COLUMNS; ValueError naming the file and the columns it lacks."""
    frame = pd.read_parquet(path)
    missing = [c for c in IMPORTANCE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not an importance table, columns {missing} missing (it needs "
                         f"{list(IMPORTANCE_COLUMNS)})")
    return frame.reset_index(drop=True)[IMPORTANCE_COLUMNS]


def load_groups(paths) -> pd.DataFrame:
    """The per-group Fisher table chapter 03 wrote (`fisher_groups.parquet`)."""
    return pd.read_parquet(paths.file("fisher_groups.parquet")).reset_index(drop=True)


def default_norm(table: pd.DataFrame, signal: str) -> str:
    """The normalisation used when none is named: "per_param" for Fisher signals, else the signal's only one."""
    norms = list(table.loc[table["signal"] == signal, "norm"].unique())
    if not norms:
        raise KeyError(f"signal {signal!r} not in the importance table (has {sorted(table['signal'].unique())})")
    for pref in ("per_param", "raw"):
        if pref in norms:
            return pref
    if len(norms) == 1:
        return norms[0]
    raise ValueError(f"signal {signal!r} has norms {norms}; name one")


def importance_vector(importance, signal: str = "fisher_empirical", norm: str | None = None,
                      num_layers: int | None = None) -> np.ndarray:
    """Per-layer scores (higher = more important) indexed by layer_idx, for chapters 03–05.  # (L,)

    Args:
        importance: the tidy table (layer_idx, signal, norm, value), a Series indexed by layer, or a 1-D array-like.
        signal, norm: which rows of a table; `norm=None` picks `default_norm`, and a signal that only has "raw"
            (non-Fisher signals) uses it whatever `norm` says.
        num_layers: the expected L; an error names the layers that are missing.
    """
    if isinstance(importance, pd.DataFrame):
        t = importance[importance["signal"] == signal]
        if t.empty:
            raise KeyError(f"signal {signal!r} not in the table (has {sorted(importance['signal'].unique())})")
        if norm is None:
            norm = default_norm(importance, signal)
        elif norm not in set(t["norm"]):
            if set(t["norm"]) != {"raw"}:
                raise KeyError(f"norm {norm!r} not available for {signal!r} (has {sorted(t['norm'].unique())})")
            norm = "raw"
        rows = t[t["norm"] == norm].sort_values("layer_idx")
        idx = rows["layer_idx"].to_numpy()
        if not np.array_equal(idx, np.arange(len(idx))):
            raise ValueError(f"{signal}/{norm}: layer_idx must be 0..L-1 once each, got {idx.tolist()}")
        v = rows["value"].to_numpy(dtype=float)
    elif isinstance(importance, pd.Series):
        v = importance.reindex(range(num_layers or int(importance.index.max()) + 1)).to_numpy(dtype=float)
    else:
        v = np.asarray(importance, dtype=float).reshape(-1)
    if num_layers is not None and len(v) != num_layers:
        raise ValueError(f"importance has {len(v)} layers, expected {num_layers}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"importance has non-finite values (missing layers?): {v.tolist()}")
    return v

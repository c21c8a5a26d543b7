"""Fisher estimates as tidy frames: layer and group scores with bootstrap CIs, subsets, rank stability, and the
`importance.parquet` / `fisher_groups.parquet` contract read by chapters 04 and 05 (chapter 03)."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from ..constants import DEPTH_BAND, IGNORE, PAD
from ..io import write_parquet
from ..stats import kendall_tau
from .estimators import (GROUP_ORDER, NORMS, SIGNALS, FisherEstimate, compare, draw_labels, estimate_fisher,
                         fisher_hooks, fisher_loop, normalise)

IMPORTANCE_COLUMNS = ["layer_idx", "signal", "norm", "value", "ci_low", "ci_high"]
GROUP_COLUMNS = ["layer_idx", "group", "estimator", "subset", "seed", "norm", "value", "ci_low", "ci_high",
                 "n_params", "n_samples"]


# ---------------------------------------------------------------------------------------------------------------------
# subsets
def sample_rows(n_rows: int, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subsample of `n` of `n_rows` rows; all rows when `n` is 0, None or at least
    `n_rows` (chapter 03). The one sampler behind the Fisher's training users and every validation subsample
    (`lab.importance.subsample_valid`: the ablation, the other signals, the greedy validation search).  # (n,)"""
    if not n or n >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, n, replace=False))


def user_activity(data) -> np.ndarray:
    """Training interactions of each training row's user (the items before the validation target).  # (U,)

    Uses `valid_seen` when its rows are the training rows (`valid_users` = 0..U-1), else the window's label count + 1.
    """
    U = data.train_inputs.shape[0]
    vu = getattr(data, "valid_users", None)
    if vu is not None and len(vu) == U and torch.equal(vu.cpu(), torch.arange(U)):
        return (data.valid_seen != PAD).sum(1).cpu().numpy()
    return ((data.train_labels != IGNORE).sum(1) + 1).cpu().numpy()


def user_buckets(activity, names=("low", "mid", "high")) -> np.ndarray:
    """Activity terciles (rank-based, so ties split evenly): one name per user."""
    a = pd.Series(np.asarray(activity, dtype=float)).rank(method="first")
    return pd.qcut(a, len(names), labels=list(names)).astype(str).to_numpy()


def item_buckets(item_counts, names=("head", "torso", "tail")) -> np.ndarray:
    """Popularity bucket of every item index: head = the most popular items holding the first third of training
    interactions, torso the next third, tail the rest; index 0 (padding) is "pad".  # (N+1,)"""
    c = np.asarray(item_counts.cpu() if isinstance(item_counts, torch.Tensor) else item_counts, dtype=float).copy()
    c[PAD] = 0
    order = np.argsort(-c[1:], kind="stable") + 1
    before = (np.cumsum(c[order]) - c[order]) / max(c.sum(), 1)  # share of interactions held by more popular items
    k = len(names)
    out = np.full(len(c), "pad", dtype=object)
    out[order] = [names[min(int(b * k), k - 1)] for b in before]
    return out


def mask_labels(labels: torch.Tensor, keep_items) -> torch.Tensor:
    """Labels whose target item is not in `keep_items` ((N+1,) bool) become IGNORE.  # (S, T)"""
    keep = torch.as_tensor(np.asarray(keep_items, dtype=bool), device=labels.device)
    ok = (labels != IGNORE) & keep[labels.clamp(min=0)]
    return torch.where(ok, labels, torch.full_like(labels, IGNORE))


# ---------------------------------------------------------------------------------------------------------------------
# exactness
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


# ---------------------------------------------------------------------------------------------------------------------
# uncertainty
def bootstrap_means(values, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of the column means of `values` (S, K), resampling rows.  # -> (n_boot, K)

    Same percentile bootstrap as `lab.stats.bootstrap_ci`, vectorised through multinomial resampling counts.
    """
    v = np.asarray(values, dtype=float)
    S = len(v)
    counts = np.random.default_rng(seed).multinomial(S, np.full(S, 1.0 / S), size=n_boot)  # (n_boot, S)
    return counts @ v / S


def bootstrap_mean_ci(values, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, transform=None):
    """(estimate, low, high) arrays over the columns of `values` (S, K); `transform` maps a (K,) mean vector."""
    v = np.asarray(values, dtype=float)
    f = transform or (lambda m: m)
    boots = np.stack([f(b) for b in bootstrap_means(v, n_boot, seed)])
    return f(v.mean(0)), np.quantile(boots, alpha / 2, axis=0), np.quantile(boots, 1 - alpha / 2, axis=0)


def share_ci(values, mask, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(share, low, high): the share of the column means of `values` (S, K) held by the columns in `mask` (K,), with
    a bootstrap CI over rows (chapter 03: the lower half's share of the layer Fisher, resampling users)."""
    m = np.asarray(mask, dtype=bool)
    f = lambda v: np.array([v[m].sum() / max(v.sum(), 1e-300)])  # noqa: E731
    est, lo, hi = bootstrap_mean_ci(values, n_boot, seed=seed, transform=f)
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
    share, lo, hi = bootstrap_mean_ci(v, n_boot, seed=seed, transform=shares)  # one bootstrap for every band
    rows = []
    for b, s, low, high in zip(masks, share, lo, hi):
        idx = np.flatnonzero(b)
        rows.append({"band": band[idx[0]], "layers": f"{idx[0]}-{idx[-1]}", "n_layers": int(b.sum()),
                     "fisher_share": float(s), "share_low": float(low), "share_high": float(high),
                     "share_per_layer": float(s) / b.sum(), "mean_ablation_drop": float(drop[b].mean())})
    return pd.DataFrame(rows).set_index("band")


def band_sentence(bands: pd.DataFrame) -> str:
    """Which band holds the most Fisher per layer and which loses the most when one of its layers is removed, with
    the lower and upper bands' Fisher shares and CIs (chapter 03)."""
    top_f, top_a = bands["share_per_layer"].idxmax(), bands["mean_ablation_drop"].idxmax()
    parts = [f"{b} ({r.layers}) {r.fisher_share:.0%} [{r.share_low:.0%}–{r.share_high:.0%}]"
             for b, r in bands.iterrows()]
    return (f"Fisher share by depth band (95% CI over users): {', '.join(parts)}; per layer the {top_f} band holds "
            f"the most Fisher, and removing one layer hurts most in the {top_a} band (mean ablation drop "
            + ", ".join(f"{b} {v:+.4f}" for b, v in bands["mean_ablation_drop"].items()) + ").")


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


# ---------------------------------------------------------------------------------------------------------------------
# tidy frames
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
        v, lo, hi = bootstrap_mean_ci(pl, n_boot, seed=seed, transform=lambda m, n=norm: normalise(m, numel, n))
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

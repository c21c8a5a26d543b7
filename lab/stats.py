"""Statistics for honest comparisons: bootstrap confidence intervals, paired tests, rank correlations.

Introduced for chapters 03–05 (CIs of importance scores, retention, correlations, tests against a null).
Per-user metric vectors are paired by user, so every two-model comparison here is a paired one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats as sps


def bootstrap_ci(values, stat: Callable = np.mean, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): percentile bootstrap CI of `stat` over the rows of `values`."""
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    boots = np.array([stat(v[i]) for i in idx])
    return float(stat(v)), float(np.quantile(boots, alpha / 2)), float(np.quantile(boots, 1 - alpha / 2))


def paired_ratio_ci(num, den, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(ratio, low, high) of mean(num) / mean(den), resampling users jointly (e.g. retention = student / teacher)."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors must have the same shape, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    ratios = a[idx].mean(1) / np.maximum(b[idx].mean(1), 1e-12)
    return float(a.mean() / max(b.mean(), 1e-12)), float(np.quantile(ratios, alpha / 2)), \
        float(np.quantile(ratios, 1 - alpha / 2))


def paired_diff_ci(a, b, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean(a - b), low, high): bootstrap CI of a paired mean difference."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return bootstrap_ci(d, np.mean, n_boot, alpha, seed)


def paired_test(a, b) -> dict:
    """Paired t-test and Wilcoxon signed-rank test of a vs b (two-sided), with the mean difference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    out = {"mean_diff": float(d.mean()), "n": int(len(d))}
    out["t_p"] = float(sps.ttest_rel(a, b).pvalue) if np.any(d != 0) else 1.0
    out["wilcoxon_p"] = float(sps.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return out


def spearman_ci(x, y, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(rho, low, high): Spearman correlation with a bootstrap CI over paired items (e.g. layers)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = sps.spearmanr(x, y).statistic
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(sps.spearmanr(x[i], y[i]).statistic)
    boots = np.asarray(boots) if boots else np.array([np.nan])
    return float(rho), float(np.nanquantile(boots, alpha / 2)), float(np.nanquantile(boots, 1 - alpha / 2))


def kendall_tau(x, y) -> float:
    """Kendall's tau between two score vectors (rank stability of layer importance)."""
    return float(sps.kendalltau(np.asarray(x, dtype=float), np.asarray(y, dtype=float)).statistic)


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (for the several hypotheses tested together)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        adj[i] = min(1.0, running)
    return adj


def compare_paired(frame, a: list[str], b: list[str], metric: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Paired comparison of runs `a` vs runs `b` on a tidy per-user frame (name, user, metric) (chapter 05).

    Each user's metric is averaged over the runs of `a` and over the runs of `b` (e.g. the same layer sets trained
    two ways), so users stay the independent unit; returns the mean difference a − b with its bootstrap CI, the paired
    t and Wilcoxon p-values, and `clear`: whether the CI excludes 0.
    """
    if not a or not b:
        raise ValueError("a and b must each name at least one run")
    missing = sorted((set(a) | set(b)) - set(frame["name"]))
    if missing:
        raise KeyError(f"no per-user rows for {missing}")
    wide = frame[frame["name"].isin([*a, *b])].pivot_table(index="user", columns="name", values=metric)
    wide = wide.dropna()  # users every run was evaluated on
    x, y = wide[list(a)].mean(axis=1).to_numpy(), wide[list(b)].mean(axis=1).to_numpy()
    diff, lo, hi = paired_diff_ci(x, y, n_boot=n_boot, seed=seed)
    return {"diff": diff, "ci_low": lo, "ci_high": hi, **paired_test(x, y), "n_users": int(len(x)),
            "clear": bool(lo > 0 or hi < 0)}


def holm_family(rows: list[dict], alpha: float = 0.05, p: str = "wilcoxon_p") -> list[dict]:
    """One Holm correction over a family of `compare_paired` results tested together (chapter 05).

    Each row gains `holm_p` (Holm-adjusted `p` over all rows), `ci_clear` (its bootstrap CI excludes 0) and `clear`,
    now requiring both: the CI excludes 0 and `holm_p` < `alpha`.
    """
    adj = holm([r[p] for r in rows]) if rows else []
    out = []
    for r, q in zip(rows, adj):
        ci_clear = bool(r["ci_low"] > 0 or r["ci_high"] < 0)
        out.append({**r, "holm_p": float(q), "ci_clear": ci_clear, "clear": bool(ci_clear and q < alpha),
                    "alpha": float(alpha)})
    return out


def empirical_p(value: float, null, alternative: str = "greater") -> float:
    """One-sided Monte Carlo p-value of `value` against draws from a null distribution (chapter 04).

    "greater": (1 + #{null >= value}) / (n + 1), the chance that a null draw does at least as well; "less" mirrors it.
    Exact when `value` is exchangeable with the draws under the null (e.g. a rule's layer set vs random layer sets);
    ties count against `value`, and the smallest attainable p is 1 / (n + 1).
    """
    z = np.asarray(null, dtype=float).reshape(-1)
    if len(z) == 0:
        raise ValueError("empirical_p needs at least one null draw")
    if alternative == "greater":
        hits = int(np.sum(z >= value))
    elif alternative == "less":
        hits = int(np.sum(z <= value))
    else:
        raise ValueError(f"alternative must be 'greater' or 'less', not {alternative!r}")
    return (1 + hits) / (len(z) + 1)


def against_null(values, null, alternative: str = "greater"):
    """Each named value against one null sample: empirical p (`empirical_p`) and Holm-adjusted p across the values
    (chapter 04: every selection rule against the random layer sets).

    Args:
        values: a mapping or Series name -> value (e.g. each rule's test NDCG@10).
        null: the null draws (e.g. the random selections' test NDCG@10).
    Returns:
        a frame indexed by name: value, null_mean, null_ge (draws at least as good), p, p_holm.
    """
    import pandas as pd

    v = pd.Series(values, dtype=float)
    z = np.asarray(null, dtype=float).reshape(-1)
    p = np.array([empirical_p(x, z, alternative) for x in v.to_numpy()])
    return pd.DataFrame({"value": v.to_numpy(), "null_mean": float(z.mean()) if len(z) else np.nan,
                         "null_ge": [int(np.sum(z >= x)) for x in v.to_numpy()], "p": p, "p_holm": holm(p)},
                        index=v.index)

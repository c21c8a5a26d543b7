"""Statistics for honest comparisons: the bootstrap, the paired per-user comparison, Holm's correction, the t-interval
across seeds and rank correlations.

Introduced for chapters 03–05 (CIs of importance scores, retention, correlations, tests against a null); chapter 07
pools seeds with `across_seeds`. Per-user metric vectors are paired by user, so every two-model comparison here is a
paired one (`paired_comparison`). One resampler serves every bootstrap of a mean (`bootstrap_means`).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

__all__ = ["bootstrap_means", "bootstrap_ci", "paired_ratio_ci", "paired_comparison", "compare_runs", "holm",
           "holm_family", "across_seeds", "spearman_ci", "kendall_tau"]


def bootstrap_means(values, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of the mean over the rows of `values` (S,) or (S, K): rows resampled with replacement
    through multinomial resampling counts, the one resampler of every bootstrap in the book (chapter 03).
    # -> (n_boot,) or (n_boot, K)"""
    v = np.asarray(values, dtype=float)
    S = len(v)
    counts = np.random.default_rng(seed).multinomial(S, np.full(S, 1.0 / S), size=n_boot)  # (n_boot, S)
    return counts @ v / S


def bootstrap_ci(values, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, transform=None):
    """(estimate, low, high): the percentile bootstrap CI of the mean over the rows of `values` (`bootstrap_means`),
    or of `transform(mean)` (a (K,) mean vector to a value or a vector: a ratio of means, a normalisation). Floats for
    a scalar estimate, else arrays of its shape (chapter 03: every column of a per-user table at once)."""
    v = np.asarray(values, dtype=float)
    boots = bootstrap_means(v, n_boot, seed)
    if transform is not None:
        boots = np.stack([transform(b) for b in boots])
    est = v.mean(0) if transform is None else transform(v.mean(0))
    lo, hi = np.quantile(boots, alpha / 2, axis=0), np.quantile(boots, 1 - alpha / 2, axis=0)
    if np.ndim(est) == 0:
        return float(est), float(lo), float(hi)
    return est, lo, hi


def paired_ratio_ci(num, den, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(ratio, low, high) of mean(num) / mean(den), resampling users jointly (e.g. retention = student / teacher)."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors must have the same shape, got {a.shape} and {b.shape}")
    boots = bootstrap_means(np.stack([a, b], axis=1), n_boot, seed)  # (n_boot, 2)
    ratios = boots[:, 0] / np.maximum(boots[:, 1], 1e-12)
    return float(a.mean() / max(b.mean(), 1e-12)), float(np.quantile(ratios, alpha / 2)), \
        float(np.quantile(ratios, 1 - alpha / 2))


def paired_comparison(a, b, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    """a vs b, paired by user (chapter 02's depth curve and H4, chapter 03's ablation, chapters 05 and 06's tests).

    Returns `diff` = mean(a - b) with its percentile bootstrap CI (`ci_low`, `ci_high`), the two-sided paired t and
    Wilcoxon signed-rank p-values (`t_p`, `wilcoxon_p`; 1.0 when a equals b for every user), `n_users`, and `clear`:
    whether the CI excludes 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    diff, lo, hi = bootstrap_ci(d, n_boot, alpha, seed)
    differ = bool(np.any(d != 0))
    return {"diff": diff, "ci_low": lo, "ci_high": hi,
            "t_p": float(sps.ttest_rel(a, b).pvalue) if differ else 1.0,
            "wilcoxon_p": float(sps.wilcoxon(d).pvalue) if differ else 1.0,
            "n_users": int(len(d)), "clear": bool(lo > 0 or hi < 0)}


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
    """Holm–Bonferroni adjusted p-values of the hypotheses tested together (chapters 04-07); a NaN p-value (a test
    that could not be run) stays NaN and does not count in the family."""
    p = np.asarray(pvalues, dtype=float)
    adj = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, (len(ok) - rank) * p[i])
        adj[i] = min(1.0, running)
    return adj


def compare_runs(frame, a: list[str], b: list[str], metric: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """`paired_comparison` of runs `a` vs runs `b` on a tidy per-user frame (name, user, metric) (chapter 05).

    Each user's metric is averaged over the runs of `a` and over the runs of `b` (e.g. the same layer sets trained
    two ways), so users stay the independent unit; users some run was not evaluated on are left out.
    """
    if not a or not b:
        raise ValueError("a and b must each name at least one run")
    missing = sorted((set(a) | set(b)) - set(frame["name"]))
    if missing:
        raise KeyError(f"no per-user rows for {missing}")
    wide = frame[frame["name"].isin([*a, *b])].pivot_table(index="user", columns="name", values=metric)
    wide = wide.dropna()  # users every run was evaluated on
    x, y = wide[list(a)].mean(axis=1).to_numpy(), wide[list(b)].mean(axis=1).to_numpy()
    return paired_comparison(x, y, n_boot=n_boot, seed=seed)


def holm_family(rows: list[dict], alpha: float = 0.05, p: str = "wilcoxon_p") -> list[dict]:
    """One Holm correction over a family of `paired_comparison` results tested together (chapter 05).

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


def across_seeds(effects, null: float = 0.0, level: float = 0.95) -> dict:
    """The t-interval across seeds: one-sample t interval at `level` and two-sided t-test against `null` of one effect
    per seed, seeds being the units (users are nested in seeds; chapter 07's criteria, the depth sweep). Returns
    n_seeds, estimate (the mean), ci_low, ci_high and p; NaN interval and p for fewer than two seeds, and NaN p when
    every seed has the same effect away from `null` (no spread: the test is undefined, not infinitely sure)."""
    x = np.asarray(effects, float)
    n, m = len(x), float(np.mean(x)) if len(x) else math.nan
    if n < 2:
        return {"n_seeds": n, "estimate": m, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    se = float(np.std(x, ddof=1)) / math.sqrt(n)
    h = float(sps.t.ppf(0.5 + level / 2, n - 1)) * se
    # every seed the same (to rounding): no spread to test against; p 1 at the null, else undefined (NaN), never 0
    spread = se > 1e-12 * max(abs(m), abs(null), 1e-300)
    p = 2 * float(sps.t.sf(abs(m - null) / se, n - 1)) if spread else 1.0 if abs(m - null) <= 1e-12 else math.nan
    return {"n_seeds": n, "estimate": m, "ci_low": m - h, "ci_high": m + h, "p": p}

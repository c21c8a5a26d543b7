"""Statistics (`lab.evaluation.stats`): bootstrap CIs, paired ratios and comparisons, comparisons of runs, Holm's
adjustment, the t-interval across seeds."""
import math

import numpy as np
import pandas as pd
import pytest

from scipy import stats as sps

from lab.evaluation import (across_seeds, bootstrap_ci, bootstrap_means, compare_runs, holm, kendall_tau,
                            paired_comparison, paired_ratio_ci, spearman_ci)


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 50), rng.normal(1.0, 1.0, 5000)
    est, lo, hi = bootstrap_ci(small)
    assert lo <= est <= hi and est == pytest.approx(small.mean())
    _, lo2, hi2 = bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 3 and lo2 < 1.0 < hi2


def test_paired_ratio_and_diff():
    t = np.array([0.2, 0.4, 0.6, 0.8])
    r, lo, hi = paired_ratio_ci(0.5 * t, t)
    assert r == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)  # exact every resample
    c = paired_comparison(t + 0.1, t)
    assert (c["diff"], c["ci_low"], c["ci_high"]) == pytest.approx((0.1, 0.1, 0.1)) and c["clear"]
    assert c["n_users"] == 4
    with pytest.raises(ValueError):
        paired_ratio_ci(t, t[:3])
    same = paired_comparison(t, t)
    assert (same["t_p"], same["wilcoxon_p"], same["clear"]) == (1.0, 1.0, False)  # identical runs: nothing to test


def test_one_resampler_for_vectors_and_tables():
    """The bootstrap of a vector is column 0 of the bootstrap of a table with that column: one resampling of rows."""
    rng = np.random.default_rng(2)
    v = rng.random((30, 3))
    boots = bootstrap_means(v, 50, seed=7)
    assert boots.shape == (50, 3)
    np.testing.assert_allclose(bootstrap_means(v[:, 0], 50, seed=7), boots[:, 0], rtol=1e-12)
    est, lo, hi = bootstrap_ci(v, 50, seed=7)
    np.testing.assert_allclose(est, v.mean(0))
    np.testing.assert_allclose(lo, np.quantile(boots, 0.025, axis=0))
    e0, lo0, hi0 = bootstrap_ci(v[:, 0], 50, seed=7)
    assert isinstance(e0, float) and (lo0, hi0) == pytest.approx((lo[0], hi[0]), rel=1e-12)
    r, rlo, rhi = paired_ratio_ci(v[:, 0], v[:, 1], 50, seed=7)  # the same resamples, read as a ratio of means
    ratios = boots[:, 0] / boots[:, 1]
    assert (rlo, rhi) == pytest.approx((np.quantile(ratios, 0.025), np.quantile(ratios, 0.975)), rel=1e-12)
    share = bootstrap_ci(v, 50, seed=7, transform=lambda m: m[0] / m.sum())
    assert share[0] == pytest.approx(v.mean(0)[0] / v.mean(0).sum()) and isinstance(share[1], float)


def test_compare_runs_finds_a_real_shift_and_not_noise():
    rng = np.random.default_rng(1)
    users = np.arange(400)
    base = rng.random(400)
    noise = lambda: rng.normal(0, 0.01, 400)
    frame = pd.concat([pd.DataFrame({"name": n, "user": users, "m": v}) for n, v in
                       [("a1", base + 0.05 + noise()), ("a2", base + 0.05 + noise()),
                        ("b1", base + noise()), ("b2", base + noise()), ("c1", base + noise())]])
    shift = compare_runs(frame, ["a1", "a2"], ["b1", "b2"], "m")
    assert shift["diff"] == pytest.approx(0.05, abs=0.003) and shift["clear"] and shift["t_p"] < 1e-6
    assert shift["n_users"] == 400
    same = compare_runs(frame, ["c1"], ["b1"], "m")
    assert same["ci_low"] < 0 < same["ci_high"] and not same["clear"]
    with pytest.raises(KeyError):
        compare_runs(frame, ["a1"], ["zz"], "m")
    wide = frame.pivot(index="user", columns="name", values="m")
    assert shift == paired_comparison(wide[["a1", "a2"]].mean(axis=1), wide[["b1", "b2"]].mean(axis=1))


def test_across_seeds_matches_scipy():
    x = [0.1, 0.3, -0.05, 0.2]
    out = across_seeds(x)
    ref = sps.ttest_1samp(x, 0.0)
    lo, hi = ref.confidence_interval(0.95)
    assert out["p"] == pytest.approx(ref.pvalue) and out["ci_low"] == pytest.approx(lo)
    assert out["ci_high"] == pytest.approx(hi) and out["n_seeds"] == 4 and out["estimate"] == pytest.approx(0.1375)
    ninety = across_seeds(x, null=0.5, level=0.9)
    assert ninety["p"] == pytest.approx(sps.ttest_1samp(x, 0.5).pvalue)
    assert ninety["ci_low"] == pytest.approx(sps.ttest_1samp(x, 0.0).confidence_interval(0.9)[0])
    one = across_seeds([0.1])
    assert one["estimate"] == 0.1 and math.isnan(one["p"]) and math.isnan(one["ci_low"])
    # every seed the same: no spread, so no test (NaN), never p = 0; at the null itself p = 1
    assert math.isnan(across_seeds([0.2, 0.2, 0.2])["p"]) and across_seeds([0.0, 0.0])["p"] == 1.0


def test_holm_keeps_nan_out_of_the_family():
    adj = holm([0.01, 0.04, 0.03, float("nan")])
    assert np.allclose(adj[:3], [0.03, 0.06, 0.06]) and math.isnan(adj[3])
    assert np.allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_rank_statistics_and_holm():
    x = np.arange(10.0)
    rho, lo, hi = spearman_ci(x, x ** 2)
    assert rho == pytest.approx(1.0) and lo == pytest.approx(1.0)
    assert kendall_tau(x, -x) == pytest.approx(-1.0)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])

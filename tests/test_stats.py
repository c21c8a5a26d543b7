"""Statistics: bootstrap CIs, paired ratios and differences, paired comparisons of runs, Holm's adjustment."""
import numpy as np
import pandas as pd
import pytest

from lab.stats import (bootstrap_ci, compare_paired, holm, kendall_tau, paired_diff_ci, paired_ratio_ci, paired_test,
                       spearman_ci)


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
    d, lo, hi = paired_diff_ci(t + 0.1, t)
    assert (d, lo, hi) == pytest.approx((0.1, 0.1, 0.1))
    with pytest.raises(ValueError):
        paired_ratio_ci(t, t[:3])
    assert paired_test(t, t)["t_p"] == 1.0  # identical runs: nothing to test


def test_compare_paired_finds_a_real_shift_and_not_noise():
    rng = np.random.default_rng(1)
    users = np.arange(400)
    base = rng.random(400)
    noise = lambda: rng.normal(0, 0.01, 400)
    frame = pd.concat([pd.DataFrame({"name": n, "user": users, "m": v}) for n, v in
                       [("a1", base + 0.05 + noise()), ("a2", base + 0.05 + noise()),
                        ("b1", base + noise()), ("b2", base + noise()), ("c1", base + noise())]])
    shift = compare_paired(frame, ["a1", "a2"], ["b1", "b2"], "m")
    assert shift["diff"] == pytest.approx(0.05, abs=0.003) and shift["clear"] and shift["t_p"] < 1e-6
    assert shift["n_users"] == 400
    same = compare_paired(frame, ["c1"], ["b1"], "m")
    assert same["ci_low"] < 0 < same["ci_high"] and not same["clear"]
    with pytest.raises(KeyError):
        compare_paired(frame, ["a1"], ["zz"], "m")


def test_rank_statistics_and_holm():
    x = np.arange(10.0)
    rho, lo, hi = spearman_ci(x, x ** 2)
    assert rho == pytest.approx(1.0) and lo == pytest.approx(1.0)
    assert kendall_tau(x, -x) == pytest.approx(-1.0)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])

"""Chapter 03 in the smoke profile: the Fisher is exact against the loop, the tables follow the contract chapter 04
reads, and the recorded results are consistent."""
import numpy as np

import lab
from lab import fisher as lf


def test_chapter_03(smoke_book):
    r = smoke_book.run("03")["03_fisher"]
    L = r["n_layers"]
    assert L == 8 and r["n_samples"] > 0
    assert r["fast_vs_loop_max_rel_diff"] < 1e-5
    assert 0.0 <= r["lower_half_share"] <= 1.0
    lo, hi = r["lower_half_share_ci"]
    assert lo <= r["lower_half_share"] <= hi
    assert len(r["top_layers_fisher"]) == 3 and all(0 <= i < L for i in r["top_layers_fisher"])
    for k in ("kendall_tau_halves", "spearman_fisher_vs_ablation", "spearman_true_vs_empirical",
              "spearman_wrong_vs_empirical"):
        assert -1.0 <= r[k] <= 1.0, k
    assert r["kendall_tau_halves"] > 0.3  # the ranking is not noise on the smoke teacher
    assert 0 <= r["top3_overlap_fisher_ablation"] <= 3 and 0 < r["top2_share_fisher"] <= 1
    assert r["runtime_s"] < 300
    P = lab.paths("smoke", smoke_book.artefacts)
    imp = lf.load_importance(P)
    assert list(imp.columns) == ["layer_idx", "signal", "norm", "value", "ci_low", "ci_high"]
    assert set(imp.signal) == set(lf.SIGNALS)
    for s in lf.SIGNALS:
        v = lf.importance_vector(imp, s, "per_param")
        assert v.shape == (L,) and np.isfinite(v).all(), s
    fisher = imp[imp.signal == "fisher_empirical"]
    assert set(fisher.norm) == {"per_param", "total", "max"} and (fisher.value >= 0).all()
    assert (fisher.ci_low <= fisher.value + 1e-12).all() and (fisher.value <= fisher.ci_high + 1e-12).all()
    top = list(np.argsort(-lf.importance_vector(imp, "fisher_empirical", "per_param"))[:3])
    assert top == r["top_layers_fisher"]
    groups = lf.load_groups(P)
    assert {"layer_idx", "group", "estimator", "subset", "value"} <= set(groups.columns)
    assert {"all", "item:head", "item:tail", "user:low", "user:high"} <= set(groups.subset)
    assert (P.figures / "03_fisher_heatmap.png").exists()

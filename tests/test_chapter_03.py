"""Chapter 03 in the smoke profile: the values it records are recomputed here, independently, from its saved
artefacts (`importance.parquet`, `fisher_groups.parquet`) and the saved teacher: the Fisher by the per-user loop, the
ablation drop on the validation split, and every share and rank correlation the chapter prints."""
import numpy as np
import pytest
from scipy.stats import spearmanr

import lab
from lab import fisher as lf
from lab import importance as li
from lab.data import load_rec_data
from lab.models import SeqRecModel


@pytest.fixture(scope="module")
def ch03(smoke_book):
    r = smoke_book.run("03")["03_fisher"]
    P = lab.paths("smoke", smoke_book.artefacts)
    return r, P, lab.load_importance(P)


def test_chapter_03_tables_follow_the_contract(ch03):
    r, P, imp = ch03
    L = r["n_layers"]
    assert L == 8 and r["n_samples"] > 0
    assert list(imp.columns) == ["layer_idx", "signal", "norm", "value", "ci_low", "ci_high"]
    assert set(imp.signal) == set(lf.SIGNALS)
    for s in lf.SIGNALS:
        v = lf.importance_vector(imp, s, "per_param")
        assert v.shape == (L,) and np.isfinite(v).all(), s
    assert set(imp.loc[imp.signal == "fisher_empirical", "norm"]) == {"per_param", "total", "max"}
    groups = lf.load_groups(P)
    assert {"all", "item:head", "item:tail", "user:low", "user:high"} <= set(groups.subset)
    # the per-group table and the per-layer table are two views of one estimate: groups of a layer sum to its total
    g = groups[(groups.estimator == "fisher_empirical") & (groups.subset == "all") & (groups.seed == 0)
               & (groups.norm == "total") & groups.layer_idx.between(0, L - 1)]
    np.testing.assert_allclose(g.groupby("layer_idx")["value"].sum().to_numpy(),
                               lf.importance_vector(imp, "fisher_empirical", "total"), rtol=1e-9)
    assert (P.figures / "03_fisher_heatmap.png").exists()


def test_chapter_03_records_what_its_tables_say(ch03):
    r, _, imp = ch03
    L = r["n_layers"]
    vec = lambda s, n="per_param": lf.importance_vector(imp, s, n)  # noqa: E731
    total = vec("fisher_empirical", "total")
    assert r["lower_half_share"] == pytest.approx(total[: L // 2].sum() / total.sum(), rel=1e-9)
    assert r["top2_share_fisher"] == pytest.approx(np.sort(total)[-2:].sum() / total.sum(), rel=1e-9)
    top = sorted(range(L), key=lambda i: -vec("fisher_empirical")[i])[:3]
    assert r["top_layers_fisher"] == top
    top_abl = sorted(range(L), key=lambda i: -vec("ablation_drop")[i])[:3]
    assert r["top3_overlap_fisher_ablation"] == len(set(top) & set(top_abl))
    rho = lambda a, b: float(spearmanr(vec(a), vec(b)).statistic)  # noqa: E731
    assert r["spearman_fisher_vs_ablation"] == pytest.approx(rho("fisher_empirical", "ablation_drop"), abs=1e-12)
    assert r["spearman_true_vs_empirical"] == pytest.approx(rho("fisher_true", "fisher_empirical"), abs=1e-12)
    assert r["spearman_wrong_vs_empirical"] == pytest.approx(rho("batchgrad_squared", "fisher_empirical"), abs=1e-12)
    others = [s for s in lf.SIGNALS if s != "ablation_drop"]
    assert r["best_signal_vs_ablation"] == max(others, key=lambda s: rho(s, "ablation_drop"))
    # "roughly 1/batch size": the recorded scale is the median layer ratio of the wrong estimator to the Fisher
    assert r["wrong_scale_median"] == pytest.approx(np.median(vec("batchgrad_squared") / vec("fisher_empirical")))
    assert r["wrong_inv_batch"] == pytest.approx(1 / lf.FisherConfig.for_profile("smoke").wrong_batch_size)
    # the exactness check passed under the chapter's own tolerance, and that tolerance is tight
    assert r["fast_vs_loop_max_rel_diff"] < r["exact_tol"] <= 1e-8
    # the stability label follows the recorded tau and the thresholds of the parameters cell
    th = r["stability_thresholds"]
    tau = r["kendall_tau_halves"]
    assert r["stability_label"] == ("stable" if tau >= th["stable"] else
                                    "moderately stable" if tau >= th["moderate"] else "unstable")
    assert tau > 0.3  # on the smoke teacher the layer ranking is not noise


def test_chapter_03_fisher_and_ablation_recomputed_from_the_saved_teacher(ch03):
    r, P, imp = ch03
    data, _, _ = load_rec_data(lab.get_config("smoke", 0).data, P, seed=0, progress=False)
    teacher = SeqRecModel.from_pretrained(P.teacher).eval()
    # the chapter's users (seed 0) through the per-user backward loop: the reference, not the hooks it used
    idx = np.sort(np.random.default_rng(0).choice(data.num_users, r["n_samples"], replace=False))
    loop = lf.fisher_loop(teacher, data.train_inputs[idx], data.train_labels[idx])
    np.testing.assert_allclose(loop.layer_values("total"), lf.importance_vector(imp, "fisher_empirical", "total"),
                               rtol=1e-4)
    # the ablation drop is measured on validation users (smoke: all of them), never on test
    assert lf.FisherConfig.for_profile("smoke").ablation_users == 0
    ab = li.ablation_drop(teacher, data, n_users=0, n_boot=0)
    np.testing.assert_allclose(ab["value"].to_numpy(), lf.importance_vector(imp, "ablation_drop"), atol=1e-6)

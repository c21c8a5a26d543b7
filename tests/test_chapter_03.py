"""Chapter 03 in the smoke profile: the values it records are recomputed here, independently, from its saved
artefacts (`importance.parquet`, `fisher_groups.parquet`, `03_probes.parquet`) and the saved teacher: the Fisher by
the per-user loop, the ablation drop on the validation split, every share and rank correlation the chapter prints,
and the planted layer roles (the smoke profile lives in the depth world, so the probes run)."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

import lab
from lab import data as D
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
    k = round(0.3 * L)  # depth bands: bottom and top 30% of the layers (H1's), the rest in the middle
    drop = vec("ablation_drop")
    for band, sl in (("lower", slice(0, k)), ("middle", slice(k, L - k)), ("upper", slice(L - k, L))):
        assert r["band_fisher_share"][band] == pytest.approx(total[sl].sum() / total.sum(), rel=1e-9)
        assert r["band_ablation_drop"][band] == pytest.approx(drop[sl].mean(), rel=1e-9)
        lo, hi = r["band_fisher_share_ci"][band]
        assert lo <= r["band_fisher_share"][band] <= hi
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
    assert r["fast_vs_loop_max_rel_diff"] == max(r["fast_vs_loop_by_method"].values())
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


def test_chapter_03_probes_recorded_from_their_table(ch03):
    r, P, imp = ch03
    L = r["n_layers"]
    tab = pd.read_parquet(P.file("03_probes.parquet"))
    assert list(tab.columns) == lf.PROBE_COLUMNS
    variables = list(dict.fromkeys(tab["variable"]))
    assert variables == list(lf.VARIABLES) and set(r["probe_accuracy"]) == set(variables)  # results.json sorts keys
    acc = tab.pivot(index="layer_idx", columns="variable", values="accuracy")[variables]
    assert list(acc.index) == list(range(-1, L))  # the embeddings, then the output of every layer
    base = tab.drop_duplicates("variable").set_index("variable")
    within = r["probe_within"]
    for v in variables:
        assert r["probe_accuracy"][v] == {str(i): pytest.approx(a, abs=1e-12) for i, a in acc[v].items()}
        assert r["probe_majority"][v] == pytest.approx(base.loc[v, "majority"], abs=1e-12)
        n = base.loc[v, ["n_train", "n_test", "n_undefined"]].astype(int).tolist()
        assert r["probe_counts"][v] == dict(zip(("train", "test", "undefined"), n))
        assert sum(n) == r["probe_users"]
        best = acc[v].max()  # decodable: the first layer within `within` of the best, if the best beats the majority
        expect = (int(acc.index[(acc[v] >= best - within).to_numpy()][0]) if best - base.loc[v, "majority"] > within
                  else None)
        assert r["probe_decodable_at"][v] == expect, v
    gain = acc.diff().iloc[1:].sum(axis=1)  # layer l adds accuracy(l) - accuracy(l - 1), summed over variables
    assert r["probe_gain_total"] == {str(i): pytest.approx(g, abs=1e-12) for i, g in gain.items()}
    fisher = lf.importance_vector(imp, "fisher_empirical", "per_param")
    assert r["probe_fisher_spearman"] == pytest.approx(spearmanr(fisher, gain.to_numpy()).statistic, abs=1e-12)
    lo, hi = r["probe_fisher_spearman_ci"]
    assert lo <= r["probe_fisher_spearman"] <= hi
    assert (P.figures / "03_probe_accuracy.png").exists()


def test_chapter_03_probe_counts_recounted_from_the_world(ch03):
    """The undefined rows the chapter counted, recounted on the smoke world rebuilt here: each validation window
    mapped to generated ids by parent_asin, the planted variables of `lab.data` (smoke probes every user)."""
    r, P, _ = ch03
    cfg = lab.get_config("smoke", 0).data
    assert D.is_depth_world(cfg) and lf.ProbeConfig.for_profile("smoke").n_users == 0
    data, _, _ = load_rec_data(cfg, P, seed=0, progress=False)
    world = D.synthetic_world(cfg, 0)
    gen = {a: g for g, a in enumerate(world.item_ids)}
    windows = [[gen[data.item_ids[i]] for i in h if i != 0] for h in data.valid_history.tolist()]
    planted = D.planted_variables(world, windows)
    assert r["probe_users"] == len(windows)
    for v in lf.VARIABLES:
        assert r["probe_counts"][v]["undefined"] == int((planted[v] == -1).sum()), v

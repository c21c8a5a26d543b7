"""The calls chapters 01-05 make instead of carrying loops: chapter 03's and chapter 04's glue
(lab.chapters.c03_fisher, lab.chapters.c04_selection), lab.evaluation.score_table, the chapter-05 helpers of
lab.distill and lab.data.bad_input; and the one row sampler and the one single-layer ablation they share."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from lab import fisher as lf
from lab.chapters import c03_fisher as C3
from lab import importance as li
from lab.data import DataError, read_reviews
from lab.data.bad_input import corrupt_copy, file_level_errors
from lab.distill import DistillGrid, comparison_records, describe_adapter, scratch_retention, teacher_key
from lab.chapters.c04_selection import ablation_reference, mean_by_k, rule_report, share_beaten, signal_spearman
from lab.selection import GreedyValidSearch
from lab.evaluation import score_split, score_table

from toys import N_ITEMS, tiny_model

L = 4


@pytest.fixture(scope="module")
def model():  # layers that change the stream, so removing one changes the ranking
    return tiny_model(L, layer_std=0.3).eval()


# -- one sampler, one ablation -----------------------------------------------------------------------------------------
def test_sample_rows_is_the_one_seeded_sampler():
    assert lf.sample_rows(10, 0).tolist() == list(range(10)) == lf.sample_rows(10, None).tolist()
    assert lf.sample_rows(10, 12, seed=3).tolist() == list(range(10))
    want = np.sort(np.random.default_rng(5).choice(100, 7, replace=False))
    assert lf.sample_rows(100, 7, seed=5).tolist() == want.tolist()


def test_greedy_search_and_ablation_use_the_same_users_and_the_same_drop(model, data):
    search = GreedyValidSearch(model, data, n_users=25, seed=2)
    sub = li.subsample_valid(data, 25, seed=2)
    assert torch.equal(search.history, sub.valid_history) and torch.equal(search.target, sub.valid_target)
    drops = search.single_layer_drops()
    ab = li.ablation_drop(model, data, n_users=25, seed=2, n_boot=0)
    np.testing.assert_array_equal(drops, ab["value"].to_numpy())  # one function behind both
    full = search.full
    for i in range(L):  # and the greedy search scores the same students the same way
        assert drops[i] == pytest.approx(full - search.score([j for j in range(L) if j != i]), abs=1e-12)


def test_ablation_reference_reuses_chapter_03s_drop_or_computes_it(model, data):
    search = GreedyValidSearch(model, data, n_users=25, seed=2)
    table = pd.concat([lf.importance_rows("ablation_drop", [0.3, 0.1, 0.2, 0.0]),
                       lf.importance_rows("magnitude", [1.0, 2.0, 3.0, 4.0])], ignore_index=True)
    drop, source = ablation_reference(table, search)
    assert drop.tolist() == [0.3, 0.1, 0.2, 0.0] and source == "chapter 03's ablation_drop"
    drop, source = ablation_reference(table[table.signal != "ablation_drop"], search)
    np.testing.assert_array_equal(drop, search.single_layer_drops())
    assert "greedy validation search" in source and "25 validation users" in source


def test_signal_spearman_against_the_drop():
    table = pd.concat([lf.importance_rows("magnitude", [1.0, 2.0, 3.0, 4.0]),
                       lf.importance_rows("grad_norm", [4.0, 3.0, 2.0, 1.0]),
                       lf.importance_rows("angular", [1.0, 1.0, 1.0, 1.0])], ignore_index=True)
    corr = signal_spearman(table, np.array([0.1, 0.2, 0.3, 0.4]), n_boot=50)
    assert corr["signal"].tolist() == ["magnitude", "grad_norm", "angular"]  # best first, constant (NaN) last
    assert corr["spearman"].iloc[0] == pytest.approx(1.0) and corr["spearman"].iloc[1] == pytest.approx(-1.0)
    assert np.isnan(corr["spearman"].iloc[2])


# -- chapter 04's verdict -------------------------------------------------------------------------------------------
def selections():
    rows = [{"rule": "random", "k": 2, "draw": d, "layers": f"r{d}", "valid_ndcg@10": 0.1 + 0.01 * d,
             "test_ndcg@10": 0.1 + 0.01 * d} for d in range(9)]
    for rule, layers, v, t in [("fisher_topk", "0,3", 0.30, 0.20), ("uniform", "0,2", 0.25, 0.26),
                               ("greedy_valid", "1,2", 0.40, 0.22), ("fisher_topk[fisher_true/max]", "0,1", 0.5, 0.5)]:
        rows.append({"rule": rule, "k": 2, "draw": 0, "layers": layers, "valid_ndcg@10": v, "test_ndcg@10": t})
    rows.append({"rule": "teacher", "k": 4, "draw": 0, "layers": "0,1,2,3", "valid_ndcg@10": 0.5,
                 "test_ndcg@10": 0.5})
    return pd.DataFrame(rows)


def per_user(sel, n_users=40, seed=0):
    """Per-user test values of every layer set whose mean over the users is the set's test NDCG@10 in `sel`."""
    rng = np.random.default_rng(seed)
    out = []
    for layers, mean in sel.groupby("layers")["test_ndcg@10"].first().items():
        noise = rng.normal(0, 0.05, n_users)
        out.append(pd.DataFrame({"layers": layers, "user": np.arange(n_users),
                                 "test_ndcg@10": mean + noise - noise.mean()}))
    return pd.concat(out, ignore_index=True)


def test_rule_report_chooses_on_validation_and_tests_against_the_draws():
    sel = selections()
    rep = rule_report(sel, per_user(sel), 2)
    assert rep.main == ["fisher_topk", "greedy_valid", "uniform"]  # neither random nor the [signal/norm] variants
    assert rep.best_rule == "fisher_topk[fisher_true/max]" and rep.best_test == 0.5  # validation picks it
    assert (rep.greedy_valid, rep.greedy_test) == (0.40, 0.22)
    assert rep.above_greedy == ["fisher_topk[fisher_true/max]", "uniform"]
    # per user, each rule minus the mean of the 9 draws (0.14 on average): the table's mean differences
    assert rep.tests.loc["uniform", "diff"] == pytest.approx(0.26 - 0.14)
    assert rep.table.loc["fisher_topk", "minus_random"] == pytest.approx(0.20 - 0.14)
    assert list(rep.tests.index) == rep.main and rep.tests["n_users"].eq(40).all()
    assert len(rep.random_test) == 9 and rep.random_valid.mean() == pytest.approx(0.14)


def test_share_beaten_and_mean_by_k():
    assert share_beaten([0.1, 0.2, 0.3, 0.4], 0.3) == pytest.approx(0.625)  # two below, one tie (half)
    assert np.isnan(share_beaten([0.1], float("nan")))
    m = mean_by_k(selections(), ["random", "uniform"])
    assert m.loc[2, "random"] == pytest.approx(0.14) and m.loc[2, "uniform"] == 0.26


# -- chapter 03's report --------------------------------------------------------------------------------------------
def test_fisher_report_pieces(model, data):
    idx = lf.sample_rows(data.num_users, 12, seed=0)
    x, y = data.train_inputs[idx], data.train_labels[idx]
    buckets = lf.item_buckets(data.item_counts)
    sets = lf.label_sets(model, x, y, buckets, n_draws=2, seed=0)
    assert set(sets) == {"fisher_empirical", "fisher_true", "item:head", "item:torso", "item:tail"}
    assert sets["fisher_true"].shape == (2, *y.shape) and lf.backward_passes(sets) == 1 + 2 + 3
    table = C3.bucket_table(buckets, sets)
    assert table["items"].sum() == N_ITEMS and table["labelled positions"].sum() == int((y != -100).sum())
    est = lf.fisher_hooks(model, x, sets, chunk_size=6)
    wrong = lf.batchgrad_squared(model, x, y, 4)
    ubucket = lf.user_buckets(lf.user_activity(data)[idx])
    cfg = lf.FisherConfig(n_samples=12, chunk_size=6, n_boot=10)
    groups, seed_layers = C3.fisher_groups(est, wrong, ubucket, model, data, cfg, seed=0, n_seeds=2)
    assert sorted(seed_layers) == [0, 1] and len(seed_layers[1]) == L
    assert set(groups.subset) == {"all", "user:low", "user:mid", "user:high", "item:head", "item:torso", "item:tail"}
    assert set(groups[groups.seed == 1].estimator) == {"fisher_empirical"}
    shares = C3.subset_shares(groups, L, seed=0)
    np.testing.assert_allclose(shares.groupby("subset")["share"].sum(), 1.0)
    total = est["fisher_empirical"].layer_values("total")
    np.testing.assert_allclose(shares[shares.subset == "all"].sort_values("layer_idx")["value"], total, rtol=1e-9)
    rates = lf.users_per_second(model, x[:4], y[:4], ("loop", "hooks"), chunk_size=4)
    assert set(rates) == {"loop", "hooks"} and all(v > 0 for v in rates.values())


def test_agreement_top_layers_and_shares():
    vec = {s: np.arange(1.0, 5.0) for s in lf.SIGNALS}
    vec["grad_norm"] = np.arange(4.0, 0.0, -1.0)
    agree = lf.signal_agreement(vec, n_boot=20).set_index("signal")
    assert "ablation_drop" not in agree.index and len(agree) == len(lf.SIGNALS) - 1
    assert agree.loc["magnitude", "spearman_vs_ablation"] == pytest.approx(1.0)
    assert agree.loc["grad_norm", "spearman_vs_fisher_empirical"] == pytest.approx(-1.0)
    assert C3.top_layers([0.1, 0.5, 0.3, 0.2], 2) == [1, 2]
    assert C3.top_share([1.0, 3.0, 2.0, 4.0], 2) == pytest.approx(0.7)


def test_stream_norms(model, data):
    s = li.stream_norms(model, li.subsample_valid(data, 10, seed=0))
    lp = li.layer_pass(model, li.subsample_valid(data, 10, seed=0).valid_history)
    assert s.shape == (L,)
    np.testing.assert_allclose(s, lp.last[:, :L].norm(dim=-1).mean(0).numpy())


# -- chapter 02 -------------------------------------------------------------------------------------------------------
def test_score_table_matches_score_split(model, data):
    table, per_user = score_table({"m": model.recommend_scores, "again": model.recommend_scores}, data)
    assert table[["model", "split"]].values.tolist() == [["m", "valid"], ["again", "valid"], ["m", "test"],
                                                          ["again", "test"]]
    for split in ("valid", "test"):
        want = score_split(model, data, split)[0]
        got = table[(table.model == "m") & (table.split == split)].iloc[0]
        assert got["ndcg@10"] == pytest.approx(want["ndcg@10"], abs=1e-12)
    assert list(per_user["model"].unique()) == ["m", "again"] and len(per_user) == 2 * len(data.test_target)


# -- chapter 05 -------------------------------------------------------------------------------------------------------
def test_grid_splits_and_variant_runs():
    grid = DistillGrid(rules=("fisher_topk", "top"), main_rules=("fisher_topk",), variants=("ce", "kd+layer"),
                       weightings=("depth",))
    sets = [("fisher_topk", "fisher_topk", 0, [0, 3]), ("top", "top", 0, [2, 3])]
    assert grid.split_sets(sets) == ([sets[0]], [sets[1]])
    assert grid.variant_runs(sets) == {"ce": ["fisher_topk:ce"], "kd+depth": ["fisher_topk:kd+depth"]}


def test_scratch_retention_and_records(tmp_path):
    te = pd.DataFrame({"model": ["teacher (8 layers)"] * 3 + ["small (2 layers)"] * 3, "user": [0, 1, 2] * 2,
                       "ndcg@10": [0.2, 0.4, 0.6, 0.1, 0.2, 0.3], "hr@10": 0.5, "mrr": 0.1})
    teacher_pu = te[te.model.str.startswith("teacher")][["user", "ndcg@10", "hr@10", "mrr"]]
    sr = scratch_retention(te, teacher_pu, seed=0)
    assert sr["name"] == "small (2 layers)" and sr["retention"] == pytest.approx(0.5)
    assert scratch_retention(te[te.model.str.startswith("teacher")], teacher_pu) is None
    comp = pd.DataFrame([{"a": "kd", "b": "ce", "diff": np.float64(0.1), "ci_low": 0.0, "ci_high": 0.2,
                          "wilcoxon_p": 0.01, "holm_p": 0.02, "clear": np.bool_(True), "ci_clear": True,
                          "a_runs": ("x:kd",), "b_runs": ("x:ce",)}])
    rec = comparison_records(comp)
    assert rec == {"kd vs ce": {"diff": 0.1, "ci_low": 0.0, "ci_high": 0.2, "wilcoxon_p": 0.01, "holm_p": 0.02,
                                "clear": True, "ci_clear": True, "a_runs": ["x:kd"], "b_runs": ["x:ce"]}}
    json.dumps(rec)  # plain values
    full = pd.Series({"trainable_params": 1000, "peak_mem_mb": 10.0, "total_seconds": 5.0, "tpme": 0.5})
    row = pd.Series({"adapter": "lora", "ret_ndcg@10": 0.9, "trainable_params": 100, "peak_mem_mb": 6.0,
                     "total_seconds": 4.0, "tpme": 0.1})
    text = describe_adapter(row, full, pd.Series({1: 1.02, 256: 0.95}), tolerance=0.10)
    assert text.startswith("LORA: retention 90.0%") and "10.0% of full fine-tuning" in text
    assert "the same within 10%" in text
    assert "NOT the same" in describe_adapter(row, full, pd.Series({1: 1.5}), tolerance=0.10)
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "model.safetensors").write_bytes(b"weights")
    want = hashlib.sha256(b"model.safetensors" + b"weights").hexdigest()  # the weights, not how they were trained
    assert teacher_key(tmp_path / "teacher", {"config_hash": "abc"}) == {"teacher": want, "data": "abc"}


# -- chapter 01 -------------------------------------------------------------------------------------------------------
def test_bad_input_copy_and_file_errors(tmp_path):
    reviews = tmp_path / "Toy.jsonl"
    reviews.write_text("\n".join(json.dumps({"user_id": f"U{i % 7}", "parent_asin": f"B{i % 11:04d}",
                                             "timestamp": 1600000000000 + i, "rating": 4.0}) for i in range(80)) + "\n")
    bad, meta = corrupt_copy(reviews, tmp_path / "demo", n_lines=70)
    lines = bad.read_text().splitlines()
    assert len(lines) == 71 and lines[60] == lines[61] and lines[50] == "[1, 2, 3]"  # 70 rows + one duplicate
    assert len(meta.read_text().splitlines()) == 4
    errors = file_level_errors(reviews, bad, tmp_path / "demo", chunk_size=10)
    assert sorted(errors) == ["Corrupt.jsonl (strict=True)", "Empty.jsonl", "Missing.jsonl", "Truncated.jsonl.gz"]
    assert all(isinstance(m, str) and m for m in errors.values())
    with pytest.raises(DataError):
        read_reviews(bad, strict=True)

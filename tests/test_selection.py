"""Layer-selection rules and real compact students (lab.selection, lab.models.build_student)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import DynamicCache

from lab.profiles import get_config
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.models import SeqRecModel, build_model, build_student, count_parameters
from lab.importance import angular_block_distance
from lab.fisher.tables import importance_vector
from lab.chapters.c04_selection import (chapter_budgets, rule_report, rule_table, selection_plan, selection_record,
                                        paired_vs_random)
from lab.evaluation import holm
from lab.selection import (RULES, GreedyValidSearch, SelectionConfig, budgets, evaluate_selections, random_selections,
                           select_layers, uniform_layers)
from scipy.stats import wilcoxon

L = 8




@pytest.fixture(scope="module")
def data():
    return rec_data_from_sequences(toy_markov_sequences(n_users=48, n_items=20, length=10), num_items=20, max_len=8)


@pytest.fixture(scope="module")
def teacher(data):
    torch.manual_seed(0)
    return build_model(get_config("smoke").model, data.num_items, data.max_len).eval()  # 8 layers, random weights


@pytest.fixture(scope="module")
def table():
    """A chapter-03-style tidy importance table with every signal, and norms for the Fisher ones."""
    rng = np.random.default_rng(0)
    rows = []
    for sig in ("fisher_empirical", "fisher_true", "batchgrad_squared"):
        for norm in ("per_param", "total", "max"):
            rows += [{"layer_idx": i, "signal": sig, "norm": norm, "value": v} for i, v in enumerate(rng.random(L))]
    for sig in ("block_influence", "angular", "grad_norm", "magnitude", "ablation_drop"):
        rows += [{"layer_idx": i, "signal": sig, "norm": "raw", "value": v} for i, v in enumerate(rng.random(L))]
    df = pd.DataFrame(rows)
    df["ci_low"], df["ci_high"] = df["value"] - 0.1, df["value"] + 0.1
    return df.sample(frac=1.0, random_state=0)  # row order must not matter


@pytest.fixture(scope="module")
def search(teacher, data):
    return GreedyValidSearch(teacher, data, n_users=32, seed=0)


def test_every_rule_gives_k_sorted_distinct_valid_layers(table, teacher, data, search):
    for rule in RULES:
        for k in range(1, L + 1):
            got = select_layers(table, k, rule, model=teacher, data=data, search=search)
            assert got == sorted(set(got)) and len(got) == k, (rule, k, got)
            assert all(isinstance(i, int) and 0 <= i < L for i in got), (rule, k, got)
    with pytest.raises(ValueError):
        select_layers(table, 0, "uniform")
    with pytest.raises(ValueError):
        select_layers(table, L + 1, "top")
    with pytest.raises(ValueError):
        select_layers(table, 2, "no_such_rule")


def test_score_rules_read_the_right_rows(table):
    v = importance_vector(table, "fisher_true", "max")
    ref = table[(table.signal == "fisher_true") & (table.norm == "max")].sort_values("layer_idx")["value"].to_numpy()
    assert np.array_equal(v, ref)
    assert select_layers(table, 3, "fisher_topk", signal="fisher_true", norm="max") == sorted(np.argsort(-ref)[:3])
    bi = importance_vector(table, "block_influence")  # norm "raw" chosen by default
    assert select_layers(table, 3, "block_influence") == sorted(np.argsort(-bi)[:3])
    assert select_layers(bi, 3, "fisher_topk") == sorted(np.argsort(-bi)[:3])  # a plain vector works too
    vec = np.array([9.0, 0, 0, 5, 4, 0, 0, 1.0])
    assert select_layers(vec, 3, "fisher_topk") == [0, 3, 4]
    assert select_layers(vec, 3, "fisher_topk_ends") == [0, 3, 7]  # both ends + best inner layer
    assert select_layers(vec, 2, "fisher_topk_ends") == [0, 7]
    assert select_layers(vec, 1, "fisher_topk_ends") == [0]  # k = 1: the more important end
    assert select_layers(L, 3, "top") == [5, 6, 7] and select_layers(L, 3, "bottom") == [0, 1, 2]


def test_uniform_matches_its_definition():
    assert uniform_layers(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's teacher layers
    assert uniform_layers(24, 6) == [0, 5, 9, 14, 18, 23]
    assert uniform_layers(8, 2) == [0, 7] and uniform_layers(8, 1) == [7] and uniform_layers(8, 8) == list(range(8))
    for n in range(1, 33):
        for k in range(2, n + 1):
            got = uniform_layers(n, k)
            assert got == [math.floor(j * (n - 1) / (k - 1) + 0.5) for j in range(k)]
            assert got[0] == 0 and got[-1] == n - 1 and len(set(got)) == k
            gaps = np.diff(got)
            assert gaps.max() - gaps.min() <= 1  # as even as integers allow


def test_random_is_seeded():
    a, b = random_selections(24, 6, 10, seed=3), random_selections(24, 6, 10, seed=3)
    assert a == b
    assert select_layers(24, 6, "random", seed=3) == select_layers(24, 6, "random", seed=3)
    assert random_selections(24, 6, 10, seed=4) != a
    assert len({tuple(s) for s in a}) > 1  # draws differ from one another
    assert all(s == sorted(set(s)) and len(s) == 6 for s in a)


def test_angular_block_removes_the_closest_block(teacher, data):
    d = np.array([0.5, 0.4, 0.1, 0.3, 0.2, 0.6])  # starts 0..5 of blocks of n = 3
    assert select_layers(L, 5, "angular_block", distances=d) == [0, 1, 5, 6, 7]
    dist = angular_block_distance(teacher, data, 3)
    assert dist.shape == (L - 3 + 1,)
    start = int(np.argmin(dist))
    want = [i for i in range(L) if not start <= i < start + 3]
    assert select_layers(L, 5, "angular_block", distances=dist) == want
    assert select_layers(L, 5, "angular_block", model=teacher, data=data) == want  # computes the same distances
    assert select_layers(L, L, "angular_block", model=teacher, data=data) == list(range(L))  # nothing to remove


def test_greedy_valid_is_greedy_and_nested(search):
    sets = [set(search.select(k)) for k in range(L, 0, -1)]
    assert all(small < big for big, small in zip(sets, sets[1:]))  # each budget drops one layer of the previous
    drops = search.single_layer_drops()
    first = search.path.iloc[0]
    assert first["removed"] == max(range(L), key=lambda i: (-drops[i], i))  # least harmful single layer first
    assert search.path["valid_ndcg@10"].iloc[0] == pytest.approx(search.full - drops[first["removed"]])


def test_selection_plan_reads_the_search_it_is_given(table, teacher, data, search):
    cfg = SelectionConfig(random_draws=3, greedy_users=32)
    n_scored = len(search.cache)
    plan, _ = selection_plan(table, teacher, data, [2, 4], cfg, seed=0, search=search)
    assert len(search.cache) == n_scored  # the path down to k = 1 was already searched: nothing is scored again
    got = plan[plan.rule == "greedy_valid"].set_index("k")["layers"]
    assert got.to_dict() == {2: ",".join(map(str, search.select(2))), 4: ",".join(map(str, search.select(4)))}
    assert "oracle" not in set(plan.rule) and "greedy_valid" in RULES
    # without a search, a fresh one with the config's subsample gives the same path (same seed, same users)
    fresh, _ = selection_plan(table, teacher, data, [2, 4], cfg, seed=0)
    assert fresh[fresh.rule == "greedy_valid"].set_index("k")["layers"].equals(got)


def test_rule_table_averages_random_draws_only():
    sel = pd.DataFrame({"rule": ["a", "random", "random", "b", "teacher", "a"], "k": [2, 2, 2, 2, 8, 4],
                        "draw": [0, 0, 1, 0, 0, 0], "layers": ["0,1", "2,5", "3,4", "6,7", "0,1,2,3,4,5,6,7", "0,1,2,3"],
                        "valid_ndcg@10": [0.3, 0.1, 0.2, 0.4, 0.5, 0.6], "test_ndcg@10": [0.31, 0.11, 0.23, 0.2,
                                                                                           0.5, 0.6]})
    t = rule_table(sel, 2)
    assert list(t.index) == ["a", "b", "random"]
    assert t.loc["random", "test_ndcg@10"] == pytest.approx(0.17) and t.loc["random", "draws"] == 2
    assert t.loc["a", "valid_ndcg@10"] == 0.3 and t.loc["b", "layers"] == "6,7" and t.loc["random", "layers"] == ""


def test_budgets_and_config():
    assert budgets(24) == [3, 6, 12] and budgets(8) == [1, 2, 4] and budgets(2) == [1]
    assert budgets(30, extra=(8,)) == [3, 7, 8, 15] and budgets(8, extra=(4, 8, 9)) == [1, 2, 4]  # k < L only
    assert SelectionConfig.for_profile("llm").extra_budgets == (8,)
    assert SelectionConfig.for_profile("smoke").greedy_users < SelectionConfig.for_profile("default").greedy_users


def test_student_round_trips(teacher, data, tmp_path):
    layers = select_layers(L, 3, "uniform")
    s = build_student(teacher, layers).eval()
    assert s.num_layers == 3 and s.config.source_layers == layers
    assert count_parameters(s) < count_parameters(teacher)
    s.save_pretrained(tmp_path / "s")
    r = SeqRecModel.from_pretrained(tmp_path / "s").eval()
    assert r.num_layers == 3 and count_parameters(r) == count_parameters(s) and r.config.source_layers == layers
    x = data.test_history[:6]
    assert torch.equal(s.recommend_scores(x), r.recommend_scores(x))


def _filled(cache) -> int:
    return sum(1 for lay in cache.layers if getattr(lay, "keys", None) is not None and lay.keys.numel() > 0)


def test_student_cache_and_the_naive_truncation_bug(teacher, data):
    layers = [0, 3, 5, 7]
    x = data.test_history[:4]  # (B, T), left-padded
    s = build_student(teacher, layers).eval()
    with torch.no_grad():
        cache = DynamicCache(config=s.config.backbone_config)
        out = s(x, use_cache=True, cache=cache, score="last").logits
        assert len(cache.layers) == 4 and _filled(cache) == 4 and cache.get_seq_length() == x.shape[1]
        assert torch.allclose(out, s(x, score="last").logits, atol=1e-5)  # the cache does not change the scores
        # Naive truncation 1: slice the layer list, keep the config and the old layer_idx -> a cache of the old depth
        naive = copy.deepcopy(teacher)
        naive.backbone.layers = torch.nn.ModuleList([naive.backbone.layers[i] for i in layers])
        c1 = DynamicCache(config=naive.config.backbone_config)
        naive(x, use_cache=True, cache=c1, score="last")
        assert len(c1.layers) == L and _filled(c1) == 4  # 8 cache slots for 4 layers, 4 of them empty
        # Naive truncation 2: also shrink num_hidden_layers but keep layer_idx -> the cache is indexed out of range
        naive.config.backbone_config.num_hidden_layers = 4
        with pytest.raises(IndexError):
            naive(x, use_cache=True, score="last")


# -- chapter 04's record -------------------------------------------------------------------------------------------
def _planted(n_users=300, draws=3, seed=0):
    """A budget with `draws` random layer sets and three rules whose per-user difference to the random mean is planted:
    "good" +0.05, "same" 0 (its noise symmetric around the mean), "bad" -0.05; returns (sel, users)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.5, n_users)  # each user's level, shared by every layer set
    draws_v = {f"r{d}": base + rng.normal(0, 0.05, n_users) for d in range(draws)}
    mean = np.mean(list(draws_v.values()), axis=0)
    noise = rng.normal(0, 0.02, n_users)
    rules = {"good": mean + 0.05 + noise, "same": mean + _sym(n_users, rng),
             "bad": mean - 0.05 + noise, "greedy_valid": mean + 0.2}
    vals = {**draws_v, **rules}
    users = pd.concat([pd.DataFrame({"layers": k, "user": np.arange(n_users), "test_ndcg@10": v})
                       for k, v in vals.items()], ignore_index=True)
    rows = [{"rule": "random", "k": 2, "draw": d, "layers": f"r{d}"} for d in range(draws)]
    rows += [{"rule": r, "k": 2, "draw": 0, "layers": r} for r in rules]
    rows.append({"rule": "teacher", "k": 4, "draw": 0, "layers": "teacher"})
    sel = pd.DataFrame(rows)
    sel["test_ndcg@10"] = [float(np.mean(vals.get(l, [0.6]))) for l in sel["layers"]]
    sel["valid_ndcg@10"] = sel["test_ndcg@10"]
    return sel, users


def _sym(n, rng):
    """Zero-mean noise, exactly symmetric (each value and its negative), so the paired difference has no signal."""
    h = rng.normal(0, 0.02, n // 2)
    return np.r_[h, -h, np.zeros(n % 2)]


def test_paired_vs_random_finds_planted_differences_with_few_draws():
    sel, users = _planted(draws=3)  # with 3 draws the old empirical p could not go below 1/4
    t = paired_vs_random(sel, users, 2, ["good", "same", "bad"], alpha=0.05, n_boot=500)
    assert t.loc["good", "verdict"] == "better" and t.loc["bad", "verdict"] == "worse"
    assert t.loc["same", "verdict"] == "cannot tell" and t.loc["same", "diff"] == pytest.approx(0.0, abs=1e-12)
    # against an independent computation: per-user difference to the mean of the draws, Wilcoxon, Holm by hand
    wide = users.pivot(index="user", columns="layers", values="test_ndcg@10")
    rnd = wide[["r0", "r1", "r2"]].mean(axis=1)
    p = [wilcoxon(wide[r] - rnd).pvalue for r in ("good", "same", "bad")]
    assert t["diff"].tolist() == pytest.approx([(wide[r] - rnd).mean() for r in ("good", "same", "bad")])
    assert t["wilcoxon_p"].tolist() == pytest.approx(p)
    m, srt, want, run = 3, np.argsort(p), np.zeros(3), 0.0
    for i, j in enumerate(srt):
        run = max(run, (m - i) * p[j])
        want[j] = min(1.0, run)
    assert t["holm_p"].tolist() == pytest.approx(want.tolist()) and want.tolist() == pytest.approx(holm(p).tolist())


def test_selection_record_at_the_headline_budget():
    sel, users = _planted(draws=3)
    corr = pd.DataFrame({"signal": ["magnitude", "fisher_empirical"], "norm": ["raw", "per_param"],
                         "spearman": [0.8, np.nan]})
    speed = pd.DataFrame({"model": ["teacher", "k2", "teacher", "k2"], "n_layers": [4, 2, 4, 2], "batch": [1, 1, 8, 8],
                          "speedup": [1.0, 1.5, 1.0, 1.9], "speedup_p10": [1.0, 1.6, 1.0, 1.8],
                          "ideal": [1.0, 2.0, 1.0, 2.0], "params_ratio": [1.0, 0.6, 1.0, 0.6],
                          "mem_ratio": [1.0, 0.7, 1.0, 0.75]})
    rep = rule_report(sel, users, 2, alpha=0.05, n_boot=200)
    rec = selection_record(rep, sel, corr, speed, ks=[1, 2], ablation_source="here")
    assert rep.main == ["bad", "good", "greedy_valid", "same"] and rec["random_draws"] == 3
    assert rec["verdict_vs_random_quarter"] == {"bad": "worse", "good": "better", "greedy_valid": "better",
                                                 "same": "cannot tell"}
    assert rec["rules_beating_random_holm_quarter"] == ["good", "greedy_valid"]
    assert rec["minus_random_quarter"]["good"] == pytest.approx(0.05, abs=0.01)
    assert rec["holm_p_vs_random_quarter"] == pytest.approx(rep.tests["holm_p"].to_dict())
    rnd = sel.loc[sel.rule == "random", "test_ndcg@10"]
    assert rec["random_mean_quarter"] == pytest.approx(rnd.mean()) and rec["random_test_users"] == 300
    assert rec["best_rule_quarter"] == "good"  # the best on validation among the rules that do not look at the metric
    assert rec["greedy_valid_minus_best_test_quarter"] == pytest.approx(0.15, abs=0.01)
    assert (rec["speedup_quarter_b8"], rec["speedup_p10_quarter_b8"], rec["mem_ratio_quarter"]) == (1.9, 1.8, 0.75)
    assert rec["spearman"]["magnitude/raw"] == 0.8 and np.isnan(rec["spearman"]["fisher_empirical/per_param"])
    assert rec["L"] == 4 and rec["teacher_ndcg"] == 0.6 and rec["ablation_source"] == "here"


def test_evaluate_selections_keeps_the_per_user_values_behind_its_means(teacher, data):
    plan = pd.DataFrame({"rule": ["a", "b", "c"], "k": [2, 2, 2], "layers": ["0,1", "2,3", "0,1"]})
    sel, users = evaluate_selections(teacher, data, plan, per_user="ndcg@10")
    means = users.groupby("layers")["test_ndcg@10"].mean()
    assert sel.set_index("layers")["test_ndcg@10"].groupby(level=0).first().to_dict() == pytest.approx(
        means.to_dict())
    assert set(users["layers"]) == {"0,1", "2,3"} and len(users) == 2 * len(data.test_target)


def test_chapter_budgets_and_the_headline_one():
    assert chapter_budgets(24, SelectionConfig()) == ([3, 6, 12], 6)
    assert chapter_budgets(30, SelectionConfig.for_profile("llm")) == ([7, 8], 7)  # 7 and 8 tie around 7.5
    assert chapter_budgets(2, SelectionConfig()) == ([1], 1)

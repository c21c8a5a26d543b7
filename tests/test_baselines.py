"""The baselines of chapters 01 and 06 (`lab.recommenders`, `lab.compression`, `lab.chapters.c06_baselines`): scored
by `lab.metrics`' ranking, checked against plain loops and by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lab import compression as C
from lab import recommenders as R
from lab.chapters import c06_baselines as B
from lab import data as D
from lab.metrics import target_ranks


def test_popularity_scorer_ranks_by_count():
    rd = D.rec_data_from_sequences([[2, 2, 1, 3], [2, 1, 3, 3]], 3, 4)
    s = R.popularity_scorer(rd).recommend_scores(torch.tensor([[0, 1], [0, 1]]))  # (2, N+1)
    assert target_ranks(s, torch.tensor([2, 3]), mask_history=False).tolist() == [0, 2]


def test_sequential_structure_on_toy_markov():
    seqs = D.toy_markov_sequences(n_users=80, n_items=30, length=12)
    rd = D.rec_data_from_sequences(seqs, 30, 8)
    s = R.sequential_structure(rd, k=10)
    assert s["hr@10_markov"] == 1.0 and s["hr@10_markov_reversed"] < 0.6


def reference(rd, k: int, split: str) -> dict:
    """Plain loops: counts from the training windows, a popularity tie-breaker, pessimistic ranks, seen items masked."""
    n = rd.num_items + 1
    fwd = np.zeros((n, n))
    for x, y in zip(rd.train_inputs.reshape(-1).tolist(), rd.train_labels.reshape(-1).tolist()):
        if x > 0 and y > 0:
            fwd[x, y] += 1
    pop = rd.item_counts.numpy().astype(np.float64)
    tie = pop / (pop.max() + 1.0) * 1e-3
    hist, target, seen = rd.split(split)
    out = {}
    for name, table in (("popularity", np.zeros((n, n))), ("markov", fwd), ("markov_reversed", fwd.T)):
        hr, ndcg = [], []
        for h, t, sn in zip(hist.tolist(), target.tolist(), seen.tolist()):
            s = table[h[-1]] + tie
            score = s[t]
            s[[x for x in sn if x != t]] = -np.inf
            s[0] = -np.inf
            s[t] = score
            r = int((s > score).sum() + (s == score).sum() - 1)
            hr.append(r < k)
            ndcg.append(1 / np.log2(r + 2) if r < k else 0.0)
        out[f"hr@{k}_{name}"], out[f"ndcg@{k}_{name}"] = float(np.mean(hr)), float(np.mean(ndcg))
    return out


@pytest.mark.parametrize("split", ["valid", "test"])
def test_sequential_structure_matches_plain_loops(split):
    seqs = [s for s in D.toy_markov_sequences(60, 25, 9, seed=2)]
    rng = np.random.default_rng(0)
    seqs = [rng.permutation(s).tolist() if i % 3 == 0 else s for i, s in enumerate(seqs)]  # some noise
    rd = D.rec_data_from_sequences(seqs, 25, 4)
    got = R.sequential_structure(rd, k=5, split=split, batch=7)
    want = reference(rd, 5, split)
    assert {k: got[k] for k in want} == pytest.approx(want, abs=1e-12)
    assert got["rows"] == len(rd.valid_target) and got["chance_hr"] == 5 / 25
    assert got["train_transitions"] == int(((rd.train_inputs > 0) & (rd.train_labels > 0)).sum())


def test_float64_ranking_keeps_small_tie_breakers():
    # items 1 and 2 share a count of 1000 and differ in the tie-breaker by 1e-9: float32 rounds them into a tie
    counts = torch.tensor([0, 1_000_000, 999_999, 0], dtype=torch.long)
    tie = counts.double() / (counts.max() + 1.0) * R.TIE_BREAK + 1000.0  # (N+1,) as a count + tie-breaker
    s = tie[None, :]
    assert target_ranks(s, torch.tensor([2]), mask_history=False).tolist() == [1]  # float32: a tie, ranked 1 too
    assert target_ranks(s, torch.tensor([1]), mask_history=False, dtype=torch.float64).tolist() == [0]
    assert target_ranks(s, torch.tensor([1]), mask_history=False).tolist() == [1]


def test_empty_split_gives_zeros():
    rd = D.build_rec_data([[1, 2, 3, 4]], 4, 3, "timestamp", [[1, 2, 3, 4]], 10, 20)
    s = R.sequential_structure(rd, k=10)
    assert s["rows"] == 0 and s["hr@10_markov"] == 0.0 and s["ndcg@10_popularity"] == 0.0


# -- chapter 06: the baselines as modules, against hand-computed answers ----------------------------------------------
import math  # noqa: E402

from toys import N_ITEMS, T, tiny_model, toy_data  # noqa: E402

from lab.config import ModelConfig, TrainConfig  # noqa: E402
from lab.evaluation import holm, per_user_table  # noqa: E402
from lab.models import build_model, build_student, count_parameters  # noqa: E402
from lab.train import fit  # noqa: E402

# three users; leave-last-out keeps [1,2,3], [1,2,4], [2,3,1] for training (windows: inputs 1,2 / 1,2 / 2,3)
HAND = [[1, 2, 3, 5, 6], [1, 2, 4, 5, 6], [2, 3, 1, 5, 6]]


def test_markov_scorer_by_hand():
    rd = D.rec_data_from_sequences(HAND, 6, 4)
    m = R.markov_scorer(rd)
    # training transitions: 1->2 (twice), 2->3 (twice), 2->4, 3->1; popularity (training counts) 1:3, 2:3, 3:2, 4:1
    tie = np.array([0, 3, 3, 2, 1, 0, 0]) / 4.0 * R.TIE_BREAK
    s = m.recommend_scores(torch.tensor([[5, 2]]))[0].numpy()  # last item 2: followed by 3 twice and 4 once
    np.testing.assert_allclose(s[1:], tie[1:] + np.array([0, 0, 2, 1, 0, 0]), rtol=0, atol=1e-15)
    assert s[0] == -np.inf
    s = m.recommend_scores(torch.tensor([[3, 1]]))[0].numpy()  # last item 1: followed by 2 twice
    assert s.argmax() == 2 and s[2] == pytest.approx(2 + tie[2], abs=1e-15)
    h = rd.test_history  # chapter 01's count scorers are these modules; the reversed chain reads the counts backwards
    assert torch.equal(m.recommend_scores(h), R.count_scorers(rd)["markov"].recommend_scores(h))
    rev = R.count_scorers(rd)["markov_reversed"].recommend_scores(torch.tensor([[5, 2]]))[0].numpy()
    np.testing.assert_allclose(rev[1:], tie[1:] + np.array([2, 0, 0, 0, 0, 0]), rtol=0, atol=1e-15)  # 1 -> 2 twice


def test_cooccurrence_counts_training_windows():
    rd = D.rec_data_from_sequences(HAND, 6, 4)
    sets = [{1, 2, 3}, {1, 2, 4}, {2, 3, 1}]  # each user's training window with the item after it
    want = np.zeros((7, 7))
    for s in sets:
        for i in s:
            for j in s:
                want[i, j] += 1
    np.testing.assert_array_equal(R.cooccurrence(rd), want)


def hand_g() -> np.ndarray:
    """Co-occurrence of users {1,2}, {1,2,3}, {3,4} over items 1..4 (index 0 = PAD)."""
    x = np.zeros((3, 5))
    for u, items in enumerate([[1, 2], [1, 2, 3], [3, 4]]):
        x[u, items] = 1
    return x.T @ x


def test_itemknn_table_by_hand():
    # cos(1,2) = 2/sqrt(2*2) = 1, cos(1,3) = cos(2,3) = 1/2, cos(3,4) = 1/sqrt(2), cos(1,4) = cos(2,4) = 0
    c = 2 ** -0.5
    full = np.array([[0, 0, 0, 0, 0], [0, 0, 1, .5, 0], [0, 1, 0, .5, 0], [0, .5, .5, 0, c], [0, 0, 0, c, 0]])
    np.testing.assert_allclose(R.itemknn_table(hand_g(), 10), full, atol=1e-15)
    # 2 neighbours: item 3 keeps 4 (0.71) and, of the tie 1/2 vs 2 at 0.5, the lower index 1
    k2 = R.itemknn_table(hand_g(), 2)
    np.testing.assert_allclose(k2[3], [0, .5, 0, 0, c], atol=1e-15)
    np.testing.assert_allclose(k2[1], [0, 0, 1, .5, 0], atol=1e-15)
    # 1 neighbour; a history {1, 3} scores item 2 by row 1 (1.0) and item 4 by row 3 (0.71)
    k1 = R.itemknn_table(hand_g(), 1)
    np.testing.assert_allclose(np.array([0, 1, 0, 1, 0]) @ k1, [0, 0, 1, 0, c], atol=1e-15)


def test_itemknn_scorer_adds_a_popularity_tie_breaker():
    rd = toy_data(32)
    g = R.cooccurrence(rd)
    m = R.itemknn_scorer(rd, 5, g)
    h = rd.test_history[:4]
    want = R.multi_hot(h, rd.num_items).numpy() @ R.itemknn_table(g, 5) + R._tie(rd, R.KNN_TIE_BREAK)
    np.testing.assert_allclose(m.recommend_scores(h)[:, 1:].numpy(), want[:, 1:], rtol=0, atol=1e-12)


def test_ease_by_hand():
    # two items, G = [[2, 1], [1, 1]], λ = 1: P = (G + I)^-1 = [[2, -1], [-1, 3]] / 5, B_12 = 0.2/0.6, B_21 = 0.2/0.4
    g = np.zeros((3, 3))
    g[1:, 1:] = [[2, 1], [1, 1]]
    b = R.ease_table(g, 1.0)
    np.testing.assert_allclose(b[1:, 1:], [[0, 1 / 3], [1 / 2, 0]], atol=1e-12)


def test_ease_is_the_constrained_ridge_regression():
    """Column j of EASE's B is the ridge regression of item j on every other item (diag(B) = 0, Steck 2019)."""
    rng = np.random.default_rng(0)
    x = (rng.random((40, 6)) < 0.4).astype(float)
    lam = 3.0
    b = R.ease_table(x.T @ x, lam)
    for j in range(6):
        o = [i for i in range(6) if i != j]
        w = np.linalg.solve(x[:, o].T @ x[:, o] + lam * np.eye(5), x[:, o].T @ x[:, j])
        np.testing.assert_allclose(b[o, j], w, atol=1e-10)
        assert b[j, j] == 0


def test_ease_scorer_and_the_choice_on_validation():
    rd = toy_data(48)
    g = R.cooccurrence(rd)
    m = R.ease_scorer(rd, 10.0, g)
    h = rd.test_history[:3]
    want = (R.multi_hot(h, rd.num_items).numpy() @ R.ease_table(g, 10.0))[:, 1:]
    np.testing.assert_allclose(m.recommend_scores(h)[:, 1:].numpy(), want, rtol=1e-5, atol=1e-5)  # float32 table
    best, table = R.choose_on_valid(lambda lam: R.ease_scorer(rd, lam, g), [1.0, 100.0], rd)
    assert list(table["value"]) == [1.0, 100.0] and best == table.loc[table["valid_ndcg@10"].idxmax(), "value"]
    pu = per_user_table({"ease": R.ease_scorer(rd, best, g)}, rd, "valid")
    assert pu["ndcg@10"].mean() == pytest.approx(table["valid_ndcg@10"].max(), abs=1e-12)


def test_popularity_scorer_ranks_by_count():
    rd = toy_data(32)
    s = R.popularity_scorer(rd).recommend_scores(rd.test_history[:2])
    assert torch.equal(s[0, 1:], rd.item_counts[1:].double()) and R.popularity_scorer(rd).num_layers == 0


def test_gru4rec_left_padding_and_round_trip(tmp_path):
    torch.manual_seed(0)
    gru = R.GRU4Rec(R.GRU4RecConfig(num_items=N_ITEMS, hidden_size=16, max_len=T))
    padded, bare = torch.tensor([[0, 0, 0, 3, 4, 5]]), torch.tensor([[3, 4, 5]])
    torch.testing.assert_close(gru.recommend_scores(padded)[:, 1:], gru.recommend_scores(bare)[:, 1:],
                               atol=1e-6, rtol=0)  # no biases: the zero padding leaves the state at 0
    rd = toy_data(32)
    hist = fit(gru, rd, TrainConfig(epochs=3, batch_size=16, lr=0.05, patience=3), progress=False)
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    gru.save_pretrained(tmp_path)
    back = R.GRU4Rec.from_pretrained(tmp_path).eval()
    assert torch.equal(back.recommend_scores(rd.test_history)[:, 1:], gru.recommend_scores(rd.test_history)[:, 1:])


# -- compression ---------------------------------------------------------------------------------------------------------
def test_magnitude_pruning_hits_the_students_parameter_count():
    teacher = tiny_model(4, layer_std=0.1)
    student = build_student(teacher, [0, 1])
    before = {n: p.detach().clone() for n, p in C.decoder_linear_weights(teacher)}
    info = C.prune_to(teacher, count_parameters(student))
    assert info["removed"] == count_parameters(tiny_model(4)) - count_parameters(student)
    assert C.nonzero_parameters(teacher) == C.nonzero_parameters(student)  # both have the zero PAD embedding row
    w0 = torch.cat([v.reshape(-1) for v in before.values()])
    w1 = torch.cat([w.detach().reshape(-1) for _, w in C.decoder_linear_weights(teacher)])
    assert int((w1 == 0).sum()) == info["removed"]
    assert w0[w1 == 0].abs().max() <= w0[w1 != 0].abs().min()  # the smallest magnitudes went, over all layers
    assert torch.equal(w1[w1 != 0], w0[w1 != 0])


def test_pruned_weights_stay_zero_while_training():
    model = tiny_model(2, layer_std=0.1)
    C.magnitude_prune(model, 500)
    zero = [(w == 0).clone() for _, w in C.decoder_linear_weights(model)]
    fit(model, toy_data(32), TrainConfig(epochs=2, batch_size=16, lr=1e-2, patience=2), progress=False)
    for z, (_, w) in zip(zero, C.decoder_linear_weights(model)):
        assert bool((w[z] == 0).all()) and bool((w[~z] != 0).all())


@pytest.fixture(scope="module")
def trained32():
    """A 2-layer width-32 recommender trained briefly on toy data (NF4 on the CPU needs widths divisible by 32)."""
    rd = toy_data(64)
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, item_dim=32, dropout=0.0)
    model = build_model(cfg, N_ITEMS, T)
    fit(model, rd, TrainConfig(epochs=8, batch_size=16, lr=1e-2, patience=8), progress=False)
    return model.eval(), rd.test_history  # (model, a fixed batch of histories)


QUANT_TOLERANCE = {"int8": 0.05, "nf4": 0.10}  # max |score - float score| / max |float score| on the fixed batch


@pytest.mark.parametrize("kind", ["int8", "nf4"])
def test_quantised_models_score_within_tolerance(trained32, tmp_path, kind):
    from lab.distill import load_4bit

    model, x = trained32
    if kind == "int8":
        q, status = C.quantize_int8(model)
        assert status == "ok"
    else:
        model.save_pretrained(tmp_path)
        q = load_4bit(tmp_path).eval()
    ref, got = model.recommend_scores(x)[:, 1:], q.recommend_scores(x)[:, 1:]  # (B, N)
    assert float((got - ref).abs().max() / ref.abs().max()) <= QUANT_TOLERANCE[kind]
    assert float((got.argmax(1) == ref.argmax(1)).float().mean()) >= 0.9  # the top item mostly unchanged
    assert C.stored_parameters(q) == count_parameters(model)  # every weight still stored, at lower precision
    assert C.stored_bytes(q) < 0.5 * C.stored_bytes(model)


def test_int8_refuses_cuda_runs():
    q, status = C.quantize_int8(tiny_model(1), "cuda")
    assert q is None and "CPU only" in status


# -- the leaderboard -------------------------------------------------------------------------------------------------------
def results05() -> pd.DataFrame:
    """A chapter-05 results frame: fisher_topk and uniform trained every way, top with the best variant, adapters."""
    rows = [("fisher_topk:ce", "fisher_topk", 0, "ce", "full", .30), ("fisher_topk:kd", "fisher_topk", 0, "kd", "full", .32),
            ("fisher_topk:kd+fisher", "fisher_topk", 0, "kd+fisher", "full", .31),
            ("uniform:ce", "uniform", 0, "ce", "full", .29), ("uniform:kd", "uniform", 0, "kd", "full", .28),
            ("top:ce", "top", 0, "ce", "full", .2), ("random#0:ce", "random", 0, "ce", "full", .1),
            ("random#1:ce", "random", 1, "ce", "full", .1), ("fisher_topk:ce:lora", "fisher_topk", 0, "ce", "lora", .3),
            ("uniform:tinybert", "uniform", 0, "tinybert", "full", .9)]
    return pd.DataFrame(rows, columns=["name", "rule", "draw", "variant", "adapter", "valid_ndcg@10"])


def test_method_and_the_rows_read_from_chapter05():
    """The method is named by its rule (fisher_topk, kd+fisher), never by a score: kd's higher validation NDCG@10
    does not make it the method; a rule without kd+fisher falls back along lab.hypotheses.VARIANT_ORDER."""
    r = results05()
    assert B.method_student(r) == "fisher_topk:kd+fisher"
    assert B.chapter05_rows(r, "fisher_topk:kd+fisher") == ["fisher_topk:kd+fisher", "uniform:ce", "top:ce",
                                                            "random#0:ce", "random#1:ce", "fisher_topk:ce:lora",
                                                            "uniform:tinybert"]
    assert B.method_student(r, "uniform") == "uniform:kd"  # no kd+fisher for uniform: the first of VARIANT_ORDER
    with pytest.raises(ValueError, match="no 'bottom' student"):
        B.method_student(r, "bottom")


def test_leaderboard_by_hand():
    rng = np.random.default_rng(0)
    users = np.arange(60)
    t = rng.random(60)
    pu = pd.concat([pd.DataFrame({"name": n, "user": users, "ndcg@10": v, "hr@10": v, "mrr": v}) for n, v in
                    (("teacher", t), ("m", t * 0.9), ("same", t * 0.9), ("bad", t * 0.2))], ignore_index=True)
    rows = pd.DataFrame({"name": ["teacher", "m", "same", "bad", "broken"], "status": ["ok"] * 4 + ["no engine"]})
    board = B.leaderboard(rows, pu.sample(frac=1, random_state=0), "m", alpha=0.05, margin=0.01, n_boot=200)
    b = board.set_index("name")
    assert b.loc["m", "ret_ndcg@10"] == pytest.approx(0.9) and b.loc["bad", "ret_mrr"] == pytest.approx(0.2)
    assert b.loc["teacher", "ret_ndcg@10_low"] == b.loc["teacher", "ret_ndcg@10_high"] == 1.0
    assert b.loc["bad", "diff"] == pytest.approx(float((t * 0.7).mean()))
    assert b.loc["bad", "verdict"] == "method better" and b.loc["teacher", "verdict"] == "method worse"
    assert b.loc["same", "verdict"] == "on par" and b.loc["m", "verdict"] == "the method"
    assert b.loc["broken", "verdict"] == "not measured: no engine" and math.isnan(b.loc["broken", "test_ndcg@10"])
    ps = [b.loc[n, "wilcoxon_p"] for n in ("teacher", "same", "bad")]  # the family: every measured row but "m"
    np.testing.assert_allclose([b.loc[n, "holm_p"] for n in ("teacher", "same", "bad")], holm(ps))
    est, lo, hi = (b.loc["bad", c] for c in ("test_ndcg@10", "test_ndcg@10_low", "test_ndcg@10_high"))
    assert est == pytest.approx((t * 0.2).mean()) and lo < est < hi


def test_board_rows_take_speed_from_the_timed_twin():
    speed = pd.DataFrame({"model": ["a", "a", "b", "b"], "batch": [1, 8, 1, 8], "speedup": [1.0, 1.0, 2.0, 3.0],
                          "median_ms": [4.0, 8.0, 2.0, 2.7], "weights_mb": [1.0, 1.0, .5, .5],
                          "peak_mb": [2.0, 3.0, 1.0, 1.5]})
    specs = [dict(name="a", family="f", source="06", detail=""), dict(name="c", family="f", source="05", detail="",
                                                                     timed_as="b"),
             dict(name="d", family="f", source="06", detail="", status="failed")]
    rows = B.board_rows(specs, speed, {"a": 10, "c": 5, "d": 7}).set_index("name")
    assert rows.loc["c", ["speedup_b1", "speedup", "latency_ms", "peak_mb", "params"]].tolist() == [2.0, 3.0, 2.7,
                                                                                                    1.5, 5]
    assert math.isnan(rows.loc["d", "speedup"]) and math.isnan(rows.loc["d", "params"])


def test_baseline_figures():
    from lab.viz.baselines import pareto_front, quality_vs_speed, retention_by_method

    assert pareto_front([1, 2, 3, 4], [4, 3, 3.5, 1]).tolist() == [0, 2, 3]
    board = pd.DataFrame({"name": ["t", "m", "x"], "family": ["teacher", "method", "recommender"],
                          "status": ["ok"] * 3, "speedup": [1.0, 3.0, 50.0], "verdict": ["on par", "the method", "x"],
                          **{f"{p}_ndcg@10{s}": [v + d for v in (0.3, 0.29, 0.1)] for p in ("test", "ret")
                             for s, d in (("", 0), ("_low", -0.02), ("_high", 0.02))}})
    assert quality_vs_speed(board, batch=8).axes[0].get_xscale() == "log"
    assert len(retention_by_method(board, goal=0.95).axes[0].get_yticklabels()) == 3


# -- chapter 06's record -------------------------------------------------------------------------------------------
def board_frame():
    """Three rows as `leaderboard` gives them: the method, a recommender better than the teacher, an INT8 row that
    could not run."""
    nan = float("nan")
    return pd.DataFrame({
        "name": ["method", "markov", "int8"], "status": ["ok", "ok", "RuntimeError: no kernel"],
        "test_ndcg@10": [0.30, 0.35, nan], "test_ndcg@10_low": [0.28, 0.33, nan], "test_ndcg@10_high": [0.32, 0.37, nan],
        "ret_ndcg@10": [0.97, 1.10, nan], "ret_ndcg@10_low": [0.95, 1.02, nan], "ret_ndcg@10_high": [0.99, 1.20, nan],
        "speedup": [3.5, 150.0, nan], "speedup_b1": [2.5, 50.0, nan], "params": [100, 25, 300],
        "peak_mb": [9.0, 1.0, nan], "diff": [0.0, -0.05, nan], "holm_p": [1.0, 0.01, nan],
        "verdict": ["the method", "method worse", "not measured: RuntimeError: no kernel"],
    })


def test_rows_above_teacher_and_valid_curve():
    assert B.rows_above_teacher(board_frame()) == ["markov"]
    assert B.valid_curve(pd.DataFrame({"value": [10, 50], "valid_ndcg@10": [0.2, 0.25]})) == {"10": 0.2, "50": 0.25}


def test_leaderboard_record_from_the_board():
    knn = (50, pd.DataFrame({"value": [10, 50], "valid_ndcg@10": [0.2, 0.25]}))
    ease = (100.0, pd.DataFrame({"value": [1.0, 100.0], "valid_ndcg@10": [0.1, 0.3], "at_edge": [False, True]}))
    grus = {0.002: (None, None, {"epochs": 12, "best_valid_ndcg@10": 0.1}),
            0.05: (None, None, {"epochs": 7, "best_valid_ndcg@10": 0.3})}  # lr -> (model, history, info)
    prune = {"pool": 80, "removed": 60, "sparsity": 0.75, "target": 25, "threshold": 0.05}
    rec = B.leaderboard_record(board_frame(), "method", k=2, read_from_05=("method",), knn=knn, ease=ease, grus=grus,
                               gru_lr=0.05, prune=prune, bmax=256, alpha=0.05, margin=0.01)
    ci = rec.pop("test_ndcg10_ci"), rec.pop("retention_ci")
    assert [c["method"] for c in ci] == [[0.28, 0.32], [0.95, 0.99]] and ci[1]["markov"] == [1.02, 1.20]
    assert all(np.isnan(x) for c in ci for x in c["int8"])
    nan_rows = {key: rec[key].pop("int8") for key in ("test_ndcg10", "retention", "speedup", "speedup_b1",
                                                      "peak_mb", "diff", "holm_p")}
    assert all(np.isnan(v) for v in nan_rows.values())
    assert rec == {
        "k": 2, "method": "method", "rows": ["method", "markov", "int8"], "read_from_05": ["method"],
        "knn_neighbours": 50, "ease_lambda": 100.0, "ease_lambda_at_edge": True, "knn_valid": {"10": 0.2, "50": 0.25},
        "ease_valid": {"1.0": 0.1, "100.0": 0.3},
        "test_ndcg10": {"method": 0.30, "markov": 0.35}, "retention": {"method": 0.97, "markov": 1.10},
        "speedup": {"method": 3.5, "markov": 150.0}, "speedup_b1": {"method": 2.5, "markov": 50.0},
        "params": {"method": 100.0, "markov": 25.0, "int8": 300.0}, "peak_mb": {"method": 9.0, "markov": 1.0},
        "diff": {"method": 0.0, "markov": -0.05}, "holm_p": {"method": 1.0, "markov": 0.01},
        "verdict": {"method": "the method", "markov": "method worse", "int8": "not measured: RuntimeError: no kernel"},
        "status": {"method": "ok", "markov": "ok", "int8": "RuntimeError: no kernel"},
        "alpha": 0.05, "margin": 0.01,
        "prune": {"pool": 80.0, "removed": 60.0, "sparsity": 0.75, "target": 25.0, "threshold": 0.05},
        "gru4rec_epochs": 7, "gru4rec_lr": 0.05, "gru4rec_valid": {"0.002": 0.1, "0.05": 0.3},
        "bmax": 256, "above_teacher": ["markov"],
    }
    assert all(type(v) is float for v in rec["params"].values())  # stored parameters recorded as floats, as before
    assert all(type(v) is float for v in rec["prune"].values()) and type(rec["knn_neighbours"]) is int


def test_choose_on_valid_widens_a_grid_whose_best_is_at_its_edge(monkeypatch):
    """A planted validation curve peaking at 1,000 (scores are -|log10 value - 3|): the grid [1, 10] has its best at
    the edge, so it grows by the grid's ratio (100, 1,000, 10,000) until the best is inside; without `widen` the edge
    value is taken and marked."""
    import math

    calls = []
    monkeypatch.setattr(R, "score_split", lambda v, rd, split: (calls.append(v) or
                                                                {"ndcg@10": -abs(math.log10(v) - 3)}, None))
    best, table = R.choose_on_valid(lambda v: v, [1.0, 10.0], toy_data(16), widen=5)
    assert best == pytest.approx(1000.0) and list(table["value"]) == pytest.approx([1, 10, 100, 1000, 10000])
    assert not table["at_edge"].any() and calls == pytest.approx([1, 10, 100, 1000, 10000])
    best, table = R.choose_on_valid(lambda v: v, [1.0, 10.0], toy_data(16))
    assert best == 10.0 and table["at_edge"].tolist() == [False, True]

"""The depth world (issue 12): reproducible files, the shallow world untouched when its knobs are 0, and the exact
Bayes predictor checked against a brute-force enumeration of the generator's law written out here from the module
docstring, against the generator's own samples, and against the last-item predictor and a Markov chain."""
from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from lab import data as D
from lab.config import DEPTH_WORLD, DataConfig, depth_world
from lab.profiles import get_config
from lab.data import synthetic as S

DEPTH_KNOBS = dict(markov_strength=1.0, successor_strength=0.3, induction_strength=0.4, pointer_strength=0.3,
                   pointer_hops=2, max_lag=2, switch_strength=0.7, n_switch_items=2)


def tiny(**kw) -> DataConfig:
    """3 clusters of 3 items, histories of at most 4 items: small enough to enumerate every map pi_u."""
    base = dict(n_users=60, n_items=9, n_clusters=3, mean_seq_len=4.0, n_successors=2, chunk_size=1000,
                **DEPTH_KNOBS)
    return DataConfig(**{**base, **kw})


def small_shallow() -> DataConfig:
    return DataConfig(n_users=120, n_items=60, n_clusters=4, mean_seq_len=8.0, chunk_size=1000)


# ------------------------------------------------------------------ the generator's law, written out plainly
def step_law(w: S.SyntheticWorld, hist: list[int], pi) -> np.ndarray:
    """P(next item | history, pi_u = pi) by the module docstring, one item at a time (no vectorisation)."""
    I, K = w.n_items, w.n_clusters
    clus, pop = w.item_cluster, w.popularity
    t, last = len(hist), hist[-1]
    seen = set(hist)
    mode = 0
    for p in range(t - 1):  # the most recent switch item with a follower
        if w.switch_item[hist[p]]:
            mode = int(w.mode_bit[hist[p + 1]])
    p, valid = t - 1, True
    for _ in range(w.pointer_hops):
        p -= int(w.item_lag[hist[p]])
        if p < 0:
            valid = False
            break
    eta = w.pointer_strength if valid else 0.0
    mix = np.zeros(K)
    mix[pi[clus[last]]] += w.induction_strength
    mix += (1 - w.induction_strength - eta) * w.mode_transition[mode][clus[last]]
    if valid:
        mix[clus[hist[p]]] += eta
    unseen = [i for i in range(I) if i not in seen]
    q = np.zeros(I)
    for c in range(K):
        members = [i for i in unseen if clus[i] == c]
        if members:
            total = sum(pop[i] for i in members)
            for i in members:
                q[i] += mix[c] * pop[i] / total
        else:
            for i in unseen:
                q[i] += mix[c] / len(unseen)
    out = np.zeros(I)
    fall = 1.0 - w.successor_strength  # no successor proposed
    for k, s in enumerate(w.successors[last]):
        weight = w.successor_strength * w.successor_weights[k]
        if s in seen:
            fall += weight  # proposed but seen: the cluster mixture decides
        else:
            out[s] += weight
    return out + fall * q


def brute_force_bayes(w: S.SyntheticWorld, hist: list[int]) -> np.ndarray:
    """Sum over every map pi (pi(c) != c, uniform prior) of P(history | pi) P(next | history, pi), normalised."""
    K = w.n_clusters
    choices = [[d for d in range(K) if d != c] for c in range(K)]
    num, den = np.zeros(w.n_items), 0.0
    for pi in itertools.product(*choices):
        like = np.prod([step_law(w, hist[:j], pi)[hist[j]] for j in range(1, len(hist))])
        num += like * step_law(w, hist, pi)
        den += like
    return num / den


def ndcg10(p: np.ndarray, target: np.ndarray) -> float:
    t = p[np.arange(len(p)), target]
    rank = (p > t[:, None]).sum(1) + (p == t[:, None]).sum(1) - 1
    return float(np.where(rank < 10, 1 / np.log2(rank + 2), 0.0).mean())


# ------------------------------------------------------------------ files
def test_same_seed_same_files_in_the_depth_world(tmp_path):
    cfg = depth_world(small_shallow())
    a = D.generate_synthetic(cfg, tmp_path / "a", seed=0)
    b = D.generate_synthetic(cfg, tmp_path / "b", seed=0)
    c = D.generate_synthetic(cfg, tmp_path / "c", seed=1)
    for k in ("reviews", "meta"):
        assert a[k].read_bytes() == b[k].read_bytes()
        assert a[k].read_bytes() != c[k].read_bytes()
    params = json.loads(a["params"].read_text())
    assert all(params[f] == getattr(cfg, f) for f in D.DEPTH_FIELDS)
    assert not D.ensure_synthetic(cfg, tmp_path / "a", seed=0)  # made with the same knobs: kept
    assert D.ensure_synthetic(small_shallow(), tmp_path / "a", seed=0)  # the shallow world is another data set


def test_knobs_at_zero_are_the_shallow_world_byte_for_byte(tmp_path):
    cfg = small_shallow()
    off = dataclasses.replace(cfg, induction_strength=0.0, pointer_strength=0.0, pointer_hops=5, max_lag=7,
                              switch_strength=0.0, n_switch_items=9)  # inert without their strengths
    assert not D.is_depth_world(off) and not D.is_depth_world(dataclasses.replace(cfg, switch_strength=0.5))
    a = D.generate_synthetic(cfg, tmp_path / "a", seed=0)
    b = D.generate_synthetic(off, tmp_path / "b", seed=0)
    for k in ("reviews", "meta"):
        assert a[k].read_bytes() == b[k].read_bytes()
    assert D.generator_params(off, 0) == D.generator_params(cfg, 0)
    assert not set(D.DEPTH_FIELDS) & set(D.generator_params(cfg, 0))  # the shallow record is what it always was
    inter_a, wa = D.simulate_synthetic(cfg, 0)
    inter_b, wb = D.simulate_synthetic(off, 0)
    assert inter_a.equals(inter_b) and not wb.depth
    with pytest.raises(ValueError, match="depth world"):
        D.bayes_scores(wa, [[0, 1]])


def test_depth_world_shares_the_shallow_worlds_structure_and_refuses_a_latent_taste():
    cfg = small_shallow()
    _, shallow = D.simulate_synthetic(cfg, 0)
    _, deep = D.simulate_synthetic(dataclasses.replace(cfg, markov_strength=1.0, induction_strength=0.5), 0)
    for f in ("item_cluster", "popularity", "successors", "cluster_transition", "user_taste", "seq_lengths"):
        assert np.array_equal(getattr(shallow, f), getattr(deep, f))
    with pytest.raises(ValueError, match="markov_strength"):
        D.simulate_synthetic(dataclasses.replace(cfg, induction_strength=0.5), 0)
    with pytest.raises(ValueError, match="<= 1"):
        D.simulate_synthetic(dataclasses.replace(cfg, markov_strength=1.0, induction_strength=0.7,
                                                 pointer_strength=0.5), 0)


def test_profiles_live_in_the_depth_world_but_shallow():
    d, sh = get_config("default").data, get_config("shallow").data
    assert d == get_config("default", world="depth").data and sh == get_config("default", world="shallow").data
    assert D.is_depth_world(d) and not D.is_depth_world(sh) and D.is_depth_world(get_config("full").data)
    assert all(getattr(d, k) == v for k, v in DEPTH_WORLD.items())
    assert (d.n_users, d.n_items, d.max_len) == (sh.n_users, sh.n_items, sh.max_len)
    assert get_config("shallow").model == get_config("default").model
    s, s_sh = get_config("smoke").data, get_config("smoke", world="shallow").data
    assert D.is_depth_world(s) and not D.is_depth_world(s_sh)
    assert s.n_items == s_sh.n_items and s.n_switch_items <= s.n_items // 25
    with pytest.raises(ValueError, match="world"):
        get_config("smoke", world="deep")


# ------------------------------------------------------------------ exactness
@pytest.fixture(scope="module")
def tiny_world():
    inter, w = D.simulate_synthetic(tiny(), seed=0)
    seqs = [g.tolist() for _, g in inter.groupby("user")["item"]]
    return w, seqs


def test_tiny_world_has_every_mechanism(tiny_world):
    w, seqs = tiny_world
    assert w.depth and w.successors.shape[1] == 2 and w.switch_item.sum() == 2
    assert (w.user_map != np.arange(3)[None, :]).all()  # pi_u(c) != c
    assert not np.allclose(w.mode_transition[0], w.mode_transition[1])
    assert max(map(len, seqs)) == 4


def test_bayes_is_the_brute_force_enumeration(tiny_world):
    w, seqs = tiny_world
    hand = [[0, 1], [4, 2, 7], [0, 3, 6, 1], [8, 5, 2, 0, 4]]  # 5 items: longer than the generator makes
    members = [np.flatnonzero(w.item_cluster == c).tolist() for c in range(3)]
    hand.append(members[0] + [members[1][0]])  # cluster 0 exhausted: its mass spreads over all unseen items
    hand.append([members[2][0]] + members[0] + members[1][:1])
    for h in [s[:k] for s in seqs[:25] for k in range(1, len(s) + 1)] + hand:
        np.testing.assert_allclose(D.bayes_scores(w, [h])[0], brute_force_bayes(w, h), rtol=0, atol=1e-10)


def test_bayes_is_exact_for_each_mechanism_alone():
    for knobs in (dict(pointer_strength=0.0, switch_strength=0.0), dict(induction_strength=0.0, switch_strength=0.0),
                  dict(induction_strength=0.0, pointer_strength=0.0, switch_strength=1.0)):
        inter, w = D.simulate_synthetic(tiny(**knobs), seed=1)
        for h in [g.tolist() for _, g in inter.groupby("user")["item"]][:15]:
            np.testing.assert_allclose(D.bayes_scores(w, [h])[0], brute_force_bayes(w, h), rtol=0, atol=1e-10)


def test_scores_are_distributions_over_unseen_items(tiny_world):
    w, seqs = tiny_world
    hist = [s[:-1] for s in seqs] + [[3], [0, 1, 2, 3, 4]]
    padded = np.full((len(hist), 6), -1)
    for i, h in enumerate(hist):
        padded[i, 6 - len(h):] = h  # left-padded, as RecData holds histories
    for p in (D.bayes_scores(w, padded), D.last_item_bayes_scores(w, [h[-1] for h in hist], padded)):
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
        assert (p >= 0).all()
        for row, h in zip(p, hist):
            assert (row[h] == 0).all() and (np.delete(row, h) > 0).all()
    np.testing.assert_array_equal(D.bayes_scores(w, padded), D.bayes_scores(w, hist))


def test_generator_samples_follow_the_bayes_law():
    """The histories the generator writes follow the law bayes_scores computes: for the commonest two-item prefixes
    of 40,000 simulated users (each with their own pi_u), the third item's frequencies match it."""
    inter, w = D.simulate_synthetic(tiny(n_users=40_000), seed=2)
    first3 = inter[inter["step"] < 3].pivot(index="user", columns="step", values="item").to_numpy()
    prefixes, counts = np.unique(first3[:, :2], axis=0, return_counts=True)
    for pre in prefixes[np.argsort(-counts)[:6]]:
        nxt = first3[(first3[:, :2] == pre).all(1), 2]
        freq = np.bincount(nxt, minlength=w.n_items) / len(nxt)
        p = D.bayes_scores(w, [pre.tolist()])[0]
        assert np.all(np.abs(freq - p) <= 4.5 * np.sqrt(p * (1 - p) / len(nxt)) + 1e-9), (pre, freq, p)


def test_last_item_table_is_the_markov_row_without_pointer_and_switch():
    _, w = D.simulate_synthetic(tiny(pointer_strength=0.0, switch_strength=0.0), seed=0)
    table = D.last_item_table(w)
    keys = S._item_keys(w, np.arange(w.n_items))
    np.testing.assert_allclose(table[keys], w.cluster_transition[w.item_cluster], atol=1e-12)


def test_bayes_beats_last_item_bayes_and_markov_with_strong_induction():
    cfg = DataConfig(n_users=3000, n_items=200, n_clusters=6, mean_seq_len=20.0, popularity_alpha=1.4,
                     markov_strength=1.0, successor_strength=0.1, induction_strength=0.8)
    inter, w = D.simulate_synthetic(cfg, seed=0)
    seqs = [g.to_numpy() for _, g in inter.groupby("user")["item"]]
    hist, target = [s[:-1] for s in seqs], np.array([s[-1] for s in seqs])
    markov = np.zeros((w.n_items, w.n_items))
    for h in hist:
        np.add.at(markov, (h[:-1], h[1:]), 1.0)
    pop = np.bincount(np.concatenate(hist), minlength=w.n_items)
    m = markov[[h[-1] for h in hist]] + pop / (pop.max() + 1) * 1e-3
    for i, h in enumerate(hist):
        m[i, h] = -1.0  # seen items masked, as lab.metrics does
    bayes = ndcg10(D.bayes_scores(w, hist), target)
    last = ndcg10(D.last_item_bayes_scores(w, [h[-1] for h in hist], hist), target)
    assert bayes > last + 0.1 and bayes > ndcg10(m, target) + 0.1


# ------------------------------------------------------------------ planted variables
def test_planted_variables_on_hand_made_histories(tiny_world):
    w0, _ = tiny_world
    w = dataclasses.replace(w0, item_cluster=np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]),
                            item_lag=np.array([1, 2, 1, 2, 1, 2, 1, 2, 1]), switch_item=np.zeros(9, dtype=bool),
                            mode_bit=np.array([0, 1, 0, 1, 0, 1, 0, 1, 0]), pointer_hops=2)
    w.switch_item[[4, 8]] = True
    hist = [
        [0, 3, 6, 1, 7],  # last cluster 2; cluster 2 before at position 2, followed by item 1 (cluster 0)
        [4, 5, 0],  # switch at 0 followed by item 5 (bit 1): mode 1; cluster 0 never before: -1
        [8, 3],  # the switch at 0 is followed by item 3 (bit 1): mode 1
        [2, 4],  # a switch as the last item: no follower, mode 0
    ]
    got = D.planted_variables(w, hist, users=[0, 1, 2, 3])
    # pointer: from p = len-1 hop by lag(x_p) twice
    # h0: p=4 (item 7, lag 2) -> 2 (item 6, lag 1) -> 1;  h1: p=2 (item 0, lag 1) -> 1 (item 5, lag 2) -> -1
    # h2: p=1 (item 3, lag 2) -> -1;  h3: p=1 (item 4, lag 1) -> 0 (item 2, lag 1) -> -1
    expect = {
        "length": [5, 3, 2, 2], "last_cluster": [2, 0, 1, 1], "induction_cluster": [0, -1, -1, -1],
        "hop1_pos": [2, 1, -1, 0], "hop2_pos": [1, -1, -1, -1], "pointer_cluster": [1, -1, -1, -1],
        "switch_pos": [-1, 0, 0, -1], "mode": [0, 1, 1, 0],
        "map_cluster": [w.user_map[u, c] for u, c in enumerate([2, 0, 1, 1])],
    }
    for col, values in expect.items():
        assert got[col].tolist() == values, col
    assert D.pointer_positions(w, np.array([hist[0]]), np.array([5])).tolist() == [[2, 1]]


def test_planted_variables_are_what_the_generator_used(tiny_world):
    """The induction source and the pointer target recomputed by the law: the cluster mixture's induction entry is
    pi_u(last cluster) and its pointer entry the planted pointer cluster."""
    w, seqs = tiny_world
    hist = [s[:-1] for s in seqs if len(s) >= 4]
    got = D.planted_variables(w, hist)
    seq, n = S._as_rows(hist)
    law, c_last = S._cluster_law(w, seq, n, got["mode"].to_numpy())
    assert (c_last == got["last_cluster"].to_numpy()).all()
    pc, mode = got["pointer_cluster"].to_numpy(), got["mode"].to_numpy()
    rows = np.flatnonzero(pc >= 0)
    assert 0 < len(rows) < len(pc)
    markov = (1 - w.induction_strength - w.pointer_strength) * w.mode_transition[mode[rows], c_last[rows], pc[rows]]
    np.testing.assert_allclose(law[rows, pc[rows]] - markov, w.pointer_strength, atol=1e-12)


# ------------------------------------------------------------------ the depth sweep (lab.bench.depth)
def test_depth_bench_runs_and_reads_models_against_the_references(tmp_path, capsys):
    from lab.bench import depth as DB

    out = DB.run("smoke", seeds=(0,), depths=(1, 2), artefacts=tmp_path, compare=(2, 8))
    json.dumps(out)  # JSON-able
    refs = out["references"]
    assert refs["bayes"] > refs["last_item_bayes"] > refs["markov"] > 0
    for L in ("1", "2"):
        d = out["per_depth"][L]
        assert d["gap_closed"] == pytest.approx((d["ndcg10"] - refs["markov"]) / (refs["bayes"] - refs["markov"]))
        assert d["gap_closed_ci"] == [None, None]  # one seed: no interval
    cmp = out["compare"]
    assert (cmp["a"], cmp["b"]) == (1, 2)  # 2 vs 8 not run: the shallowest vs the deepest
    assert cmp["pooled"]["n_users"] == cmp["per_seed"][0]["n_users"] > 0
    again = DB.run("smoke", seeds=(0,), depths=(1,), artefacts=tmp_path)  # finished models are loaded back
    assert again["per_depth"]["1"]["ndcg10"] == out["per_depth"]["1"]["ndcg10"]
    assert "loaded" in capsys.readouterr().out
    info = json.loads(next(tmp_path.rglob("L1/train_info.json")).read_text())
    assert info["key"]["train"]["max_minutes"] == DB.EPOCHS_ONLY  # epochs are the budget, not the machine's load


def test_depth_bench_knobs_change_the_world_in_their_own_folder(tmp_path):
    from lab.bench import depth as DB

    base = DB.world_config("smoke", 0)
    cfg = DB.world_config("smoke", 0, {"induction_strength": "0.9", "pointer_strength": "0", "pointer_hops": "2"})
    assert (cfg.data.induction_strength, cfg.data.pointer_strength, cfg.data.pointer_hops) == (0.9, 0.0, 2)
    assert type(cfg.data.pointer_hops) is int and cfg.data.n_users == base.data.n_users  # only the knobs move
    assert DB.knob_tag(None) == "depth_bench"
    assert DB.knob_tag({"pointer_hops": 2, "induction_strength": 0.9}) == "depth_bench-induction_strength=0.9,pointer_hops=2"
    assert DB.bench_paths("smoke", tmp_path, 0, {"n_users": 99}).root.name == "depth_bench-n_users=99"
    with pytest.raises(ValueError, match="unknown data knob.*induction"):
        DB.world_config("smoke", 0, {"induction": "0.9"})


def test_depth_curve_reads_without_a_ceiling_on_real_data():
    from lab.bench.depth import DepthCurve, gap_closed

    refs = {"markov": 0.1, "popularity": 0.05}  # real data: no Bayes reference
    assert np.isnan(gap_closed(0.2, refs)) and gap_closed(0.2, {**refs, "bayes": 0.3}) == pytest.approx(0.5)
    table = pd.DataFrame({"ndcg@10": [0.12, 0.15], "gap_closed": [np.nan, np.nan], "model": ["a", "b"]},
                         index=pd.Index([2, 8], name="num_layers"))
    cmp = {"a": 2, "b": 8, "diff": 0.03, "n_users": 50, "t_p": 0.01, "wilcoxon_p": 0.02, "ci_low": 0.01,
           "ci_high": 0.05, "clear": True}
    curve = DepthCurve(refs=refs, table=table, per_user=pd.DataFrame(), compare=cmp)
    text = curve.conclusion()
    assert "ceiling" not in text and "L=8 minus L=2: +0.0300" in text and "depth buys quality" in text
    rec = curve.record()
    assert rec["depth_gap_closed"] == {2: None, 8: None} and rec["depth_ndcg10"] == {2: 0.12, 8: 0.15}
    curve.compare = {**cmp, "diff": -0.001, "ci_low": -0.004, "ci_high": 0.002, "clear": False}
    assert "no difference beyond noise" in curve.conclusion()


def test_a_pretrained_teacher_is_named_and_compared_with_the_deepest_model_from_scratch():
    """Issue 13: the LLM teacher's row of the depth curve says it is pretrained, and its per-user difference from the
    deepest model trained from scratch is the paired test of the two columns."""
    from types import SimpleNamespace

    from lab.bench.depth import DepthCurve, model_label, paired_columns
    from lab.evaluation import paired_comparison

    assert model_label(SimpleNamespace(config=SimpleNamespace(pretrained="smollm2-135m"))) == "pretrained smollm2-135m"
    assert model_label(SimpleNamespace(config=SimpleNamespace(pretrained="/ckpt/Llama-3-8B"))) == \
        "pretrained Llama-3-8B"
    assert model_label(SimpleNamespace(config=SimpleNamespace(pretrained=None))) == "trained above"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"L2": rng.random(60), "L8": rng.random(60)})
    frame["L30"] = frame["L8"] + 0.1 + 0.01 * rng.standard_normal(60)
    names = {30: "L=30 (pretrained smollm2-135m)"}
    c = paired_columns(frame, 8, 30, names)
    assert c == {"a": 8, "b": 30, **paired_comparison(frame["L30"], frame["L8"]), "a_name": "L=8",
                 "b_name": "L=30 (pretrained smollm2-135m)"}
    assert c["diff"] == pytest.approx(0.1, abs=0.01)
    table = pd.DataFrame({"ndcg@10": [0.1, 0.2, 0.3], "gap_closed": [0.1, 0.2, 0.3],
                          "model": ["from scratch", "from scratch", "pretrained smollm2-135m"]},
                         index=pd.Index([2, 8, 30], name="num_layers"))
    curve = DepthCurve(refs={"bayes": 0.4, "markov": 0.05}, table=table, per_user=frame,
                       compare=paired_columns(frame, 2, 30, names), pretrained_compare=c)
    text = curve.conclusion()
    assert "L=30 0.3000 (pretrained smollm2-135m)" in text and "L=8 0.2000," in text
    assert "L=30 (pretrained smollm2-135m) minus L=8: +0.1" in text and "pretrained layers buy quality" in text
    rec = curve.record()
    assert rec["depth_compare_pretrained"]["b"] == 30 and rec["depth_models"][30] == "pretrained smollm2-135m"


@pytest.mark.slow
def test_full_profile_is_as_large_as_issue_16_asks():
    """The `full` profile's data after chapter 01's de-duplication and 5-core: >= 50k users, >= 10k items, >= 500k
    interactions (~30 s: the generator's interactions, then the same `k_core` chapter 01 runs)."""
    from lab.data.preprocess import k_core

    cfg = get_config("full").data
    inter, _ = S.simulate_synthetic(cfg, 0)
    pairs = inter[["user", "item"]].drop_duplicates()
    keep, _ = k_core(pairs["user"].to_numpy(), pairs["item"].to_numpy(), cfg.k_core)
    kept = pairs[keep]
    assert kept["user"].nunique() >= 50_000 and kept["item"].nunique() >= 10_000 and len(kept) >= 500_000, \
        (kept["user"].nunique(), kept["item"].nunique(), len(kept))


# ------------------------------------------------------------------ the ceiling on the histories the models see
def test_bayes_reads_the_generated_history_the_pre_processing_thinned():
    """Drop a third of the items, as k-core would: every kept user's processed history maps back to their generated
    history before the next kept item, and the `bayes` scorer is the generator's law given that history (exact),
    while `bayes_processed` applies it to the thinned history; with nothing dropped the two agree."""
    cfg = tiny(n_users=80, n_items=30, n_clusters=3, mean_seq_len=8.0)
    _, w = D.simulate_synthetic(cfg, seed=1)
    w.item_ids = np.array([f"i{g}" for g in range(w.n_items)])
    dropped = np.arange(w.n_items) % 3 == 0
    catalogue = [None] + [f"i{g}" for g in np.flatnonzero(~dropped)]  # processed id -> parent_asin, 0 = PAD
    proc_id = {int(f[1:]): i for i, f in enumerate(catalogue) if f}
    refs = D.reference_scorers(w, catalogue)
    rows, want = [], []
    for u, seq in enumerate(w.sequences):
        seq = seq[seq >= 0]
        steps = [t for t, g in enumerate(seq) if not dropped[g]]
        if len(steps) >= 5:  # the history: the kept items before the user's last kept one (4 or more: no two alike)
            rows.append([proc_id[int(seq[t])] for t in steps[:-1]])
            want.append(seq[:steps[-1]])  # the generated history before the target, dropped items included
    width = max(map(len, rows))
    h = torch.tensor([[0] * (width - len(r)) + r for r in rows])  # left-padded with PAD
    got = refs["bayes"](h).numpy()
    assert refs["bayes"].prefixes.matched == len(rows) and refs["bayes"].prefixes.fallbacks == 0
    law = D.bayes_scores(w, want)  # (B, I) over generated items
    gen = np.array([-1] + [int(f[1:]) for f in catalogue[1:]])
    np.testing.assert_allclose(got[:, 1:], law[:, gen[1:]], atol=1e-12)
    thinned = refs["bayes_processed"](h).numpy()
    assert np.abs(thinned - got).max() > 1e-3  # the thinned history is another law: the old ceiling was not exact
    # nothing dropped: the generated history is the processed one, and the two scorers agree
    full = [None] + [f"i{g}" for g in range(w.n_items)]
    refs = D.reference_scorers(w, full)
    seqs = [s[s >= 0] for s in w.sequences if (s >= 0).sum() >= 2]
    width = max(map(len, seqs)) - 1
    h = torch.tensor([[0] * (width - len(s) + 1) + (s[:-1] + 1).tolist() for s in seqs])
    np.testing.assert_allclose(refs["bayes"](h).numpy(), refs["bayes_processed"](h).numpy(), atol=1e-12)
    assert refs["bayes"].prefixes.fallbacks == 0


def test_generated_prefixes_fall_back_when_a_history_is_ambiguous_or_unknown():
    _, w = D.simulate_synthetic(tiny(), seed=0)
    w.sequences = np.array([[0, 1, 2, -1], [0, 4, 2, 5], [0, 1, 3, -1], [7, 8, -1, -1]])  # four planted users
    pre = S.GeneratedPrefixes(w, np.r_[-1, [0, 1, 2, 3, 5, 7, 8]])  # items 4 and 6 dropped
    got = pre.prefixes(np.array([[-1, 0, 1], [-1, -1, 0], [-1, 0, 2], [-1, 1, 0], [-1, -1, 7]]))
    assert got[0].tolist() == [0, 1]  # users 0 and 2 both continue [0, 1]; their generated histories agree
    assert got[1] is None  # [0] continues as [0] (users 0, 2) or [0, 4] (user 1): different generated histories
    assert got[2].tolist() == [0, 4, 2]  # user 1: the dropped item 4 is in the history before the target 5
    assert got[3] is None and got[4].tolist() == [7]  # [1, 0] starts nobody's items; user 3
    assert (pre.matched, pre.fallbacks) == (3, 2)

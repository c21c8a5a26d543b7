"""Chapter 01 (data) in the smoke profile: every recorded count and baseline is recomputed here, independently of
`lab.data`, from the files the chapter read and wrote (raw files, processed cache, the bad-input demo). The chapter
runs in the smoke profile's depth world, where the Bayes reference is recomputed for sampled users from the generator's
law written out in `tests/test_depth_world.py` on each user's generated history before the target (the processed one
plus what the pre-processing dropped), and once more in the shallow world (`WORLD="shallow"`, its own artefact
folder), which has no Bayes reference."""
from __future__ import annotations

import gzip
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import lab

FIELDS = ["user_id", "parent_asin", "timestamp", "rating"]


def _jsonl(path) -> list[str]:
    text = gzip.decompress(path.read_bytes()).decode() if path.name.endswith(".gz") else path.read_text()
    return [ln for ln in text.splitlines() if ln.strip()]


def _k_core(df: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        keep = (df.groupby("user_id")["parent_asin"].transform("size") >= k) & \
               (df.groupby("parent_asin")["user_id"].transform("size") >= k)
        if keep.all():
            return df
        df = df[keep]


def _pessimistic_rank(scores: np.ndarray, target: int, seen) -> int:
    s = scores.astype(np.float64).copy()
    t = s[target]
    s[list(seen)] = -np.inf
    s[0] = -np.inf
    s[target] = t
    return int((s > t).sum() + (s == t).sum() - 1)


def _reference_floors(P, cfg) -> dict:
    """Test NDCG@10 of popularity and first-order Markov, counted on the training split of the processed data, each
    user's whole history masked (the chapter's section 6), per user."""
    inter = pd.read_parquet(P.processed / cfg.category / "interactions.parquet")  # sorted by user, then time
    seqs = [g.tolist() for _, g in inter.groupby("user", sort=True)["item"]]
    seqs = [s for s in seqs if len(s) >= 3]
    n_items = int(inter["item"].max())
    pop, fwd = np.zeros(n_items + 1), np.zeros((n_items + 1, n_items + 1))
    for s in seqs:
        np.add.at(pop, s[:-2], 1)
        window = s[:-2][-(cfg.max_len + 1):]
        np.add.at(fwd, (window[:-1], window[1:]), 1)
    tie = pop / (pop.max() + 1.0) * 1e-3
    out = {"popularity": [], "markov": []}
    for s in seqs:
        hist, target = s[:-1], s[-1]  # the test target and everything before it
        for name, scores in (("popularity", tie), ("markov", fwd[hist[-1]] + tie)):
            r = _pessimistic_rank(scores, target, hist)
            out[name].append(1 / math.log2(r + 2) if r < 10 else 0.0)
    return {k: np.array(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def chapter(smoke_book):
    r = smoke_book.run("01")["01_data"]
    P = lab.paths("smoke", smoke_book.artefacts)
    cfg = lab.get_config("smoke", 0).data
    return r, P, cfg


def test_counts_match_an_independent_preprocessing_of_the_raw_files(chapter):
    r, P, cfg = chapter
    rev_lines = _jsonl(P.raw / f"{cfg.category}.jsonl.gz")
    meta_lines = _jsonl(P.raw / f"meta_{cfg.category}.jsonl.gz")
    assert r["rows_read"] == len(rev_lines) + len(meta_lines)  # every review and metadata row was read

    reviews = pd.DataFrame([json.loads(ln) for ln in rev_lines])[FIELDS]
    n_dup = int(reviews.duplicated().sum())
    meta = pd.DataFrame([json.loads(ln) for ln in meta_lines])
    unknown = int((~meta["parent_asin"].isin(set(reviews["parent_asin"]))).sum())
    expected = {k: v for k, v in {"duplicate_row": n_dup, "unknown_item": unknown}.items() if v}
    assert n_dup > 0  # the generator plants exact duplicates
    assert {k: v for k, v in r["skipped_by_reason"].items() if v} == expected
    assert r["rows_skipped"] == n_dup + unknown

    # de-duplicate, keep each user's earliest review of an item, iterative k-core: the benchmark's steps
    df = reviews.drop_duplicates().sort_values("timestamp", kind="stable")
    df = _k_core(df.drop_duplicates(["user_id", "parent_asin"], keep="first"), cfg.k_core)
    n_users, n_items, n = df["user_id"].nunique(), df["parent_asin"].nunique(), len(df)
    assert (r["n_users"], r["n_items"], r["n_interactions"]) == (n_users, n_items, n)
    assert r["density"] == pytest.approx(n / (n_users * n_items), rel=1e-12)
    assert r["mean_seq_len"] == pytest.approx(n / n_users, rel=1e-12)

    # the cache the later chapters read holds the same data set
    inter = pd.read_parquet(P.processed / cfg.category / "interactions.parquet")
    assert (inter["user"].nunique(), inter["item"].nunique(), len(inter)) == (n_users, n_items, n)
    assert len(pd.read_parquet(P.processed / cfg.category / "items.parquet")) == n_items + 1  # + padding row
    assert r["cache_second_call"] == "hit"


def test_split_sizes_match_the_processed_data(chapter):
    r, P, cfg = chapter
    inter = pd.read_parquet(P.processed / cfg.category / "interactions.parquet")
    sizes = inter.groupby("user").size()
    assert r["split"] == "leave_last_out"
    assert r["valid_rows"] == r["test_rows"] == int((sizes >= 3).sum())  # one target of each per user
    n_valid = n_test = 0
    for _, g in inter.groupby("user"):
        t = np.sort(g["timestamp"].to_numpy())
        before_valid = int((t < cfg.valid_from_ms).sum())
        before_test = int((t < cfg.test_from_ms).sum())
        n_valid += 0 < before_valid < before_test  # a target in the validation period, with history before it
        n_test += 0 < before_test < len(t)
    assert (r["timestamp_valid_rows"], r["timestamp_test_rows"]) == (n_valid, n_test)


def test_baselines_recomputed_from_the_training_split(chapter):
    r, P, cfg = chapter
    inter = pd.read_parquet(P.processed / cfg.category / "interactions.parquet")  # sorted by user, then time
    seqs = [g.tolist() for _, g in inter.groupby("user", sort=True)["item"]]
    seqs = [s for s in seqs if len(s) >= 3]
    n_items = int(inter["item"].max())
    pop = np.zeros(n_items + 1)
    fwd = np.zeros((n_items + 1, n_items + 1))
    for s in seqs:
        train = s[:-2]
        np.add.at(pop, train, 1)
        window = train[-(cfg.max_len + 1):]  # the model's training window: transitions the chapter counts
        for a, b in zip(window[:-1], window[1:]):
            fwd[a, b] += 1
    tie = pop / (pop.max() + 1.0) * 1e-3  # popularity breaks ties below one transition count
    hits = {"popularity": [], "markov": [], "markov_reversed": []}
    for s in seqs:
        hist, target = s[:-2], s[-2]  # validation target
        for name, scores in (("popularity", tie), ("markov", fwd[hist[-1]] + tie),
                             ("markov_reversed", fwd[:, hist[-1]] + tie)):
            hits[name].append(_pessimistic_rank(scores, target, hist) < 10)
    hr = {k: float(np.mean(v)) for k, v in hits.items()}
    assert r["hr10_popularity"] == pytest.approx(hr["popularity"], abs=1e-12)
    assert r["hr10_markov"] == pytest.approx(hr["markov"], abs=1e-12)
    assert r["hr10_markov_reversed"] == pytest.approx(hr["markov_reversed"], abs=1e-12)
    assert r["hr10_chance"] == pytest.approx(10 / n_items, rel=1e-12)
    assert r["markov_lift_over_popularity"] == pytest.approx(hr["markov"] / hr["popularity"], rel=1e-12)
    # the chapter's finding: the last item predicts the next, and the order matters (in the depth world the last item
    # says less than in the shallow one, by design: successor_strength 0.1; smoke seed 0: lift 1.15x)
    assert hr["popularity"] > 10 / n_items
    assert hr["markov"] > hr["popularity"]
    assert hr["markov"] > hr["markov_reversed"]


def parsed_lines(path, reasons: Counter):
    """The JSON value of each line of a .jsonl file; a line that does not parse is counted as malformed_json."""
    for ln in path.read_text().splitlines():
        try:
            yield json.loads(ln)
        except ValueError:
            reasons["malformed_json"] += 1


def test_bad_input_demo_counts_every_planted_problem(chapter):
    r, P, _ = chapter
    demo = P.root / "bad_input_demo"
    reasons, rows = Counter(), []
    for o in parsed_lines(demo / "Corrupt.jsonl", reasons):
        if not isinstance(o, dict):
            reasons["not_an_object"] += 1
        elif any(o.get(f) is None for f in FIELDS):
            reasons["missing_field"] += 1
        elif not isinstance(o["rating"], (int, float)):
            reasons["bad_type"] += 1
        elif math.isnan(o["rating"]) or not 1 <= o["rating"] <= 5:
            reasons["rating_out_of_range"] += 1
        else:
            rows.append(tuple(o[f] for f in FIELDS))
    reasons["duplicate_row"] = len(rows) - len(set(rows))
    known, meta_seen = {row[1] for row in rows}, set()
    for o in parsed_lines(demo / "meta_Corrupt.jsonl", reasons):
        if o["parent_asin"] not in known:
            reasons["unknown_item"] += 1
        elif o["parent_asin"] in meta_seen:
            reasons["duplicate_item"] += 1
        meta_seen.add(o["parent_asin"])
    # what the chapter planted: 2 malformed lines (a review and a meta row), a NaN and a 7 rating, one of each other
    assert reasons["malformed_json"] == 2 and reasons["rating_out_of_range"] == 2 and reasons["duplicate_row"] >= 1
    assert r["demo_skipped_by_reason"] == dict(reasons)
    assert r["demo_rows_skipped"] == sum(reasons.values())
    assert r["demo_file_errors"] == ["Corrupt.jsonl (strict=True)", "Empty.jsonl", "Missing.jsonl",
                                     "Truncated.jsonl.gz"]


def test_reference_floors_recomputed_and_no_bayes_in_the_shallow_world(shallow_chapter):
    r, P, cfg = shallow_chapter
    floors = _reference_floors(P, cfg)
    assert r["world"] == "shallow" and r["bayes_ndcg10"] is None and r["last_item_bayes_ndcg10"] is None
    for name in ("markov", "popularity"):
        assert r[f"{name}_ndcg10"] == pytest.approx(floors[name].mean(), abs=1e-12)
    saved = pd.read_parquet(P.file("01_reference_ndcg.parquet"))
    assert list(saved.columns) == ["user", "markov", "popularity"]


@pytest.fixture(scope="module")
def shallow_chapter(tmp_path_factory):
    """Chapter 01 in the smoke profile's sizes in the shallow world, in its own artefact folder."""
    from lab.notebooks import NOTEBOOKS, run_chapter

    root = tmp_path_factory.mktemp("shallow_world")
    run_chapter(NOTEBOOKS / "01_data.py", profile="smoke", seed=0, artefacts=str(root / "artefacts"),
                out_dir=root / "runs", extra={"WORLD": "shallow"})
    P = lab.paths("smoke", root / "artefacts")
    return lab.results("smoke", root / "artefacts")["01_data"], P, lab.get_config("smoke", 0, world="shallow").data


def _bayes_by_the_law(world, hist: list[int]) -> np.ndarray:
    """P(next | history) with the posterior over pi_u(last cluster) summed out by its definition: the product, over
    the earlier steps leaving the last cluster, of each step's probability given pi_u(last cluster) = d."""
    from test_depth_world import step_law

    c = world.item_cluster[hist[-1]]
    pi = lambda d: [d if k == c else (k + 1) % world.n_clusters for k in range(world.n_clusters)]  # others unused
    post = np.array([0.0 if d == c else np.prod([step_law(world, hist[:j], pi(d))[hist[j]]
                                                 for j in range(1, len(hist)) if world.item_cluster[hist[j - 1]] == c])
                     for d in range(world.n_clusters)])
    return sum(post[d] / post.sum() * step_law(world, hist, pi(d)) for d in range(world.n_clusters) if d != c)


def _generated_histories(world, inter: pd.DataFrame, user_ids: pd.Series, to_gen: np.ndarray) -> list[list[int]]:
    """Per processed user (by user_id, independently of `lab.data.synthetic.GeneratedPrefixes`): the generated items
    before the user's last processed item, checking on the way that the processed sequence is the generated one with
    only dropped items left out."""
    row_of = {u: i for i, u in enumerate(world.user_ids)}
    kept = set(to_gen[1:].tolist())
    out = []
    for user, g in inter.groupby("user", sort=True)["item"]:
        seq = world.sequences[row_of[user_ids.iloc[user]]]
        seq = seq[seq >= 0].tolist()
        assert [x for x in seq if x in kept] == to_gen[g.to_numpy()].tolist(), user  # order kept, nothing added
        out.append(seq[:seq.index(int(to_gen[g.iloc[-1]]))])
    return out


def test_ceiling_on_generated_against_processed_histories(chapter):
    """The recorded ceiling check, recomputed: how many test histories the pre-processing thinned (from the
    generated sequences by user id), and the law on the processed histories alone, ranked as every scorer is."""
    from lab.data import bayes_scores, synthetic_world

    r, P, cfg = chapter
    world = synthetic_world(cfg, 0)
    items = pd.read_parquet(P.processed / cfg.category / "items.parquet")
    gen = {a: g for g, a in enumerate(world.item_ids)}
    to_gen = np.array([-1] + [gen[a] for a in items["parent_asin"].iloc[1:]])
    inter = pd.read_parquet(P.processed / cfg.category / "interactions.parquet")
    user_ids = pd.read_parquet(P.processed / cfg.category / "users.parquet")["user_id"]
    generated = _generated_histories(world, inter, user_ids, to_gen)
    seqs = [g.tolist() for _, g in inter.groupby("user", sort=True)["item"]]
    test = [(s, h) for s, h in zip(seqs, generated) if len(s) >= 3]
    thinned = sum(len(h) > len(s) - 1 for s, h in test)
    assert r["bayes_histories"] == {"users": len(test), "matched": len(test), "fallbacks": 0, "thinned": thinned}
    law = bayes_scores(world, [to_gen[s[:-1]] for s, _ in test])  # (U, I) on the processed histories
    ndcg = []
    for (s, _), p in zip(test, law):
        k = _pessimistic_rank(np.r_[0.0, p[to_gen[1:]]], s[-1], s[:-1])
        ndcg.append(1 / math.log2(k + 2) if k < 10 else 0.0)
    assert r["bayes_processed_ndcg10"] == pytest.approx(np.mean(ndcg), abs=1e-9)
    assert r["bayes_minus_processed"] == pytest.approx(r["bayes_ndcg10"] - np.mean(ndcg), abs=1e-9)
    lo, hi = r["bayes_minus_processed_ci"]
    assert lo <= r["bayes_minus_processed"] <= hi


def test_depth_world_references(chapter):
    from lab.data import synthetic_world

    r, P, cfg = chapter
    saved = pd.read_parquet(P.file("01_reference_ndcg.parquet"))
    assert r["world"] == "depth"
    for name in ("bayes", "last_item_bayes", "markov", "popularity"):
        assert r[f"{name}_ndcg10"] == pytest.approx(saved[name].mean(), abs=1e-12)
    floors = _reference_floors(P, cfg)
    for name in ("markov", "popularity"):
        np.testing.assert_allclose(saved[name].to_numpy(), floors[name], atol=1e-12)

    # Bayes for sampled users, from the raw files' ids and the law, ranked among the processed items
    world = synthetic_world(cfg, 0)
    items = pd.read_parquet(P.processed / cfg.category / "items.parquet")
    gen = {a: g for g, a in enumerate(world.item_ids)}
    to_gen = np.array([-1] + [gen[a] for a in items["parent_asin"].iloc[1:]])  # processed item -> generated item
    inter = pd.read_parquet(P.processed / cfg.category / "interactions.parquet")
    user_ids = pd.read_parquet(P.processed / cfg.category / "users.parquet")["user_id"]
    generated = _generated_histories(world, inter, user_ids, to_gen)  # per test user: the history before the target
    seqs = [g.tolist() for _, g in inter.groupby("user", sort=True)["item"]]
    keep = [i for i, s in enumerate(seqs) if len(s) >= 3]
    seqs, generated = [seqs[i] for i in keep], [generated[i] for i in keep]
    rows = np.random.default_rng(0).choice(len(seqs), 25, replace=False)
    for row in rows:
        hist, target = seqs[row][:-1], seqs[row][-1]
        p = _bayes_by_the_law(world, generated[row])  # the law given everything generated before the target
        scores = np.r_[0.0, p[to_gen[1:]]]  # (N+1,) processed ids
        t = scores[target]
        near = np.isclose(scores, t, rtol=1e-9, atol=0)
        near[hist] = False
        above = int((scores > t).sum() - (scores[hist] > t).sum())
        lo, hi = above - int(((scores > t) & near).sum()), above + int((near & (scores <= t)).sum()) - 1
        ndcg = lambda k: 1 / math.log2(k + 2) if k < 10 else 0.0
        assert ndcg(hi) - 1e-12 <= saved["bayes"].iloc[row] <= ndcg(lo) + 1e-12, row
    # what the depth world is built for: the history beyond the last item matters, and both beat the floors
    assert r["bayes_ndcg10"] > r["last_item_bayes_ndcg10"] > r["markov_ndcg10"]

"""Unit tests of lab.data: readers (three formats, bad input), pre-processing, splits on generated data, generator,
cache. The split builder itself: tests/test_splits.py; the count baselines: tests/test_baselines.py."""
from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

import lab
from lab import recommenders as R
from lab import data as D
from lab.config import DataConfig
from lab.profiles import get_config
from lab.constants import IGNORE

TINY = dict(n_users=120, n_items=60, n_clusters=4, mean_seq_len=10.0, max_len=8, chunk_size=97)


def tiny_cfg(**kw) -> DataConfig:
    return DataConfig(**{**TINY, **kw})


def paths_in(tmp_path) -> lab.Paths:
    return lab.Paths(root=tmp_path / "art", figures=tmp_path / "fig")


def review(user="U1", item="I1", ts=1600000000000, rating=5.0, **kw) -> dict:
    return {"rating": rating, "title": "t", "text": "x", "images": [], "asin": item, "parent_asin": item,
            "user_id": user, "timestamp": ts, "helpful_vote": 0, "verified_purchase": True, **kw}


def write_lines(path, lines) -> os.PathLike:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Tiny synthetic raw files (generated once for the module)."""
    raw = tmp_path_factory.mktemp("raw")
    cfg = tiny_cfg()
    files = D.generate_synthetic(cfg, raw, seed=0)
    return cfg, files


# ------------------------------------------------------------------ readers: formats ----------------------------------

def test_three_formats_read_identically(synthetic, tmp_path):
    cfg, files = synthetic
    text = gzip.decompress(files["reviews"].read_bytes()).decode()
    plain = tmp_path / "R.jsonl"
    plain.write_text(text)
    pq_path = tmp_path / "R.parquet"
    df = pd.read_json(plain, lines=True, dtype=False)
    df[["rating", "title", "text", "asin", "parent_asin", "user_id", "timestamp", "helpful_vote",
        "verified_purchase"]].to_parquet(pq_path, index=False, row_group_size=50)
    reads = {}
    for p in (files["reviews"], plain, pq_path):
        rep = D.LoadReport()
        reads[p.name] = (D.read_reviews(p, chunk_size=97, report=rep), rep)
    base, base_rep = reads[files["reviews"].name]
    assert len(base) > 500 and base_rep.rows_skipped == 0
    for name, (df2, rep) in reads.items():
        pd.testing.assert_frame_equal(df2, base, check_categorical=True)
        assert rep.rows_read == base_rep.rows_read
    assert base["timestamp"].dtype == np.int64 and base["rating"].dtype == np.float32
    # the whole pipeline gives the same processed data from each format
    outs = []
    for i, p in enumerate((files["reviews"], plain, pq_path)):
        raw = tmp_path / f"raw{i}"
        raw.mkdir()
        (raw / f"Cat{p.name[p.name.index('.'):]}").write_bytes(p.read_bytes())
        c = dataclasses.replace(cfg, source="amazon", category="Cat", raw_dir=str(raw))
        outs.append(D.prepare_data(c, paths_in(tmp_path / f"p{i}"), progress=False))
    for o in outs[1:]:
        pd.testing.assert_frame_equal(o.interactions, outs[0].interactions)
        assert o.user_ids == outs[0].user_ids
        assert o.items["parent_asin"].tolist() == outs[0].items["parent_asin"].tolist()


def test_meta_jsonl_and_parquet_agree(synthetic, tmp_path):
    _, files = synthetic
    pq_path = tmp_path / "meta_R.parquet"
    pd.read_json(files["meta"], lines=True, dtype=False).drop(columns=["images", "videos", "features"]).to_parquet(
        pq_path, index=False)
    a = D.read_meta(files["meta"], chunk_size=7)
    b = D.read_meta(pq_path, chunk_size=7)
    assert a.index.tolist() == b.index.tolist()
    pd.testing.assert_frame_equal(a[["title", "price", "average_rating", "rating_number", "store"]],
                                  b[["title", "price", "average_rating", "rating_number", "store"]])
    assert [list(x) for x in a["categories"]] == [list(x) for x in b["categories"]]


def test_reader_keeps_only_sequence_fields(synthetic):
    _, files = synthetic
    df = D.read_reviews(files["reviews"])
    assert list(df.columns) == ["user_id", "parent_asin", "timestamp", "rating", "line"]
    assert str(df["user_id"].dtype) == "category" and str(df["parent_asin"].dtype) == "category"


def test_read_meta_fields(synthetic):
    _, files = synthetic
    meta = D.read_meta(files["meta"], columns=None)
    for f in D.META_FIELDS[1:]:
        assert f in meta.columns
    assert "features" in meta.columns  # other fields are kept when columns=None
    assert meta.index.name == "parent_asin" and meta.index.is_unique
    assert meta["title"].str.len().gt(0).all()
    assert meta["price"].dtype == np.float64


# ------------------------------------------------------------------ bad input -----------------------------------------

def bad_file(tmp_path, rows, name="R.jsonl"):
    return write_lines(tmp_path / name, rows)


@pytest.mark.parametrize("line, reason, field", [
    ('{"user_id": "U9", "parent_asin": ', "malformed_json", None),
    ("[1, 2]", "not_an_object", None),
    (json.dumps(review(rating="abc")), "bad_type", "rating"),
    (json.dumps(review(ts="2020-01-01")), "bad_type", "timestamp"),
    (json.dumps({k: v for k, v in review().items() if k != "timestamp"}), "missing_field", "timestamp"),
    (json.dumps(review(user=None)), "missing_field", "user_id"),
    (json.dumps(review(user=123)), "bad_type", "user_id"),
    (json.dumps(review(item="")), "bad_value", "parent_asin"),
    (json.dumps(review(ts=-5)), "bad_value", "timestamp"),
    (json.dumps(review(rating=6.0)), "rating_out_of_range", "rating"),
    (json.dumps(review(rating=0)), "rating_out_of_range", "rating"),
    (json.dumps(review(rating=float("nan"))), "rating_out_of_range", "rating"),
    (json.dumps(review(rating=True)), "bad_type", "rating"),
])
def test_bad_rows_are_skipped_and_counted(tmp_path, line, reason, field):
    good = [review(user=f"U{j}", item=f"I{j}") for j in range(4)]
    p = bad_file(tmp_path, [good[0], good[1], line, good[2], good[3]])
    rep = D.LoadReport()
    df = D.read_reviews(p, chunk_size=2, report=rep)
    assert len(df) == 4 and rep.rows_read == 5 and rep.rows_kept == 4 and rep.rows_skipped == 1
    assert rep.skipped == {reason: 1}
    ex = rep.examples[0]
    assert ex["file"] == "R.jsonl" and ex["line"] == 3 and ex["field"] == field and ex["reason"] == reason
    assert rep.table()["rows"].tolist() == [1]
    # strict mode names file, line and field
    with pytest.raises(D.DataError, match=r"R\.jsonl, line 3") as e:
        D.read_reviews(p, strict=True)
    assert reason in str(e.value) and (field is None or field in str(e.value))


def test_blank_lines_are_ignored(tmp_path):
    p = bad_file(tmp_path, [review(), "", "   ", review(user="U2")])
    rep = D.LoadReport()
    assert len(D.read_reviews(p, report=rep)) == 2 and rep.rows_read == 2 and rep.rows_skipped == 0


def test_duplicate_rows_counted_and_dropped(tmp_path):
    r = review(user="U1", item="I1", ts=10)
    p = bad_file(tmp_path, [r, review(user="U1", item="I2", ts=20), r, r])
    rep = D.LoadReport()
    df = D.read_reviews(p, report=rep)
    inter, users, items = D.preprocess_reviews(df, k=1, report=rep, file="R.jsonl")
    assert len(inter) == 2
    assert rep.skipped == {"duplicate_row": 2} and rep.rows_kept == 2
    assert [e["line"] for e in rep.examples] == [3, 4] and "same as line 1" in rep.examples[0]["value"]


def test_truncated_gzip_raises_naming_the_file(tmp_path):
    blob = gzip.compress(("\n".join(json.dumps(review(user=f"U{j}")) for j in range(3000)) + "\n").encode())
    p = tmp_path / "Trunc.jsonl.gz"
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(D.DataError, match=r"Trunc\.jsonl\.gz.*truncated or corrupt gzip.*line \d+"):
        D.read_reviews(p)
    q = tmp_path / "NotGz.jsonl.gz"
    q.write_text(json.dumps(review()) + "\n")
    with pytest.raises(D.DataError, match="NotGz.jsonl.gz"):
        D.read_reviews(q)


@pytest.mark.parametrize("name, content", [
    ("E.jsonl", b""), ("E.jsonl.gz", b""), ("E2.jsonl.gz", gzip.compress(b"", mtime=0)), ("E3.jsonl", b"\n  \n\n"),
])
def test_empty_file_raises(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(D.DataError, match=name.replace(".", r"\.")):
        D.read_reviews(tmp_path / name)


def test_missing_file_and_unknown_format_raise(tmp_path):
    with pytest.raises(D.DataError, match="Nope.jsonl: file not found"):
        D.read_reviews(tmp_path / "Nope.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(D.DataError, match="unknown raw format"):
        D.read_reviews(tmp_path / "x.csv")
    assert issubclass(D.DataError, ValueError)


def test_parquet_missing_column_and_empty(tmp_path):
    df = pd.DataFrame([review(user=f"U{j}") for j in range(3)]).drop(columns=["timestamp", "images"])
    df.to_parquet(tmp_path / "NoTs.parquet")
    with pytest.raises(D.DataError, match=r"NoTs\.parquet: missing required column\(s\) \['timestamp'\]"):
        D.read_reviews(tmp_path / "NoTs.parquet")
    pd.DataFrame([review()]).drop(columns=["images"]).iloc[:0].to_parquet(tmp_path / "Zero.parquet")
    with pytest.raises(D.DataError, match=r"Zero\.parquet: file has no rows"):
        D.read_reviews(tmp_path / "Zero.parquet")
    (tmp_path / "Junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(D.DataError, match=r"Junk\.parquet"):
        D.read_reviews(tmp_path / "Junk.parquet")


def test_parquet_null_and_nan_rows_are_skipped(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"user_id": ["U1", "U2", None], "parent_asin": ["I1", "I1", "I1"],
                             "timestamp": [1, 2, 3], "rating": pa.array([5.0, float("nan"), 4.0])}),
                   tmp_path / "R.parquet")
    rep = D.LoadReport()
    out = D.read_reviews(tmp_path / "R.parquet", report=rep)
    assert len(out) == 1 and rep.skipped == {"rating_out_of_range": 1, "missing_field": 1}
    assert sorted(e["line"] for e in rep.examples) == [2, 3]


def test_meta_unknown_duplicate_and_bad_rows(tmp_path):
    p = write_lines(tmp_path / "meta_X.jsonl", [
        {"parent_asin": "I1", "title": "One", "price": "None", "categories": ["Books"]},
        {"parent_asin": "I9", "title": "Unknown"},
        '{"parent_asin": "I2", "title"',
        {"parent_asin": "I2", "title": 42},
        {"title": "no id"},
        {"parent_asin": "I1", "title": "One again"},
        {"parent_asin": "I3", "price": 9.5},
    ])
    rep = D.LoadReport()
    meta = D.read_meta(p, report=rep, known={"I1", "I2", "I3"})
    assert meta.index.tolist() == ["I1", "I3"]
    assert meta.loc["I1", "title"] == "One" and math.isnan(meta.loc["I1", "price"])
    assert meta.loc["I3", "title"] == "" and meta.loc["I3", "price"] == 9.5
    assert rep.skipped == {"unknown_item": 1, "malformed_json": 1, "bad_type": 1, "missing_field": 1,
                           "duplicate_item": 1}
    assert rep.rows_read == 7 and rep.rows_kept == 2
    # `keep` drops known rows quietly
    assert D.read_meta(p, known={"I1", "I2", "I3"}, keep={"I3"}).index.tolist() == ["I3"]


def test_report_round_trip_and_text():
    rep = D.LoadReport()
    rep.count_read("a.jsonl", 10)
    for j in range(5):
        rep.skip("bad_type", "a.jsonl", j + 1, "rating", "abc")
    rep.preprocessing["k_core"] = 5
    assert len(rep.examples) == rep.max_examples and rep.rows_kept == 5
    back = D.LoadReport.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert back.to_dict() == rep.to_dict()
    assert "bad_type" in str(rep) and "a.jsonl:1" in str(rep)
    assert rep.files_table().to_dict("records") == [{"file": "a.jsonl", "rows_read": 10, "rows_skipped": 5}]


# ------------------------------------------------------------------ pre-processing ------------------------------------

def frame(rows) -> pd.DataFrame:
    """A read_reviews-like frame from (user, item, ts, rating) tuples, lines 1..n."""
    u, i, t, r = zip(*rows)
    return pd.DataFrame({"user_id": pd.Categorical(u), "parent_asin": pd.Categorical(i),
                         "timestamp": np.array(t, dtype=np.int64), "rating": np.array(r, dtype=np.float32),
                         "line": np.arange(1, len(rows) + 1, dtype=np.int64)})


def test_dedup_keeps_earliest_and_ties_by_line():
    df = frame([("u", "a", 300, 1.0), ("u", "a", 100, 2.0), ("u", "a", 100, 3.0), ("u", "b", 200, 4.0),
                ("u", "c", 100, 5.0)])
    rep = D.LoadReport()
    inter, users, items = D.preprocess_reviews(df, k=1, report=rep)
    got = {items[i]: (t, r) for i, t, r in zip(inter["item"], inter["timestamp"], inter["rating"])}
    assert got["a"] == (100, 2.0)  # earliest; the tie at 100 goes to the earlier line
    assert rep.preprocessing["repeated_user_item"] == 2 and rep.preprocessing["duplicate_rows"] == 0
    # chronological, ties broken by line: a (t=100, line 2) before c (t=100, line 5)
    assert [items[i] for i in inter["item"]] == ["a", "c", "b"]


def test_k_core_is_iterative():
    # a chain that unravels only over several passes, and a 2x2 block that survives k=2
    u = np.array([0, 0, 1, 1, 2, 3, 3, 4, 4])
    i = np.array([0, 1, 1, 2, 2, 3, 4, 3, 4])
    keep, passes = D.k_core(u, i, 2)
    assert keep.tolist() == [False] * 5 + [True] * 4 and passes >= 3


def test_k_core_property_on_generated(synthetic):
    _, files = synthetic
    df = D.read_reviews(files["reviews"])
    for k in (3, 5, 8):
        inter, users, items = D.preprocess_reviews(df, k=k)
        assert inter.groupby("user").size().min() >= k and inter.groupby("item").size().min() >= k
        assert sorted(inter["item"].unique()) == list(range(1, len(items)))  # contiguous 1..N
        assert sorted(inter["user"].unique()) == list(range(len(users)))
        assert items[0] == "" and list(items[1:]) == sorted(items[1:])
        # maximal: the naive fixpoint gives the same set
        d = pd.DataFrame({"u": df["user_id"].astype(str), "i": df["parent_asin"].astype(str)}).drop_duplicates()
        while True:
            small_u = d["u"].map(d["u"].value_counts()) < k
            small_i = d["i"].map(d["i"].value_counts()) < k
            if not (small_u | small_i).any():
                break
            d = d[~(small_u | small_i)]
        assert len(d) == len(inter)


# ------------------------------------------------------------------ splits --------------------------------------------

def test_leave_last_out_split_invariants(synthetic, tmp_path):
    cfg, files = synthetic
    proc = D.prepare_data(dataclasses.replace(cfg, raw_dir=str(files["reviews"].parent)), paths_in(tmp_path), 0,
                          progress=False)
    rd = D.to_rec_data(proc, cfg)
    seqs, times = D.sequences_from_interactions(proc.interactions, proc.num_users)
    for row, u in enumerate(rd.valid_users.tolist()):
        s, t = seqs[u], times[u]
        assert rd.test_target[row] == s[-1] and rd.valid_target[row] == s[-2]
        assert t[-2] <= t[-1]  # validation precedes test
        train_items = set(rd.train_inputs[u].tolist()) | set(rd.train_labels[u].tolist())
        assert s[-1] not in train_items and s[-2] not in train_items
        assert set(rd.valid_seen[row].tolist()) - {0} == set(s[:-2])
    assert rd.item_counts.sum() == sum(len(s) - 2 for s in seqs)


def test_timestamp_split_invariants():
    vf, tf = 100, 200
    seqs = [[1, 2, 3, 4, 5, 6], [7, 8], [3, 9, 1], [2, 4]]
    times = [[10, 50, 100, 150, 200, 250], [120, 130], [10, 210, 220], [90, 95]]
    rd = D.build_rec_data(seqs, 9, 4, "timestamp", times, vf, tf)
    assert rd.num_users == 4
    assert rd.valid_users.tolist() == [0] and rd.valid_target.tolist() == [3]
    assert rd.valid_seen[0].tolist()[-2:] == [1, 2]
    assert rd.test_users.tolist() == [0, 2] and rd.test_target.tolist() == [5, 9]
    assert rd.test_history[0].tolist() == [1, 2, 3, 4]  # validation-period items are test history
    assert rd.train_inputs[0].tolist() == [0, 0, 0, 1] and rd.train_labels[0].tolist() == [-100, -100, -100, 2]
    assert (rd.train_labels[1] == IGNORE).all()  # no training interaction before valid_from
    assert rd.item_counts.tolist() == [0, 1, 2, 1, 1, 0, 0, 0, 0, 0]


def test_timestamp_split_on_generated(synthetic, tmp_path):
    cfg, files = synthetic
    c = dataclasses.replace(cfg, raw_dir=str(files["reviews"].parent), split="timestamp", k_core=3)
    rd, rep, stats = D.load_rec_data(c, paths_in(tmp_path), 0, progress=False)
    assert len(rd.valid_target) > 0 and len(rd.test_target) > 0
    proc = D.prepare_data(c, paths_in(tmp_path), 0, progress=False)
    ts_of = {(u, i): t for u, i, t in proc.interactions[["user", "item", "timestamp"]].itertuples(index=False)}
    valid = dict(zip(rd.valid_users.tolist(), rd.valid_target.tolist()))
    for u, target in valid.items():
        assert c.valid_from_ms <= ts_of[(u, target)] < c.test_from_ms
    for u, target in zip(rd.test_users.tolist(), rd.test_target.tolist()):
        assert ts_of[(u, target)] >= c.test_from_ms
        if u in valid:
            assert ts_of[(u, valid[u])] < ts_of[(u, target)]
    for u in range(rd.num_users):  # no valid/test target (nor anything after valid_from) in training
        for x in set(rd.train_inputs[u].tolist()) | set(rd.train_labels[u].tolist()):
            if x > 0:
                assert ts_of[(u, x)] < c.valid_from_ms
    assert stats["split_valid_rows"] == len(rd.valid_target)


# ------------------------------------------------------------------ generator -----------------------------------------

def test_generator_same_seed_same_bytes(synthetic, tmp_path):
    cfg, files = synthetic
    again = D.generate_synthetic(cfg, tmp_path / "other_dir", seed=0)
    for k in ("reviews", "meta"):
        assert again[k].read_bytes() == files[k].read_bytes()
    other = D.generate_synthetic(cfg, tmp_path / "seed1", seed=1)
    for k in ("reviews", "meta"):
        assert other[k].read_bytes() != files[k].read_bytes()


def test_generator_output_format(synthetic):
    cfg, files = synthetic
    with gzip.open(files["reviews"], "rt") as f:
        rows = [json.loads(x) for x in f]
    assert list(rows[0]) == list(D.REVIEW_FIELDS)
    ts = [r["timestamp"] for r in rows]
    assert ts == sorted(ts)
    assert pd.Timestamp("2019-01-01").value // 10**6 <= min(ts) and max(ts) <= pd.Timestamp("2023-10-01").value // 10**6
    assert any(r["asin"] != r["parent_asin"] for r in rows)  # variants
    assert len({json.dumps(r) for r in rows}) < len(rows)  # planted exact duplicates
    assert len({(r["user_id"], r["parent_asin"]) for r in rows}) < len({json.dumps(r) for r in rows})  # repeats
    assert {r["rating"] for r in rows} <= {1.0, 2.0, 3.0, 4.0, 5.0}
    with gzip.open(files["meta"], "rt") as f:
        meta = [json.loads(x) for x in f]
    assert len(meta) == cfg.n_items and set(D.META_FIELDS) <= set(meta[0])
    assert files["reviews"].read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0


def test_generator_has_sequential_structure(synthetic, tmp_path):
    cfg, files = synthetic
    rd, _, _ = D.load_rec_data(dataclasses.replace(cfg, raw_dir=str(files["reviews"].parent)), paths_in(tmp_path),
                               0, progress=False)
    s = R.sequential_structure(rd)
    assert s["hr@10_markov"] > s["hr@10_popularity"] > s["chance_hr"]
    assert s["hr@10_markov"] > s["hr@10_markov_reversed"]


def test_world_successors_inside_cluster():
    cfg = tiny_cfg()
    inter, world = D.simulate_synthetic(cfg, seed=3)
    assert (world.item_cluster[world.successors] == world.item_cluster[:, None]).all()
    assert (world.successors != np.arange(cfg.n_items)[:, None]).all()
    assert not inter.duplicated(["user", "item"]).any()  # no repeats before they are planted


def test_profiles_sizes():
    smoke, default, full = (get_config(p).data for p in ("smoke", "default", "full"))
    assert smoke.n_users <= 500 and smoke.n_items <= 200
    assert default.n_users * default.mean_seq_len >= 80_000
    assert full.n_users >= 50_000 and full.n_items >= 10_000 and full.n_users * full.mean_seq_len >= 500_000


# ------------------------------------------------------------------ cache ---------------------------------------------

def test_cache_hit_and_rebuild(tmp_path):
    cfg = tiny_cfg()
    P = paths_in(tmp_path)
    rd1, rep1, s1 = D.load_rec_data(cfg, P, 0, progress=False)
    assert s1["cache"] == "built" and s1["generated_raw"]
    assert (P.processed / cfg.category / "manifest.json").is_file()
    rd2, rep2, s2 = D.load_rec_data(cfg, P, 0, progress=False)
    assert s2["cache"] == "hit" and not s2["generated_raw"]
    assert torch.equal(rd1.train_inputs, rd2.train_inputs) and rep2.to_dict() == rep1.to_dict()
    assert rd1.item_titles == rd2.item_titles and rd1.item_titles[1]
    # split-only parameters reuse the cache
    assert D.load_rec_data(dataclasses.replace(cfg, max_len=5), P, 0, progress=False)[2]["cache"] == "hit"
    # a pre-processing parameter rebuilds
    s3 = D.load_rec_data(dataclasses.replace(cfg, k_core=3), P, 0, progress=False)[2]
    assert s3["cache"] == "built" and s3["interactions"] >= s1["interactions"]
    # a different seed regenerates the raw files and rebuilds
    s4 = D.load_rec_data(cfg, P, 1, progress=False)[2]
    assert s4["cache"] == "built" and s4["generated_raw"]
    # touching the raw file rebuilds
    raw = P.raw / f"{cfg.category}.jsonl.gz"
    D.load_rec_data(cfg, P, 1, progress=False)
    os.utime(raw, ns=(raw.stat().st_atime_ns, raw.stat().st_mtime_ns + 10**9))
    assert D.load_rec_data(cfg, P, 1, progress=False)[2]["cache"] == "built"


def test_amazon_source_needs_files(tmp_path):
    cfg = tiny_cfg(source="amazon", category="Nothing_Here")
    with pytest.raises(D.DataError, match="no review file"):
        D.load_rec_data(cfg, paths_in(tmp_path), progress=False)


def test_missing_meta_is_a_note(synthetic, tmp_path):
    cfg, files = synthetic
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "Only.jsonl.gz").write_bytes(files["reviews"].read_bytes())
    c = dataclasses.replace(cfg, source="amazon", category="Only", raw_dir=str(raw))
    rd, rep, stats = D.load_rec_data(c, paths_in(tmp_path), progress=False)
    assert rd.item_titles == [""] * (rd.num_items + 1) and any("no metadata" in n for n in rep.notes)


# ------------------------------------------------------------------ helpers -------------------------------------------

def test_left_pad_and_stats():
    assert D.left_pad([[1, 2, 3], [], [4, 5, 6, 7, 8]], 4).tolist() == [[0, 1, 2, 3], [0, 0, 0, 0], [5, 6, 7, 8]]
    assert D.left_pad([[1, 2]], 3, value=IGNORE).tolist() == [[-100, 1, 2]]
    inter = pd.DataFrame({"user": [0, 0, 0, 1, 1], "item": [1, 2, 3, 1, 2], "rating": [5.0] * 5,
                          "timestamp": [0, 1, 2, 3, 4]})
    s = D.dataset_stats(inter)
    assert (s["users"], s["items"], s["interactions"]) == (2, 3, 5)
    assert s["density"] == pytest.approx(5 / 6) and s["mean_seq_len"] == 2.5 and s["seq_len"]["max"] == 3



# -- chapter 01's record -------------------------------------------------------------------------------------------
def test_data_record_names_every_piece_chapter_01_keeps():
    from types import SimpleNamespace

    from lab.chapters.c01_data import data_record

    stats = {"users": 3, "items": 5, "interactions": 12, "density": 0.8, "mean_seq_len": 4.0}
    report = D.LoadReport(rows_read=14, skipped={"duplicate_row": 2})
    proc, again = SimpleNamespace(stats=stats, report=report), SimpleNamespace(stats={"cache": "hit"})
    rd = SimpleNamespace(valid_target=torch.arange(3), test_target=torch.arange(3))
    rd_ts = SimpleNamespace(valid_target=torch.arange(2), test_target=torch.arange(1))
    structure = {"hr@10_popularity": 0.2, "hr@10_markov": 0.5, "hr@10_markov_reversed": 0.3, "chance_hr": 0.1,
                 "ndcg@10_markov": 0.4, "rows": 3}
    demo = D.LoadReport(rows_read=300, skipped={"malformed_json": 2, "bad_type": 1})
    refs = {"markov": 0.4, "popularity": 0.1}
    rec = data_record(tiny_cfg(), proc, again, rd, rd_ts, structure=structure, lift=2.5, demo=demo,
                        demo_errors=["b.jsonl", "a.jsonl"], references=refs)
    assert rec == {
        "n_users": 3, "n_items": 5, "n_interactions": 12, "density": 0.8, "mean_seq_len": 4.0,
        "rows_read": 14, "rows_skipped": 2, "skipped_by_reason": {"duplicate_row": 2}, "cache_second_call": "hit",
        "split": "leave_last_out", "valid_rows": 3, "test_rows": 3, "timestamp_valid_rows": 2, "timestamp_test_rows": 1,
        "hr10_popularity": 0.2, "hr10_markov": 0.5, "hr10_markov_reversed": 0.3, "hr10_chance": 0.1,
        "markov_lift_over_popularity": 2.5,
        "demo_rows_skipped": 3, "demo_skipped_by_reason": {"malformed_json": 2, "bad_type": 1},
        "demo_file_errors": ["a.jsonl", "b.jsonl"],
        "world": "shallow", "bayes_ndcg10": None, "last_item_bayes_ndcg10": None, "markov_ndcg10": 0.4,
        "popularity_ndcg10": 0.1, "bayes_processed_ndcg10": None, "bayes_minus_processed": None,
        "bayes_minus_processed_ci": None, "bayes_histories": None,
        "source": "synthetic", "tie_break": "line", "tied_share": None, "tie_orders": [],
    }
    assert all(type(rec[k]) is int for k in ("valid_rows", "test_rows", "timestamp_valid_rows", "rows_skipped"))
    depth = data_record(tiny_cfg(), proc, again, rd, rd_ts, structure=structure, lift=2.5, demo=demo,
                          demo_errors=[], references={**refs, "bayes": 0.6, "last_item_bayes": 0.5}, world=object())
    assert (depth["world"], depth["bayes_ndcg10"], depth["last_item_bayes_ndcg10"]) == ("depth", 0.6, 0.5)
    ceiling = {"generated": 0.6, "processed": 0.55, "diff": 0.05, "ci_low": 0.01, "ci_high": 0.09, "users": 3,
               "matched": 3, "fallbacks": 0, "thinned": 2}
    checked = data_record(tiny_cfg(), proc, again, rd, rd_ts, structure=structure, lift=2.5, demo=demo,
                          demo_errors=[], references={**refs, "bayes": 0.6}, world=object(), ceiling=ceiling)
    assert (checked["bayes_processed_ndcg10"], checked["bayes_minus_processed"]) == (0.55, 0.05)
    assert checked["bayes_minus_processed_ci"] == [0.01, 0.09]
    assert checked["bayes_histories"] == {"users": 3, "matched": 3, "fallbacks": 0, "thinned": 2}
    real = data_record(tiny_cfg(source="amazon", split="timestamp"), proc, again, rd, rd_ts, structure=structure,
                         lift=2.5, demo=demo, demo_errors=[], references=refs)
    assert (real["world"], real["split"]) == (None, "timestamp")
    ties = pd.DataFrame({"order": ["item"], "predictor": ["markov"], "diff": [0.01]})
    tied = data_record(tiny_cfg(), proc, again, rd, rd_ts, structure=structure, lift=2.5, demo=demo,
                         demo_errors=[], references=refs, tied_share=0.75, ties=ties)
    assert tied["tied_share"] == 0.75 and tied["tie_orders"] == [{"order": "item", "predictor": "markov", "diff": 0.01}]

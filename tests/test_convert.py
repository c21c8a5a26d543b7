"""`python -m lab data convert` (lab.data.convert): RecBole, sequence and CSV files written in the Amazon Reviews 2023
format and read back by the book's own reader and pre-processing; bad input skipped and counted or named."""
from __future__ import annotations

import gzip
import json

import pytest

from lab.__main__ import main
from lab.data import DataError, LoadReport, preprocess_reviews, raw_files, read_meta, read_reviews
from lab.data.convert import SEQ_RATING, SEQ_STEP_MS, SEQ_T0_MS, convert, default_category
from lab.data.preprocess import sequences_from_interactions


def write(path, text):
    path.write_text(text)
    return path


def read_back(out_dir, category):
    """{user_id: [(item, timestamp ms, rating), ...] in the book's order} and the meta frame, through the reader."""
    rev, meta = raw_files(category, out_dir)
    reviews = read_reviews(rev, strict=True)
    inter, users, items = preprocess_reviews(reviews, k=1)
    seqs, times = sequences_from_interactions(inter, len(users))
    rating = dict(zip(zip(inter["user"], inter["item"]), inter["rating"]))
    out = {str(users[u]): [(str(items[i]), int(t), float(rating[(u, i)])) for i, t in zip(s, ts)]
           for u, (s, ts) in enumerate(zip(seqs, times))}
    return out, read_meta(meta, strict=True)


INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "u1\ti3\t4\t978300762\n"
         "u2\ti1\t5\t978300100\n"
         "u1\ti1\t3\t978300760\n"
         "u1\ti2\t5\t978300761.5\n")


def test_recbole_round_trip(tmp_path):
    r = convert("recbole", write(tmp_path / "ml-1m.inter", INTER), tmp_path / "out")
    assert r["category"] == "ml_1m" and (r["interactions"], r["users"], r["items"]) == (4, 2, 3)
    assert r["rows_read"] == 4 and r["rows_skipped"] == 0
    seqs, meta = read_back(tmp_path / "out", "ml_1m")
    assert seqs == {"u1": [("i1", 978300760000, 3.0), ("i2", 978300761500, 5.0), ("i3", 978300762000, 4.0)],
                    "u2": [("i1", 978300100000, 5.0)]}
    assert sorted(meta.index) == ["i1", "i2", "i3"] and set(meta["main_category"]) == {"ml_1m"}
    rep = json.loads((tmp_path / "out" / "ml_1m.convert.json").read_text())
    assert rep["format"] == "recbole" and rep["load_report"]["rows_read"] == 4


def test_recbole_without_rating_gets_default(tmp_path):
    src = write(tmp_path / "x.inter", "item_id:token\tuser_id:token\ttimestamp:float\nA\tu\t10\nB\tu\t20\n")
    convert("recbole", src, tmp_path / "out", category="X")
    seqs, _ = read_back(tmp_path / "out", "X")
    assert seqs == {"u": [("A", 10_000, 5.0), ("B", 20_000, 5.0)]}


def test_seq_round_trip(tmp_path):
    src = write(tmp_path / "Beauty.txt", "1 5 3 9\n\n2 3 5\n")
    r = convert("seq", src, tmp_path / "out")
    assert r["category"] == "Beauty" and (r["interactions"], r["users"], r["items"]) == (5, 2, 3)
    assert r["rows_read"] == 2  # a line per user
    seqs, _ = read_back(tmp_path / "out", "Beauty")
    t = [SEQ_T0_MS + k * SEQ_STEP_MS for k in range(3)]
    assert seqs == {"1": [("5", t[0], SEQ_RATING), ("3", t[1], SEQ_RATING), ("9", t[2], SEQ_RATING)],
                    "2": [("3", t[0], SEQ_RATING), ("5", t[1], SEQ_RATING)]}


def test_csv_detects_columns(tmp_path):
    src = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n7,50,4.0,200\n7,20,2.5,100\n8,50,5,300\n")
    convert("csv", src, tmp_path / "out")
    seqs, _ = read_back(tmp_path / "out", "ratings")
    assert seqs == {"7": [("20", 100_000, 2.5), ("50", 200_000, 4.0)], "8": [("50", 300_000, 5.0)]}


def test_csv_named_columns_delimiter_and_ms(tmp_path):
    src = write(tmp_path / "log.csv", "who;what;when;extra\na;x;1700000000002;q\na;y;1700000000001;q\n")
    convert("csv", src, tmp_path / "out", category="Log", delimiter=";", time_unit="ms",
            columns={"user": "who", "item": "what", "timestamp": "when"})
    seqs, _ = read_back(tmp_path / "out", "Log")
    assert seqs == {"a": [("y", 1700000000001, 5.0), ("x", 1700000000002, 5.0)]}


def test_gzipped_input(tmp_path):
    src = tmp_path / "g.inter.gz"
    src.write_bytes(gzip.compress(INTER.encode()))
    assert convert("recbole", src, tmp_path / "out")["interactions"] == 4


# ------------------------------------------------------------------------------------------------------- bad input
BAD_ROWS = [  # (a data row of a recbole file, reason, field)
    ("u1\ti1\t5\tabc", "bad_type", "timestamp"),
    ("u1\ti1\t5\t", "bad_type", "timestamp"),
    ("u1\ti1\t5\t-3", "bad_value", "timestamp"),
    ("u1\t\t5\t100", "bad_value", "item"),
    ("\ti1\t5\t100", "bad_value", "user"),
    ("u1\ti1\tfive\t100", "bad_type", "rating"),
    ("u1\ti1\t9\t100", "rating_out_of_range", "rating"),
    ("u1\ti1\t5", "missing_field", "timestamp"),
]


@pytest.mark.parametrize("row, reason, field", BAD_ROWS)
def test_bad_row_skipped_and_counted(tmp_path, row, reason, field):
    src = write(tmp_path / "b.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                      f"u0\ti0\t4\t50\n{row}\nu0\ti2\t4\t60\n")
    report = LoadReport()
    r = convert("recbole", src, tmp_path / "out", report=report)
    assert r["interactions"] == 2 and r["rows_skipped"] == 1 and report.skipped == {reason: 1}
    assert report.examples == [{"file": "b.inter", "line": 3, "field": field, "reason": reason,
                                "value": report.examples[0]["value"]}]
    seqs, _ = read_back(tmp_path / "out", "b")
    assert [i for i, _, _ in seqs["u0"]] == ["i0", "i2"]


@pytest.mark.parametrize("row, reason, field", BAD_ROWS)
def test_bad_row_strict_names_file_line_field(tmp_path, row, reason, field):
    src = write(tmp_path / "b.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                      f"u0\ti0\t4\t50\n{row}\n")
    with pytest.raises(DataError) as e:
        convert("recbole", src, tmp_path / "out", strict=True)
    msg = str(e.value)
    assert "b.inter" in msg and "line 3" in msg and f"field {field!r}" in msg and reason in msg
    assert not (tmp_path / "out" / "b.jsonl.gz").exists()  # atomic: nothing half-written


def test_missing_column_names_file_line_field(tmp_path):
    src = write(tmp_path / "c.csv", "user,item,rating\na,x,5\n")
    with pytest.raises(DataError, match=r"c\.csv, line 1, field 'timestamp': missing column"):
        convert("csv", src, tmp_path / "out")
    with pytest.raises(DataError, match=r"c\.csv, line 1, field 'when': no such column"):
        convert("csv", src, tmp_path / "out", columns={"timestamp": "when"})


def test_seq_line_without_items_is_counted(tmp_path):
    report = LoadReport()
    r = convert("seq", write(tmp_path / "s.txt", "1 2 3\n4\n5 6\n"), tmp_path / "out", report=report)
    assert (r["interactions"], r["rows_read"]) == (3, 3) and report.skipped == {"missing_field": 1}
    assert report.examples[0]["line"] == 2 and report.examples[0]["field"] == "item"


@pytest.mark.parametrize("text, match", [("", "file is empty"), ("user,item,timestamp\n", "no valid rows"),
                                         ("user,item,timestamp\na,x,zz\n", "no valid rows"),
                                         ("\n\n", "no header row")])
def test_file_level_errors(tmp_path, text, match):
    src = tmp_path / "f.csv"
    src.write_text(text)
    with pytest.raises(DataError, match=match):
        convert("csv", src, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.jsonl.gz")) if (tmp_path / "out").exists() else True


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        convert("seq", tmp_path / "nope.txt", tmp_path / "out")
    src = write(tmp_path / "s.txt", "1 2\n")
    with pytest.raises(ValueError, match="unknown input format"):
        convert("json", src, tmp_path / "out")
    with pytest.raises(ValueError, match="not a valid Amazon Reviews 2023 category"):
        convert("seq", src, tmp_path / "out", category="a-b")
    assert default_category("ml-1m.inter") == "ml_1m" and default_category("seed1.txt") == "data_seed1"


def test_cli(tmp_path, capsys):
    src = write(tmp_path / "ml.inter", INTER)
    assert main(["data", "convert", "--from", "recbole", str(src), str(tmp_path / "out"), "--category", "ML"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["category"] == "ML" and out["interactions"] == 4
    assert read_back(tmp_path / "out", "ML")[0]["u2"] == [("i1", 978300100000, 5.0)]
    bad = write(tmp_path / "bad.inter", "user_id:token\titem_id:token\ttimestamp:float\nu\ti\tx\n")
    assert main(["data", "convert", "--from", "recbole", str(bad), str(tmp_path / "o2"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "bad.inter, line 2, field 'timestamp'" in err


def test_csv_with_bom_and_undecodable_bytes(tmp_path):
    src = tmp_path / "bom.csv"
    src.write_bytes("\ufeffuser,item,timestamp\na,x,1\n".encode("utf-8"))
    assert convert("csv", src, tmp_path / "out")["interactions"] == 1
    bad = tmp_path / "latin.csv"
    bad.write_bytes(b"user,item,timestamp\na,\xe9t\xe9,1\n")
    with pytest.raises(DataError, match=r"latin\.csv.*not UTF-8"):
        convert("csv", bad, tmp_path / "out")

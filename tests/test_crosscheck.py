"""The RecBole cross-check's book side (`lab.crosscheck.recbole`, issue 14), without RecBole: the atomic file of a tiny
hand-made data set (exact contents), the leave-one-out split RecBole derives from it against the book's, and the
book's metrics with and without history masking on hand-computed ranks."""
from __future__ import annotations

import ast
import math

import pandas as pd
import pytest
import torch

from lab import get_config
from lab.crosscheck import recbole as cc
from lab.data import rec_data_from_sequences

# three users; user 0's times are equal in float32 (RecBole's copy of the timestamp), user 1 has tied times, user 2
# has 3 items (the one length at which RecBole's sequential split has no validation row)
SEQS = [[3, 1, 2, 4], [2, 3, 1, 5, 4], [1, 2, 3]]
TIMES = [[1_600_000_000_000, 1_600_000_000_001, 1_600_000_000_002, 1_600_000_000_003],
         [100, 100, 200, 200, 300],
         [50, 60, 70]]
INTER = ("user_id:token\titem_id:token\ttimestamp:float\n"
         "0\t3\t1600000000000\n0\t1\t1600000000001\n0\t2\t1600000000002\n0\t4\t1600000000003\n"
         "1\t2\t100\n1\t3\t100\n1\t1\t200\n1\t5\t200\n1\t4\t300\n"
         "2\t1\t50\n2\t2\t60\n2\t3\t70\n")


@pytest.fixture
def data():
    return rec_data_from_sequences(SEQS, num_items=5, max_len=2)  # max_len 2: test histories are cut


def test_atomic_file_exact(tmp_path):
    path = cc.write_atomic(cc.inter_frame(SEQS, TIMES), tmp_path / "book")
    assert path == tmp_path / "book" / "book.inter"
    assert path.read_text() == INTER


def test_book_sequences_follow_recdata_rows(data):
    """Whole sequences are taken from the processed interactions by user id, in RecData's row order; users the split
    dropped (fewer than 3 items) are left out."""
    inter = pd.DataFrame({"user": [0, 0, 1, 1, 1, 2, 2], "item": [1, 2, 3, 4, 5, 2, 1],
                          "timestamp": [1, 2, 1, 2, 3, 5, 6]})
    rd = rec_data_from_sequences([[1, 2], [3, 4, 5], [2, 1]], 5, 4, user_ids=["a", "b", "c"])
    seqs, times = cc.book_sequences(inter, ["a", "b", "c"], rd)
    assert seqs == [[3, 4, 5]] and [t.tolist() for t in times] == [[1, 2, 3]]


def test_recbole_split_equals_book_split(data):
    """RecBole's leave-one-out (time order, stable on float32 times) gives the book's targets and test histories;
    the only difference is the 3-item user's validation row, with its reason."""
    frame = cc.inter_frame(SEQS, TIMES)
    book = cc.book_split(data)
    assert book == {"valid": {"0": "2", "1": "5", "2": "2"}, "test": {"0": "4", "1": "4", "2": "3"},
                    "test_history": {"0": ["1", "2"], "1": ["1", "5"], "2": ["1", "2"]}}
    seq = cc.recbole_split(frame, max_len=2)
    assert seq["test"] == book["test"] and seq["test_history"] == book["test_history"]
    assert seq["valid"] == {"0": "2", "1": "5"}
    lengths = {str(u): len(s) for u, s in enumerate(SEQS)}
    diffs = cc.compare_splits(book, seq, lengths)
    assert [(d["user"], d["part"], d["book"], d["recbole"]) for d in diffs] == [("2", "valid", "2", None)]
    assert "at least 4" in diffs[0]["reason"]
    general = cc.recbole_split(frame, max_len=2, sequential=False)  # Pop: the raw rows, every user has both
    assert "test_history" not in general and cc.compare_splits(book, general, lengths) == []


def test_recbole_split_sorts_by_time():
    """A file out of time order is sorted by time (stably) before the split, as RecBole's `order: TO` does."""
    frame = cc.inter_frame([[7, 8, 9, 6]], [[30, 10, 20, 40]])
    assert cc.recbole_split(frame, max_len=5) == {"valid": {"0": "7"}, "test": {"0": "6"},
                                                  "test_history": {"0": ["8", "9", "7"]}}


def test_compare_splits_names_other_differences():
    book = {"valid": {"0": "1"}, "test": {"0": "2", "1": "3"}, "test_history": {}}
    other = {"valid": {"0": "1"}, "test": {"0": "5"}}
    diffs = cc.compare_splits(book, other)
    assert [(d["user"], d["part"]) for d in diffs] == [("0", "test"), ("1", "test")]
    assert "order" in diffs[0]["reason"] and "only the book" in diffs[1]["reason"]


def test_compare_counts():
    assert cc.compare_counts(torch.tensor([0, 3, 0, 2]), {"1": 3, "3": 2}) == []
    assert cc.compare_counts(torch.tensor([0, 3, 1, 2]), {"1": 3, "3": 1}) == [2, 3]


def test_rank_metrics_by_hand():
    """0-based ranks 0, 9, 10: NDCG@10 1, 1/log2(11), 0; MRR@10 truncated at 10, the book's mrr not."""
    m = cc.rank_metrics([0, 9, 10])
    assert m["hit@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(11)) / 3)
    assert m["mrr@10"] == pytest.approx((1 + 0.1) / 3)
    assert m["mrr"] == pytest.approx((1 + 0.1 + 1 / 11) / 3)


def test_book_metrics_masked_and_unmasked():
    """Two users over 13 items, scores by hand. User A: history [13, 1, 2], target 3; items 1, 2 and 4 score above
    it: masked rank 1, unmasked 3. User B: history [13, 5, 6], target 7; nine other items and the history items 5 and
    6 score above it: masked rank 9 (a hit), unmasked 11 (none). Item 13, seen by both, scores 0."""
    rd = rec_data_from_sequences([[13, 1, 2, 3], [13, 5, 6, 7]], num_items=13, max_len=2)
    scores = {2: {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.75},  # by the history's last item; unlisted items score 0
              6: {**{i: 1.0 for i in (1, 2, 3, 4, 8, 9, 10, 11, 12)}, 5: 0.9, 6: 0.9, 7: 0.5}}

    def score_fn(h):  # (B, T) -> (B, N+1)
        out = torch.zeros(len(h), 14)
        for r, last in enumerate(h[:, -1].tolist()):
            for i, s in scores[last].items():
                out[r, i] = s
        return out

    assert rd.test_target.tolist() == [3, 7] and rd.test_history.tolist() == [[1, 2], [5, 6]]
    masked, unmasked = cc.book_metrics(score_fn, rd), cc.book_metrics(score_fn, rd, mask_history=False)
    assert masked == pytest.approx({"ndcg@10": (1 / math.log2(3) + 1 / math.log2(11)) / 2, "hit@10": 1.0,
                                    "mrr@10": (1 / 2 + 1 / 10) / 2, "mrr": (1 / 2 + 1 / 10) / 2})
    assert unmasked == pytest.approx({"ndcg@10": (1 / math.log2(5)) / 2, "hit@10": 0.5,
                                      "mrr@10": (1 / 4) / 2, "mrr": (1 / 4 + 1 / 12) / 2})


def test_recbole_spec_mirrors_the_book(tmp_path):
    cfg = get_config("smoke")
    spec = cc.recbole_spec(cfg, tmp_path / "recbole", tmp_path, seed=3, epochs=None, threads=1)
    c, s = spec["common"], spec["models"]["SASRec"]
    assert c["eval_args"] == {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}
    assert c["train_neg_sample_args"] is None and c["MAX_ITEM_LIST_LENGTH"] == cfg.data.max_len and c["seed"] == 3
    assert c["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]} and c["valid_metric"] == "NDCG@10"
    assert (s["loss_type"], s["n_layers"], s["hidden_size"], s["n_heads"], s["inner_size"]) == \
        ("CE", 2, cfg.model.hidden_size, cfg.model.num_heads, cfg.model.intermediate_size)
    assert s["epochs"] == cfg.train.epochs and s["learning_rate"] == cfg.train.lr
    assert cc.recbole_spec(cfg, tmp_path, tmp_path, 0, epochs=5)["models"]["SASRec"]["epochs"] == 5
    assert spec["models"]["Pop"]["train_batch_size"] == 1  # RecBole's Pop counts an item once per batch


def test_runner_imports_no_lab():
    """The runner runs in RecBole's venv: it imports recbole, torch, numpy, pandas and the standard library only."""
    tree = ast.parse(cc.RUNNER.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
    assert names <= {"__future__", "json", "os", "sys", "time", "torch", "recbole", "numpy", "pandas"}


def test_requirements_pin_everything():
    pins = [ln for ln in cc.REQUIREMENTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert "recbole==1.2.1" in pins and all("==" in p for p in pins)
    versions = dict(p.split("==") for p in pins)
    assert versions["numpy"] < "2" and versions["pandas"] < "3" and int(versions["setuptools"].split(".")[0]) < 81


def test_optimistic_metrics_bound_ties():
    """Popularity-style scores with ties: the target 3 scores 2, as do items 1 (seen) and 4. Masked, item 4 ties:
    rank 1 counted against the target (the book), 0 in its favour. Unmasked, the seen item 2 scores above and items 1
    and 4 tie: rank 3 against, 1 in favour."""
    rd = rec_data_from_sequences([[1, 2, 3]], num_items=5, max_len=4)

    def score_fn(h):  # (B, T) -> (B, 6)
        return torch.tensor([[0.0, 2.0, 5.0, 2.0, 2.0, 1.0]]).expand(len(h), -1)

    assert cc.book_metrics(score_fn, rd)["mrr"] == pytest.approx(1 / 2)
    assert cc.optimistic_metrics(score_fn, rd)["mrr"] == pytest.approx(1.0)
    assert cc.book_metrics(score_fn, rd, mask_history=False)["mrr"] == pytest.approx(1 / 4)
    assert cc.optimistic_metrics(score_fn, rd, mask_history=False)["mrr"] == pytest.approx(1 / 2)


def test_cli_profiles_are_the_books():
    from lab.profiles import PROFILES

    assert cc.parse_args(["--profile", list(PROFILES)[-1], "--epochs", "2"]).epochs == 2
    assert cc.parse_args([]).profile == "default"
    with pytest.raises(SystemExit):
        cc.parse_args(["--profile", "nope"])

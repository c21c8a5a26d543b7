"""Scoring on a split (`lab.evaluation.scoring`): the split's rows, users and masks, the history a scorer reads, one
precision for models and count baselines."""
from __future__ import annotations

import pytest
import torch

from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.evaluation import per_user_table, score_split
from lab.metrics import evaluate
from lab.recommenders import popularity_scorer


@pytest.fixture(scope="module")
def data():
    return rec_data_from_sequences(toy_markov_sequences(60, 20, 10, seed=4), 20, 5)


def noisy(h: torch.Tensor) -> torch.Tensor:
    """A float32 scorer with many near-ties: the last item's index plus a small per-item offset.  # (B, N+1)"""
    g = torch.Generator().manual_seed(0)
    offset = torch.rand(21, generator=g)
    return (h[:, -1:].float() * 0.01 + offset[None, :]).float()


@pytest.mark.parametrize("split", ["valid", "test"])
def test_score_split_is_the_evaluator_on_the_split(data, split):
    history, target, seen = data.split(split)
    means, pu = score_split(noisy, data, split, batch_size=7)
    want, want_pu = evaluate(noisy, history, target, seen, users=data.users(split))  # float32 ranks
    assert means == pytest.approx(want, abs=0) and pu["rank"].tolist() == want_pu["rank"].tolist()
    assert pu["user"].tolist() == data.users(split).tolist()
    assert torch.equal(data.users(split), data.valid_users if split == "valid" else data.test_users)


def test_complete_history_and_masking(data):
    _, target, seen = data.split("test")
    last_seen = lambda h: torch.nn.functional.one_hot(h.max(1).values, 21).double()  # noqa: E731  # (B, N+1)
    _, pu = score_split(last_seen, data, "test", history="complete", mask_history=False)
    _, want = evaluate(last_seen, seen, target, seen, mask_history=False, dtype=torch.float64)
    assert pu["rank"].tolist() == want["rank"].tolist()
    with pytest.raises(ValueError, match="history"):
        score_split(last_seen, data, "test", history="all")
    with pytest.raises(ValueError, match="split"):
        score_split(last_seen, data, "train")


def test_per_user_table_is_tidy_and_ranks_popularity_in_float64(data):
    pop = popularity_scorer(data)
    t = per_user_table({"pop": pop, "pop_fn": pop.recommend_scores}, data, "valid")
    assert list(t.columns) == ["name", "user", "ndcg@10", "hr@10", "mrr"]
    assert list(t["name"].unique()) == ["pop", "pop_fn"]
    a, b = t[t["name"] == "pop"], t[t["name"] == "pop_fn"]
    assert a["ndcg@10"].tolist() == b["ndcg@10"].tolist()
    h, target, seen = data.split("valid")
    want = evaluate(pop.recommend_scores, h, target, seen, dtype=torch.float64)[1]
    assert a["ndcg@10"].tolist() == want["ndcg@10"].tolist()

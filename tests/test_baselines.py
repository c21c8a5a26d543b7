"""Count baselines (`lab.baselines`): scored by `lab.metrics`' ranking, checked against plain loops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lab import baselines as B
from lab import data as D
from lab.metrics import target_ranks


def test_popularity_scores_rank_by_count():
    counts = torch.tensor([0, 5, 50, 1])
    s = B.popularity_scores(counts, 2)
    assert target_ranks(s, torch.tensor([2, 3]), mask_history=False).tolist() == [0, 2]


def test_sequential_structure_on_toy_markov():
    seqs = D.toy_markov_sequences(n_users=80, n_items=30, length=12)
    rd = D.rec_data_from_sequences(seqs, 30, 8)
    s = B.sequential_structure(rd, k=10)
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
    got = B.sequential_structure(rd, k=5, split=split, batch=7)
    want = reference(rd, 5, split)
    assert {k: got[k] for k in want} == pytest.approx(want, abs=1e-12)
    assert got["rows"] == len(rd.valid_target) and got["chance_hr"] == 5 / 25
    assert got["train_transitions"] == int(((rd.train_inputs > 0) & (rd.train_labels > 0)).sum())


def test_float64_ranking_keeps_small_tie_breakers():
    # items 1 and 2 share a count of 1000 and differ in the tie-breaker by 1e-9: float32 rounds them into a tie
    counts = torch.tensor([0, 1_000_000, 999_999, 0], dtype=torch.long)
    tie = counts.double() / (counts.max() + 1.0) * B.TIE_BREAK + 1000.0  # (N+1,) as a count + tie-breaker
    s = tie[None, :]
    assert target_ranks(s, torch.tensor([2]), mask_history=False).tolist() == [1]  # float32: a tie, ranked 1 too
    assert target_ranks(s, torch.tensor([1]), mask_history=False, dtype=torch.float64).tolist() == [0]
    assert target_ranks(s, torch.tensor([1]), mask_history=False).tolist() == [1]


def test_empty_split_gives_zeros():
    rd = D.build_rec_data([[1, 2, 3, 4]], 4, 3, "timestamp", [[1, 2, 3, 4]], 10, 20)
    s = B.sequential_structure(rd, k=10)
    assert s["rows"] == 0 and s["hr@10_markov"] == 0.0 and s["ndcg@10_popularity"] == 0.0

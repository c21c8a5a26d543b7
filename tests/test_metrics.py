"""Full-ranking metrics against hand-computed cases and an independent plain-Python reference."""
import math

import numpy as np
import pytest
import torch

from lab.metrics import evaluate, metrics_from_ranks, target_ranks


def reference_metrics(scores, target, seen, k):
    """Plain loops: rank the target among items 1..N not seen (ties counted against the target)."""
    out = []
    for s, t, sn in zip(scores.tolist(), target.tolist(), seen.tolist()):
        excluded = {i for i in sn if i != 0 and i != t}
        better = sum(1 for i in range(1, len(s)) if i != t and i not in excluded and s[i] >= s[t])
        hr = 1.0 if better < k else 0.0
        ndcg = 1.0 / math.log2(better + 2) if better < k else 0.0
        out.append((better, hr, ndcg, 1.0 / (better + 1)))
    return out


def test_hand_computed_case():
    scores = torch.tensor([[9.0, 0.1, 0.5, 0.3, 0.9],   # pad score is ignored; target 2 is 2nd best -> rank 1
                           [0.0, 0.9, 0.8, 0.7, 0.6]])  # target 4 is last of 4 -> rank 3
    target = torch.tensor([2, 4])
    ranks = target_ranks(scores, target, mask_history=False)
    assert ranks.tolist() == [1, 3]
    m = metrics_from_ranks(ranks, ks=(1, 2))
    assert m["hr@1"].tolist() == [0.0, 0.0]
    assert m["hr@2"].tolist() == [1.0, 0.0]
    assert m["ndcg@2"].tolist() == pytest.approx([1 / math.log2(3), 0.0])
    assert m["mrr"].tolist() == pytest.approx([0.5, 0.25])


def test_history_masking_moves_target_up():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6]])
    target, seen = torch.tensor([4]), torch.tensor([[0, 1, 2]])  # items 1, 2 were seen before
    assert target_ranks(scores, target, seen, mask_history=False).item() == 3
    assert target_ranks(scores, target, seen, mask_history=True).item() == 1


def test_ties_count_against_target():
    scores = torch.zeros(1, 6)
    assert target_ranks(scores, torch.tensor([3]), mask_history=False).item() == 4  # a constant scorer is last


@pytest.mark.parametrize("k", [1, 5, 10])
def test_matches_reference_on_random_cases(k):
    g = torch.Generator().manual_seed(k)
    scores = torch.randn(40, 31, generator=g)
    target = torch.randint(1, 31, (40,), generator=g)
    seen = torch.randint(0, 31, (40, 6), generator=g)
    seen[seen == target[:, None]] = 0
    ranks = target_ranks(scores, target, seen, mask_history=True)
    ref = reference_metrics(scores, target, seen, k)
    m = metrics_from_ranks(ranks, ks=(k,))
    assert ranks.tolist() == [r[0] for r in ref]
    assert m[f"hr@{k}"].tolist() == pytest.approx([r[1] for r in ref])
    assert m[f"ndcg@{k}"].tolist() == pytest.approx([r[2] for r in ref])
    assert m["mrr"].tolist() == pytest.approx([r[3] for r in ref])


def test_evaluate_batches_and_keeps_users():
    g = torch.Generator().manual_seed(0)
    history = torch.randint(1, 21, (50, 5), generator=g)
    target = torch.randint(1, 21, (50,), generator=g)
    table = torch.randn(21, 21, generator=g)
    fn = lambda h: table[h[:, -1]]  # (B, N+1)
    s1, pu1 = evaluate(fn, history, target, history, batch_size=7, users=torch.arange(100, 150))
    s2, pu2 = evaluate(fn, history, target, history, batch_size=64)
    assert s1 == pytest.approx(s2)
    assert pu1["user"].tolist() == list(range(100, 150))
    assert set(s1) == {"hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"}
    assert np.isclose(s1["mrr"], pu1["mrr"].mean())

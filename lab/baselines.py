"""Count baselines: recommenders that only count the training split, ranked like every model by `lab.metrics`.

Chapter 01 introduced the popularity and first-order Markov baselines (`sequential_structure`: is there sequential
signal to learn?); chapter 02 compares the teacher with `popularity_scores`. Each baseline is a score function, history
batch (B, T) -> (B, N+1) scores, as `lab.metrics.evaluate` expects, so baselines and models share one ranking
(`target_ranks`: full catalogue, seen items masked, ties counted against the target).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy import sparse

from .constants import IGNORE, PAD
from .data import RecData
from .metrics import evaluate

TIE_BREAK = 1e-3  # popularity as a tie-breaker is scaled below this, so it never outweighs one transition count
BASELINES = ("popularity", "markov", "markov_reversed")  # the count baselines of `sequential_structure`


def popularity_scores(item_counts: torch.Tensor, batch: int) -> torch.Tensor:
    """Scores of the most-popular baseline: training interaction counts, the same for every user.  # (B, N+1)"""
    return item_counts.float()[None, :].expand(batch, -1)


def transition_counts(rd: RecData) -> sparse.csr_matrix:
    """How often item b followed item a in the training windows (`train_inputs` -> `train_labels`).  # (N+1, N+1)"""
    n = rd.num_items + 1
    x = rd.train_inputs.reshape(-1).numpy()  # (U*T,) last item ...
    y = rd.train_labels.reshape(-1).numpy()  # (U*T,) ... and the item that followed it
    ok = (x != PAD) & (y != IGNORE) & (y != PAD)
    return sparse.csr_matrix((np.ones(int(ok.sum())), (x[ok], y[ok])), shape=(n, n))


def count_scorers(rd: RecData, transitions: sparse.csr_matrix | None = None
                  ) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The score functions of the three count baselines of chapter 01, built from the training split only.

    * `popularity`: training counts;
    * `markov`: how often each item followed the history's last item (first-order Markov chain);
    * `markov_reversed`: how often each item came before it (the same counts read backwards: co-occurrence without
      order).

    Each adds popularity scaled below `TIE_BREAK` as a tie-breaker. Scores are float64 (rank them with
    `dtype=torch.float64`: in float32 the tie-breaker would round into ties).
    """
    fwd = transition_counts(rd) if transitions is None else transitions
    rev = fwd.T.tocsr()
    pop = rd.item_counts.numpy().astype(np.float64)
    tie = pop / (pop.max() + 1.0) * TIE_BREAK  # (N+1,)

    def popularity(h: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.broadcast_to(tie, (len(h), len(tie))).copy())  # (B, N+1)

    def chain(counts: sparse.csr_matrix) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda h: torch.from_numpy(counts[h[:, -1].numpy()].toarray() + tie)  # (B, N+1), last item's row

    return {"popularity": popularity, "markov": chain(fwd), "markov_reversed": chain(rev)}


def sequential_structure(rd: RecData, k: int = 10, split: str = "valid", batch: int = 1024) -> dict:
    """Is there sequential signal a model can learn? Full-ranking HR@k / NDCG@k of the three count baselines of
    `count_scorers` (chapter 01), scored with `lab.metrics.evaluate` on `split`. Forward Markov beating popularity says
    the last item predicts the next; beating its reverse says the order matters. `chance_hr` is k / N;
    `top_successor_share` is the share of training transitions whose next item is the last item's most frequent
    successor."""
    hist, target, seen = rd.split(split)
    users = rd.valid_users if split == "valid" else rd.test_users
    fwd = transition_counts(rd)
    out = {"rows": int(len(target)), "chance_hr": float(k / max(rd.num_items, 1)), "train_transitions": int(fwd.sum())}
    for name, fn in count_scorers(rd, fwd).items():
        means = evaluate(fn, hist, target, seen, ks=(k,), batch_size=batch, users=users,
                         dtype=torch.float64)[0] if len(target) else {}
        out[f"hr@{k}_{name}"] = float(means.get(f"hr@{k}", 0.0))
        out[f"ndcg@{k}_{name}"] = float(means.get(f"ndcg@{k}", 0.0))
    if fwd.nnz:
        out["top_successor_share"] = float(fwd.max(axis=1).toarray().ravel().sum() / fwd.sum())
    return out

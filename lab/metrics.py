"""Full-ranking metrics: HR@K, NDCG@K and MRR over the whole catalogue (chapter 02).

Every item is ranked for every user (Krichene & Rendle 2020: sampled metrics are inconsistent, so none are used as a
headline). By default the items a user already interacted with are masked before ranking: the Amazon 2023 pipeline
de-duplicates user–item pairs, so a target is never a previously seen item and leaving seen items in the ranking would
only penalise a model for scoring the past. Per-user values are kept for the paired tests of the statistics chapter.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .constants import KS, PAD

__all__ = ["target_ranks", "metrics_from_ranks", "evaluate"]


def target_ranks(scores: torch.Tensor, target: torch.Tensor, seen: torch.Tensor | None = None,
                 mask_history: bool = True, batch: int = 0, row0: int = 0,
                 users: torch.Tensor | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """0-based rank of each target among all items (0 = top).

    Args:
        scores: (B, N+1) a score for every item index; index 0 (padding) is never ranked.
        target: (B,) the true next item.
        seen: (B, S) items to mask (PAD entries are ignored), used when `mask_history`.
        mask_history: exclude `seen` items (other than the target) from the ranking.
        batch, row0, users: where these rows come from (batch number, row of the first one, (B,) user ids), for the
            error message only.
        dtype: the precision scores are compared in; float64 for count scores with small tie-breakers
            (`lab.recommenders`), which float32 would round into ties.

    Ties count against the target (pessimistic), so a constant scorer cannot look good.

    Raises:
        ValueError: a row has a NaN score for an item (PAD's column aside), or its target's score is not finite: a NaN
            target would rank first and NaN competitors would rank below it, which no metric should average.
    """
    s = scores.detach().to(dtype).clone()  # (B, N+1)
    s[:, PAD] = -torch.inf
    t_score = s.gather(1, target[:, None])  # (B, 1)
    bad = s.isnan().any(1) | ~t_score[:, 0].isfinite()  # (B,) before masking: a NaN is a model bug, seen or not
    if bad.any():
        j = int(bad.nonzero()[0])
        who = f" (user id {int(users[j])})" if users is not None else ""
        raise ValueError(f"non-finite scores in batch {batch}, user row {row0 + j}{who}: target item "
                         f"{int(target[j])} scores {float(t_score[j])}, {int(s[j].isnan().sum())} item scores are NaN")
    if mask_history and seen is not None:
        s.scatter_(1, seen, -torch.inf)
        s[:, PAD] = -torch.inf
    s.scatter_(1, target[:, None], t_score)  # the target itself is never masked
    greater = (s > t_score).sum(1)
    ties = (s == t_score).sum(1) - 1
    return greater + ties  # (B,)


def metrics_from_ranks(ranks, ks: Sequence[int] = KS) -> pd.DataFrame:
    """Per-user metrics from 0-based ranks: hr@K, ndcg@K for each K, and (untruncated) mrr."""
    r = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else ranks, dtype=np.float64)
    cols = {}
    for k in ks:
        hit = r < k
        cols[f"hr@{k}"] = hit.astype(float)
        cols[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(r + 2.0), 0.0)
    cols["mrr"] = 1.0 / (r + 1.0)
    cols["rank"] = r
    return pd.DataFrame(cols)


@torch.no_grad()
def evaluate(score_fn: Callable[[torch.Tensor], torch.Tensor], history: torch.Tensor, target: torch.Tensor,
             seen: torch.Tensor | None = None, ks: Sequence[int] = KS, mask_history: bool = True,
             batch_size: int = 512, users: torch.Tensor | None = None,
             dtype: torch.dtype = torch.float32) -> tuple[dict, pd.DataFrame]:
    """Rank the whole catalogue for every user and return (mean metrics, per-user frame).

    Args:
        score_fn: maps a (B, T) history batch to (B, N+1) scores (the model's last-position scores).
        history, target, seen: one split of `RecData` (see `RecData.split`).
        users: user index per row, kept in the per-user frame for paired tests.
        dtype: the precision scores are ranked in (`target_ranks`).

    A NaN or non-finite target score raises a ValueError naming the batch, the row and the user (`target_ranks`).
    """
    ranks = []
    for b, i in enumerate(range(0, history.shape[0], batch_size)):
        h = history[i:i + batch_size]
        sc = score_fn(h)
        sn = seen[i:i + batch_size].to(sc.device) if seen is not None else None
        ranks.append(target_ranks(sc, target[i:i + batch_size].to(sc.device), sn, mask_history, batch=b, row0=i,
                                  users=users[i:i + batch_size] if users is not None else None, dtype=dtype).cpu())
    per_user = metrics_from_ranks(torch.cat(ranks), ks)
    per_user.insert(0, "user", (users if users is not None else torch.arange(len(per_user))).numpy())
    summary = per_user.drop(columns=["user", "rank"]).mean().to_dict()
    return summary, per_user

"""Scoring a recommender on a split: the one place that reads a split's histories, targets, masks and users and ranks
the whole catalogue for them with `lab.metrics.evaluate` (chapter 02).

A scorer is a model (anything with `recommend_scores`) or a callable from a (B, T) history batch to (B, N+1) scores
(a count baseline, a reference predictor). Every scorer is ranked in float64: exact for a float32 model's scores (the
upcast changes no comparison) and needed by the count baselines, whose small tie-breakers float32 would round into
ties, so a model and popularity are ranked the same way in every chapter.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch

from ..constants import KS, METRICS
from ..data import RecData
from ..metrics import evaluate

__all__ = ["score_split", "per_user_table", "score_table"]

HISTORIES = ("window", "complete")  # what a scorer reads: the model's last-T window, or the user's whole history


def score_split(scorer, data: RecData, split: str = "test", *, ks=KS, mask_history: bool = True,
                batch_size: int = 512, history: str = "window") -> tuple[dict, pd.DataFrame]:
    """Full-ranking metrics of one scorer on the 'valid' or 'test' split of `data`: (means, per-user frame with user,
    the metrics and the rank) (chapter 02).

    Args:
        scorer: a model (its `recommend_scores`) or a (B, T) -> (B, N+1) callable.
        mask_history: mask the items the user already had (the book's way; RecBole's sequential models do not).
        history: "window", the split's last-T history the models read, or "complete", every earlier item (`seen`;
            chapter 01's reference predictors condition on the whole history).
    """
    if history not in HISTORIES:
        raise ValueError(f"history must be one of {HISTORIES}, not {history!r}")
    window, target, seen = data.split(split)
    fn: Callable = getattr(scorer, "recommend_scores", scorer)
    return evaluate(fn, seen if history == "complete" else window, target, seen, ks=ks, mask_history=mask_history,
                    batch_size=batch_size, users=data.users(split), dtype=torch.float64)


def per_user_table(scorers: dict, data: RecData, split: str = "test", batch_size: int = 512) -> pd.DataFrame:
    """Tidy per-user metrics (name, user, ndcg@10, hr@10, mrr) of named scorers on a split (`score_split`), the input
    of every paired test (chapters 05 and 06)."""
    out = [score_split(fn, data, split, batch_size=batch_size)[1][["user", *METRICS]].assign(name=name)
           for name, fn in scorers.items()]
    return pd.concat(out, ignore_index=True)[["name", "user", *METRICS]]


def score_table(scorers: dict, data: RecData, splits=("valid", "test"), per_user_split: str = "test",
                batch_size: int = 512) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Full-ranking metrics of several scorers on each split (chapter 02: popularity, the small model, the teacher).

    Returns:
        (one row per split and scorer: model, split, metrics...; per-user metrics of `per_user_split` with a model
        column, scorers in the given order).
    """
    rows, per_user = [], []
    for split in splits:
        for name, fn in scorers.items():
            summary, pu = score_split(fn, data, split, batch_size=batch_size)
            rows.append({"model": name, "split": split, **summary})
            if split == per_user_split:
                per_user.append(pu.assign(model=name))
    return pd.DataFrame(rows), pd.concat(per_user, ignore_index=True)

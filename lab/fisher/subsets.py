"""Which users and labels a Fisher is computed over (chapter 03): seeded subsamples of rows, users by activity,
items by popularity, labels kept by item, and the label families one batched pass serves."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..constants import IGNORE, PAD
from .estimators import draw_labels

__all__ = ["ITEM_BUCKETS", "USER_BUCKETS", "sample_rows", "user_activity", "user_buckets", "item_buckets",
           "mask_labels", "label_sets", "backward_passes"]

ITEM_BUCKETS = ("head", "torso", "tail")  # target-popularity buckets (`item_buckets`)
USER_BUCKETS = ("low", "mid", "high")  # training-activity terciles (`user_buckets`)


def sample_rows(n_rows: int, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subsample of `n` of `n_rows` rows; all rows when `n` is 0, None or at least
    `n_rows` (chapter 03). The one sampler behind the Fisher's training users and every validation subsample
    (`lab.importance.subsample_valid`: the ablation, the other signals, the greedy validation search).  # (n,)"""
    if not n or n >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, n, replace=False))


def user_activity(data) -> np.ndarray:
    """Training interactions of each training row's user (the items before the validation target).  # (U,)

    Uses `valid_seen` when its rows are the training rows (`valid_users` = 0..U-1), else the window's label count + 1.
    """
    U = data.train_inputs.shape[0]
    vu = getattr(data, "valid_users", None)
    if vu is not None and len(vu) == U and torch.equal(vu.cpu(), torch.arange(U)):
        return (data.valid_seen != PAD).sum(1).cpu().numpy()
    return ((data.train_labels != IGNORE).sum(1) + 1).cpu().numpy()


def user_buckets(activity, names=("low", "mid", "high")) -> np.ndarray:
    """Activity terciles (rank-based, so ties split evenly): one name per user."""
    a = pd.Series(np.asarray(activity, dtype=float)).rank(method="first")
    return pd.qcut(a, len(names), labels=list(names)).astype(str).to_numpy()


def item_buckets(item_counts, names=("head", "torso", "tail")) -> np.ndarray:
    """Popularity bucket of every item index: head = the most popular items holding the first third of training
    interactions, torso the next third, tail the rest; index 0 (padding) is "pad".  # (N+1,)"""
    c = np.asarray(item_counts.cpu() if isinstance(item_counts, torch.Tensor) else item_counts, dtype=float).copy()
    c[PAD] = 0
    order = np.argsort(-c[1:], kind="stable") + 1
    before = (np.cumsum(c[order]) - c[order]) / max(c.sum(), 1)  # share of interactions held by more popular items
    k = len(names)
    out = np.full(len(c), "pad", dtype=object)
    out[order] = [names[min(int(b * k), k - 1)] for b in before]
    return out


def mask_labels(labels: torch.Tensor, keep_items) -> torch.Tensor:
    """Labels whose target item is not in `keep_items` ((N+1,) bool) become IGNORE.  # (S, T)"""
    keep = torch.as_tensor(np.asarray(keep_items, dtype=bool), device=labels.device)
    ok = (labels != IGNORE) & keep[labels.clamp(min=0)]
    return torch.where(ok, labels, torch.full_like(labels, IGNORE))


def label_sets(model, inputs: torch.Tensor, labels: torch.Tensor, buckets, n_draws: int,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """The label families one batched Fisher pass serves (chapter 03): the observed next items (`fisher_empirical`),
    `n_draws` sets drawn from the model (`fisher_true`, (D, S, T)), and the observed items restricted to each target
    popularity bucket (`item:<bucket>`; `buckets` from `item_buckets`)."""
    out = {"fisher_empirical": labels, "fisher_true": draw_labels(model, inputs, labels, n_draws, seed=seed)}
    out.update({f"item:{b}": mask_labels(labels, buckets == b) for b in ITEM_BUCKETS})
    return out


def backward_passes(sets: dict[str, torch.Tensor]) -> int:
    """Backward passes per chunk of users that `fisher_hooks` makes for these label sets (one per set or draw)."""
    return sum(v.shape[0] if v.dim() == 3 else 1 for v in sets.values())

"""Splits: chronological per-user item sequences into the model-facing `RecData` (chapter 01).

`RecData` holds padded, left-aligned item-index tensors for training and evaluation; item index 0 is padding, real
items are 1..num_items. `build_rec_data` is the one split builder, with the split rule (`"leave_last_out"` or the
benchmark's absolute `"timestamp"` split) as a parameter; `rec_data_from_sequences` is its leave-last-out shorthand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..constants import IGNORE, PAD

__all__ = ["SPLITS", "RecData", "left_pad", "training_windows", "build_rec_data", "rec_data_from_sequences",
           "split_stats"]

SPLITS = ("leave_last_out", "timestamp")  # the split rules `build_rec_data` knows (`DataConfig.split`)


@dataclass
class RecData:
    """A pre-processed sequential-recommendation data set as tensors.

    All history tensors are left-padded with `PAD` so the most recent item sits at position -1.
    """

    num_items: int  # real items are 1..num_items; 0 is padding
    max_len: int  # T, the history length fed to models
    train_inputs: torch.Tensor  # (R, T) training histories: row u < U is user u's last T-step window of the items
    #                             before the validation item; rows from U on are earlier windows (`train_windows`)
    train_labels: torch.Tensor  # (R, T) the next item at every position, IGNORE where there is none
    valid_history: torch.Tensor  # (Uv, T) the history before each validation target
    valid_target: torch.Tensor  # (Uv,) the validation item
    valid_users: torch.Tensor  # (Uv,) user index of each validation row
    valid_seen: torch.Tensor  # (Uv, S) every item the user interacted with before the target (PAD-padded), for masking
    test_history: torch.Tensor  # (Ut, T)
    test_target: torch.Tensor  # (Ut,)
    test_users: torch.Tensor  # (Ut,)
    test_seen: torch.Tensor  # (Ut, S)
    item_counts: torch.Tensor  # (num_items + 1,) training interactions per item (popularity)
    item_titles: list = field(default_factory=list)  # title of item i at position i ("" for padding)
    item_ids: list = field(default_factory=list)  # parent_asin of item i at position i
    user_ids: list = field(default_factory=list)  # user_id of user u at position u
    window_users: torch.Tensor | None = None  # (R - U,) the user of each earlier window (rows U..R-1); None: none

    @property
    def num_users(self) -> int:
        """U: the users (the first U training rows are theirs, one each)."""
        extra = 0 if self.window_users is None else len(self.window_users)
        return int(self.train_inputs.shape[0]) - extra

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(history, target, seen) of the 'valid' or 'test' split."""
        if name == "valid":
            return self.valid_history, self.valid_target, self.valid_seen
        if name == "test":
            return self.test_history, self.test_target, self.test_seen
        raise ValueError(f"split must be 'valid' or 'test', not {name!r}")

    def users(self, name: str) -> torch.Tensor:
        """The user index of each row of the 'valid' or 'test' split (`split`'s rows).  # (Uv,) or (Ut,)"""
        self.split(name)  # ValueError for an unknown split
        return self.valid_users if name == "valid" else self.test_users


def left_pad(seqs: list[list[int]], length: int, value: int = PAD) -> torch.Tensor:
    """Keep the last `length` items of each sequence and left-pad to `length`.  # (N, length)"""
    out = np.full((len(seqs), max(length, 0)), value, dtype=np.int64)
    if length > 0 and len(seqs):
        tails = [list(s)[-length:] for s in seqs]
        lens = np.fromiter((len(s) for s in tails), dtype=np.int64, count=len(tails))
        if lens.sum():
            flat = np.fromiter((x for s in tails for x in s), dtype=np.int64, count=int(lens.sum()))
            rows = np.repeat(np.arange(len(tails)), lens)
            starts = np.cumsum(lens) - lens
            cols = length - lens[rows] + (np.arange(len(flat)) - starts[rows])
            out[rows, cols] = flat
    return torch.from_numpy(out)



def training_windows(train: list[list[int]], max_len: int, windows: int = 1) -> tuple[list, list]:
    """Each user's training part cut into windows of `max_len + 1` items, newest first, consecutive windows sharing
    one item so that every transition is a label exactly once (issue 25: long real histories).

    Returns (last window per user, [(user, earlier window), ...]); `windows` is how many windows a user keeps at most
    (1: the last only, as the book always trained; 0: all); windows of fewer than 2 items carry no label and are left
    out."""
    last = [s[-(max_len + 1):] for s in train]
    earlier = []
    for u, s in enumerate(train):
        end, kept = len(s) - max_len, 1  # the last window covers s[end - 1:]; the next one ends at s[end - 1]
        while end > 1 and (windows == 0 or kept < windows):
            earlier.append((u, s[max(0, end - 1 - max_len):end]))
            end, kept = end - max_len, kept + 1
    return last, earlier


def build_rec_data(sequences: Sequence[Sequence[int]], num_items: int, max_len: int, split: str = "leave_last_out",
                   timestamps: Sequence | None = None, valid_from_ms: int | None = None,
                   test_from_ms: int | None = None, item_titles: list | None = None, item_ids: list | None = None,
                   user_ids: list | None = None, train_windows: int = 1) -> RecData:
    """Split chronological per-user item sequences (items 1..num_items) into `RecData`; `split` picks the rule.

    Both rules cut each user's sequence `s` at two points `a <= b`: `s[:a]` is the training part (every position
    predicts the next item; the model sees its last `max_len` steps), `s[a]` is the validation target with history
    `s[:a]` when `0 < a < b`, and `s[b]` the test target with history `s[:b]` when `0 < b < len(s)`. Per user the
    validation target precedes the test target, and no target is ever a training input or label.

    * `"leave_last_out"`: `a, b = len(s) - 2, len(s) - 1`: the last item is the test target, the second-last the
      validation target. Users with fewer than 3 items are dropped (k-core >= 3 prevents it), so every user has both.
    * `"timestamp"`, the absolute split of the Amazon 2023 benchmark (needs `timestamps`, one sorted array per user,
      and the cut-offs): `a` and `b` are the numbers of interactions before `valid_from_ms` and before `test_from_ms`.
      A user's first interaction in [valid_from_ms, test_from_ms) is their validation target, their first one at or
      after `test_from_ms` their test target (validation-period items are test history). Targets with an empty history
      are dropped; every user keeps a training row (all-IGNORE labels with fewer than two training interactions).

    `valid_users`/`test_users` index the training rows. `seen`, for masking, is each row's whole history, padded to
    the longest: under leave-last-out one width for both splits (the longest test history), under the timestamp split
    each split its own (at least 1). `item_counts` counts every training part. `item_titles` and `item_ids` default to
    "" and the item index; `user_ids`, one per input sequence, default to the sequence's index; those of dropped users
    are dropped with them. `train_windows` > 1 (or 0: all) adds each user's earlier training windows as rows after
    the users' own (`training_windows`, `RecData.window_users`).
    """
    if split == "leave_last_out":
        rows = [u for u, s in enumerate(sequences) if len(s) >= 3]
        cuts = [(len(sequences[u]) - 2, len(sequences[u]) - 1) for u in rows]
    elif split == "timestamp":
        if timestamps is None or valid_from_ms is None or test_from_ms is None:
            raise ValueError("the timestamp split needs timestamps, valid_from_ms and test_from_ms")
        if valid_from_ms > test_from_ms:
            raise ValueError(f"valid_from_ms ({valid_from_ms}) must not be after test_from_ms ({test_from_ms})")
        if len(timestamps) != len(sequences):
            raise ValueError(f"{len(timestamps)} timestamp arrays for {len(sequences)} sequences")
        rows = list(range(len(sequences)))
        cuts = [(int(np.searchsorted(t, valid_from_ms, side="left")),  # interactions before valid_from
                 int(np.searchsorted(t, test_from_ms, side="left")))  # interactions before test_from
                for t in map(np.asarray, timestamps)]
    else:
        raise ValueError(f"split (DataConfig.split) must be 'leave_last_out' or 'timestamp', not {split!r}")
    seqs = [list(sequences[u]) for u in rows]
    train, vh, vt, vu, th, tt, tu = [], [], [], [], [], [], []
    for row, (s, (a, b)) in enumerate(zip(seqs, cuts)):
        train.append(s[:a])
        if 0 < a < b:
            vh.append(s[:a]), vt.append(s[a]), vu.append(row)
        if 0 < b < len(s):
            th.append(s[:b]), tt.append(s[b]), tu.append(row)
    window, earlier = training_windows(train, max_len, train_windows)  # inputs + one more for the labels
    window += [w for _, w in earlier]
    counts = torch.zeros(num_items + 1, dtype=torch.long)  # (N+1,)
    flat = [x for s in train for x in s]
    if flat:
        counts += torch.bincount(torch.as_tensor(flat, dtype=torch.long), minlength=num_items + 1)
    seen_v = max(map(len, vh), default=1)
    seen_t = max(map(len, th), default=1)
    if split == "leave_last_out":
        seen_v = seen_t = max(seen_v, seen_t)
    long_ = lambda x: torch.as_tensor(x, dtype=torch.long)
    return RecData(
        num_items=num_items, max_len=max_len,
        train_inputs=left_pad([w[:-1] for w in window], max_len),  # (U, T)
        train_labels=left_pad([w[1:] for w in window], max_len, value=IGNORE),  # (U, T)
        valid_history=left_pad(vh, max_len), valid_target=long_(vt), valid_users=long_(vu),  # (Uv, T), (Uv,), (Uv,)
        valid_seen=left_pad(vh, seen_v),  # (Uv, S)
        test_history=left_pad(th, max_len), test_target=long_(tt), test_users=long_(tu),  # (Ut, T), (Ut,), (Ut,)
        test_seen=left_pad(th, seen_t),  # (Ut, S)
        item_counts=counts,
        item_titles=list(item_titles if item_titles is not None else [""] * (num_items + 1)),
        item_ids=list(item_ids if item_ids is not None else [str(i) for i in range(num_items + 1)]),
        user_ids=[user_ids[u] for u in rows] if user_ids is not None else [str(u) for u in rows],
        window_users=long_([u for u, _ in earlier]) if earlier else None,
    )


def rec_data_from_sequences(sequences: Sequence[Sequence[int]], num_items: int, max_len: int,
                            item_titles: list | None = None, item_ids: list | None = None,
                            user_ids: list | None = None) -> RecData:
    """`build_rec_data` with the leave-last-out split (the toy data of unit tests and benchmarks)."""
    return build_rec_data(sequences, num_items, max_len, "leave_last_out", item_titles=item_titles,
                          item_ids=item_ids, user_ids=user_ids)


def split_stats(rd: RecData) -> dict:
    """Sizes of a `RecData`'s splits."""
    labels = rd.train_labels
    return {"train_users": rd.num_users, "train_rows_with_labels": int((labels != IGNORE).any(1).sum()),
            "train_targets": int((labels != IGNORE).sum()), "valid_rows": int(len(rd.valid_target)),
            "test_rows": int(len(rd.test_target)), "num_items": rd.num_items, "max_len": rd.max_len}

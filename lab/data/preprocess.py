"""Pre-processing as the Amazon Reviews 2023 benchmark does it, and the statistics of the result (chapter 01).

`preprocess_reviews` turns `read_reviews` output into an interactions table: exact duplicate rows dropped (counted in
the `LoadReport`), repeated user-item pairs de-duplicated keeping the earliest, iterative `k_core`, contiguous ids
(items 1..N, 0 = padding), chronological order per user. `sequences_from_interactions` gives the per-user item lists
the splits start from; `dataset_stats` the numbers chapter 01 reports.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .amazon import DataError, LoadReport

__all__ = ["k_core", "TIE_BREAKS", "order_ties", "preprocess_reviews", "sequences_from_interactions", "dataset_stats"]


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Iterative k-core: a boolean mask of the interactions to keep so that every remaining user and item has at least
    `k` of them, and the number of passes it took. Users and items are integer codes (0..n-1)."""
    keep = np.ones(len(users), dtype=bool)
    if k <= 1 or len(users) == 0:
        return keep, 0
    nu, ni = int(users.max()) + 1, int(items.max()) + 1
    passes = 0
    while True:
        passes += 1
        uc = np.bincount(users[keep], minlength=nu)
        ic = np.bincount(items[keep], minlength=ni)
        bad = keep & ((uc[users] < k) | (ic[items] < k))
        if not bad.any():
            return keep, passes
        keep &= ~bad


TIE_BREAKS = ("line", "item", "shuffle")  # rules ordering a user's interactions that share a timestamp


def order_ties(rule: str, lines: np.ndarray, item_tokens: np.ndarray, seed: int = 0) -> np.ndarray:
    """The secondary sort key of interactions with equal (user, timestamp), one value per interaction (issue 25):
    "line", the order in the file; "item", the item token (as integers when every token is one, so "9" < "10");
    "shuffle", a random order drawn with `seed` (to measure how much a split depends on the rule)."""
    if rule == "line":
        return np.asarray(lines)
    if rule == "item":
        tokens = np.asarray(item_tokens, dtype=object)
        if len(tokens) and all(isinstance(t, str) and t.isdigit() for t in tokens):
            return tokens.astype(np.int64)
        _, key = np.unique(tokens.astype(str), return_inverse=True)
        return key
    if rule == "shuffle":
        return np.random.default_rng(seed).permutation(len(lines))
    raise ValueError(f"unknown tie_break {rule!r}; choose one of {TIE_BREAKS}")


def preprocess_reviews(reviews: pd.DataFrame, k: int = 5, report: LoadReport | None = None,
                       file: str = "reviews", tie_break: str = "line",
                       tie_seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Amazon-2023-benchmark pre-processing of `read_reviews` output.

    1. exact duplicate rows (same user, item, timestamp, rating) are skipped and counted as `duplicate_row`;
    2. repeated user-item pairs are de-duplicated keeping the earliest (ties: the earlier line);
    3. iterative k-core on users and items;
    4. contiguous ids: users 0..U-1 and items 1..N (0 = padding), both in sorted-string order;
    5. chronological order per user, ties broken by `tie_break` (`order_ties`: the order in the file by default).

    Returns `(interactions, user_ids, item_ids)`: interactions with int32 `user`, int32 `item`, int64 `timestamp`,
    float32 `rating`, sorted by user then time; `user_ids[u]` is the user_id of user u; `item_ids[i]` the parent_asin
    of item i (`item_ids[0] == ""`).
    """
    report = report if report is not None else LoadReport()
    u = reviews["user_id"].cat.codes.to_numpy().astype(np.int64)
    i = reviews["parent_asin"].cat.codes.to_numpy().astype(np.int64)
    ts = reviews["timestamp"].to_numpy()
    r = reviews["rating"].to_numpy()
    ln = reviews["line"].to_numpy()
    pre = report.preprocessing
    pre["interactions_read"] = int(len(u))
    # 1: exact duplicates (same user, item, timestamp, rating): keep the first line of each group
    order = np.lexsort((ln, r, ts, i, u))
    u, i, ts, r, ln = u[order], i[order], ts[order], r[order], ln[order]
    exact = np.zeros(len(u), dtype=bool)
    exact[1:] = (u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (ts[1:] == ts[:-1]) & (r[1:] == r[:-1])
    group_start = np.maximum.accumulate(np.where(~exact, np.arange(len(u)), 0)) if len(u) else exact.astype(int)
    dup = np.flatnonzero(exact)
    dup = dup[np.argsort(ln[dup], kind="stable")]  # examples in file order
    for j in dup[: report.max_examples]:
        report.skip("duplicate_row", file, int(ln[j]), None, f"same as line {int(ln[group_start[j]])}")
    report.skip_many("duplicate_row", file, max(0, len(dup) - report.max_examples))
    u, i, ts, r, ln = u[~exact], i[~exact], ts[~exact], r[~exact], ln[~exact]
    pre["duplicate_rows"] = int(exact.sum())
    # 2: repeated user-item pairs: keep the earliest (ties: the earlier line)
    order = np.lexsort((ln, ts, i, u))
    u, i, ts, r, ln = u[order], i[order], ts[order], r[order], ln[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    pre["repeated_user_item"] = int((~first).sum())
    u, i, ts, r, ln = u[first], i[first], ts[first], r[first], ln[first]
    # 3: k-core
    keep, passes = k_core(u, i, k)
    pre.update(k_core=int(k), k_core_passes=int(passes),
               users_before_k_core=int(len(np.unique(u))), items_before_k_core=int(len(np.unique(i))),
               interactions_before_k_core=int(len(u)), k_core_removed_interactions=int((~keep).sum()))
    u, i, ts, r, ln = u[keep], i[keep], ts[keep], r[keep], ln[keep]
    if len(u) == 0:
        raise DataError(f"{file}: no interactions left after de-duplication and {k}-core "
                        f"({pre['interactions_before_k_core']} before k-core)")
    # 4: contiguous ids in sorted-string order
    ucats = np.asarray(reviews["user_id"].cat.categories, dtype=object)
    icats = np.asarray(reviews["parent_asin"].cat.categories, dtype=object)
    uu, u_new = np.unique(u, return_inverse=True)
    iu, i_new = np.unique(i, return_inverse=True)
    u_rank, i_rank = _rank(ucats[uu]), _rank(icats[iu])
    u_new, i_new = u_rank[u_new], i_rank[i_new] + 1
    user_ids = np.empty(len(uu), dtype=object)
    user_ids[u_rank] = ucats[uu]
    item_ids = np.empty(len(iu) + 1, dtype=object)
    item_ids[0] = ""
    item_ids[i_rank + 1] = icats[iu]
    pre.update(users=int(len(uu)), items=int(len(iu)), interactions=int(len(u_new)))
    # 5: chronological per user, ties by the stated rule (and then by line, so the order is total)
    pre["tied_interactions"] = _tied(u_new, ts)
    order = np.lexsort((ln, order_ties(tie_break, ln, icats[i], tie_seed), ts, u_new))
    inter = pd.DataFrame({"user": u_new[order].astype(np.int32), "item": i_new[order].astype(np.int32),
                          "timestamp": ts[order].astype(np.int64), "rating": r[order].astype(np.float32)})
    return inter, user_ids, item_ids


def _tied(users: np.ndarray, ts: np.ndarray) -> int:
    """How many interactions share their (user, timestamp) with another of the same user."""
    if len(users) == 0:
        return 0
    _, inv, counts = np.unique(np.stack([users, ts]), axis=1, return_inverse=True, return_counts=True)
    return int((counts[inv.ravel()] > 1).sum())


def _rank(values: np.ndarray) -> np.ndarray:
    """Position of each value in sorted order (values distinct)."""
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    return rank


def sequences_from_interactions(inter: pd.DataFrame, num_users: int | None = None
                                ) -> tuple[list[list[int]], list[np.ndarray]]:
    """Per-user chronological item lists and their timestamps from an interactions table sorted by (user, time)."""
    u = inter["user"].to_numpy()
    n = int(num_users if num_users is not None else (u.max() + 1 if len(u) else 0))
    bounds = np.searchsorted(u, np.arange(n + 1))
    items = inter["item"].to_numpy()
    ts = inter["timestamp"].to_numpy()
    seqs = [items[bounds[j]:bounds[j + 1]].tolist() for j in range(n)]
    times = [ts[bounds[j]:bounds[j + 1]] for j in range(n)]
    return seqs, times


def dataset_stats(interactions: pd.DataFrame, num_users: int | None = None, num_items: int | None = None) -> dict:
    """Users, items, interactions, density, sequence-length quantiles, rating mean and time span of an interactions
    table (`user`, `item`, and optionally `rating` and `timestamp` columns)."""
    u = interactions["user"].to_numpy()
    i = interactions["item"].to_numpy()
    n_u = int(num_users if num_users is not None else len(np.unique(u)))
    n_i = int(num_items if num_items is not None else len(np.unique(i)))
    lens = np.bincount(u)[np.unique(u)] if len(u) else np.zeros(1, int)
    pop = np.bincount(i)[np.unique(i)] if len(i) else np.zeros(1, int)
    q = np.quantile(lens, [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0])
    out = {
        "users": n_u, "items": n_i, "interactions": int(len(u)),
        "density": float(len(u) / max(n_u * n_i, 1)),
        "mean_seq_len": float(lens.mean()),
        "seq_len": {k: float(v) for k, v in zip(["min", "p25", "median", "p75", "p90", "p99", "max"], q)},
        "item_pop": {"min": int(pop.min()), "median": float(np.median(pop)), "max": int(pop.max()),
                     "top1pct_share": float(np.sort(pop)[::-1][: max(1, len(pop) // 100)].sum() / max(pop.sum(), 1)),
                     "gini": _gini(pop)},
    }
    if "rating" in interactions:
        out["rating_mean"] = float(interactions["rating"].mean())
    if "timestamp" in interactions and len(u):
        ts = interactions["timestamp"]
        out["first_ms"], out["last_ms"] = int(ts.min()), int(ts.max())
        out["first_date"] = str(pd.to_datetime(out["first_ms"], unit="ms").date())
        out["last_date"] = str(pd.to_datetime(out["last_ms"], unit="ms").date())
    return out


def _gini(x: np.ndarray) -> float:
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


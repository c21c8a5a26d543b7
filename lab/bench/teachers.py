"""The recommenders of one data set side by side, paired per user, on all test users and on rare items (chapter 02,
issue 25).

On MovieLens-100K the book has two teachers for the same split: the 24-layer model trained from scratch (`ml100k`)
and SmolLM2-135M with LoRA whose items start from their titles (`ml100k-llm`). `companion_teachers` reads the teacher
rows of the companion runs that share this run's data (same source, pre-processing and split: `same_data`);
`rare_targets` marks the test targets with few training interactions, where a title should help most; and
`compare_all` compares the first model with every other one, paired per user (bootstrap CI, Wilcoxon), on all test
users and on the rare and the other targets apart. What chapter 02 prints and records of it is in
`lab.chapters.c02_teacher`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..book import paths
from ..config import DataConfig
from ..data import RecData
from ..evaluation import paired_comparison
from ..profiles import get_config, get_profile

__all__ = ["RARE_BELOW", "DATA_FIELDS", "same_data", "rare_targets", "companion_teachers", "compare_all"]

RARE_BELOW = 10  # a test target is rare when its item has fewer training interactions than this (issue 25)
DATA_FIELDS = ("source", "category", "raw_dir", "k_core", "tie_break", "tie_seed", "split", "valid_from_ms",
               "test_from_ms", "n_users", "n_items")  # what decides the users and targets of a split


def same_data(a: DataConfig, b: DataConfig) -> bool:
    """Whether two runs have the same test users and targets: the same data, pre-processing and split
    (`DATA_FIELDS`); history length, training windows and item texts may differ."""
    return all(getattr(a, f) == getattr(b, f) for f in DATA_FIELDS)


def rare_targets(data: RecData, split: str = "test", below: int = RARE_BELOW) -> pd.DataFrame:
    """One row per row of `split`: user, target, the target item's training interactions, and `rare` (fewer than
    `below`)."""
    _, target, _ = data.split(split)
    counts = data.item_counts[target].numpy()  # (U,)
    return pd.DataFrame({"user": data.users(split).numpy(), "target": target.numpy(), "train_count": counts,
                         "rare": counts < below})


def companion_teachers(profile: str, seed: int, artefacts=None, metric: str = "ndcg@10") -> dict[str, pd.DataFrame]:
    """{"teacher (<companion profile>)": per-user frame (user, metric)} of every companion run (`Profile.companions`)
    with the same data as `profile` whose chapter 02 has run (its `teacher_eval.parquet`); runs not made yet are
    left out (chapter 02 says which)."""
    mine = get_config(profile, seed).data
    out = {}
    for other in get_profile(profile).companions:
        if not same_data(mine, get_config(other, seed).data):
            continue
        path = paths(other, artefacts, seed, create=False).file("teacher_eval.parquet")
        if not path.is_file():
            continue
        frame = pd.read_parquet(path)
        rows = frame[frame["model"].astype(str).str.startswith("teacher")]
        out[f"teacher ({other})"] = rows[["user", metric]].reset_index(drop=True)
    return out


def compare_all(per_user: dict[str, pd.DataFrame], rare: pd.DataFrame, metric: str = "ndcg@10", n_boot: int = 2000,
                seed: int = 0) -> pd.DataFrame:
    """The first model of `per_user` against each other one, paired per user, on all users and on the rare and the
    other targets (`rare_targets`). Returns a tidy frame: model, vs, subset, n_users, mean_model, mean_vs, diff,
    ci_low, ci_high, wilcoxon_p, clear. Users missing from a frame are left out of its comparisons."""
    names = list(per_user)
    first = per_user[names[0]].set_index("user")[metric]
    flags = rare.set_index("user")["rare"]
    rows = []
    for other in names[1:]:
        b = per_user[other].set_index("user")[metric]
        users = first.index.intersection(b.index).intersection(flags.index)
        for subset, keep in (("all", np.ones(len(users), bool)), ("rare", flags[users].to_numpy()),
                             ("rest", ~flags[users].to_numpy())):
            u = users[keep]
            if len(u) < 2:
                continue
            test = paired_comparison(first[u].to_numpy(), b[u].to_numpy(), n_boot=n_boot, seed=seed)
            rows.append({"model": names[0], "vs": other, "subset": subset, "n_users": int(len(u)),
                         "mean_model": float(first[u].mean()), "mean_vs": float(b[u].mean()),
                         **{k: test[k] for k in ("diff", "ci_low", "ci_high", "wilcoxon_p", "clear")}})
    return pd.DataFrame(rows)

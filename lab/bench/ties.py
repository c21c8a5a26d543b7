"""How much a split depends on the order of interactions that tie in time (chapter 01, issue 25).

MovieLens users rated in bulk, so most of a user's ratings share their timestamp with another; the book orders ties
by one stated rule (`DataConfig.tie_break`, `lab.data.preprocess.order_ties`). `tie_sensitivity` rebuilds the data
under other orders (another seed of the random order, the item-id order) and compares each with the profile's: how
many validation and test targets change, and the count baselines' test NDCG@10, paired per user (bootstrap CI of the
difference).
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..config import DataConfig
from ..data import load_rec_data
from ..evaluation import paired_comparison
from .depth import reference_metrics

__all__ = ["ALTERNATIVES", "tie_sensitivity"]

ALTERNATIVES = (("shuffle", 1), ("item", 0))  # (tie_break, tie_seed) orders compared with the profile's own


def tie_sensitivity(dcfg: DataConfig, paths, seed: int = 0, alternatives=ALTERNATIVES,
                    n_boot: int = 2000) -> pd.DataFrame:
    """The count baselines' test NDCG@10 under the tie order of `dcfg` and under each alternative order.

    Returns a tidy frame, one row per (order, predictor): order ("shuffle seed 1", "item"), predictor ("markov",
    "popularity"), ndcg10 under the profile's order and under this one, their per-user difference (this one minus the
    profile's) with its 95% bootstrap CI over users (`lab.evaluation.paired_comparison`, seeded), and the shares of validation and test targets that
    change. Users are paired by index: the same users under every order. Chapter 01."""
    rd, _, _ = load_rec_data(dcfg, paths, seed, progress=False)
    means, users = reference_metrics(rd, None, split="test")
    rows = []
    for rule, tie_seed in alternatives:
        alt = dataclasses.replace(dcfg, tie_break=rule, tie_seed=tie_seed)
        if (alt.tie_break, alt.tie_seed) == (dcfg.tie_break, dcfg.tie_seed):
            continue
        rd_alt, _, _ = load_rec_data(alt, paths, seed, progress=False)
        means_alt, users_alt = reference_metrics(rd_alt, None, split="test")
        for name in means:
            test = paired_comparison(users_alt[name], users[name], n_boot=n_boot, seed=tie_seed)  # per user
            rows.append({"order": f"{rule} seed {tie_seed}" if rule == "shuffle" else rule, "predictor": name,
                         "ndcg10_profile": means[name], "ndcg10_order": means_alt[name],
                         "diff": test["diff"], "diff_low": test["ci_low"], "diff_high": test["ci_high"],
                         "valid_targets_changed": float((rd.valid_target != rd_alt.valid_target).float().mean()),
                         "test_targets_changed": float((rd.test_target != rd_alt.test_target).float().mean())})
    return pd.DataFrame(rows)

"""Evaluation, once: scoring a recommender on a split (`scoring`) and the statistics every comparison of the book uses
(`stats`: the bootstrap, the paired per-user comparison, Holm's correction, the t-interval across seeds).

Chapter 02 introduced the scoring (full ranking, `lab.metrics`), chapters 03-05 the statistics; chapter 07 pools seeds.
"""
from __future__ import annotations

from .scoring import per_user_table, score_split, score_table
from .stats import (across_seeds, bootstrap_ci, bootstrap_means, compare_runs, holm,
                    holm_family, kendall_tau, paired_comparison, paired_ratio_ci, spearman_ci)

__all__ = ["score_split", "per_user_table", "score_table",
           "bootstrap_means", "bootstrap_ci", "paired_ratio_ci", "paired_comparison", "compare_runs", "holm",
           "holm_family", "across_seeds", "spearman_ci", "kendall_tau"]

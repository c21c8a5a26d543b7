"""Constants shared across the package: the padding item, the ignored label, the metrics' cut-offs and headline metrics.

A leaf module (it imports nothing of ours), so `models`, `metrics`, `fisher` and `distill` need not import `data`
for two integers.
"""
from __future__ import annotations

__all__ = ["PAD", "IGNORE", "KS", "METRICS", "DEPTH_BAND", "GOAL_RETENTION", "GOAL_SPEEDUP", "HEADS"]

PAD = 0  # item index used for padding; real items are 1..num_items
IGNORE = -100  # label value ignored by the loss
KS = (5, 10, 20)  # cut-offs K of HR@K and NDCG@K (`lab.metrics`)
METRICS = ("ndcg@10", "hr@10", "mrr")  # the per-user metrics compared across models (chapters 02-05)
DEPTH_BAND = 0.30  # the bottom and the top 30% of the layers by depth are the "lower" and "upper" ones (the authors'
#                    H1; chapter 03's depth bands and chapter 07's top-bottom gap count round(0.3 L) layers each)
# The goal of the book's method, the one place it is stated: the method authors' headline (C1) is that a student with
# a quarter of the teacher's layers keeps 92% of its NDCG@10 at 3.2x its inference speed. Chapter 05's goal is C1's
# (`lab.chapters.c05_distillation`), chapter 06 draws it, and chapter 07 decides C1 against it (`lab.hypotheses`).
GOAL_RETENTION = 0.92  # share of the teacher's test NDCG@10 the L/4 student keeps (C1)
GOAL_SPEEDUP = 3.2  # measured inference speed-up of that student over the teacher (C1)
HEADS = ("dot", "standardised")  # how a model's backbone outputs become item scores (`lab.models.SeqRecConfig.head`)

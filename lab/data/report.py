"""What chapter 01 keeps of its data: the sizes, the load report, the splits, the structure check, the bad-input demo
and the reference predictors, as one dict for `lab.record_all` (chapter 01).

Chapter 01 computes every piece with its own call and shows it; `data_record` only names and gathers them, so the
chapter's record cell stays one call and the keys later chapters and the tests read are defined in one place.
"""
from __future__ import annotations

from ..config import DataConfig
from .amazon import LoadReport
from .cache import Processed
from .splits import RecData


def data_record(cfg: DataConfig, proc: Processed, again: Processed, rd: RecData, rd_ts: RecData, *,
                structure: dict, lift: float, demo: LoadReport, demo_errors: list, references: dict,
                world=None, tied_share: float | None = None, ties=None) -> dict:
    """The key results chapter 01 records (chapter 01).

    Args:
        cfg: the run's data configuration (its `split` and `source`).
        proc, again: `prepare_data`'s first call (statistics and load report) and the second one (cache hit or not).
        rd, rd_ts: the leave-last-out and the timestamp split of the processed data.
        structure: `lab.recommenders.sequential_structure` on `rd`'s validation split (HR@10 of the count baselines and
            of chance); `lift`: Markov's HR@10 over popularity's, as the chapter printed it.
        demo, demo_errors: the bad-input demo's load report and its file-level error messages.
        references: test NDCG@10 per reference predictor ("markov", "popularity", and "bayes" / "last_item_bayes"
            in the depth world).
        world: the synthetic world behind the data when the depth world's Bayes law is known, else None.
        tied_share, ties: the share of interactions tied in time with another of the same user, and
            `lab.bench.ties.tie_sensitivity`'s frame (None when ties are rare and it was not run).

    Returns:
        {name: value}: sizes (n_users, n_items, n_interactions, density, mean_seq_len), the load report (rows_read,
        rows_skipped, skipped_by_reason, cache_second_call), the splits (split, valid_rows, test_rows,
        timestamp_valid_rows, timestamp_test_rows), the structure check (hr10_popularity, hr10_markov,
        hr10_markov_reversed, hr10_chance, markov_lift_over_popularity), the demo (demo_rows_skipped,
        demo_skipped_by_reason, demo_file_errors, sorted), and the references (world: "depth" / "shallow" for
        synthetic data, None for real data; bayes_ndcg10 and last_item_bayes_ndcg10, None where not computed;
        markov_ndcg10, popularity_ndcg10), and the ties (source, tie_break, tied_share, tie_orders: one dict per
        row of `ties`, [] when not run).
    """
    s, report = proc.stats, proc.report
    synthetic_world = ("depth" if world is not None else "shallow") if cfg.source == "synthetic" else None
    return {
        "n_users": s["users"], "n_items": s["items"], "n_interactions": s["interactions"], "density": s["density"],
        "mean_seq_len": s["mean_seq_len"],
        "rows_read": report.rows_read, "rows_skipped": report.rows_skipped, "skipped_by_reason": report.skipped,
        "cache_second_call": again.stats["cache"],
        "split": cfg.split, "valid_rows": int(len(rd.valid_target)), "test_rows": int(len(rd.test_target)),
        "timestamp_valid_rows": int(len(rd_ts.valid_target)), "timestamp_test_rows": int(len(rd_ts.test_target)),
        "hr10_popularity": structure["hr@10_popularity"], "hr10_markov": structure["hr@10_markov"],
        "hr10_markov_reversed": structure["hr@10_markov_reversed"], "hr10_chance": structure["chance_hr"],
        "markov_lift_over_popularity": lift,
        "demo_rows_skipped": demo.rows_skipped, "demo_skipped_by_reason": demo.skipped,
        "demo_file_errors": sorted(demo_errors),
        "world": synthetic_world, "bayes_ndcg10": references.get("bayes"),
        "last_item_bayes_ndcg10": references.get("last_item_bayes"), "markov_ndcg10": references["markov"],
        "popularity_ndcg10": references["popularity"],
        "source": cfg.source, "tie_break": cfg.tie_break, "tied_share": tied_share,
        "tie_orders": [] if ties is None else ties.to_dict("records"),
    }

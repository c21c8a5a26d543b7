"""Chapter 01's glue: the raw records it shows, the count baselines' table, the sentences it prints about ties and
the references, the check of the Bayes ceiling on generated against processed histories, and what the chapter
records (`data_record`). Reading, pre-processing, splitting and the synthetic worlds live in `lab.data`, the count
baselines in `lab.recommenders`, the reference predictors' scoring in `lab.bench.depth`, the tie check in
`lab.bench.ties`."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd

from ..config import DataConfig
from ..data import LoadReport, Processed, RecData, generated_ids, reference_scorers
from ..data import GeneratedPrefixes, SyntheticWorld
from ..evaluation import paired_comparison, score_split

__all__ = ["first_records", "baseline_table", "tie_lines", "reference_sentence", "ceiling_check",
           "ceiling_sentence", "data_record"]


def first_records(*files) -> list[dict]:
    """The first JSON record of each file (gzipped or not; None entries skipped): what a raw review and a raw
    metadata row look like on disk (chapter 01)."""
    out = []
    for path in (Path(f) for f in files if f is not None):
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rt") as f:
            out.append(json.loads(next(f)))
    return out


def baseline_table(structure: dict) -> dict:
    """The count baselines' HR@k / NDCG@k on one split, chance's HR@10 and the rows scored, from
    `lab.recommenders.sequential_structure` (chapter 01)."""
    return {**{k: structure[k] for k in structure if k.startswith(("hr@", "ndcg@"))},
            "chance HR@10": structure["chance_hr"], "rows": structure["rows"]}


def tie_lines(ties: pd.DataFrame | None) -> list[str]:
    """One sentence per (order, predictor) of `lab.bench.ties.tie_sensitivity`: the test NDCG@10 under that order
    against the profile's, and whether the per-user difference's CI excludes 0 (chapter 01); [] when not run."""
    if ties is None:
        return []
    out = []
    for r in ties.itertuples():
        moved = r.diff_low > 0 or r.diff_high < 0
        out.append(f"{r.predictor} under the {r.order} order: {r.ndcg10_order:.4f} vs {r.ndcg10_profile:.4f} "
                   f"({r.diff:+.4f}, CI {r.diff_low:+.4f} to {r.diff_high:+.4f}): "
                   + ("the order changes this measurement" if moved else "within noise"))
    return out


def reference_sentence(refs: dict) -> str:
    """The ceiling, its last-item version and the floors in one sentence (chapter 01); "" without a Bayes reference
    (real data, the shallow world)."""
    if refs.get("bayes") is None:
        return ""
    return (f"Bayes {refs['bayes']:.3f} vs last-item Bayes {refs['last_item_bayes']:.3f}: the history beyond the last "
            f"item is worth {refs['bayes'] - refs['last_item_bayes']:+.3f} NDCG@10; Markov {refs['markov']:.3f}, "
            f"popularity {refs['popularity']:.3f} (gap a model can close: Bayes - Markov = "
            f"{refs['bayes'] - refs['markov']:.3f})")


def ceiling_check(rd: RecData, world: SyntheticWorld | None, ref_users: pd.DataFrame, split: str = "test",
                  n_boot: int = 1000, seed: int = 0) -> dict | None:
    """The Bayes ceiling on the histories the models see against the law applied to the processed history as if
    it were complete (issue 24; chapter 01). None outside the depth world.

    `ref_users["bayes"]` (`lab.bench.depth.reference_metrics`) is the ceiling: the generator's law of each target
    given the user's whole generated history before it (`lab.data.synthetic.GeneratedPrefixes`). Here the same law
    is scored on the processed history alone (`bayes_processed`), the two paired per user
    (`lab.evaluation.paired_comparison`), and the histories are counted: matched to their generated history, fallen
    back to the processed one, and thinned (the generated history has items the pre-processing dropped).

    Returns: generated, processed (mean NDCG@10 of each), diff (generated − processed) with ci_low / ci_high, users,
    matched, fallbacks, thinned.
    """
    if world is None:
        return None
    _, pu = score_split(reference_scorers(world, rd.item_ids)["bayes_processed"], rd, split, ks=(10,),
                        history="complete")
    gen = generated_ids(world, rd.item_ids)
    seen = gen[rd.split(split)[2].numpy()]  # (U, S) complete processed histories, generated ids, -1 = PAD
    prefixes = GeneratedPrefixes(world, gen)
    full = prefixes.prefixes(seen)
    thinned = sum(f is not None and len(f) > int((h >= 0).sum()) for f, h in zip(full, seen))
    test = paired_comparison(ref_users["bayes"].to_numpy(), pu["ndcg@10"].to_numpy(), n_boot=n_boot, seed=seed)
    return {"generated": float(ref_users["bayes"].mean()), "processed": float(pu["ndcg@10"].mean()),
            "diff": test["diff"], "ci_low": test["ci_low"], "ci_high": test["ci_high"], "users": len(seen),
            "matched": prefixes.matched, "fallbacks": prefixes.fallbacks, "thinned": int(thinned)}


def ceiling_sentence(c: dict | None) -> str:
    """What the ceiling check measured, printed from its numbers (chapter 01); "" outside the depth world."""
    if c is None:
        return ""
    clear = c["ci_low"] > 0 or c["ci_high"] < 0
    return (f"Bayes given the generated history before each target {c['generated']:.4f} vs the same law on the "
            f"processed history as if complete {c['processed']:.4f}: {c['diff']:+.4f} NDCG@10 per user (95% CI "
            f"{c['ci_low']:+.4f} to {c['ci_high']:+.4f}; "
            + ("the pre-processing changes the ceiling" if clear else "no difference the CI can resolve")
            + f"). {c['thinned']} of {c['users']} test histories lost items to the pre-processing; "
            f"{c['matched']} matched their generated history, {c['fallbacks']} fell back to the processed one.")


def data_record(cfg: DataConfig, proc: Processed, again: Processed, rd: RecData, rd_ts: RecData, *,
                structure: dict, lift: float, demo: LoadReport, demo_errors: list, references: dict,
                world=None, tied_share: float | None = None, ties=None, ceiling: dict | None = None) -> dict:
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
        ceiling: `ceiling_check` (None outside the depth world).

    Returns:
        {name: value}: sizes (n_users, n_items, n_interactions, density, mean_seq_len), the load report (rows_read,
        rows_skipped, skipped_by_reason, cache_second_call), the splits (split, valid_rows, test_rows,
        timestamp_valid_rows, timestamp_test_rows), the structure check (hr10_popularity, hr10_markov,
        hr10_markov_reversed, hr10_chance, markov_lift_over_popularity), the demo (demo_rows_skipped,
        demo_skipped_by_reason, demo_file_errors, sorted), and the references (world: "depth" / "shallow" for
        synthetic data, None for real data; bayes_ndcg10 and last_item_bayes_ndcg10, None where not computed;
        markov_ndcg10, popularity_ndcg10), the ceiling check (bayes_processed_ndcg10, bayes_minus_processed with its
        CI, bayes_histories: users, matched, fallbacks, thinned; None outside the depth world), and the ties (source,
        tie_break, tied_share, tie_orders: one dict per row of `ties`, [] when not run).
    """
    s, report = proc.stats, proc.report
    synthetic_world = ("depth" if world is not None else "shallow") if cfg.source == "synthetic" else None
    c = ceiling or {}
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
        "bayes_processed_ndcg10": c.get("processed"), "bayes_minus_processed": c.get("diff"),
        "bayes_minus_processed_ci": [c["ci_low"], c["ci_high"]] if c else None,
        "bayes_histories": {k: c[k] for k in ("users", "matched", "fallbacks", "thinned")} if c else None,
        "source": cfg.source, "tie_break": cfg.tie_break, "tied_share": tied_share,
        "tie_orders": [] if ties is None else ties.to_dict("records"),
    }

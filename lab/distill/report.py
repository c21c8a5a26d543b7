"""What chapter 05 concludes and keeps from its grid of students: the goal check and the dict it records (chapter 05).

Both read `results_table`'s frame (one row per student: retention with its CI, training cost, speed-up); the choices
in it are the trainer's (`best_student`, `choose_variant`, `valid_means`), so the record says what the chapter chose.
"""
from __future__ import annotations

import pandas as pd

from .config import DistillConfig, DistillGrid
from .trainer import best_student, choose_variant, comparison_records, layerwise_choices, valid_means


def meets_goal(rows, retention: float, speedup: float, ci: bool = False):
    """Whether a row of `results_table` keeps at least `retention` of the teacher's test NDCG@10 (with `ci`: the lower
    end of its CI) at a speed-up of at least `speedup` (chapter 05's goal); for a frame, one boolean per row."""
    kept = rows["ret_ndcg@10_low" if ci else "ret_ndcg@10"]
    return (kept >= retention) & (rows["speedup"] >= speedup)


def distillation_record(results: pd.DataFrame, grid: DistillGrid, cfg: DistillConfig, *, k: int,
                        comparisons: pd.DataFrame, ratios: pd.DataFrame, scratch: pd.Series | None, cache: dict,
                        goal: tuple[float, float], alpha: float, chapter_seconds: float,
                        rule_tests: pd.DataFrame | None = None) -> dict:
    """The key results chapter 05 records, from its table of students (chapter 05).

    Args:
        results: `results_table`'s frame, one row per student (its name, retention, cost and speed-up columns).
        grid, cfg: the grid that was run (its main rules) and the loss configuration (its layer mapping).
        k: the layer budget.
        comparisons: `variant_comparisons`' family of paired tests (may be empty).
        ratios: `throughput_ratios` of the merged adapter students (columns) against the best setting, per batch.
        scratch: `scratch_retention`'s row for chapter 02's small model, or None when there is none (NaN recorded).
        cache: `time_teacher_cache`'s measurement of the teacher cache.
        goal: (retention, speed-up) of `meets_goal`; alpha: the comparisons' family-wise level.
        chapter_seconds: the chapter's wall time so far.
        rule_tests: `rule_comparisons`' family (Fisher-selected students against every other rule's); None or empty:
            an empty record.

    Returns:
        {name: value}; per-student values are {student name: value}, the best setting is `best_student(results)`
        and the variant the other rules got `choose_variant(results, grid)`.
    """
    r = results.set_index("name")
    best_name = best_student(results)
    best = r.loc[best_name]
    retention, speedup = goal
    return {
        "k": k,
        "n_students": int(len(r)),
        "main_rules": list(grid.main_rules),
        "mapping": cfg.mapping,
        "mappings": r["mapping"].to_dict(),
        "teacher_layers": r["teacher_layers"].to_dict(),
        "best_variant": choose_variant(results, grid),
        "best_setting": best_name,
        "valid_ndcg": r["valid_ndcg@10"].astype(float).to_dict(),
        "layerwise_choice": layerwise_choices(valid_means(results, grid.main_rules)),
        "retention": r["ret_ndcg@10"].astype(float).to_dict(),
        "retention_ci": {n: [float(lo), float(hi)] for n, lo, hi in zip(r.index, r["ret_ndcg@10_low"],
                                                                         r["ret_ndcg@10_high"])},
        "best_retention": float(best["ret_ndcg@10"]),
        "best_retention_ci": [float(best["ret_ndcg@10_low"]), float(best["ret_ndcg@10_high"])],
        "max_retention": float(r["ret_ndcg@10"].max()),
        "scratch_small_retention": float("nan") if scratch is None else float(scratch["retention"]),
        "alpha": alpha,
        "variant_comparisons": comparison_records(comparisons),
        "rule_comparisons": comparison_records(rule_tests) if rule_tests is not None and len(rule_tests) else {},
        "best_speedup": float(best["speedup"]),
        "best_speedup_b1": float(best["speedup_b1"]),
        "adapter_speed_ratio": {n: {str(b): float(v) for b, v in ratios[n].items()} for n in ratios.columns},
        "goal_met": bool(meets_goal(best, retention, speedup)),
        "goal_met_ci": bool(meets_goal(best, retention, speedup, ci=True)),
        "train_seconds": r["total_seconds"].astype(float).to_dict(),
        "train_seconds_total": float(r.loc[r["same_as"] == "", "total_seconds"].sum()),
        "same_as": {n: x for n, x in r["same_as"].items() if x},
        "tpme": r["tpme"].astype(float).to_dict(),
        "trainable_params": r["trainable_params"].astype(int).to_dict(),
        "peak_mem_mb": r["peak_mem_mb"].astype(float).to_dict(),
        "cache": {name: float(v) for name, v in cache.items()},
        "chapter_seconds": chapter_seconds,
    }

"""Chapter 05's glue: which student is the method's, the controls that say whether distillation helps, the goal check,
the sentences the chapter prints about them and the dict it records. The ideas it calls live where they are named:
the losses and the trainer (`lab.distill`: the grid of students, `run_grid`, and the table, `results_table`), the
k-layer model from scratch with the teacher's recipe (`lab.bench.depth.scratch_control`, chapter 02's depth curve),
the statistics (`lab.evaluation`).

The goal is C1's, stated once in `lab.constants` (GOAL_RETENTION, GOAL_SPEEDUP: the method authors' 92% at 3.2x),
and it is checked for the method's own student (`method_name`: the Fisher-selected layers distilled with the
Fisher-weighted layer-wise KD); the best student on validation is reported beside it, as a separate row.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from ..bench.depth import scratch_control
from ..book import Paths, load_teacher
from ..constants import GOAL_RETENTION, GOAL_SPEEDUP
from ..distill import DistillConfig, DistillGrid, retention, teacher_key
from ..distill.trainer import (best_student, choose_variant, comparison_records, layerwise_choices, method_student,
                               valid_means)
from ..evaluation import paired_comparison, per_user_table
from ..hypotheses import VARIANT_ORDER
from ..train import train_or_load

__all__ = ["GOAL", "SCRATCH_FULL", "EXTENDED", "sweep_view", "SWEEP_FIGURE", "save_sweep_figure", "method_name",
           "student_dir", "meets_goal", "extended_teacher", "control_models", "control_per_user", "control_summary",
           "control_sentences", "method_sentences", "distillation_record"]

GOAL = (GOAL_RETENTION, GOAL_SPEEDUP)  # chapter 05's goal is C1's (lab.constants)
SCRATCH_FULL = "scratch_full"  # distill_per_user.parquet name of the k-layer model from scratch, teacher's recipe
EXTENDED = "teacher_extended"  # distill_per_user.parquet name of the teacher trained for the students' extra epochs


def method_name(results: pd.DataFrame) -> str:
    """The method's own student in chapter 05's table (`results_table` or `distill_results.parquet`): fisher_topk
    distilled with "kd+fisher", else the first variant of `lab.hypotheses.VARIANT_ORDER` the grid trained for it
    (`lab.distill.trainer.method_student`): decided by the rule, never by a score (chapters 05 and 06, C1)."""
    return method_student(results, fallback=VARIANT_ORDER)


def student_dir(P: Paths, results: pd.DataFrame, name: str):
    """The `save_pretrained` folder of a student of chapter 05's table: `students/<name>`, or that of the student
    whose run it shares (`same_as`: the same layers, variant and adapter trained under another rule's name)."""
    r = results.set_index("name")
    return P.root / "students" / (r.loc[name, "same_as"] or name)


def meets_goal(rows, retention: float = GOAL_RETENTION, speedup: float = GOAL_SPEEDUP, ci: bool = False):
    """Whether a row of `results_table` keeps at least `retention` of the teacher's test NDCG@10 (with `ci`: the lower
    end of its CI) at a speed-up of at least `speedup` (chapter 05's goal, C1's); for a frame, one boolean per row."""
    kept = rows["ret_ndcg@10_low" if ci else "ret_ndcg@10"]
    return (kept >= retention) & (rows["speedup"] >= speedup)


def extended_teacher(P: Paths, data, dcfg: DistillConfig, train_cfg, stats: dict, seed: int = 0, device=None):
    """The teacher trained for the students' extra epochs (issue 24): chapter 02's saved teacher trained on with its
    own recipe (`train_cfg`: data, batch, learning rate and schedule, early stopping on validation) for the students'
    budget (`dcfg.epochs`, `dcfg.patience`), saved with `save_pretrained` under `<run>/teacher_extended` and loaded
    back when nothing changed (`lab.train.train_or_load`; its key names the teacher's weights and the data). Retention
    against it is measured against a teacher that had the students' total compute. Returns (model in eval mode,
    train info)."""
    tc = dataclasses.replace(train_cfg, epochs=dcfg.epochs, patience=dcfg.patience)
    model = load_teacher(P, device).train().requires_grad_(True)
    model, _, info = train_or_load(model, data, tc, P.root / "teacher_extended", seed=seed, progress=False,
                                   key={"extends": teacher_key(P.teacher, stats)})
    return model.eval(), info


def control_models(cfg, P: Paths, data, stats: dict, dcfg: DistillConfig, grid: DistillGrid, k: int,
                   seed: int = 0, device=None) -> dict:
    """{distill_per_user.parquet name: (model, train info)} of chapter 05's controls: the k-layer model from scratch
    with the teacher's full recipe (`SCRATCH_FULL`, `lab.bench.depth.scratch_control`: chapter 02 trained it, it is
    loaded) and, where `grid.extended_teacher`, the teacher trained for the students' extra epochs (`EXTENDED`)."""
    out = {SCRATCH_FULL: scratch_control(cfg, P, data, stats, k, seed, device)}
    if grid.extended_teacher:
        out[EXTENDED] = extended_teacher(P, data, dcfg, cfg.train, stats, seed, device)
    return out


def control_per_user(controls: dict, data, batch_size: int = 512) -> pd.DataFrame:
    """Per-user test metrics of the controls (name, user, metrics...), as `distill_per_user.parquet` holds them."""
    return per_user_table({n: m for n, (m, _) in controls.items()}, data, "test", batch_size=batch_size)


def control_summary(per_user: pd.DataFrame, teacher_pu: pd.DataFrame, controls: dict, method: str, best: str,
                    seed: int = 0) -> dict:
    """What chapter 05 records about its controls (issue 24), from per-user test NDCG@10.

    Args:
        per_user: the students' and the controls' per-user test metrics (name, user, metrics...).
        teacher_pu: the teacher's (user, metrics...).
        controls: `control_models`' dict (names and train infos).
        method, best: the method's student (`method_name`) and the best one on validation (`best_student`).

    Returns:
        `scratch_full_*`: the k-layer model from scratch (teacher's recipe): name, epochs, validation and test NDCG@10,
        retention of the teacher with its paired CI, and `method_vs_scratch_full` / `best_vs_scratch_full` (student
        minus it per user: `lab.evaluation.paired_comparison`). `extended_teacher_*`: its epochs, validation and test
        NDCG@10, `extended_vs_teacher` (it minus the teacher per user), and `retention_vs_extended_teacher` ({student:
        retention of the extended teacher's NDCG@10}) with `method_…` / `best_…` scalars and CIs. Keys of a control
        not run are absent.
    """
    wide = per_user.pivot(index="user", columns="name", values="ndcg@10")
    students = [n for n in dict.fromkeys(per_user["name"]) if n not in controls]
    out = {}
    scratch = SCRATCH_FULL
    ret = retention(per_user[per_user["name"] == scratch], teacher_pu, ["ndcg@10"], seed=seed).iloc[0]
    info = controls[scratch][1]
    out.update(scratch_full_name=scratch, scratch_full_epochs=int(info["epochs"]),
               scratch_full_valid_ndcg10=float(info["best_valid_ndcg@10"]),
               scratch_full_test_ndcg10=float(wide[scratch].mean()), scratch_full_retention=float(ret["retention"]),
               scratch_full_retention_ci=[float(ret["ci_low"]), float(ret["ci_high"])],
               method_vs_scratch_full=paired_comparison(wide[method], wide[scratch], seed=seed),
               best_vs_scratch_full=paired_comparison(wide[best], wide[scratch], seed=seed))
    if EXTENDED in controls:
        info = controls[EXTENDED][1]
        t = teacher_pu.set_index("user")["ndcg@10"]
        rv = retention(per_user[per_user["name"].isin(students)], per_user.loc[per_user["name"] == EXTENDED],
                       ["ndcg@10"], seed=seed).set_index("name")
        out.update(extended_teacher_epochs=int(info["epochs"]),
                   extended_teacher_stopped_by=info.get("stopped_by"),
                   extended_teacher_valid_ndcg10=float(info["best_valid_ndcg@10"]),
                   extended_teacher_test_ndcg10=float(wide[EXTENDED].mean()),
                   extended_vs_teacher=paired_comparison(wide[EXTENDED], t.reindex(wide.index), seed=seed),
                   retention_vs_extended_teacher=rv["retention"].astype(float).to_dict(),
                   **{f"{who}_retention_vs_extended_teacher": float(rv.loc[n, "retention"]) for who, n in
                      (("method", method), ("best", best))},
                   **{f"{who}_retention_vs_extended_teacher_ci": [float(rv.loc[n, "ci_low"]),
                                                                  float(rv.loc[n, "ci_high"])]
                      for who, n in (("method", method), ("best", best))})
    return out


def _diff(c: dict) -> str:
    return (f"{c['diff']:+.4f} NDCG@10 per user (95% CI {c['ci_low']:+.4f} to {c['ci_high']:+.4f}, Wilcoxon p "
            f"{c['wilcoxon_p']:.2g})")


def control_sentences(s: dict, method: str, best: str, k: int) -> list[str]:
    """The printed lines about the controls (`control_summary`'s dict): does distillation beat the same k layers
    trained from scratch with the teacher's recipe, and how much of a teacher given the same extra epochs is kept."""
    m, b = s["method_vs_scratch_full"], s["best_vs_scratch_full"]
    verdict = ("better than" if m["clear"] and m["diff"] > 0 else "worse than" if m["clear"] else
               "not distinguishable from")
    lines = [f"The {k}-layer model trained from scratch with the teacher's full recipe ({s['scratch_full_epochs']} "
             f"epochs, no teacher) keeps {s['scratch_full_retention']:.1%} of the teacher's NDCG@10 (95% CI "
             f"{s['scratch_full_retention_ci'][0]:.1%}–{s['scratch_full_retention_ci'][1]:.1%}).",
             f"The method's student ({method}) minus it: {_diff(m)}: distillation is {verdict} training the same "
             f"{k} layers alone on this seed." + ("" if best == method else
                                                  f" The best student on validation ({best}) minus it: {_diff(b)}.")]
    if "extended_teacher_epochs" in s:
        e = s["extended_vs_teacher"]
        lo, hi = s["method_retention_vs_extended_teacher_ci"]
        lines.append(f"The teacher trained {s['extended_teacher_epochs']} more epochs (the students' budget) scores "
                     f"{s['extended_teacher_test_ndcg10']:.4f} on test, {_diff(e)} against the teacher; against it "
                     f"the method's student keeps {s['method_retention_vs_extended_teacher']:.1%} (CI {lo:.1%}–"
                     f"{hi:.1%})" + ("." if best == method else
                                     f" and the best one {s['best_retention_vs_extended_teacher']:.1%}."))
    return lines


def method_sentences(results: pd.DataFrame, method: str, best: str, k: int, L: int, bmax: int,
                     goal: tuple = GOAL) -> list[str]:
    """The printed lines about the goal (C1's): the method's student against it, then the best one on validation."""
    r = results.set_index("name")
    out = []
    for who, n in (("The method's student", method), ("The best student on validation", best)):
        if who != "The method's student" and n == method:
            out.append("The best student on validation is the method's own.")
            continue
        row = r.loc[n]
        met, met_ci = bool(meets_goal(row, *goal)), bool(meets_goal(row, *goal, ci=True))
        out.append(f"{who}, {n} (k = {k} of {L} layers), keeps {row['ret_ndcg@10']:.1%} of the teacher's test "
                   f"NDCG@10 (95% CI {row['ret_ndcg@10_low']:.1%}–{row['ret_ndcg@10_high']:.1%}) at "
                   f"{row['speedup']:.2f}x its throughput (batch {bmax}; {row['speedup_b1']:.2f}x at batch 1): the "
                   f"{goal[0]:.0%} / {goal[1]:g}x goal is " + ("met, the whole CI included." if met_ci else "met on the point estimate only."
                                 if met else "not met."))
    return out


def distillation_record(results: pd.DataFrame, grid: DistillGrid, cfg: DistillConfig, *, k: int,
                        comparisons: pd.DataFrame, ratios: pd.DataFrame, scratch: pd.Series | None, cache: dict,
                        alpha: float, chapter_seconds: float, goal: tuple = GOAL,
                        rule_tests: pd.DataFrame | None = None, method: str | None = None,
                        controls: dict | None = None, teacher_info: dict | None = None) -> dict:
    """The key results chapter 05 records, from its table of students (chapter 05).

    Args:
        results: `results_table`'s frame, one row per student (its name, retention, cost and speed-up columns).
        grid, cfg: the grid that was run (its main rules) and the loss configuration (its layer mapping).
        k: the layer budget.
        comparisons: `variant_comparisons`' family of paired tests (may be empty).
        ratios: `throughput_ratios` of the merged adapter students (columns) against the best setting, per batch.
        scratch: `scratch_retention`'s row for chapter 02's small model, or None when there is none (NaN recorded).
        cache: `time_teacher_cache`'s measurement of the teacher cache.
        alpha: the comparisons' family-wise level; goal: (retention, speed-up) of `meets_goal`, C1's by default.
        chapter_seconds: the chapter's wall time so far.
        rule_tests: `rule_comparisons`' family (Fisher-selected students against every other rule's); None or empty:
            an empty record.
        method: the method's student (default `method_name(results)`).
        controls: `control_summary`'s dict, recorded as it is (None: no controls).
        teacher_info: chapter 02's teacher `train_info.json` (its epochs and whether a budget stopped it).

    Returns:
        {name: value}; per-student values are {student name: value}. The goal is decided for the method's student
        (`method_*`, `goal_met`, `goal_met_ci`); the best student on validation, `best_student(results)`, is a separate
        row (`best_*`, `best_goal_met`); the variant the other rules got is `choose_variant(results, grid)`.
    """
    r = results.set_index("name")
    best_name = best_student(results)
    method = method or method_name(results)
    best, m = r.loc[best_name], r.loc[method]
    retention_goal, speedup_goal = goal
    info = teacher_info or {}
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
        "method_name": method,
        "method_rule": str(m["rule"]),
        "method_variant": str(m["variant"]),
        "method_retention": float(m["ret_ndcg@10"]),
        "method_retention_ci": [float(m["ret_ndcg@10_low"]), float(m["ret_ndcg@10_high"])],
        "method_speedup": float(m["speedup"]),
        "method_speedup_b1": float(m["speedup_b1"]),
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
        "goal": [float(retention_goal), float(speedup_goal)],
        "goal_met": bool(meets_goal(m, retention_goal, speedup_goal)),
        "goal_met_ci": bool(meets_goal(m, retention_goal, speedup_goal, ci=True)),
        "best_goal_met": bool(meets_goal(best, retention_goal, speedup_goal)),
        "best_goal_met_ci": bool(meets_goal(best, retention_goal, speedup_goal, ci=True)),
        "teacher_epochs": info.get("epochs"),
        "teacher_stopped_by": info.get("stopped_by"),
        "teacher_stopped_by_budget": info.get("stopped_by_budget"),
        **(controls or {}),
        "train_seconds": r["total_seconds"].astype(float).to_dict(),
        "train_seconds_total": float(r.loc[r["same_as"] == "", "total_seconds"].sum()),
        "same_as": {n: x for n, x in r["same_as"].items() if x},
        "tpme": r["tpme"].astype(float).to_dict(),
        "trainable_params": r["trainable_params"].astype(int).to_dict(),
        "peak_mem_mb": r["peak_mem_mb"].astype(float).to_dict(),
        "cache": {name: float(v) for name, v in cache.items()},
        "chapter_seconds": chapter_seconds,
    }


def sweep_view(profile: str, seed: int, artefacts=None) -> dict:
    """Chapter 05's view of the compression sweep (issue 27, `lab.bench.sweep`) of every seed of the profile that has
    one: its summary (the curve), tests and headline, and a sentence; when no seed has one, the sentence says how to
    make it. Keys: found (seeds), summary, tests, headline, sentence."""
    from ..bench import sweep as S
    from ..profiles import get_profile

    seeds = sorted({int(seed), *get_profile(profile).seeds})
    table, per_user, found = S.read_sweep(profile, seeds, artefacts)
    if not found:
        return {"found": [], "sentence": f"No compression sweep has run for {profile}: python -m lab sweep "
                                          f"compression --profile {profile} --seeds {seed} makes it (resumable; it "
                                          "distils every rule at every budget, see docs/running.md)."}
    tests = S.sweep_tests(table, per_user)
    h = S.headline(tests)
    where = "pooled over seeds " if (tests["seed"] == -1).any() else "on a seed "
    sentence = (f"Sweep of seed(s) {found}, budgets {sorted(int(k) for k in table['k'].unique())}: "
                + (f"the smallest budget at which a rule's distilled student beats random layer sets ({where}with "
                   f"Holm p < 0.05 within the budget) is k = {h['k']} ({h['comparison']}: {h['diff']:+.4f} NDCG@10, "
                   f"95% CI {h['ci_low']:+.4f} to {h['ci_high']:+.4f})." if h["k"] is not None else
                   f"{h['reason']}: after the same distillation the choice of layers did not matter at any budget "
                   "tried."))
    return {"found": found, "summary": S.sweep_summary(table), "tests": tests, "headline": h, "sentence": sentence}


SWEEP_FIGURE = "05_compression_curves"  # the sweep's curve, as chapter 05 saves it in its run's figure folder


def save_sweep_figure(profile: str, seeds, artefacts=None, batch: int = 256):
    """Issue 27's figure (`lab.viz.compression_curves`: distilled retention against the measured speed-up at `batch`)
    of every seed in `seeds` whose sweep has run, saved as `SWEEP_FIGURE` .png/.svg in the figure folder of the first
    of them: what `python -m lab sweep compression` draws after the sweep, so a reader need not rerun chapter 05.
    Returns the PNG's path, or None when no seed has a sweep."""
    import matplotlib.pyplot as plt

    from ..bench import sweep as S
    from ..book import paths
    from ..viz import compression_curves, save

    table, _, found = S.read_sweep(profile, seeds, artefacts)
    if not found:
        return None
    P = paths(profile, artefacts, found[0])
    fig = compression_curves(S.sweep_summary(table), "ndcg@10", batch=batch)
    fig.axes[0].set_title(f"{profile}, seed(s) {', '.join(map(str, found))}: test NDCG@10 kept vs measured speed-up")
    save(fig, SWEEP_FIGURE, P)
    plt.close(fig)
    return Path(P.figures) / f"{SWEEP_FIGURE}.png"

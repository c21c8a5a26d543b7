"""The compression sweep (issue 27): at which budget does the choice of layers start to matter?

At every budget k (layers kept of the teacher's L), every selection rule's student zero-shot (the teacher's layers as
they are) and after the profile's distillation recipe with one variant (chapter 05's choice on validation), the k-layer
model trained from scratch with the teacher's full recipe (`lab.bench.depth.scratch_control`, the control of
"does distillation help"), and the speed-up over the teacher measured at batch 1 and 256 in one timing run. Anchors
each test one or two budgets without these controls: SLMRec keeps the first n layers (rule "bottom"), ShortGPT /
Gromov et al. drop a block and heal ("block_influence", "angular_block"), Minitron prunes and distils.

`run_sweep` is resumable: a student or scratch model already trained under the run's folder (`<run>/sweep/`) is loaded,
not trained again (`lab.distill.StudentRuns`, `lab.train.train_or_load`). It writes one tidy table,
`compression_sweep.parquet` (one row per seed, k, rule and draw: zero-shot and distilled NDCG@10 / HR@10 on valid and
test, speed-ups, parameters), and the per-user test NDCG@10 behind it, `compression_sweep_per_user.parquet` (seed,
k, rule, draw, stage, user, ndcg@10), the input of `sweep_tests`: per k, paired per-user tests with Holm within the
k — each rule against the mean of the random draws, Fisher against uniform, the best rule on validation against the
model from scratch. `headline` is the smallest k at which a rule's distilled student beats random layer sets.
`python -m lab sweep compression --profile P --seeds 0 1` runs it (`--report`: the tests of the saved tables
only, training nothing) and saves its figure; chapter 05 draws the same figure when the table exists.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..constants import METRICS
from ..evaluation import across_seeds, compare_runs, holm, score_split
from ..io import write_parquet
from ..models import count_parameters
from ..selection import (GreedyValidSearch, evaluate_selections, layers_str, parse_layers, random_selections,
                         select_layers)

__all__ = ["SweepConfig", "default_ks", "run_sweep", "run", "sweep_tests", "headline", "sweep_summary", "TABLE",
           "PER_USER", "report", "keep_other_budgets", "read_sweep", "mechanism_coverage", "coverage_table",
           "coverage_predicts"]

TABLE = "compression_sweep.parquet"  # one row per (seed, k, rule, draw), in every seed's run folder and pooled
PER_USER = "compression_sweep_per_user.parquet"
SWEEP_METRICS = ("ndcg@10", "hr@10")
STAGES = ("zero_shot", "distilled")
SCRATCH = "scratch"  # the rule name of the k-layer model from scratch with the teacher's full recipe
SHARES = (1 / 24, 1 / 12, 1 / 8, 1 / 6, 1 / 4, 1 / 3, 1 / 2)  # the default budgets as shares of L: 1, 2, 3, 4, 6,
# 8, 12 of the default teacher's 24


def default_ks(num_layers: int) -> tuple[int, ...]:
    """The budgets of a teacher of `num_layers` layers: `SHARES` of L rounded, distinct, 1 <= k < L (24 layers: 1, 2,
    3, 4, 6, 8, 12; the smoke teacher's 8: 1, 2, 3, 4)."""
    return tuple(sorted({k for k in (max(1, round(s * num_layers)) for s in SHARES) if k < num_layers}))


@dataclass
class SweepConfig:
    """What the sweep trains (issue 27); the students' budget is the profile's `DistillConfig`."""

    ks: tuple | None = None  # budgets; None: `default_ks` of the teacher
    rules: tuple = ("fisher_topk", "uniform", "top", "bottom", "block_influence", "angular_block", "greedy_valid")
    n_random: int = 3  # random layer sets per k (rule "random", draws 0..n_random-1)
    variant: str | None = None  # the distillation variant; None: chapter 05's choice on validation (its record)
    batch_sizes: tuple = (1, 256)  # the speed-ups reported
    repeats: int = 20  # timing repeats per model and batch size (interleaved, `lab.bench.compact.compare_speed`)
    greedy_users: int = 512  # validation users of greedy_valid's search (one search serves every k)
    scratch: bool = True  # train the k-layer model from scratch with the teacher's full recipe at every k

    @classmethod
    def for_profile(cls, profile: str) -> "SweepConfig":
        """The profile's `sweep` section (`lab.profiles`; {} keeps these defaults)."""
        from ..profiles import profile_config

        return profile_config(cls, profile, "sweep")


def _layer_sets(teacher, data, importance, k: int, cfg: SweepConfig, search, seed: int) -> list[tuple]:
    """(rule, draw, layers) of every rule at budget k; random draws seeded by (seed, k)."""
    L = teacher.num_layers
    sets = [(rule, 0, select_layers(importance, k, rule, model=teacher, data=data, search=search, seed=seed))
            for rule in cfg.rules]
    sets += [("random", d, layers) for d, layers in
             enumerate(random_selections(L, k, cfg.n_random, seed=1000 * seed + k))]
    return sets


def _scores(model, data, batch_size: int) -> tuple[dict, pd.DataFrame]:
    """Validation and test means of `SWEEP_METRICS` and the per-user test NDCG@10 of one model."""
    row = {}
    for split in ("valid", "test"):
        means, pu = score_split(model, data, split, batch_size=batch_size)
        row.update({f"{split}_{m}": float(means[m]) for m in SWEEP_METRICS})
        if split == "test":
            users = pd.DataFrame({"user": pu["user"].to_numpy(), "ndcg@10": pu["ndcg@10"].to_numpy()})
    return row, users


def run_sweep(profile: str, seed: int = 0, cfg: SweepConfig | None = None, artefacts=None,
              progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sweep on one seed's run (its chapters 02, 03 and 05 must have run: the teacher, the importance table and
    the chosen variant); returns and writes (table, per-user frame) under the run's folder. Resumable."""
    from ..book import load_importance, load_teacher, paths, results
    from ..data import load_rec_data
    from ..distill import DistillConfig, StudentRuns, freeze_teacher, teacher_key
    from ..profiles import get_config
    from ..console import progress_bar
    from .depth import scratch_control

    cfg = cfg or SweepConfig.for_profile(profile)
    P = paths(profile, artefacts, seed)
    book = get_config(profile, seed)
    data, _, stats = load_rec_data(book.data, P, seed=seed, progress=False)
    teacher = freeze_teacher(load_teacher(P))
    importance = load_importance(P)
    variant = cfg.variant or results(profile, artefacts, seed).get("05_distillation", {}).get("best_variant")
    if not variant:
        raise FileNotFoundError(f"chapter 05 of {profile} seed {seed} recorded no best_variant; run "
                                f"python -m lab book --profile {profile} --seed {seed} --only 05, or pass --variant")
    L = teacher.num_layers
    ks = tuple(cfg.ks or default_ks(L))
    dcfg = DistillConfig.for_profile(profile)
    runs = StudentRuns(teacher, data, dcfg, book.train, P.root / "sweep", importance=importance, seed=seed,
                       key=teacher_key(P.teacher, stats))
    search = GreedyValidSearch(teacher, data, cfg.greedy_users, seed) if "greedy_valid" in cfg.rules else None
    bs = book.train.eval_batch_size
    rows, users = [], []
    teacher_row, teacher_users = _scores(teacher, data, bs)
    rows.append({"k": L, "rule": "teacher", "draw": 0, "layers": layers_str(range(L)),
                 "params": count_parameters(teacher),
                 **{f"zero_shot_{c}": v for c, v in teacher_row.items()},
                 **{f"distilled_{c}": v for c, v in teacher_row.items()}})
    users += [teacher_users.assign(k=L, rule="teacher", draw=0, stage=s) for s in STAGES]
    bar = progress_bar(ks, enabled=progress, desc=f"sweep {profile} seed {seed}")
    for k in bar:
        sets = _layer_sets(teacher, data, importance, k, cfg, search, seed)
        plan = pd.DataFrame({"layers": [layers_str(layers) for *_, layers in sets]})
        zs, zs_users = evaluate_selections(teacher, data, plan, metrics=SWEEP_METRICS, batch_size=bs,
                                           per_user="ndcg@10")  # each distinct layer set scored once
        for (rule, draw, layers), z in zip(sets, zs.to_dict("records")):
            name = f"k{k}_{rule}#{draw}:{variant}"
            model = runs.train(name, rule, draw, layers, variant, verbose=False)  # scores it on test, per user
            trained, kd_users = runs.rows[-1], runs.per_user[-1]
            valid = score_split(model.eval(), data, "valid", batch_size=bs)[0]
            rows.append({"k": k, "rule": rule, "draw": draw, "layers": z["layers"],
                         "student": trained["same_as"] or name,  # its folder under sweep/students: a set two rules
                         "params": count_parameters(model),      # share is trained once
                         **{f"zero_shot_{c}": z[c] for c in z if c != "layers"},
                         **{f"distilled_valid_{m}": float(valid[m]) for m in SWEEP_METRICS},
                         **{f"distilled_test_{m}": float(trained[f"test_{m}"]) for m in SWEEP_METRICS}})
            users += [zs_users[zs_users["layers"] == z["layers"]].rename(columns={"test_ndcg@10": "ndcg@10"})
                      .drop(columns="layers").assign(k=k, rule=rule, draw=draw, stage="zero_shot"),
                      kd_users[["user", "ndcg@10"]].assign(k=k, rule=rule, draw=draw, stage="distilled")]
        if cfg.scratch:
            model, _ = scratch_control(book, P, data, stats, k, seed=seed)
            sc, sc_users = _scores(model, data, bs)
            rows.append({"k": k, "rule": SCRATCH, "draw": 0, "layers": "", "params": count_parameters(model),
                         **{f"distilled_{c}": v for c, v in sc.items()}})
            users.append(sc_users.assign(k=k, rule=SCRATCH, draw=0, stage="distilled"))
    speed = _speedups(teacher, ks, cfg, data)
    table = pd.DataFrame(rows).assign(profile=profile, seed=seed, variant=variant)
    table = table.merge(speed, on="k", how="left")
    per_user = pd.concat(users, ignore_index=True).assign(seed=seed)
    table, per_user = keep_other_budgets(P, table, per_user)
    write_parquet(P.file(TABLE), table)
    write_parquet(P.file(PER_USER), per_user)
    return table, per_user


def keep_other_budgets(P, table: pd.DataFrame, per_user: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`table` and `per_user` (one call's budgets) with the rows of the other budgets of the run's saved sweep added,
    when they were distilled with the same variant: `--ks 3 8` after `--ks 1 2 4 6` leaves one table of six budgets,
    not two. Rows of another variant are dropped with a warning naming them (their students stay on disk)."""
    import warnings

    if not (P.file(TABLE).is_file() and P.file(PER_USER).is_file()):
        return table, per_user
    old, old_users = pd.read_parquet(P.file(TABLE)), pd.read_parquet(P.file(PER_USER))
    other = ~old["k"].isin(table["k"].unique())  # the teacher's row (k = L) is always this call's
    variant = table["variant"].iloc[0]
    stale = old[other & (old["variant"] != variant)]
    if len(stale):
        ks = sorted(int(k) for k in stale["k"].unique())
        warnings.warn(f"{P.file(TABLE)}: budgets {ks} were distilled with variant {stale['variant'].iloc[0]!r}, not "
                      f"{variant!r}; they leave the table (run them again)")
    kept = old[other & (old["variant"] == variant)]
    users = old_users[old_users["k"].isin(kept["k"].unique())]
    return (pd.concat([table, kept], ignore_index=True),  # this call's rows first, in its order
            pd.concat([per_user, users], ignore_index=True))


def _speedups(teacher, ks, cfg: SweepConfig, data) -> pd.DataFrame:
    """The teacher against one student per k (uniform layers: the speed of a k-layer student does not depend on which
    layers it kept), timed in one run: a column `speedup_b<batch>` per batch size, one row per k."""
    from .compact import compact_students, compare_speed, random_histories

    L = teacher.num_layers
    models = compact_students(teacher, ks)  # {"teacher", "k=1", ...}: uniform layers
    hist = random_histories(data.num_items, data.max_len, max(cfg.batch_sizes), seed=0)
    t = compare_speed(models, hist, batch_sizes=cfg.batch_sizes, repeats=cfg.repeats, memory=False)
    t["k"] = t["model"].map(lambda m: L if m == "teacher" else int(m.split("=")[1]))
    wide = t.pivot(index="k", columns="batch", values="speedup")
    wide.columns = [f"speedup_b{b}" for b in wide.columns]
    return wide.reset_index().assign(load_avg=float(t["load_avg"].iloc[0]))


def read_sweep(profile: str, seeds, artefacts=None) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """(table, per-user frame, seeds found) of the seeds whose sweep has run; empty frames when none has."""
    from ..book import paths

    tables, users, found = [], [], []
    for s in seeds:
        P = paths(profile, artefacts, s, create=False)
        if P.file(TABLE).is_file() and P.file(PER_USER).is_file():
            tables.append(pd.read_parquet(P.file(TABLE)))
            users.append(pd.read_parquet(P.file(PER_USER)))
            found.append(int(s))
    if not found:
        return pd.DataFrame(), pd.DataFrame(), []
    return pd.concat(tables, ignore_index=True), pd.concat(users, ignore_index=True), found


# ---- the tests ----------------------------------------------------------------------------------------------------
def _comparisons(table: pd.DataFrame, seed: int, k: int) -> list[tuple[str, str, str]]:
    """(label, rule a, rule b) compared at one k on one seed: every rule vs random, fisher vs uniform, the best rule on
    validation (distilled) vs scratch (label "best - scratch", the rule in column a)."""
    t = table[(table["seed"] == seed) & (table["k"] == k)]
    rules = [r for r in dict.fromkeys(t["rule"]) if r not in ("random", SCRATCH, "teacher")]
    out = [(f"{r} - random", r, "random") for r in rules] if "random" in set(t["rule"]) else []
    if {"fisher_topk", "uniform"} <= set(rules):
        out.append(("fisher_topk - uniform", "fisher_topk", "uniform"))
    if SCRATCH in set(t["rule"]) and rules:
        named = t[t["rule"].isin(rules)]
        best = str(named.loc[named["distilled_valid_ndcg@10"].idxmax(), "rule"])
        out.append(("best - scratch", best, SCRATCH))  # one label whichever rule is best, so seeds pool
    return out


def sweep_tests(table: pd.DataFrame, per_user: pd.DataFrame, stage: str = "distilled", alpha: float = 0.05,
                n_boot: int = 1000) -> pd.DataFrame:
    """Per seed and k, the paired per-user comparisons of `_comparisons` on test NDCG@10 (`compare_runs`: each user's
    mean over a rule's draws, bootstrap CI, Wilcoxon p), Holm within the k; with two or more seeds also one row per k
    and comparison pooled across seeds (the per-seed mean differences, t across seeds, Holm within the k), seed = -1.
    Columns: seed, k, comparison, a, b, diff, ci_low, ci_high, p, p_holm, clear (diff's sign clear at Holm p < alpha)."""
    rows = []
    for (seed, k), _ in table[table["rule"] != "teacher"].groupby(["seed", "k"]):
        at = per_user[(per_user["seed"] == seed) & (per_user["k"] == k)]
        runs = at[(at["stage"] == stage) | (at["rule"] == SCRATCH)].rename(columns={"rule": "name"})  # scratch:
        for label, a, b in _comparisons(table, seed, k):  # trained only; random: its draws averaged per user
            c = compare_runs(runs, [a], [b], "ndcg@10", n_boot=n_boot, seed=int(seed))
            rows.append({"seed": int(seed), "k": int(k), "comparison": label, "a": a, "b": b, "diff": c["diff"],
                         "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p": c["wilcoxon_p"]})
    out = pd.DataFrame(rows)
    if not len(out):
        return out
    seeds = sorted(out["seed"].unique())
    if len(seeds) >= 2:
        pooled = []
        for (k, label), g in out.groupby(["k", "comparison"], sort=False):
            if g["seed"].nunique() < 2:
                continue
            s = across_seeds(g["diff"])
            a = g["a"].iloc[0] if g["a"].nunique() == 1 else "best"  # the best rule may differ between seeds
            pooled.append({"seed": -1, "k": k, "comparison": label, "a": a, "b": g["b"].iloc[0],
                           "diff": s["estimate"], "ci_low": s["ci_low"], "ci_high": s["ci_high"], "p": s["p"]})
        out = pd.concat([out, pd.DataFrame(pooled)], ignore_index=True)
    out["p_holm"] = np.nan
    for _, idx in out.groupby(["seed", "k"]).groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p"].to_numpy(float))
    out["clear"] = out["p_holm"] < alpha
    return out


def headline(tests: pd.DataFrame) -> dict:
    """The smallest k at which some rule's distilled student beats the random layer sets (diff > 0, Holm p < alpha),
    read from the pooled rows when there are (seed -1), else from each seed; with the comparison's difference and CI.
    {"k": None, ...} when no k does."""
    if not len(tests):
        return {"k": None, "reason": "no sweep tests"}
    pooled = tests[tests["seed"] == -1]
    t = pooled if len(pooled) else tests
    wins = t[t["comparison"].str.endswith("- random") & t["clear"] & (t["diff"] > 0)].sort_values(["k", "p_holm"])
    if not len(wins):
        return {"k": None, "seeds": "pooled" if len(pooled) else "each",
                "reason": "no rule beats random layer sets at any k with Holm p < 0.05"}
    w = wins.iloc[0]
    return {"k": int(w["k"]), "comparison": w["comparison"], "diff": float(w["diff"]), "ci_low": float(w["ci_low"]),
            "ci_high": float(w["ci_high"]), "p_holm": float(w["p_holm"]), "seed": int(w["seed"])}


def sweep_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per k and rule (random: the mean over draws), the mean over seeds of test NDCG@10 zero-shot and distilled, its
    retention (of the teacher's of the same seed) and the measured speed-ups: the curve of chapter 05's figure."""
    t = table.merge(sweep_summary_rows(table), on=["seed", "k", "rule", "draw"], how="left")
    cols = [c for c in t.columns if c.endswith(("retention", "test_ndcg@10", "test_hr@10")) or c.startswith("speedup")]
    return t.groupby(["k", "rule"], as_index=False)[cols].mean()


def run(profile: str, seeds=(0,), artefacts=None, ks=None, rules=None, n_random=None, variant=None,
        scratch: bool = True, train: bool = True) -> dict:
    """`python -m lab sweep compression`: `run_sweep` on every seed (resumable; skipped with `train=False`, the CLI's
    `--report`), then `report` over the seeds that have a sweep; a JSON-able summary (CPU seconds of this call
    included)."""
    import time

    cfg = dataclasses.replace(SweepConfig.for_profile(profile), variant=variant, scratch=scratch,
                              **({"ks": tuple(ks)} if ks else {}), **({"rules": tuple(rules)} if rules else {}),
                              **({"n_random": int(n_random)} if n_random is not None else {}))
    t0, c0 = time.time(), time.process_time()
    for s in seeds if train else ():
        run_sweep(profile, int(s), cfg, artefacts)
    out = report(profile, seeds, artefacts)
    return {**out, "wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}


def report(profile: str, seeds, artefacts=None) -> dict:
    """The sweep's tests, headline and planted-mechanism check over the seeds whose sweep has run; raises
    FileNotFoundError naming the command when none has. (Its figure: `lab.chapters.c05_distillation.save_sweep_figure`,
    which the command line calls after it.)"""
    table, per_user, found = read_sweep(profile, seeds, artefacts)
    if not found:
        raise FileNotFoundError(f"no compression sweep of {profile} for seeds {list(seeds)}: run python -m lab sweep "
                                f"compression --profile {profile} --seeds {' '.join(map(str, seeds))}")
    tests = sweep_tests(table, per_user)
    cov = coverage_table(table, probe_accuracies(profile, found, artefacts))
    return {"profile": profile, "seeds": found, "ks": sorted(int(k) for k in table["k"].unique()),
            "headline": headline(tests), "mechanisms": coverage_predicts(cov) if len(cov) else None,
            "rows": int(len(table))}


def probe_accuracies(profile: str, seeds, artefacts=None) -> dict:
    """{seed: chapter 03's probe accuracies} of the seeds whose chapter 03 probed planted variables (the depth
    world); real data and the shallow world have none."""
    from ..book import paths
    from ..fisher.probes import PROBE_FILE, load_probes

    out = {}
    for s in seeds:
        P = paths(profile, artefacts, s, create=False)
        if P.file(PROBE_FILE).is_file():
            out[int(s)] = load_probes(P).accuracy
    return out


# ---- the planted mechanisms (depth world) -------------------------------------------------------------------------
def mechanism_coverage(layers, accuracy: pd.DataFrame) -> dict[str, float]:
    """Per planted variable (chapter 03's probe accuracies, `lab.fisher.probes.ProbeResult.accuracy`: index layer_idx
    -1..L-1, a column per variable), the share of its probe's accuracy build-up (the positive per-layer gains,
    `lab.fisher.probes.probe_gains`) that happens in the kept `layers`; `mean` over the variables. 1: the set keeps
    every layer where the probes find the variable being computed; NaN for a variable no layer builds up."""
    from ..fisher.probes import probe_gains

    gains = probe_gains(accuracy).drop(columns="total").clip(lower=0)  # (L, V)
    kept = gains.index.isin([int(i) for i in layers])
    total = gains.sum()
    out = {v: float(gains.loc[kept, v].sum() / total[v]) if total[v] > 0 else float("nan") for v in gains.columns}
    out["mean"] = float(np.nanmean(list(out.values()))) if any(x == x for x in out.values()) else float("nan")
    return out


def coverage_table(table: pd.DataFrame, accuracy_by_seed: dict) -> pd.DataFrame:
    """`mechanism_coverage` of every layer set of the sweep (rules and random draws, not scratch or the teacher),
    beside its distilled and zero-shot test NDCG@10 retention: seed, k, rule, draw, coverage columns."""
    t = table[~table["rule"].isin(["teacher", SCRATCH])]
    rows = []
    for r in t.itertuples(index=False):
        acc = accuracy_by_seed.get(r.seed)
        if acc is None:
            continue
        rows.append({"seed": r.seed, "k": r.k, "rule": r.rule, "draw": r.draw,
                     **{f"coverage_{v}": c for v, c in mechanism_coverage(parse_layers(r.layers), acc).items()}})
    cov = pd.DataFrame(rows)
    if not len(cov):
        return cov
    summ = sweep_summary_rows(table)
    return cov.merge(summ, on=["seed", "k", "rule", "draw"], how="left")


def sweep_summary_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Each row's retention of its seed's teacher (test NDCG@10), zero-shot and distilled, unaveraged."""
    t = table.copy()
    teacher = t[t["rule"] == "teacher"].set_index("seed")["distilled_test_ndcg@10"]
    for stage in (s for s in STAGES if f"{s}_test_ndcg@10" in t):
        t[f"{stage}_retention"] = t[f"{stage}_test_ndcg@10"] / t["seed"].map(teacher)
    return t[["seed", "k", "rule", "draw", *[c for c in t.columns if c.endswith("_retention")]]]


def coverage_predicts(cov: pd.DataFrame, stage: str = "distilled") -> dict:
    """Does keeping the planted mechanisms predict quality? Spearman's rho between `coverage_mean` and the stage's
    retention within each k (the layer sets of one budget), and their mean over the ks weighted by the sets per k;
    the p of each k's rho (scipy). {"by_k": {k: (rho, p, n)}, "rho": weighted mean}."""
    from scipy.stats import spearmanr

    by_k = {}
    for k, g in cov.groupby("k"):
        g = g.dropna(subset=["coverage_mean", f"{stage}_retention"])
        if len(g) >= 4 and g["coverage_mean"].nunique() > 1 and g[f"{stage}_retention"].nunique() > 1:
            r = spearmanr(g["coverage_mean"], g[f"{stage}_retention"])
            by_k[int(k)] = (float(r.statistic), float(r.pvalue), int(len(g)))
    n = sum(v[2] for v in by_k.values())
    return {"by_k": by_k, "rho": float(sum(v[0] * v[2] for v in by_k.values()) / n) if n else float("nan")}

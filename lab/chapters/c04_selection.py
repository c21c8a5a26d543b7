"""Chapter 04's glue: every rule's layers at every budget (the grid), the rule table at the headline budget with each
rule's per-user paired test against the mean of the random draws (Holm over the rules), the choice on validation,
the signals against the single-layer ablation drop, the sentences the chapter prints and what it records. The rules,
the greedy validation search and the zero-shot evaluation live in `lab.selection`, the statistics in
`lab.evaluation`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data import RecData
from ..evaluation import holm_family, paired_comparison, spearman_ci
from ..fisher.tables import default_norm, importance_vector
from ..models import SeqRecModel
from ..selection import (FISHER_SIGNALS, GreedyValidSearch, SelectionConfig, budgets, layers_str, random_selections,
                         select_layers)

__all__ = ["chapter_budgets", "selection_plan", "rule_table", "ablation_reference", "signal_spearman",
           "paired_vs_random", "RuleReport", "rule_report", "share_beaten", "mean_by_k", "selection_summary",
           "fisher_sentence", "budgets_sentence", "random_sentence", "greedy_sentence", "spearman_sentences",
           "speed_sentences", "selection_record"]


def chapter_budgets(num_layers: int, cfg: SelectionConfig) -> tuple[list[int], int]:
    """(the budgets k < L chapter 04 evaluates: `budgets(L, cfg.k_divisors, cfg.extra_budgets)`, the headline budget:
    the one nearest L/4, the smaller on a tie)."""
    ks = [k for k in budgets(num_layers, cfg.k_divisors, cfg.extra_budgets) if k < num_layers]
    return ks, min(ks, key=lambda k: abs(k - num_layers / 4))


# -- the grid: every rule at every budget ------------------------------------------------------------------------------
def selection_plan(importance: pd.DataFrame, teacher: SeqRecModel, data: RecData, ks, cfg: SelectionConfig,
                   seed: int = 0, search: GreedyValidSearch | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every rule's layers at every budget (chapter 04): a tidy frame (rule, k, draw, signal, norm, layers) and notes.

    `search` is the greedy validation search to read "greedy_valid" from (default: a new one with `cfg.greedy_users`
    users and `seed`); pass the chapter's own to reuse its path afterwards.

    "fisher_topk" uses `cfg.fisher_signal`/`cfg.fisher_norm`; every other Fisher estimator and normalisation in the
    table appears as "fisher_topk[signal/norm]". Rules whose signal is missing from the table are skipped, with a note.
    """
    L = teacher.num_layers
    notes: list[str] = []
    signals = set(importance["signal"])
    fisher = [(s, n) for s in FISHER_SIGNALS if s in signals
              for n in sorted(importance.loc[importance["signal"] == s, "norm"].unique())]
    default = (cfg.fisher_signal, cfg.fisher_norm)
    if fisher and default not in fisher:
        notes.append(f"{default[0]}/{default[1]} is not in the importance table; fisher_topk uses "
                     f"{fisher[0][0]}/{fisher[0][1]}")
        default = fisher[0]
    rows = []

    def add(rule, k, layers, draw=0, signal="", norm=""):
        rows.append({"rule": rule, "k": int(k), "draw": int(draw), "signal": signal, "norm": norm,
                     "layers": layers_str(layers)})

    if search is None:
        search = GreedyValidSearch(teacher, data, cfg.greedy_users, seed)
    for k in ks:
        if fisher:
            add("fisher_topk", k, select_layers(importance, k, "fisher_topk", signal=default[0], norm=default[1]),
                signal=default[0], norm=default[1])
            add("fisher_topk_ends", k, select_layers(importance, k, "fisher_topk_ends", signal=default[0],
                                                     norm=default[1]), signal=default[0], norm=default[1])
        for rule in ("uniform", "top", "bottom"):
            add(rule, k, select_layers(L, k, rule))
        add("angular_block", k, select_layers(L, k, "angular_block", model=teacher, data=data),
            signal="angular_block_distance", norm="raw")
        for rule in ("block_influence", "magnitude"):
            if rule in signals:
                add(rule, k, select_layers(importance, k, rule), signal=rule, norm=default_norm(importance, rule))
        add("greedy_valid", k, search.select(k), signal=f"greedy valid ndcg@10 ({len(search.history)} users)")
        for d, layers in enumerate(random_selections(L, k, cfg.random_draws, seed)):
            add("random", k, layers, draw=d)
        for s, n in fisher:
            if (s, n) != default:
                add(f"fisher_topk[{s}/{n}]", k, select_layers(importance, k, "fisher_topk", signal=s, norm=n),
                    signal=s, norm=n)
    notes += [f"{r} is not in the importance table; that rule is skipped" for r in ("block_influence", "magnitude")
              if r not in signals]
    if not fisher:
        notes.append(f"no Fisher signal ({', '.join(FISHER_SIGNALS)}) in the importance table; Fisher rules skipped")
    add("teacher", L, list(range(L)))
    return pd.DataFrame(rows), notes


def rule_table(sel: pd.DataFrame, k: int, metric: str = "ndcg@10") -> pd.DataFrame:
    """One row per rule at budget k (chapter 04): layers, valid_<metric>, test_<metric> and the number of draws.

    Deterministic rules have one row each in `sel`; "random" becomes the mean over its draws (layers ""). The teacher
    row is left out. Chapter 04 chooses on the valid column and only reports the test one.
    """
    d = sel[(sel["k"] == k) & (sel["rule"] != "teacher")]
    cols = [f"valid_{metric}", f"test_{metric}"]
    t = d.groupby("rule")[cols].mean()
    t.insert(0, "layers", d.groupby("rule")["layers"].first())
    t["draws"] = d.groupby("rule").size()
    if "random" in t.index:
        t.loc["random", "layers"] = ""
    return t


def selection_summary(sel: pd.DataFrame) -> pd.DataFrame:
    """Mean, SD and count of the test NDCG@10 of every rule (rows) at every budget (columns), the teacher left out
    (chapter 04's table of zero-shot quality)."""
    return (sel[sel.rule != "teacher"].groupby(["rule", "k"])["test_ndcg@10"]
            .agg(["mean", "std", "count"]).unstack("k"))


# -- the signals against the single-layer ablation ---------------------------------------------------------------------
def ablation_reference(importance: pd.DataFrame, search: GreedyValidSearch) -> tuple[np.ndarray, str]:
    """The single-layer ablation drop chapter 04 judges the importance signals against, and where it comes from.

    Chapter 03's `ablation_drop` rows when its table has them: `lab.importance.ablation_drop` on this run's
    validation users (the same data, `subsample_valid`'s users), so they are reused, not recomputed. Otherwise the same
    function on the greedy validation search's users (`GreedyValidSearch.single_layer_drops`).  # (L,)
    """
    L = search.model.num_layers
    if "ablation_drop" in set(importance["signal"]):
        return importance_vector(importance, "ablation_drop", num_layers=L), "chapter 03's ablation_drop"
    return (search.single_layer_drops(),
            f"the greedy validation search's first step ({len(search.history)} validation users)")


def signal_spearman(importance: pd.DataFrame, ablation, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Spearman of every signal/norm of chapter 03's table against the ablation drop, with a bootstrap CI over layers
    (NaN for a signal that is constant over layers): signal, norm, spearman, ci_low, ci_high, best first
    (chapter 04)."""
    rows = []
    for (signal, norm), g in importance[importance.signal != "ablation_drop"].groupby(["signal", "norm"]):
        v = g.sort_values("layer_idx")["value"].to_numpy()
        rho, lo, hi = spearman_ci(v, ablation, n_boot=n_boot, seed=seed) if np.ptp(v) > 0 else (np.nan,) * 3
        rows.append({"signal": signal, "norm": norm, "spearman": rho, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows).sort_values("spearman", ascending=False, na_position="last").reset_index(drop=True)


# -- the rules against the random draws, per user ----------------------------------------------------------------------
def _verdict(test: dict) -> str:
    """"better" / "worse" than the random mean when the test rejects (`holm_family`'s `clear`: CI excludes 0 and the
    Holm-adjusted Wilcoxon p < alpha), else "cannot tell"."""
    if not test["clear"]:
        return "cannot tell"
    return "better" if test["diff"] > 0 else "worse"


def paired_vs_random(sel: pd.DataFrame, users: pd.DataFrame, k: int, rules, alpha: float = 0.05,
                    metric: str = "test_ndcg@10", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each rule's zero-shot student against the mean over the random draws at budget k, paired by test user
    (chapter 04): for each user the rule's `metric` minus the mean of the draws' (`lab.evaluation.paired_comparison`:
    bootstrap CI of the mean difference, Wilcoxon p), Holm-adjusted over `rules` (`lab.evaluation.holm_family`).

    Users are the unit: the test asks whether this rule's layer set beats the average random layer set on these
    users, the draws being held fixed (their own spread over layer sets is not in the CI). Unlike the empirical p of
    a rule among the draws, whose floor is 1/(draws + 1), it can reject with few draws.

    Args:
        sel: `evaluate_selections`' frame; users: its per-user frame (layers, user, `metric`).
        rules: the rules tested together (one Holm family).
    Returns:
        a frame indexed by rule: diff, ci_low, ci_high, wilcoxon_p, holm_p, n_users, clear, verdict.
    """
    wide = users.pivot_table(index="user", columns="layers", values=metric)  # (users, layer sets)
    at = sel[sel.k == k]
    draws = at.loc[at.rule == "random", "layers"]
    rnd = wide[draws.to_list()].mean(axis=1).to_numpy()  # (users,) the mean over the draws (repeats count)
    rows = [paired_comparison(wide[at.loc[at.rule == r, "layers"].iloc[0]].to_numpy(), rnd, n_boot=n_boot,
                              seed=seed) for r in rules]
    out = pd.DataFrame(holm_family(rows, alpha=alpha), index=list(rules))
    out["verdict"] = [_verdict(t) for t in out.to_dict("records")]
    return out[["diff", "ci_low", "ci_high", "wilcoxon_p", "holm_p", "n_users", "clear", "verdict"]]


@dataclass
class RuleReport:
    """The rules at one budget k, chosen on validation and reported on test (`rule_report`, chapter 04)."""

    k: int  # the budget
    table: pd.DataFrame  # one row per rule: layers, valid_/test_<metric>, draws, and the main rules' test columns
    tests: pd.DataFrame  # the main rules against the random mean per user (`paired_vs_random`)
    random_valid: pd.Series  # validation metric of each random draw
    random_test: pd.Series  # test metric of each random draw
    main: list  # the rules tested together: all but "random" and the fisher_topk[signal/norm] variants
    best_rule: str  # the best rule on validation among those that do not look at the metric
    best_valid: float
    best_test: float
    greedy_valid: float  # the greedy validation search (a reference, not a candidate)
    greedy_test: float
    above_greedy: list  # candidate rules above the greedy search on test
    alpha: float = 0.05  # the level of the Holm-adjusted tests


def rule_report(sel: pd.DataFrame, users: pd.DataFrame, k: int, alpha: float = 0.05, metric: str = "ndcg@10",
                n_boot: int = 1000, seed: int = 0) -> RuleReport:
    """Chapter 04's evaluation of the rules at budget k from `evaluate_selections`' frame and its per-user frame:
    the rule table (`rule_table`), the main rules' per-user paired tests against the mean of the random draws with
    Holm's adjustment (`paired_vs_random`), the best rule chosen on validation (not "random", not "greedy_valid")
    with its test value, and the greedy validation search beside it."""
    v, t = f"valid_{metric}", f"test_{metric}"
    q = sel[(sel.k == k) & (sel.rule == "random")]
    tab = rule_table(sel, k, metric)
    main = [r for r in tab.index if r != "random" and "[" not in r]
    tests = paired_vs_random(sel, users, k, main, alpha=alpha, metric=t, n_boot=n_boot, seed=seed)
    tab = tab.join(tests[["diff", "holm_p", "verdict"]].rename(columns={"diff": "minus_random"}))
    candidates = tab.drop(index=["random", "greedy_valid"])
    best = str(candidates[v].idxmax())
    greedy_valid, greedy_test = (float(x) for x in tab.loc["greedy_valid", [v, t]])
    return RuleReport(k=k, table=tab, tests=tests, random_valid=q[v], random_test=q[t], main=main, best_rule=best,
                      best_valid=float(candidates.loc[best, v]), best_test=float(candidates.loc[best, t]),
                      greedy_valid=greedy_valid, greedy_test=greedy_test,
                      above_greedy=[r for r in candidates.index if candidates.loc[r, t] > greedy_test], alpha=alpha)


def share_beaten(null, value: float) -> float:
    """The share of the null draws below `value`, ties counting half (chapter 04: how many random layer sets a rule
    beats); NaN for a value that is not finite."""
    z = np.asarray(null, dtype=float)
    return float((z < value).mean() + 0.5 * (z == value).mean()) if np.isfinite(value) else np.nan


def mean_by_k(sel: pd.DataFrame, rules, metric: str = "test_ndcg@10") -> pd.DataFrame:
    """Mean `metric` of each rule (columns) at each budget k (rows); random: the mean over its draws (chapter 04)."""
    return sel[sel.rule.isin(list(rules))].groupby(["k", "rule"])[metric].mean().unstack("rule")


# -- the sentences the chapter prints ----------------------------------------------------------------------------------
def _test_txt(t) -> str:
    return (f"{t['diff']:+.4f} per user, 95% CI {t['ci_low']:+.4f} to {t['ci_high']:+.4f}, Wilcoxon p "
            f"{t['wilcoxon_p']:.3g}")


def fisher_sentence(rep: RuleReport, teacher_ndcg: float, L: int) -> str:
    """Fisher top-k at the headline budget against the random mean (its paired test, Holm over the rules) and the
    share of random draws it beats (chapter 04); "" without a Fisher rule."""
    if "fisher_topk" not in rep.tests.index:
        return ""
    t, rnd = rep.tests.loc["fisher_topk"], rep.random_test
    q = float(rep.table.loc["fisher_topk", "test_ndcg@10"])
    word = {"better": "better than", "worse": "worse than", "cannot tell": "not distinguishable from"}[t["verdict"]]
    return (f"At k = {rep.k} of {L} layers (zero-shot, test NDCG@10; teacher {teacher_ndcg:.4f}): Fisher top-k "
            f"reaches {q:.4f} ({q / max(teacher_ndcg, 1e-12):.0%} of the teacher), {word} the mean of the "
            f"{len(rnd)} random selections ({rnd.mean():.4f} ± {rnd.std():.4f}; {_test_txt(t)}, Holm "
            f"{t['holm_p']:.3g}); it beats {share_beaten(rnd, q):.0%} of the draws.")


def budgets_sentence(per_k: pd.DataFrame, ks) -> str:
    """At how many budgets Fisher top-k's mean is above the random mean and above uniform spacing (chapter 04); a
    description, not a test; "" without a Fisher rule."""
    if "fisher_topk" not in per_k:
        return ""
    return (f"- Across the budgets k = {list(ks)}, Fisher top-k is above the random mean at "
            f"{int((per_k['fisher_topk'] > per_k['random']).sum())} of {len(per_k)} and above uniform spacing at "
            f"{int((per_k['fisher_topk'] > per_k['uniform']).sum())} of {len(per_k)} (means, not tests).")


def random_sentence(rep: RuleReport) -> str:
    """The main rules against the mean of the random draws, per user with Holm: which are better, worse, and for
    which the test cannot tell (chapter 04). A rule the test cannot separate is reported as "cannot tell", never as
    "no better than random"."""
    t = rep.tests
    by = {v: [r for r in t.index if t.loc[r, "verdict"] == v] for v in ("better", "worse", "cannot tell")}
    n_users = int(t["n_users"].iloc[0])
    lines = [f"- Against the mean of the {len(rep.random_test)} random draws, paired over {n_users} test users "
             f"(bootstrap CI and Wilcoxon p of the per-user difference, Holm over {len(t)} rules, level "
             f"{rep.alpha}): better than random: {', '.join(by['better']) or 'none'}; worse: "
             f"{', '.join(by['worse']) or 'none'}; cannot tell: {', '.join(by['cannot tell']) or 'none'}."]
    lines += [f"  {r}: {_test_txt(t.loc[r])}, Holm {t.loc[r, 'holm_p']:.3g} → {t.loc[r, 'verdict']}"
              for r in t.sort_values("diff", ascending=False).index]
    return "\n".join(lines)


def greedy_sentence(rep: RuleReport) -> str:
    """The best rule chosen on validation beside the greedy validation search, on both splits (chapter 04)."""
    best, bv, bt, gv, gt = rep.best_rule, rep.best_valid, rep.best_test, rep.greedy_valid, rep.greedy_test
    return (f"- The best rule that does not look at the metric, chosen on validation, is {best} (validation "
            f"{bv:.4f}, test {bt:.4f}). The greedy validation search reaches validation {gv:.4f}, test {gt:.4f}: "
            f"greedy_valid − {best} = {gt - bt:+.4f} on test ({gv - bv:+.4f} on validation), so "
            + ("the greedy search is higher on test" if gt > bt else
               f"{best} is {'higher than' if bt > gt else 'level with'} the greedy search on test")
            + (f"; rules above the greedy search on test: {', '.join(rep.above_greedy)}." if rep.above_greedy else
               "; no rule is above it on test."))


def spearman_sentences(corr: pd.DataFrame, cfg: SelectionConfig, L: int) -> str:
    """Which signal ranks layers most like the single-layer ablation drop, and the default Fisher signal's Spearman
    (chapter 04); "" when no signal varies over layers."""
    ok = corr.dropna(subset=["spearman"])
    if not len(ok):
        return ""
    top = ok.iloc[0]
    fis = ok[(ok.signal == cfg.fisher_signal) & (ok.norm == cfg.fisher_norm)]

    def ci(r):
        return f"{r.spearman:+.2f}, 95% CI {r.ci_low:+.2f} to {r.ci_high:+.2f}"

    if top.spearman > 0:
        out = (f"- Against the single-layer ablation drop, {top.signal}/{top.norm} agrees best ({ci(top)}); "
               + ("its CI excludes 0." if top.ci_low > 0 else
                  f"its CI includes 0, so not even that is established on {L} layers."))
    else:
        out = (f"- No signal ranks layers in the same order as their single-layer ablation drop: the highest "
               f"Spearman is {top.signal}/{top.norm} ({ci(top)}).")
    if len(fis):
        out += f"\n  The default Fisher signal ({cfg.fisher_signal}/{cfg.fisher_norm}) has {ci(fis.iloc[0])}."
    return out


def speed_sentences(speed: pd.DataFrame, k: int, over_ideal: float, under_ideal: float) -> str:
    """The headline student's measured speed-up at the largest batch against the ideal L/k, its parameters and memory,
    and a flag when the timing is above `over_ideal` or below `under_ideal` times the ideal (chapter 04)."""
    bmax = int(speed["batch"].max())
    sq = speed[(speed.n_layers == k) & (speed.batch == bmax)].iloc[0]
    out = (f"- Speed: the {k}-layer student runs at {sq.speedup:.2f}x the teacher's throughput at batch {bmax} "
           f"({sq.speedup_p10:.2f}x from 10th-percentile latencies; ideal {sq.ideal:.1f}x for the layer stack), with "
           f"{sq.params_ratio:.0%} of its parameters and {sq.mem_ratio:.0%} of its peak memory (weights + one pass's "
           f"activations) — measured on {sq.device} with {sq.threads} threads at load average {sq.load_avg:.1f}.")
    if sq.speedup > over_ideal * sq.ideal:
        out += (f"\n  Above OVER_IDEAL = {over_ideal} times the ideal {sq.ideal:.1f}x, which removing layers cannot "
                "explain: other load on the machine disturbed this timing (the p10-p90 spread is in the speed table).")
    elif sq.speedup < under_ideal * sq.ideal:
        parts = "; ".join(f"{n} {v:.1f}" for n, v in speed[speed.batch == bmax].set_index("model")["median_ms"].items())
        out += (f"\n  Below UNDER_IDEAL = {under_ideal} times the ideal: median ms at batch {bmax}: {parts}. The fixed "
                "cost (embeddings, mask, scoring) or machine load takes the rest; `lab.bench.time_components` splits "
                "a pass.")
    return out


# -- the record --------------------------------------------------------------------------------------------------------
def selection_record(rep: RuleReport, sel: pd.DataFrame, corr: pd.DataFrame, speed: pd.DataFrame, *, ks,
                     ablation_source: str) -> dict:
    """The key results chapter 04 records, at the headline budget k = `rep.k` (keys ending in `_quarter`) (chapter 04).

    Args:
        rep: `rule_report(sel, users, k)`: the rule table, the per-user tests against the random mean, the choice.
        sel: `evaluate_selections`' frame (its "teacher" row gives L and the teacher's test NDCG@10).
        corr: `signal_spearman`: each signal/norm against the single-layer ablation drop.
        speed: `lab.bench.compare_speed`'s frame of the compact students: the k-layer one at the largest batch.
        ks: the budgets compared; ablation_source: where the ablation drop came from (`ablation_reference`).
    """
    k, tab, tests, rnd = rep.k, rep.table, rep.tests, rep.random_test
    teacher = sel[sel.rule == "teacher"].iloc[0]
    fisher = float(tab["test_ndcg@10"].get("fisher_topk", np.nan))
    bmax = int(speed["batch"].max())
    sq = speed[(speed.n_layers == k) & (speed.batch == bmax)].iloc[0]
    return {
        "L": int(teacher["k"]),
        "k_values": list(ks),
        "k_quarter": k,
        "teacher_ndcg": float(teacher["test_ndcg@10"]),
        "ndcg_quarter": tab["test_ndcg@10"].astype(float).to_dict(),
        "valid_ndcg_quarter": tab["valid_ndcg@10"].astype(float).to_dict(),
        "best_rule_quarter": rep.best_rule,
        "best_rule_valid_quarter": rep.best_valid,
        "best_rule_test_quarter": rep.best_test,
        "fisher_ndcg_quarter": fisher,
        "uniform_ndcg_quarter": float(tab["test_ndcg@10"].get("uniform", np.nan)),
        "greedy_valid_test_quarter": rep.greedy_test,
        "greedy_valid_valid_quarter": rep.greedy_valid,
        "greedy_valid_minus_best_test_quarter": rep.greedy_test - rep.best_test,
        "rules_above_greedy_valid_test_quarter": rep.above_greedy,
        "minus_random_quarter": tests["diff"].astype(float).to_dict(),  # per user: rule − mean of the draws
        "minus_random_ci_quarter": {r: [float(t.ci_low), float(t.ci_high)] for r, t in tests.iterrows()},
        "wilcoxon_p_vs_random_quarter": tests["wilcoxon_p"].astype(float).to_dict(),
        "holm_p_vs_random_quarter": tests["holm_p"].astype(float).to_dict(),
        "verdict_vs_random_quarter": tests["verdict"].to_dict(),  # better / worse / cannot tell
        "alpha": rep.alpha,
        "rules_beating_random_holm_quarter": [r for r in tests.index if tests.loc[r, "verdict"] == "better"],
        "random_test_users": int(tests["n_users"].iloc[0]),
        "random_valid_mean_quarter": float(rep.random_valid.mean()),
        "random_mean_quarter": float(rnd.mean()),
        "random_std_quarter": float(rnd.std()),
        "random_draws": int(len(rnd)),
        "fisher_beats_random_share_quarter": share_beaten(rnd, fisher),
        f"speedup_quarter_b{bmax}": float(sq.speedup),
        f"speedup_p10_quarter_b{bmax}": float(sq.speedup_p10),
        "ideal_quarter": float(sq.ideal),
        "params_ratio_quarter": float(sq.params_ratio),
        "mem_ratio_quarter": float(sq.mem_ratio),
        "spearman": {f"{r.signal}/{r.norm}": float(r.spearman) for r in corr.itertuples()},
        "ablation_source": ablation_source,
    }

"""Which layers to keep: selection rules that turn a per-layer importance into a layer set (chapter 04).

A rule maps (importance, budget k) to k sorted, distinct layer indices; `lab.models.build_student` then makes the real
compact model from them. Rules: Fisher top-k (chapter 03's table, any estimator and normalisation), Fisher top-k that
always keeps both ends, uniform spacing (DistilBERT / PKD-skip), last k, first k, random (the control), ShortGPT's
Block Influence, Gromov et al.'s angular-distance block removal, weight magnitude, and `greedy_valid`, a greedy
validation search that removes one layer at a time by measured NDCG@10 on a validation subsample. The greedy search
looks at the metric, so it is a strong reference, but it is neither optimal (greedy) nor a bound (a subsample, and
test is another split): a rule can beat it. Chapter 04 judges the rules with `rule_report` and keeps what
`selection_record` gathers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .profiles import profile_config
from .data import RecData
from .evaluation import score_split
from .fisher.tables import default_norm, importance_vector
from .importance import ablation_drop, angular_block_distance, subsample_valid
from .metrics import evaluate
from .models import SeqRecModel, build_student

RULES = ("fisher_topk", "fisher_topk_ends", "uniform", "top", "bottom", "random", "block_influence", "angular_block",
         "magnitude", "greedy_valid")
FISHER_SIGNALS = ("fisher_empirical", "fisher_true", "batchgrad_squared")  # chapter 03's Fisher-type estimators


@dataclass
class SelectionConfig:
    """How chapter 04 selects and evaluates compact students."""

    random_draws: int = 10  # random selections per budget (the control distribution)
    fisher_signal: str = "fisher_empirical"  # estimator behind the default "fisher_topk" rule
    fisher_norm: str = "per_param"  # its normalisation ("per_param", "total" or "max")
    greedy_users: int = 512  # validation users the greedy validation search scores each candidate on
    eval_batch_size: int = 512  # users per evaluation batch
    eval_threads: int = 1  # torch threads for chapter 04's quality evaluations (1 was the fastest on a busy shared
    #                        2-core CPU); 0: torch's default, all cores (llm: a scoring pass of the LLM over 256 users
    #                        took 6.9-7.9 s at 2 threads and 12.5-14.0 s at 1 on an idle 2-core CPU, load 0.1)
    n_boot: int = 1000  # bootstrap resamples for the correlation CIs
    k_divisors: tuple = (8, 4, 2)  # chapter 04's budgets k = max(1, L // d)
    extra_budgets: tuple = ()  # budgets k kept besides the L // d ones (llm: 8 of 30, the authors' 32 -> 8)

    @classmethod
    def for_profile(cls, profile: str) -> "SelectionConfig":
        """The profile's `selection` section (`lab.profiles`)."""
        return profile_config(cls, profile, "selection")


def budgets(num_layers: int, divisors=(8, 4, 2), extra=()) -> list[int]:
    """Distinct layer budgets k = max(1, L // d), and the `extra` ones below L, ascending."""
    return sorted({max(1, num_layers // int(d)) for d in divisors} | {int(k) for k in extra if 0 < int(k) < num_layers})


def chapter_budgets(num_layers: int, cfg: SelectionConfig) -> tuple[list[int], int]:
    """(the budgets k < L chapter 04 evaluates: `budgets(L, cfg.k_divisors, cfg.extra_budgets)`, the headline budget:
    the one nearest L/4, the smaller on a tie)."""
    ks = [k for k in budgets(num_layers, cfg.k_divisors, cfg.extra_budgets) if k < num_layers]
    return ks, min(ks, key=lambda k: abs(k - num_layers / 4))


# -- importance tables ----------------------------------------------------------------------------------------------
def num_layers_of(importance=None, model: SeqRecModel | None = None) -> int:
    """L from an int, a per-layer vector, an importance table or a model."""
    if isinstance(importance, (int, np.integer)):
        return int(importance)
    if isinstance(importance, pd.DataFrame):
        return int(importance["layer_idx"].max()) + 1
    if importance is not None:
        return int(np.asarray(importance).reshape(-1).shape[0])
    if model is not None:
        return model.num_layers
    raise ValueError("need an importance table/vector, a layer count or a model")


def topk(scores, k: int) -> list[int]:
    """Indices of the k highest scores, sorted; ties go to the lower index."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    return sorted(int(i) for i in order[:k])


# -- rules needing no scores ----------------------------------------------------------------------------------------
def uniform_layers(num_layers: int, k: int) -> list[int]:
    """Evenly spaced layers ending at the last: floor(j (L-1)/(k-1) + 1/2) for j = 0..k-1; k = 1 keeps the last.

    With L = 12, k = 6 this is [0, 2, 4, 7, 9, 11], DistilBERT's initialisation; both ends are always kept.
    """
    _check_k(num_layers, k)
    if k == 1:
        return [num_layers - 1]
    return [int(math.floor(j * (num_layers - 1) / (k - 1) + 0.5)) for j in range(k)]


def random_selections(num_layers: int, k: int, n: int, seed: int = 0) -> list[list[int]]:
    """`n` independent uniformly random k-subsets (sorted) from one seeded generator: the control distribution."""
    _check_k(num_layers, k)
    rng = np.random.default_rng(seed)
    return [sorted(int(i) for i in rng.choice(num_layers, size=k, replace=False)) for _ in range(n)]


# -- the greedy validation search -----------------------------------------------------------------------------------
class GreedyValidSearch:
    """Greedy layer removal by measured validation NDCG@10 on a user subsample: rule "greedy_valid" (chapter 04).

    Starting from all L layers, each step builds every student with one more layer removed and keeps the best; the
    path down to k layers is cached, so every budget comes from one search. Its users are `subsample_valid`'s (the
    same `n_users` and seed give chapter 03's users), and its first step, the single-layer ablation, is
    `lab.importance.ablation_drop` (`single_layer_drops`). Greedy and scored on a subsample, it is not the best layer
    set, and not a bound on what a rule can reach. The chapter holds one search object and hands it to
    `selection_plan`, so the path is computed once.
    """

    def __init__(self, model: SeqRecModel, data: RecData, n_users: int = 512, seed: int = 0,
                 metric: str = "ndcg@10", batch_size: int = 512):
        self.model, self.data, self.metric, self.batch_size = model, data, metric, batch_size
        self.n_users, self.seed = n_users, seed
        self.history, self.target, self.seen = subsample_valid(data, n_users, seed).split("valid")
        self.cache: dict[tuple, float] = {}
        self.steps: list[dict] = []
        self.current = list(range(model.num_layers))
        self.full = self.score(self.current)

    def score(self, layers) -> float:
        """Validation metric (on the subsample) of the zero-shot student keeping `layers`; cached."""
        key = tuple(int(i) for i in layers)
        if key not in self.cache:
            m = self.model if len(key) == self.model.num_layers else build_student(self.model, list(key))
            m.eval()
            means, _ = evaluate(m.recommend_scores, self.history, self.target, self.seen,
                                batch_size=self.batch_size)
            self.cache[key] = float(means[self.metric])
        return self.cache[key]

    def run(self, k_min: int) -> None:
        """Extend the greedy path until only `k_min` layers are left."""
        _check_k(self.model.num_layers, k_min)
        while len(self.current) > k_min:
            cands = [(self.score([l for l in self.current if l != r]), -r, r) for r in self.current]
            best, _, r = max(cands)  # ties: remove the higher layer
            self.current = [l for l in self.current if l != r]
            self.steps.append({"n_layers": len(self.current), "removed": r, "layers": list(self.current),
                               f"valid_{self.metric}": best})

    def select(self, k: int) -> list[int]:
        """The greedy search's k layers."""
        L = self.model.num_layers
        if k == L:
            return list(range(L))
        self.run(k)
        return next(s["layers"] for s in self.steps if s["n_layers"] == k)

    def single_layer_drops(self) -> np.ndarray:
        """Metric of the full model minus that without layer i on the search's users: the single-layer ablation drop
        of `lab.importance.ablation_drop` (no CIs), the search's first step.  # (L,)"""
        return ablation_drop(self.model, self.data, self.n_users, self.seed, n_boot=0, metric=self.metric,
                             batch_size=self.batch_size)["value"].to_numpy()

    @property
    def path(self) -> pd.DataFrame:
        """The greedy path: layers left after each removal and the subsample metric."""
        return pd.DataFrame(self.steps)


# -- the entry point ------------------------------------------------------------------------------------------------
def select_layers(importance, k: int, rule: str = "fisher_topk", *, signal: str | None = None,
                  norm: str | None = None, seed: int = 0, model: SeqRecModel | None = None,
                  data: RecData | None = None, distances=None, search: GreedyValidSearch | None = None,
                  greedy_users: int = 512) -> list[int]:
    """k sorted, distinct layer indices chosen by `rule` (chapter 04).

    Args:
        importance: chapter 03's importance table, a per-layer score vector (higher = more important), or the layer
            count L (enough for "uniform", "top", "bottom", "random", "angular_block" with `distances`).
        k: layers to keep, 1 <= k <= L.
        rule: one of `RULES`.
        signal, norm: the table rows a score rule reads (defaults: "fisher_empirical"/"per_param" for the Fisher
            rules, "block_influence" and "magnitude" for theirs).
        seed: the random rule's seed.
        model, data: the teacher and data set, for "angular_block" (without `distances`) and "greedy_valid".
        distances: per-start angular distances of blocks of length L-k (for "angular_block"; default
            `lab.importance.angular_block_distance(model, data, L-k)`).
        search, greedy_users: a `GreedyValidSearch` to reuse (its path is cached), or the validation subsample size of
            a new one built from `model` and `data`.
    """
    L = num_layers_of(importance, model)
    _check_k(L, k)
    if rule in ("fisher_topk", "fisher_topk_ends", "block_influence", "magnitude"):
        default = {"block_influence": "block_influence", "magnitude": "magnitude"}.get(rule, "fisher_empirical")
        v = importance_vector(importance, signal or default, norm)
        if len(v) != L:
            raise ValueError(f"importance has {len(v)} layers, expected {L}")
        if rule != "fisher_topk_ends":
            return topk(v, k)
        if k == 1:  # only one end fits: the more important one
            return [0] if v[0] > v[L - 1] else [L - 1]
        inner = topk(v[1:L - 1], k - 2) if k > 2 else []
        return sorted({0, L - 1, *[i + 1 for i in inner]})
    if rule == "uniform":
        return uniform_layers(L, k)
    if rule == "top":
        return list(range(L - k, L))
    if rule == "bottom":
        return list(range(k))
    if rule == "random":
        return random_selections(L, k, 1, seed)[0]
    if rule == "angular_block":
        n = L - k
        if n == 0:
            return list(range(L))
        if distances is None:
            if model is None or data is None:
                raise ValueError("angular_block needs `distances` or `model` and `data`")
            distances = angular_block_distance(model, data, n)  # chapter 03's Gromov et al. distance per start
        d = np.asarray(distances, dtype=float).reshape(-1)
        if len(d) != L - n + 1:
            raise ValueError(f"need {L - n + 1} block distances for n={n}, got {len(d)}")
        start = int(np.argmin(d))  # first minimum on ties
        return [i for i in range(L) if not start <= i < start + n]
    if rule == "greedy_valid":
        if search is None:
            if model is None or data is None:
                raise ValueError("greedy_valid needs `model` and `data` (or a `search`)")
            search = GreedyValidSearch(model, data, greedy_users, seed)
        return search.select(k)
    raise ValueError(f"unknown rule {rule!r}; choose one of {RULES}")


def _check_k(num_layers: int, k: int) -> None:
    if int(k) != k or not 1 <= k <= num_layers:
        raise ValueError(f"k must be an integer in [1, {num_layers}], got {k}")


# -- chapter 04: every rule at every budget, and its zero-shot quality ----------------------------------------------
def layers_str(layers) -> str:
    """"0,3,7": how a layer set is stored in tidy tables."""
    return ",".join(str(int(i)) for i in layers)


def parse_layers(s) -> list[int]:
    """The layer list back from `layers_str` (lists pass through)."""
    if isinstance(s, str):
        return [int(x) for x in s.split(",") if x.strip() != ""]
    return [int(x) for x in s]


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


def evaluate_selections(teacher: SeqRecModel, data: RecData, plan: pd.DataFrame,
                        metrics=("ndcg@10", "hr@10", "mrr"), batch_size: int = 512) -> pd.DataFrame:
    """Zero-shot (no retraining) validation and test metrics of the student of every row of `plan` (chapter 04).

    Each distinct layer set is built (`build_student`) and evaluated once; columns valid_<metric>, test_<metric>.
    """
    cache: dict[str, dict] = {}
    for s in plan["layers"].unique():
        layers = parse_layers(s)
        m = teacher if len(layers) == teacher.num_layers else build_student(teacher, layers)
        m.eval()
        row = {}
        for split in ("valid", "test"):
            means, _ = score_split(m, data, split, batch_size=batch_size)
            row.update({f"{split}_{k}": float(means[k]) for k in metrics})
        cache[s] = row
    return pd.concat([plan.reset_index(drop=True), pd.DataFrame([cache[s] for s in plan["layers"]])], axis=1)


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


# -- chapter 04: what the measurements show ----------------------------------------------------------------------------
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
    from .evaluation import spearman_ci

    rows = []
    for (signal, norm), g in importance[importance.signal != "ablation_drop"].groupby(["signal", "norm"]):
        v = g.sort_values("layer_idx")["value"].to_numpy()
        rho, lo, hi = spearman_ci(v, ablation, n_boot=n_boot, seed=seed) if np.ptp(v) > 0 else (np.nan,) * 3
        rows.append({"signal": signal, "norm": norm, "spearman": rho, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows).sort_values("spearman", ascending=False, na_position="last").reset_index(drop=True)


@dataclass
class RuleReport:
    """The rules at one budget k, chosen on validation and reported on test (`rule_report`, chapter 04)."""

    k: int  # the budget
    table: pd.DataFrame  # one row per rule: layers, valid_/test_<metric>, draws, draws_at_least_as_good, p, p_holm
    tests: pd.DataFrame  # the main rules against the random draws (`lab.evaluation.against_null`): null_ge, p, p_holm
    random_valid: pd.Series  # validation metric of each random draw
    random_test: pd.Series  # test metric of each random draw (the null sample)
    main: list  # the rules tested together: all but "random" and the fisher_topk[signal/norm] variants
    best_rule: str  # the best rule on validation among those that do not look at the metric
    best_valid: float
    best_test: float
    greedy_valid: float  # the greedy validation search (a reference, not a candidate)
    greedy_test: float
    above_greedy: list  # candidate rules above the greedy search on test


def rule_report(sel: pd.DataFrame, k: int, metric: str = "ndcg@10") -> RuleReport:
    """Chapter 04's evaluation of the rules at budget k from `evaluate_selections`' frame: the rule table
    (`rule_table`), the main rules' one-sided empirical p-values against the random draws with Holm's adjustment
    (`lab.evaluation.against_null`), the best rule chosen on validation (not "random", not "greedy_valid") with its test
    value, and the greedy validation search beside it."""
    from .evaluation import against_null

    v, t = f"valid_{metric}", f"test_{metric}"
    q = sel[(sel.k == k) & (sel.rule == "random")]
    tab = rule_table(sel, k, metric)
    main = [r for r in tab.index if r != "random" and "[" not in r]
    tests = against_null(tab.loc[main, t], q[t])
    tab = tab.join(tests[["null_ge", "p", "p_holm"]].rename(columns={"null_ge": "draws_at_least_as_good"}))
    candidates = tab.drop(index=["random", "greedy_valid"])
    best = str(candidates[v].idxmax())
    greedy_valid, greedy_test = (float(x) for x in tab.loc["greedy_valid", [v, t]])
    return RuleReport(k=k, table=tab, tests=tests, random_valid=q[v], random_test=q[t], main=main, best_rule=best,
                      best_valid=float(candidates.loc[best, v]), best_test=float(candidates.loc[best, t]),
                      greedy_valid=greedy_valid, greedy_test=greedy_test,
                      above_greedy=[r for r in candidates.index if candidates.loc[r, t] > greedy_test])


def share_beaten(null, value: float) -> float:
    """The share of the null draws below `value`, ties counting half (chapter 04: how many random layer sets a rule
    beats); NaN for a value that is not finite."""
    z = np.asarray(null, dtype=float)
    return float((z < value).mean() + 0.5 * (z == value).mean()) if np.isfinite(value) else np.nan


def mean_by_k(sel: pd.DataFrame, rules, metric: str = "test_ndcg@10") -> pd.DataFrame:
    """Mean `metric` of each rule (columns) at each budget k (rows); random: the mean over its draws (chapter 04)."""
    return sel[sel.rule.isin(list(rules))].groupby(["k", "rule"])[metric].mean().unstack("rule")


def draws_needed(n_tests: int, alpha: float) -> int:
    """Random draws needed before a rule that beats every draw can reach a Holm-adjusted p below `alpha` among
    `n_tests` rules: the smallest n with n_tests / (n + 1) < alpha (chapter 04)."""
    return next(n for n in range(1, 10**7) if n_tests / (n + 1) < alpha)


def selection_record(rep: RuleReport, sel: pd.DataFrame, corr: pd.DataFrame, speed: pd.DataFrame, *, ks,
                     alpha: float, ablation_source: str) -> dict:
    """The key results chapter 04 records, at the headline budget k = `rep.k` (keys ending in `_quarter`) (chapter 04).

    Args:
        rep: `rule_report(sel, k)`: the rule table, the p-values against the random draws, the validation choice.
        sel: `evaluate_selections`' frame (its "teacher" row gives L and the teacher's test NDCG@10).
        corr: `signal_spearman`: each signal/norm against the single-layer ablation drop.
        speed: `lab.bench.compare_speed`'s frame of the compact students: the k-layer one at the largest batch.
        ks: the budgets compared; alpha: the level of the Holm-adjusted p-values; ablation_source: where the
            ablation drop came from (`ablation_reference`).
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
        "uniform_ndcg_quarter": float(tab.loc["uniform", "test_ndcg@10"]),
        "greedy_valid_test_quarter": rep.greedy_test,
        "greedy_valid_valid_quarter": rep.greedy_valid,
        "greedy_valid_minus_best_test_quarter": rep.greedy_test - rep.best_test,
        "rules_above_greedy_valid_test_quarter": rep.above_greedy,
        "p_vs_random_quarter": tests["p"].astype(float).to_dict(),
        "p_holm_vs_random_quarter": tests["p_holm"].astype(float).to_dict(),
        "alpha": alpha,
        "rules_beating_random_holm_quarter": list(tests.index[tests["p_holm"] < alpha]),
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

"""Which layers to keep: selection rules that turn a per-layer importance into a layer set (chapter 04).

A rule maps (importance, budget k) to k sorted, distinct layer indices; `lab.models.build_student` then makes the real
compact model from them. Rules: Fisher top-k (chapter 03's table, any estimator and normalisation), Fisher top-k that
always keeps both ends, uniform spacing (DistilBERT / PKD-skip), last k, first k, random (the control), ShortGPT's
Block Influence, Gromov et al.'s angular-distance block removal, weight magnitude, and `greedy_valid`, a greedy
validation search that removes one layer at a time by measured NDCG@10 on a validation subsample. The greedy search
looks at the metric, so it is a strong reference, but it is neither optimal (greedy) nor a bound (a subsample, and
test is another split): a rule can beat it. `evaluate_selections` gives the zero-shot quality of layer sets; chapter
04's grid of every rule at every budget, its tests and its record live in `lab.chapters.c04_selection`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .profiles import profile_config
from .data import RecData
from .evaluation import score_split
from .fisher.tables import importance_vector
from .importance import ablation_drop, angular_block_distance, subsample_valid
from .metrics import evaluate
from .models import SeqRecModel, build_student

__all__ = ["RULES", "FISHER_SIGNALS", "SelectionConfig", "budgets", "topk", "uniform_layers", "random_selections",
           "GreedyValidSearch", "select_layers", "layers_str", "parse_layers", "evaluate_selections"]

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


# -- importance tables ----------------------------------------------------------------------------------------------
def _num_layers_of(importance=None, model: SeqRecModel | None = None) -> int:
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
    L = _num_layers_of(importance, model)
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


# -- layer sets in tables, and their zero-shot quality -----------------------------------------------------------------
def layers_str(layers) -> str:
    """"0,3,7": how a layer set is stored in tidy tables."""
    return ",".join(str(int(i)) for i in layers)


def parse_layers(s) -> list[int]:
    """The layer list back from `layers_str` (lists pass through)."""
    if isinstance(s, str):
        return [int(x) for x in s.split(",") if x.strip() != ""]
    return [int(x) for x in s]


def evaluate_selections(teacher: SeqRecModel, data: RecData, plan: pd.DataFrame,
                        metrics=("ndcg@10", "hr@10", "mrr"), batch_size: int = 512,
                        per_user: str | None = None) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Zero-shot (no retraining) validation and test metrics of the student of every row of `plan` (chapter 04).

    Each distinct layer set is built (`build_student`) and evaluated once; columns valid_<metric>, test_<metric>.
    With `per_user` (a metric, e.g. "ndcg@10") also the test users' values of that metric for every distinct layer
    set, the input of paired tests: returns (the frame, a tidy frame layers, user, test_<metric>).
    """
    cache: dict[str, dict] = {}
    users = []
    for s in plan["layers"].unique():
        layers = parse_layers(s)
        m = teacher if len(layers) == teacher.num_layers else build_student(teacher, layers)
        m.eval()
        row = {}
        for split in ("valid", "test"):
            means, pu = score_split(m, data, split, batch_size=batch_size)
            row.update({f"{split}_{k}": float(means[k]) for k in metrics})
            if per_user and split == "test":
                users.append(pd.DataFrame({"layers": s, "user": pu["user"].to_numpy(),
                                           f"test_{per_user}": pu[per_user].to_numpy()}))
        cache[s] = row
    frame = pd.concat([plan.reset_index(drop=True), pd.DataFrame([cache[s] for s in plan["layers"]])], axis=1)
    return (frame, pd.concat(users, ignore_index=True)) if per_user else frame

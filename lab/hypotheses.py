"""The criteria that decide the method authors' claims (issue 15), written down before any run that decides them.

The authors reported H1-H4 "100% supported" without a computed test; two versions of the claims circulate (the four
hypotheses, and the headline C1/C2), and both are tested. Each claim is a `Criterion`: the statistic (the name of a
function that computes one effect per seed from a run's saved artefacts), the test that pools the seeds, the
threshold, the direction the claim predicts, and the claim whose rows Holm's correction runs within. Chapter 07 reads
these rows and computes every verdict from them; no verdict is typed by hand anywhere. Issue 24 made each claim err
at most 5% of the time when nothing is there (`null_rates` measures it), gave C2 a test a single peak fails
(`c2_effects`), C1 the method's own student and added the control KD (distillation against the same layers trained
from scratch with the teacher's full recipe).

Pooling (every criterion): users are nested in training seeds, so a per-user paired test inside one seed ignores the
seed-to-seed variance of the training itself (data, initialisation, the whole pipeline). Each statistic is therefore
one number per seed (a per-seed paired effect, averaged over that seed's users or layers); the seeds' numbers are
then pooled with a one-sample t interval and t-test across seeds (df = seeds - 1). With few seeds the interval is
wide: that is the honest width, not a defect. A mixed model (statsmodels MixedLM) would use the same seed-level
variance; with 2-3 seeds it has nothing more to estimate it from.

Verdicts: "supported" (the pooled evidence clears the threshold in the claimed direction), "contradicted" (it clears
it in the opposite direction), "inconclusive" (neither), "not measured" (the profile's runs lack the inputs; the
reason is said).
"""
from __future__ import annotations

from dataclasses import dataclass

from .constants import DEPTH_BAND, GOAL_RETENTION, GOAL_SPEEDUP
from .profiles import get_profile

__all__ = ["ALPHA", "CONFIDENCE", "TOP_SHARE", "MIN_RELATIVE_GAIN", "RHO_FLOOR", "C1_RETENTION", "C1_SPEEDUP",
           "C2_MIN_SEEDS", "H4_RIVALS", "CLAIMS", "CLAIM_RULE", "REPORT_ONLY", "Criterion", "CRITERIA", "BY_ID",
           "VERDICTS", "SEED_CHAPTERS", "SEED_FILES", "ARCH_FILE", "VARIANT_ORDER", "METRIC", "SCRATCH_FULL", "number",
           "top_bottom_gap", "h1_ablation_gap", "h1_fisher_gap", "h2_spearman", "h2_fisher_vs_random",
           "h3_depth_vs_uniform", "h3_fisher_vs_uniform", "h4_llama_vs", "c1_retention", "c1_best_retention",
           "kd_vs_scratch", "SPEEDUP_OF", "layer_profile", "peaks_and_troughs", "smallest_gap", "c2_effects",
           "STATISTICS", "default_seeds", "load_seeds", "seed_inputs", "per_seed", "null_value", "claim_of", "decide",
           "verdict_table", "claim_verdicts", "single_peak_profiles", "three_peak_profile", "c2_rate", "profile_noise",
           "noisy_profiles", "null_rates", "null_sentence", "wilson", "companions", "profile_verdicts", "side_by_side"]

ALPHA = 0.05  # error rate of every claim: a decisive verdict where there is no effect at most this often
CONFIDENCE = 0.95  # level of every pooled interval shown
TOP_SHARE = DEPTH_BAND  # H1: the "upper" layers are the top 30% of depth, the "lower" ones the bottom 30%
MIN_RELATIVE_GAIN = 0.01  # H3: a weighting must also gain at least +1% relative NDCG@10
RHO_FLOOR = 0.5  # H2a: Spearman(Fisher, ablation drop) must be above this
C1_RETENTION = GOAL_RETENTION  # C1: the L/4 student's NDCG@10 retention must be above this (0.92, lab.constants)
C1_SPEEDUP = GOAL_SPEEDUP  # C1: measured inference speed-up of that student (3.2)
C2_MIN_SEEDS = 2  # C2: each seed's effect is read at positions chosen on the other seeds (cross-fitting)
H4_RIVALS = ("qwen2", "mistral", "gpt_neox")  # H4: llama against two Llama-style families and one non-Llama block
# (GPT-NeoX: LayerNorm, GELU MLP, attention and MLP in parallel); llama must beat each of them
CLAIMS = {"H1": ("H1a", "H1b"), "H2": ("H2a", "H2b"), "H3": ("H3a", "H3b"),  # a claim and the rows that decide it
          "H4": tuple(f"H4-{a}" for a in H4_RIVALS), "C1": ("C1",), "KD": ("KD",), "C2": ("C2",)}
CLAIM_RULE = {"H1": "any", "H2": "all", "H3": "any", "H4": "all", "C1": "all", "KD": "all", "C2": "all"}  # "all":
# every row must be supported (H2 needs rank agreement and a selection that beats random; H4 llama above every
# rival); "any": one measure or weighting suffices (H1's two readings of "matter", H3's two weightings)
REPORT_ONLY = ("C1-best",)  # rows shown beside the claims and deciding none (the best student on validation)

# How a row is decided (issue 24: each claim's error rate at most ALPHA when nothing is there). Every row has a
# two-sided t-test across seeds against its null (`null_value`); Holm runs within each claim's rows. A row of an "all"
# claim is supported with its own p < ALPHA (the claim needs every row: an intersection-union test pays no
# multiplicity), and contradicted with its Holm-adjusted p < ALPHA (one contradicted row is enough, so the
# contradiction is a union and pays it). A row of an "any" claim uses the Holm-adjusted p both ways. With p two-sided,
# each direction of a row errs at most ALPHA / 2. `null_rates` simulates studies with no effect and measures it.


@dataclass(frozen=True)
class Criterion:
    """One claim and the rule that decides it."""

    id: str  # e.g. "H1a"
    claim: str  # the authors' wording, shortened
    statistic: str  # name of the function in chapter 07's computation that gives one effect per seed
    test: str  # how the seeds are pooled and what p-value is computed
    threshold: float  # the value the pooled interval (or statistic) is compared with
    direction: str  # "greater": the claim predicts an effect above `threshold`; "less": below
    family: str  # Holm runs within each family
    rule: str  # the verdict rule, in words
    inputs: str  # the artefacts the statistic reads (chapter and file)


_ALL = "the claim needs every row: supported if {above} with p < 0.05; contradicted if {below} with Holm-adjusted " \
       "p < 0.05 (within the claim); else inconclusive"
_ANY = "one row suffices: supported if {above} with Holm-adjusted p < 0.05 (within the claim), contradicted if " \
       "{below} with Holm-adjusted p < 0.05; else inconclusive"

CRITERIA: tuple[Criterion, ...] = (
    Criterion("H1a", "upper layers (top 30% of depth) matter more than lower ones (bottom 30%): ablation",
              "h1_ablation_gap", "t-test across seeds of the per-seed gap against 0", 0.0, "greater", "H1",
              _ANY.format(above="the gap > 0", below="< 0"),
              "03: importance.parquet, signal ablation_drop (single-layer validation NDCG@10 drop)"),
    Criterion("H1b", "upper layers (top 30% of depth) matter more than lower ones (bottom 30%): Fisher share",
              "h1_fisher_gap", "t-test across seeds of the per-seed gap against 0", 0.0, "greater", "H1",
              _ANY.format(above="the gap > 0", below="< 0"),
              "03: importance.parquet, signal fisher_empirical, norm total (share of the layers' Fisher trace)"),
    Criterion("H2a", "Fisher information accurately quantifies each layer's contribution: rank agreement",
              "h2_spearman", "t-test across seeds of the per-seed Spearman(Fisher, ablation drop) on Fisher's z, "
              "against z(0.5)", RHO_FLOOR, "greater", "H2",
              _ALL.format(above="rho > 0.5", below="rho < 0.5"),
              "03: importance.parquet, fisher_empirical (total) and ablation_drop per layer"),
    Criterion("H2b", "Fisher information accurately quantifies each layer's contribution: Fisher-selected students "
              "beat random ones", "h2_fisher_vs_random",
              "per-seed mean over test users of NDCG@10(fisher_topk) - mean over random draws; t-test across seeds",
              0.0, "greater", "H2", _ALL.format(above="the effect > 0", below="< 0"),
              "05: distill_per_user.parquet, fisher_topk:<v> and random#<d>:<v> rows of one variant v (kd first)"),
    Criterion("H3a", "depth-increasing layer weights in the layer-wise loss beat uniform weights",
              "h3_depth_vs_uniform", "per-seed paired mean NDCG@10 difference over test users, relative to "
              "kd+uniform; t-test across seeds", MIN_RELATIVE_GAIN, "greater", "H3",
              _ANY.format(above="better by a relative gain >= +1%", below="worse"),
              "05: distill_per_user.parquet, fisher_topk:kd+depth vs fisher_topk:kd+uniform"),
    Criterion("H3b", "Fisher layer weights in the layer-wise loss beat uniform weights",
              "h3_fisher_vs_uniform", "per-seed paired mean NDCG@10 difference over test users, relative to "
              "kd+uniform; t-test across seeds", MIN_RELATIVE_GAIN, "greater", "H3",
              _ANY.format(above="better by a relative gain >= +1%", below="worse"),
              "05: distill_per_user.parquet, fisher_topk:kd+fisher vs fisher_topk:kd+uniform"),
    *(Criterion(f"H4-{other}", f"Llama is better for recommendation than other open architectures: llama vs {other}",
                f"h4_llama_vs_{other}", f"per-seed mean over test users of NDCG@10(llama) - NDCG@10({other}), models of "
                "the same width, depth, data and training budget; t-test across seeds", 0.0, "greater", "H4",
                _ALL.format(above="llama is better", below="worse"),
                "02: 02_architectures.parquet, per-user test NDCG@10 of one model per architecture trained from scratch "
                "at the profile's H4 depth (lab.bench.arch.arch_depth) with the teacher's width and recipe (Mistral "
                "with grouped key/value heads and a sliding window, lab.models.backbone_config)")
      for other in H4_RIVALS),
    Criterion("C1", "the headline: a student with 25% of the layers keeps 92% of the quality at 3.2x speed",
              "c1_retention", "t-test across seeds, against 0.92, of the per-seed NDCG@10 retention of the method's own "
              "L/4 student (Fisher-selected layers, Fisher-weighted distillation); speed-up: the mean over seeds of its "
              "measured speed-up", C1_RETENTION, "greater", "C1",
              "supported if retention > 0.92 with p < 0.05 and the mean speed-up >= 3.2; contradicted if retention < "
              "0.92 with p < 0.05 or the speed-up < 3.2; else inconclusive",
              "05: results.json method_retention, method_speedup (batch 256)"),
    Criterion("C1-best", "(reported, decides no claim) the best L/4 student on validation, any rule and variant",
              "c1_best_retention", "as C1, for chapter 05's best student on validation", C1_RETENTION, "greater",
              "C1-best", "as C1", "05: results.json best_retention, best_speedup (batch 256)"),
    Criterion("KD", "distillation helps: the method's L/4 student beats the same number of layers trained from "
              "scratch with the teacher's full recipe (epochs, patience, data)", "kd_vs_scratch",
              "per-seed mean over test users of NDCG@10(method's student) - NDCG@10(k-layer model from scratch); "
              "t-test across seeds", 0.0, "greater", "KD", _ALL.format(above="the effect > 0", below="< 0"),
              "05: distill_per_user.parquet, the method's student (results.json method_name) and scratch_full"),
    Criterion("C2", "layer importance is multimodal (bottom, middle and top peaks)",
              "c2_multimodal", "per seed, at positions chosen on the other seeds' mean profile (a peak in each third "
              "of depth, the lowest layer between neighbouring peaks), the smallest of the four peak-minus-trough "
              "gaps of the seed's ablation profile (scaled by its largest drop); t-test across seeds against 0",
              0.0, "greater", "C2", _ALL.format(above="the smallest gap > 0", below="< 0"),
              "03: importance.parquet, ablation_drop per layer"),
)

BY_ID = {c.id: c for c in CRITERIA}


# ---- the computation chapter 07 runs (each statistic gives one effect per seed; then `verdict_table`) ----------------

import math  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .evaluation import across_seeds, holm  # noqa: E402

VERDICTS = ("supported", "contradicted", "inconclusive", "not measured")
SEED_CHAPTERS = ("01", "02", "03", "04", "05")  # the chapters whose artefacts chapter 07 reads
SEED_FILES = ("importance.parquet", "distill_per_user.parquet", "results.json")
ARCH_FILE = "02_architectures.parquet"  # H4's input, read when present (a profile may train no rival architectures)
VARIANT_ORDER = ("kd", "kd+fisher", "kd+depth", "kd+uniform", "ce")  # H2b: the first variant random students have
METRIC = "ndcg@10"
SCRATCH_FULL = "scratch_full"  # KD: the k-layer model from scratch with the teacher's recipe, in distill_per_user


def number(x):
    """A float for the records, None for NaN (JSON has no NaN)."""
    return None if x is None or x != x else float(x)


# -- per-seed statistics: f(seed_inputs) -> float, or raise LookupError(reason) when the inputs are not there

def _signal(imp: pd.DataFrame, signal: str, norm: str) -> np.ndarray:
    rows = imp[(imp["signal"] == signal) & (imp["norm"] == norm)].sort_values("layer_idx")
    if not len(rows):
        raise LookupError(f"importance.parquet has no {signal} ({norm}) rows")
    return rows["value"].to_numpy(float)


def top_bottom_gap(values) -> float:
    """Mean of the top TOP_SHARE of layers (by depth) minus the mean of the bottom TOP_SHARE (H1)."""
    v = np.asarray(values, float)
    k = max(1, int(round(TOP_SHARE * len(v))))
    return float(v[-k:].mean() - v[:k].mean())


def h1_ablation_gap(s: dict) -> float:
    return top_bottom_gap(_signal(s["importance"], "ablation_drop", "raw"))


def h1_fisher_gap(s: dict) -> float:
    f = _signal(s["importance"], "fisher_empirical", "total")
    return top_bottom_gap(f / f.sum())


def h2_spearman(s: dict) -> float:
    """Spearman(Fisher total, ablation drop) over layers, Fisher-z transformed (pooled on z, reported as rho)."""
    from scipy.stats import spearmanr

    rho = float(spearmanr(_signal(s["importance"], "fisher_empirical", "total"),
                          _signal(s["importance"], "ablation_drop", "raw")).statistic)
    return float(np.arctanh(np.clip(rho, -0.999999, 0.999999)))


def _wide(pu: pd.DataFrame) -> pd.DataFrame:
    """Per-user NDCG@10, one column per student name (users as rows; adapter rows `rule:variant:adapter` dropped)."""
    pu = pu[pu["name"].str.count(":") <= 1]
    return pu.pivot(index="user", columns="name", values=METRIC)


def h2_fisher_vs_random(s: dict) -> float:
    w = _wide(s["per_user"])
    for v in VARIANT_ORDER:
        rand = [c for c in w.columns if c.startswith("random#") and c.endswith(f":{v}")]
        if f"fisher_topk:{v}" in w.columns and rand:
            return float((w[f"fisher_topk:{v}"] - w[rand].mean(axis=1)).mean())
    raise LookupError("chapter 05 distilled no random students (N_RANDOM = 0 in this profile)")


def _weighting_gain(s: dict, weighting: str) -> float:
    w = _wide(s["per_user"])
    for rule in ("fisher_topk", *sorted({c.split(":")[0] for c in w.columns})):
        a, b = f"{rule}:kd+{weighting}", f"{rule}:kd+uniform"
        if a in w.columns and b in w.columns:
            return float((w[a] - w[b]).mean() / w[b].mean())
    raise LookupError(f"chapter 05 trained no kd+{weighting} and kd+uniform students of one rule "
                      f"(WEIGHTINGS of this profile)")


def h3_depth_vs_uniform(s: dict) -> float:
    return _weighting_gain(s, "depth")


def h3_fisher_vs_uniform(s: dict) -> float:
    return _weighting_gain(s, "fisher")


def h4_llama_vs(other: str):
    """H4's statistic against one rival architecture: the per-seed mean over test users of llama's NDCG@10 minus the
    rival's (chapter 02's `02_architectures.parquet`)."""
    def statistic(s: dict) -> float:
        arch = s.get("architectures")
        if arch is None:
            raise LookupError("chapter 02 trained no architecture comparison (02_architectures.parquet; ARCHS = () or "
                              "a profile without an H4 depth)")
        missing = [a for a in ("llama", other) if a not in arch.columns]
        if missing:
            raise LookupError(f"chapter 02 trained no {' and no '.join(missing)} model for H4")
        return float((arch["llama"] - arch[other]).mean())
    statistic.__name__ = f"h4_llama_vs_{other}"
    return statistic


def _distill_results(s: dict, *keys) -> dict:
    r = s["results"].get("05_distillation", {})
    missing = [k for k in keys if k not in r]
    if missing:
        raise LookupError(f"chapter 05 recorded no {', '.join(missing)} (re-run chapter 05)")
    return r


def c1_retention(s: dict) -> float:
    """C1: NDCG@10 retention of the method's own L/4 student (chapter 05's `method_retention`)."""
    return float(_distill_results(s, "method_retention")["method_retention"])


def c1_best_retention(s: dict) -> float:
    """C1-best (reported only): retention of chapter 05's best student on validation."""
    return float(_distill_results(s, "best_retention")["best_retention"])


def kd_vs_scratch(s: dict) -> float:
    """KD: per-seed mean over test users of the method's student's NDCG@10 minus the k-layer model's trained from
    scratch with the teacher's full recipe (chapter 05's `scratch_full` row)."""
    name = _distill_results(s, "method_name")["method_name"]
    w = _wide(s["per_user"])
    missing = [c for c in (name, SCRATCH_FULL) if c not in w.columns]
    if missing:
        raise LookupError(f"distill_per_user.parquet has no {' and no '.join(missing)} rows")
    return float((w[name] - w[SCRATCH_FULL]).mean())


SPEEDUP_OF = {"C1": "method_speedup", "C1-best": "best_speedup"}  # the measured speed-up beside each retention row


def layer_profile(s: dict) -> np.ndarray:
    """C2: a seed's single-layer ablation drops scaled by the largest |drop|."""
    v = _signal(s["importance"], "ablation_drop", "raw")
    return v / (np.abs(v).max() or 1.0)


def peaks_and_troughs(reference) -> tuple[list[int], list[int]]:
    """C2's positions on a reference profile: the highest layer of each third of depth (peaks) and the lowest layer
    between neighbouring peaks, both ends included (troughs; a trough on a peak means no dip between them)."""
    ref = np.asarray(reference, float)
    peaks = [int(idx[np.argmax(ref[idx])]) for idx in np.array_split(np.arange(len(ref)), 3)]
    troughs = [a + int(np.argmin(ref[a:b + 1])) for a, b in zip(peaks, peaks[1:])]
    return peaks, troughs


def smallest_gap(profile, peaks, troughs) -> float:
    """The smallest of the four peak-minus-trough gaps of `profile` at the given positions (C2), each position read
    as the mean of a band of about L/8 layers centred on it (24 layers: 3), which halves the noise of a single layer
    (simulated power at noise sd 0.2 and 24 layers: 30% -> 50%) and leaves one layer per position below 16 layers."""
    v = np.asarray(profile, float)
    w = (max(1, len(v) // 8) - 1) // 2

    def at(i: int) -> float:
        return float(v[max(0, i - w):i + w + 1].mean())
    return min(at(p) - at(t) for t, pair in zip(troughs, zip(peaks, peaks[1:])) for p in pair)


def c2_effects(profiles: list) -> np.ndarray:
    """C2's one effect per seed, cross-fitted: the positions come from the mean of the other seeds' profiles, the gap
    from the seed's own, so choosing the highest and lowest layers on noise does not make the gaps positive."""
    P = np.stack([np.asarray(p, float) for p in profiles])  # (S, L)
    out = []
    for j in range(len(P)):
        peaks, troughs = peaks_and_troughs(np.delete(P, j, axis=0).mean(0))
        out.append(smallest_gap(P[j], peaks, troughs))
    return np.asarray(out)


STATISTICS = {f.__name__: f for f in (h1_ablation_gap, h1_fisher_gap, h2_spearman, h2_fisher_vs_random,
                                      h3_depth_vs_uniform, h3_fisher_vs_uniform, c1_retention, c1_best_retention,
                                      kd_vs_scratch, *(h4_llama_vs(a) for a in H4_RIVALS))}


def default_seeds(profile: str) -> list[int]:
    """The seeds chapter 07 pools by default (the profile's block's `seeds`, `lab.profiles`: two in smoke, three
    otherwise); ValueError for an unknown profile."""
    return list(get_profile(profile).seeds)


def load_seeds(profile: str, seeds, artefacts=None) -> tuple[list[dict], list[str]]:
    """(inputs of every seed whose run has chapter 07's inputs, a message per seed that lacks them, naming the
    command that makes them)."""
    got, missing = [], []
    for seed in seeds:
        try:
            got.append(seed_inputs(profile, seed, artefacts))
        except FileNotFoundError as e:
            missing.append(str(e))
    return got, missing


def seed_inputs(profile: str, seed: int, artefacts=None) -> dict:
    """What chapter 07 reads of one seed's run (chapters 01-05): importance table, per-user metrics, results."""
    from .book import ARCHIVE, paths, results, shown_path

    P = paths(profile, artefacts, seed, create=False)
    missing = [f for f in SEED_FILES if not P.file(f).is_file()]
    if missing:
        make = f"python -m lab rerun --profile {profile} --seeds {seed} --only {' '.join(SEED_CHAPTERS)}"
        kept = ARCHIVE / P.root.name
        if kept.is_dir():  # an earlier machine's run, kept in the repository (`lab.archive`)
            make += (f", or copy back what {shown_path(kept)} keeps of an earlier run with python -m lab archive "
                     f"restore --profile {profile} --seeds {seed}")
        raise FileNotFoundError(f"seed {seed}: {', '.join(missing)} missing in {P.root}; make them with {make}")
    arch = P.file(ARCH_FILE)
    return {"seed": int(seed), "importance": pd.read_parquet(P.file("importance.parquet")),
            "per_user": pd.read_parquet(P.file("distill_per_user.parquet")),
            "architectures": pd.read_parquet(arch) if arch.is_file() else None,
            "results": results(profile, artefacts, seed)}


def per_seed(inputs: list[dict]) -> pd.DataFrame:
    """One row per (criterion, seed): the statistic's effect, or the reason it could not be measured (C2: the
    cross-fitted gap of `c2_effects`, which needs `C2_MIN_SEEDS` seeds)."""
    rows = []
    profiles = [layer_profile(s) for s in inputs]
    for c in CRITERIA:
        if c.id == "C2":
            enough = len(inputs) >= C2_MIN_SEEDS and len({len(p) for p in profiles}) == 1
            effects = c2_effects(profiles) if enough else [None] * len(inputs)
            for s, e, p in zip(inputs, effects, profiles):
                rows.append({"id": c.id, "seed": s["seed"], "profile": list(p), **(
                    {"effect": float(e)} if enough else
                    {"reason": f"C2 reads each seed at positions chosen on the others: needs >= {C2_MIN_SEEDS} seeds "
                               "of one depth"})})
            continue
        for s in inputs:
            try:
                extra = {"speedup": float(s["results"]["05_distillation"][SPEEDUP_OF[c.id]])} \
                    if c.id in SPEEDUP_OF else {}
                rows.append({"id": c.id, "seed": s["seed"], "effect": STATISTICS[c.statistic](s), **extra})
            except LookupError as e:
                rows.append({"id": c.id, "seed": s["seed"], "reason": str(e).strip("'\"")})
    return pd.DataFrame(rows)


def null_value(c: Criterion) -> float:
    """The value a row's t-test is against: the threshold where the claim names one (C1's retention; H2a's rho, on
    Fisher's z), else 0 (H3's +1% is a further condition on a significant gain, not the null)."""
    return float(np.arctanh(c.threshold)) if c.id == "H2a" else c.threshold if c.id in SPEEDUP_OF else 0.0


def _summary(c: Criterion, rows: pd.DataFrame) -> dict:
    if "reason" in rows and rows["reason"].notna().any():
        return {"n_seeds": len(rows), "reason": rows["reason"].dropna().iloc[0]}
    out = across_seeds(rows["effect"], null=null_value(c), level=CONFIDENCE)
    if c.id == "H2a":  # pooled on Fisher's z, reported as rho
        out.update({k: float(np.tanh(out[k])) for k in ("estimate", "ci_low", "ci_high")})
    if c.id in SPEEDUP_OF:
        out["speedup"] = float(rows["speedup"].mean())
    return out


def claim_of(row_id: str) -> str | None:
    """The claim a row decides (`CLAIMS`), None for a reported-only row."""
    return next((claim for claim, ids in CLAIMS.items() if row_id in ids), None)


def decide(c: Criterion, s: dict, alpha: float = ALPHA) -> str:
    """The verdict of one row from its pooled summary (`estimate`, raw `p`, Holm-adjusted `p_adj` within its claim),
    by the rule in `c.rule`: see the comment above `CRITERIA` for why an "all" claim's support uses the raw p."""
    if isinstance(s.get("reason"), str) and s["reason"]:
        return "not measured"
    est, p, p_adj = s.get("estimate", math.nan), s.get("p", math.nan), s.get("p_adj", math.nan)
    null = float(np.tanh(null_value(c))) if c.id == "H2a" else null_value(c)
    p_support = p if CLAIM_RULE.get(claim_of(c.id), "all") == "all" else p_adj
    if c.id in SPEEDUP_OF and s["speedup"] < C1_SPEEDUP:
        return "contradicted"
    if est > null and p_support < alpha:
        gain_ok = est >= MIN_RELATIVE_GAIN if c.family == "H3" else True
        return "supported" if gain_ok else "inconclusive"
    if est < null and p_adj < alpha:
        return "contradicted"
    return "inconclusive"


def verdict_table(seed_rows: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Claim, statistic, estimate, CI, p, Holm-adjusted p (within each claim) and verdict of every criterion."""
    groups = dict(tuple(seed_rows.groupby("id", sort=False)))
    rows = [{"id": c.id, "family": c.family, "claim": c.claim, "statistic": c.statistic, "estimate": math.nan,
             "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "reason": None,
             **_summary(c, groups.get(c.id, seed_rows.iloc[:0]))} for c in CRITERIA]
    for family in dict.fromkeys(r["family"] for r in rows):
        members = [r for r in rows if r["family"] == family]
        for r, q in zip(members, holm([r["p"] for r in members])):
            r["p_adj"] = float(q)
    for r in rows:
        r["verdict"] = decide(BY_ID[r["id"]], r, alpha)
    return pd.DataFrame(rows)


def claim_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """One verdict per claim (`CLAIMS`) from its rows' verdicts (`verdict_table`), by `CLAIM_RULE`: "all" is supported
    when every row is, contradicted when any row is; "any" is supported when a row is and none is contradicted,
    contradicted when a row is and none is supported. Rows of mixed or missing evidence leave the claim
    inconclusive; a claim none of whose rows was measured is "not measured"."""
    v = dict(zip(table["id"], table["verdict"]))
    out = []
    for claim, ids in CLAIMS.items():
        got = [v.get(i, "not measured") for i in ids]
        sup, con = got.count("supported"), got.count("contradicted")
        if got.count("not measured") == len(got):
            verdict = "not measured"
        elif CLAIM_RULE[claim] == "all":
            verdict = "contradicted" if con else "supported" if sup == len(got) else "inconclusive"
        else:
            verdict = "supported" if sup and not con else "contradicted" if con and not sup else "inconclusive"
        out.append({"claim": claim, "rows": ", ".join(f"{i} {g}" for i, g in zip(ids, got)),
                    "rule": CLAIM_RULE[claim], "verdict": verdict})
    return pd.DataFrame(out)


def single_peak_profiles(n_layers: int) -> dict[str, np.ndarray]:
    """C2's null: importance profiles with one peak (scaled to a largest value of 1): sharp at the bottom (what the
    review's degree-6 fit called multimodal), broad in the middle, rising to the top, and flat."""
    x = np.linspace(0, 1, n_layers)
    return {"bottom": np.exp(-x / 0.08), "middle": np.exp(-((x - 0.5) / 0.2) ** 2), "top": x ** 2,
            "flat": np.full(n_layers, 0.5)}


def three_peak_profile(n_layers: int, depth: float = 0.6) -> np.ndarray:
    """C2's planted truth: peaks of height 1 at 1/6, 1/2 and 5/6 of depth, troughs `depth` below them."""
    x = np.linspace(0, 1, n_layers)
    return 1 - depth * (0.5 - 0.5 * np.cos(6 * np.pi * (x - 1 / 6)))


def noisy_profiles(shape, noise: float, n_seeds: int, rng) -> list[np.ndarray]:
    """`n_seeds` simulated ablation profiles: `shape` + N(0, noise) per layer, each scaled by its largest |value| as
    `layer_profile` scales a seed's (C2's simulations)."""
    P = np.asarray(shape, float) + rng.normal(0, noise, (n_seeds, len(shape)))  # (S, L)
    return list(P / np.abs(P).max(axis=1, keepdims=True))


def c2_rate(shape, noise: float, n_seeds: int, n_sim: int = 1000, seed: int = 0) -> float:
    """Share of simulated studies (`n_seeds` seeds, each `shape` + N(0, noise) per layer, scaled as
    `layer_profile` scales) that C2's row calls supported (chapter 07's size and power checks)."""
    rng = np.random.default_rng(seed)
    c, hits = BY_ID["C2"], 0
    for _ in range(n_sim):
        s = across_seeds(c2_effects(noisy_profiles(shape, noise, n_seeds, rng)), level=CONFIDENCE)
        hits += decide(c, {**s, "p_adj": s["p"]}) == "supported"
    return hits / n_sim


def profile_noise(seed_rows: pd.DataFrame, fallback: float = 0.1) -> float:
    """The book's measured noise of C2's profiles: the median over layers of the sd across seeds of the scaled
    ablation profiles; `fallback` with fewer than two seeds."""
    prof = seed_rows[seed_rows["id"] == "C2"]["profile"] if "profile" in seed_rows else []
    P = np.stack([np.asarray(p, float) for p in prof]) if len(prof) >= 2 else None
    return float(np.median(P.std(axis=0, ddof=1))) if P is not None else fallback


def null_rates(seed_rows: pd.DataFrame, n_sim: int = 2000, seed: int = 0, alpha: float = ALPHA) -> pd.DataFrame:
    """Each row's and each claim's rate of wrong decisive verdicts (supported or contradicted; for C2, whose null is a
    single peak, supported) in `n_sim` simulated studies with no effect (chapter 07; issue 24): the book's seed count,
    each row's effects drawn around its null with the spread measured across the book's seeds (1 where it cannot be
    measured: the t-test does not depend on it), C1's speed-up above its bar, C2's profiles single-peaked
    (`single_peak_profiles`, in turn) at the measured noise (`profile_noise`); then the chapter's own `verdict_table`
    and `claim_verdicts`. Returns id, kind (row or claim), rate, ci_low, ci_high (Wilson 95%)."""
    rng = np.random.default_rng(seed)
    n_seeds = max(2, int(seed_rows["seed"].nunique()))
    spread = {c.id: _spread(seed_rows, c.id) for c in CRITERIA}
    shapes = list(single_peak_profiles(_n_layers(seed_rows)).values())
    noise = profile_noise(seed_rows)
    hits = {}
    for i in range(n_sim):
        rows = []
        for c in CRITERIA:
            if c.id == "C2":
                effects = c2_effects(noisy_profiles(shapes[i % len(shapes)], noise, n_seeds, rng))
                rows += [{"id": "C2", "seed": j, "effect": e} for j, e in enumerate(effects)]
                continue
            e = null_value(c) + rng.normal(0, spread[c.id], n_seeds)
            rows += [{"id": c.id, "seed": j, "effect": x, **({"speedup": C1_SPEEDUP + 1} if c.id in SPEEDUP_OF
                                                             else {})} for j, x in enumerate(e)]
        t = verdict_table(pd.DataFrame(rows), alpha)
        verdicts = {**{("row", i): v for i, v in zip(t["id"], t["verdict"])},
                    **{("claim", k): v for k, v in zip(*claim_verdicts(t)[["claim", "verdict"]].T.values)}}
        for key, v in verdicts.items():  # C2's null (one peak) is what its contradiction says: only support errs
            hits[key] = hits.get(key, 0) + (v == "supported" or (v == "contradicted" and key[1] != "C2"))
    out = [{"id": k, "kind": kind, "rate": h / n_sim, **dict(zip(("ci_low", "ci_high"), wilson(h, n_sim)))}
           for (kind, k), h in hits.items()]
    return pd.DataFrame(out).assign(n_sim=n_sim, n_seeds=n_seeds)


def null_sentence(null: pd.DataFrame, alpha: float = ALPHA) -> str:
    """Chapter 07's reading of `null_rates`: each claim's simulated error rate with its interval, and whether every
    claim stays at or below `alpha`."""
    claims = null[null["kind"] == "claim"]
    worst = claims.loc[claims["rate"].idxmax()]
    within = bool((claims["ci_low"] <= alpha).all())
    return (f"In {int(null['n_sim'].iloc[0]):,} simulated studies with no effect ({int(null['n_seeds'].iloc[0])} "
            f"seeds each), the claims' rates of a wrong decisive verdict are "
            + ", ".join(f"{r.id} {r.rate:.3f}" for r in claims.itertuples())
            + f"; the highest, {worst['id']}, is {worst['rate']:.3f} (95% CI {worst['ci_low']:.3f} to "
            f"{worst['ci_high']:.3f}). "
            + (f"Every claim errs at most at the nominal {alpha:g} within simulation error." if within else
               f"Some claim errs above the nominal {alpha:g}."))


def _spread(seed_rows: pd.DataFrame, row_id: str) -> float:
    e = seed_rows.loc[seed_rows["id"] == row_id, "effect"].dropna() if "effect" in seed_rows else []
    sd = float(np.std(e, ddof=1)) if len(e) >= 2 else 0.0
    return sd if sd > 0 else 1.0


def _n_layers(seed_rows: pd.DataFrame, fallback: int = 24) -> int:
    prof = seed_rows[seed_rows["id"] == "C2"]["profile"] if "profile" in seed_rows else []
    return len(prof.iloc[0]) if len(prof) else fallback


def wilson(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a rate `hits / n` (the null simulation's false-positive rates)."""
    from scipy.stats import norm

    z, p = float(norm.ppf(0.5 + level / 2)), hits / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return centre - half, centre + half


def companions(profile: str) -> tuple:
    """The profiles whose verdicts chapter 07 shows beside `profile`'s (the block's `companions`, `lab.profiles`):
    the other teachers the book has (the pretrained LLM beside the from-scratch teacher)."""
    return tuple(get_profile(profile).companions)


def profile_verdicts(profile: str, artefacts=None, seeds=None, alpha: float = ALPHA) -> tuple[pd.DataFrame, list]:
    """(claim verdicts of a profile's seeds, messages for seeds that lack inputs): `claim_verdicts` of
    `verdict_table` of the seeds found (`default_seeds` when None); an empty frame when no seed has inputs."""
    inputs, missing = load_seeds(profile, default_seeds(profile) if seeds is None else seeds, artefacts)
    if not inputs:
        return pd.DataFrame(columns=["claim", "rows", "rule", "verdict"]), missing
    claims = claim_verdicts(verdict_table(per_seed(inputs), alpha))
    return claims.assign(seeds=", ".join(str(s["seed"]) for s in inputs)), missing


def side_by_side(claims: dict) -> tuple[pd.DataFrame, list[str]]:
    """One column of claim verdicts per run ({run label: `claim_verdicts` frame}), and a sentence for each claim one
    run supports and another contradicts (chapter 07), then one for each claim that some runs decide and others leave
    inconclusive: only decisive verdicts can disagree, but a verdict that one teacher's runs reach and another's cannot
    is worth a sentence too. "not measured" is neither."""
    t = pd.DataFrame({run: c.set_index("claim")["verdict"] for run, c in claims.items() if len(c)})
    lines, partly = [], []
    for claim, row in t.iterrows():
        decisive = row[row.isin(["supported", "contradicted"])]
        open_ = row[row == "inconclusive"]
        if decisive.nunique() > 1:
            lines.append(f"{claim}: the runs disagree — " + ", ".join(f"{run} {v}" for run, v in decisive.items())
                         + ".")
        elif len(decisive) and len(open_):
            partly.append(f"{claim}: {decisive.iloc[0]} by " + " and ".join(decisive.index) + "; inconclusive in "
                          + " and ".join(open_.index) + ".")
    lines += partly
    return t, lines

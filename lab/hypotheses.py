"""The criteria that decide the method authors' claims (issue 15), written down before any run that decides them.

The authors reported H1-H4 "100% supported" without a computed test; two versions of the claims circulate (the four
hypotheses, and the headline C1/C2), and both are tested. Each claim is a `Criterion`: the statistic (the name of a
function that computes one effect per seed from a run's saved artefacts), the test that pools the seeds, the
threshold, the direction the claim predicts, and the family Holm's correction runs within. Chapter 07 reads these
rows and computes every verdict from them; no verdict is typed by hand anywhere.

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

from .constants import DEPTH_BAND
from .profiles import get_profile

ALPHA = 0.05  # family-wise error rate of every family (Holm within the family)
CONFIDENCE = 0.95  # level of every pooled interval
TOP_SHARE = DEPTH_BAND  # H1: the "upper" layers are the top 30% of depth, the "lower" ones the bottom 30%
MIN_RELATIVE_GAIN = 0.01  # H3: a weighting must also gain at least +1% relative NDCG@10
RHO_FLOOR = 0.5  # H2a: the lower bound of Spearman(Fisher, ablation drop)'s interval must reach this
C1_RETENTION = 0.92  # C1: lower bound of the L/4 student's NDCG@10 retention interval
C1_SPEEDUP = 3.2  # C1: measured inference speed-up of that student
C2_BIC_MARGIN = 10.0  # C2: BIC difference that counts as strong evidence (Kass & Raftery: > 10 "very strong")
C2_DEGREES = (2, 6)  # C2: polynomial degrees in relative depth: <= 1 interior peak vs room for three peaks
C2_MIN_POINTS = 21  # C2: fewer layer x seed points than 3 per coefficient of the degree-6 fit: not measured
H4_RIVALS = ("qwen2", "mistral", "gpt_neox")  # H4: llama against two Llama-style families and one non-Llama block
# (GPT-NeoX: LayerNorm, GELU MLP, attention and MLP in parallel); llama must beat each of them
CLAIMS = {"H1": ("H1a", "H1b"), "H2": ("H2a", "H2b"), "H3": ("H3a", "H3b"),  # a claim and the rows that decide it
          "H4": tuple(f"H4-{a}" for a in H4_RIVALS), "C1": ("C1",), "C2": ("C2",)}
CLAIM_RULE = {"H1": "any", "H2": "all", "H3": "any", "H4": "all", "C1": "all", "C2": "all"}  # "all": every row must
# be supported (H2 needs rank agreement and a selection that beats random; H4 llama above every rival); "any": one
# measure or weighting suffices (H1's two readings of "matter", H3's two weightings)


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


CRITERIA: tuple[Criterion, ...] = (
    Criterion("H1a", "upper layers (top 30% of depth) matter more than lower ones (bottom 30%): ablation",
              "h1_ablation_gap", "t interval across seeds of the per-seed gap", 0.0, "greater", "H1",
              "supported if the 95% CI is above 0, contradicted if below, else inconclusive",
              "03: importance.parquet, signal ablation_drop (single-layer validation NDCG@10 drop)"),
    Criterion("H1b", "upper layers (top 30% of depth) matter more than lower ones (bottom 30%): Fisher share",
              "h1_fisher_gap", "t interval across seeds of the per-seed gap", 0.0, "greater", "H1",
              "supported if the 95% CI is above 0, contradicted if below, else inconclusive",
              "03: importance.parquet, signal fisher_empirical, norm total (share of the layers' Fisher trace)"),
    Criterion("H2a", "Fisher information accurately quantifies each layer's contribution: rank agreement",
              "h2_spearman", "t interval across seeds of the per-seed Spearman(Fisher, ablation drop)", RHO_FLOOR,
              "greater", "H2a",
              "supported if the CI's lower bound >= 0.5, contradicted if its upper bound < 0.5, else inconclusive",
              "03: importance.parquet, fisher_empirical (total) and ablation_drop per layer"),
    Criterion("H2b", "Fisher information accurately quantifies each layer's contribution: Fisher-selected students "
              "beat random ones", "h2_fisher_vs_random",
              "per-seed mean over test users of NDCG@10(fisher_topk) - mean over random draws; t-test across seeds",
              0.0, "greater", "H2b",
              "supported if the effect is > 0 with Holm-adjusted p < 0.05 (H2 as a whole needs H2a and H2b); "
              "contradicted if < 0 with adjusted p < 0.05, else inconclusive",
              "05: distill_per_user.parquet, fisher_topk:<v> and random#<d>:<v> rows of one variant v (kd first)"),
    Criterion("H3a", "depth-increasing layer weights in the layer-wise loss beat uniform weights",
              "h3_depth_vs_uniform", "per-seed paired mean NDCG@10 difference over test users, relative to "
              "kd+uniform; t-test across seeds", MIN_RELATIVE_GAIN, "greater", "H3",
              "supported if better with Holm-adjusted p < 0.05 and a relative gain >= +1%; contradicted if worse with "
              "adjusted p < 0.05, else inconclusive",
              "05: distill_per_user.parquet, fisher_topk:kd+depth vs fisher_topk:kd+uniform"),
    Criterion("H3b", "Fisher layer weights in the layer-wise loss beat uniform weights",
              "h3_fisher_vs_uniform", "per-seed paired mean NDCG@10 difference over test users, relative to "
              "kd+uniform; t-test across seeds", MIN_RELATIVE_GAIN, "greater", "H3",
              "supported if better with Holm-adjusted p < 0.05 and a relative gain >= +1%; contradicted if worse with "
              "adjusted p < 0.05, else inconclusive",
              "05: distill_per_user.parquet, fisher_topk:kd+fisher vs fisher_topk:kd+uniform"),
    *(Criterion(f"H4-{other}", f"Llama is better for recommendation than other open architectures: llama vs {other}",
                f"h4_llama_vs_{other}", f"per-seed mean over test users of NDCG@10(llama) - NDCG@10({other}), models of "
                "the same width, depth, data and training budget; t-test across seeds", 0.0, "greater", "H4",
                "supported if llama is better with Holm-adjusted p < 0.05 (H4 as a whole needs every H4 row); "
                "contradicted if worse with adjusted p < 0.05, else inconclusive",
                "02: 02_architectures.parquet, per-user test NDCG@10 of one model per architecture trained from scratch "
                "at the profile's H4 depth (lab.bench.arch.arch_depth) with the teacher's width and recipe")
      for other in H4_RIVALS),
    Criterion("C1", "the headline: a student with 25% of the layers keeps 92% of the quality at 3.2x speed",
              "c1_retention", "t interval across seeds of the per-seed NDCG@10 retention of the distilled L/4 "
              "student (chapter 05's best setting); speed-up: the mean over seeds of its measured speed-up",
              C1_RETENTION, "greater", "C1",
              "supported if the CI's lower bound >= 0.92 and the mean speed-up >= 3.2; contradicted if the CI's "
              "upper bound < 0.92 or the speed-up < 3.2, else inconclusive",
              "05: results.json best_retention, best_speedup (batch 256)"),
    Criterion("C2", "layer importance is multimodal (bottom, middle and top peaks)",
              "c2_multimodal", "BIC of polynomial fits (degree 2 vs 6) in relative depth of every seed's per-layer "
              "ablation drop (scaled by the seed's largest drop); the degree-6 fit must peak in each third",
              C2_BIC_MARGIN, "greater", "C2",
              "supported if BIC(2) - BIC(6) > 10 and the degree-6 fit has a local maximum in the bottom, middle and "
              "top third; contradicted if BIC(2) - BIC(6) < -10; else inconclusive",
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


def c1_retention(s: dict) -> float:
    r = s["results"].get("05_distillation", {})
    if "best_retention" not in r:
        raise LookupError("chapter 05 recorded no best_retention")
    return float(r["best_retention"])


def c1_speedup(s: dict) -> float:
    return float(s["results"]["05_distillation"]["best_speedup"])


def layer_profile(s: dict) -> np.ndarray:
    """C2: a seed's single-layer ablation drops scaled by the largest |drop|."""
    v = _signal(s["importance"], "ablation_drop", "raw")
    return v / (np.abs(v).max() or 1.0)


def c2_multimodal(profiles: list) -> dict:
    """BIC(degree 2) - BIC(degree 6) of polynomial fits in relative depth to every seed's profile, and whether the
    degree-6 fit has a local maximum (endpoints included) in each third of the depth."""
    x = np.concatenate([np.linspace(0, 1, len(p)) for p in profiles])
    y = np.concatenate(profiles)
    bic = {}
    for d in C2_DEGREES:
        rss = float(np.sum((np.polyval(np.polyfit(x, y, d), x) - y) ** 2))
        bic[d] = len(y) * math.log(max(rss, 1e-300) / len(y)) + (d + 1) * math.log(len(y))
    g = np.linspace(0, 1, 301)
    f = np.polyval(np.polyfit(x, y, C2_DEGREES[1]), g)
    peak = np.r_[f[0] > f[1], (f[1:-1] > f[:-2]) & (f[1:-1] > f[2:]), f[-1] > f[-2]]
    thirds = [bool(peak[(g >= a) & (g <= a + 1 / 3)].any()) for a in (0, 1 / 3, 2 / 3)]
    return {"estimate": bic[C2_DEGREES[0]] - bic[C2_DEGREES[1]], "peaks_in_thirds": thirds, "n_points": len(y)}


STATISTICS = {f.__name__: f for f in (h1_ablation_gap, h1_fisher_gap, h2_spearman, h2_fisher_vs_random,
                                      h3_depth_vs_uniform, h3_fisher_vs_uniform, c1_retention,
                                      *(h4_llama_vs(a) for a in H4_RIVALS))}


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
    from .book import paths, results

    P = paths(profile, artefacts, seed, create=False)
    missing = [f for f in SEED_FILES if not P.file(f).is_file()]
    if missing:
        raise FileNotFoundError(f"seed {seed}: {', '.join(missing)} missing in {P.root}; make them with "
                                f"python -m lab rerun --profile {profile} --seeds {seed} --only {' '.join(SEED_CHAPTERS)}")
    arch = P.file(ARCH_FILE)
    return {"seed": int(seed), "importance": pd.read_parquet(P.file("importance.parquet")),
            "per_user": pd.read_parquet(P.file("distill_per_user.parquet")),
            "architectures": pd.read_parquet(arch) if arch.is_file() else None,
            "results": results(profile, artefacts, seed)}


def per_seed(inputs: list[dict]) -> pd.DataFrame:
    """One row per (criterion, seed): the statistic's effect, or the reason it could not be measured."""
    rows = []
    for c in CRITERIA:
        for s in inputs:
            if c.id == "C2":
                rows.append({"id": c.id, "seed": s["seed"], "profile": list(layer_profile(s))})
                continue
            try:
                rows.append({"id": c.id, "seed": s["seed"], "effect": STATISTICS[c.statistic](s),
                             **({"speedup": c1_speedup(s)} if c.id == "C1" else {})})
            except LookupError as e:
                rows.append({"id": c.id, "seed": s["seed"], "reason": str(e).strip("'\"")})
    return pd.DataFrame(rows)


def _summary(c: Criterion, rows: pd.DataFrame) -> dict:
    if "reason" in rows and rows["reason"].notna().any():
        return {"n_seeds": len(rows), "reason": rows["reason"].dropna().iloc[0]}
    if c.id == "C2":
        n = sum(len(p) for p in rows["profile"])
        if n < C2_MIN_POINTS:
            return {"n_seeds": len(rows), "reason": f"{n} layer x seed points; a degree-{C2_DEGREES[1]} fit needs "
                                                    f">= {C2_MIN_POINTS} (3 per coefficient)"}
        return {"n_seeds": len(rows), **c2_multimodal([np.asarray(p, float) for p in rows["profile"]])}
    # p tests against the threshold where the rule compares an interval with it (C1; H2a on Fisher's z), else 0
    null = {"C1": c.threshold, "H2a": float(np.arctanh(c.threshold))}.get(c.id, 0.0)
    out = across_seeds(rows["effect"], null=null, level=CONFIDENCE)
    if c.id == "H2a":  # pooled on Fisher's z, reported as rho
        out.update({k: float(np.tanh(out[k])) for k in ("estimate", "ci_low", "ci_high")})
    if c.id == "C1":
        out["speedup"] = float(rows["speedup"].mean())
    return out


def decide(c: Criterion, s: dict, p_adj: float = math.nan, alpha: float = ALPHA) -> str:
    """The verdict of one criterion from its pooled summary (and Holm-adjusted p), by the rule in `c.rule`."""
    if isinstance(s.get("reason"), str) and s["reason"]:
        return "not measured"
    est, lo, hi = s.get("estimate", math.nan), s.get("ci_low", math.nan), s.get("ci_high", math.nan)
    if c.family in ("H1", "H2a"):
        return "supported" if lo >= c.threshold and (c.family == "H2a" or lo > c.threshold) else \
            "contradicted" if hi < c.threshold else "inconclusive"
    if c.id == "C1":
        return "supported" if lo >= c.threshold and s["speedup"] >= C1_SPEEDUP else \
            "contradicted" if hi < c.threshold or s["speedup"] < C1_SPEEDUP else "inconclusive"
    if c.id == "C2":
        return "supported" if est > c.threshold and all(s["peaks_in_thirds"]) else \
            "contradicted" if est < -c.threshold else "inconclusive"
    if not p_adj < alpha:
        return "inconclusive"
    return "supported" if est > 0 and est >= c.threshold else "contradicted" if est < 0 else "inconclusive"


def verdict_table(seed_rows: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Claim, statistic, estimate, CI, p, Holm-adjusted p (within each family) and verdict of every criterion."""
    rows = [{"id": c.id, "family": c.family, "claim": c.claim, "statistic": c.statistic,
             **_summary(c, seed_rows[seed_rows["id"] == c.id])} for c in CRITERIA]
    t = pd.DataFrame(rows)
    for col in ("estimate", "ci_low", "ci_high", "p", "reason"):
        t[col] = t[col] if col in t else (None if col == "reason" else math.nan)
    t["p_adj"] = math.nan
    for _, idx in t.groupby("family").groups.items():
        t.loc[idx, "p_adj"] = holm(t.loc[idx, "p"].astype(float))
    t["verdict"] = [decide(BY_ID[r.id], r._asdict(), r.p_adj, alpha) for r in t.itertuples(index=False)]
    return t


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
    """One column of claim verdicts per run ({run label: `claim_verdicts` frame}), and a sentence for each claim on
    which the runs that measured it disagree (chapter 07)."""
    t = pd.DataFrame({run: c.set_index("claim")["verdict"] for run, c in claims.items() if len(c)})
    lines = []
    for claim, row in t.iterrows():
        measured = row[row.notna() & (row != "not measured")]
        if measured.nunique() > 1:
            lines.append(f"{claim}: the runs disagree — " + ", ".join(f"{run} {v}" for run, v in measured.items())
                         + ".")
    return t, lines

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

ALPHA = 0.05  # family-wise error rate of every family (Holm within the family)
CONFIDENCE = 0.95  # level of every pooled interval
TOP_SHARE = 0.30  # H1: the "upper" layers are the top 30% of depth, the "lower" ones the bottom 30%
MIN_RELATIVE_GAIN = 0.01  # H3: a weighting must also gain at least +1% relative NDCG@10
RHO_FLOOR = 0.5  # H2a: the lower bound of Spearman(Fisher, ablation drop)'s interval must reach this
C1_RETENTION = 0.92  # C1: lower bound of the L/4 student's NDCG@10 retention interval
C1_SPEEDUP = 3.2  # C1: measured inference speed-up of that student
C2_BIC_MARGIN = 10.0  # C2: BIC difference that counts as strong evidence (Kass & Raftery: > 10 "very strong")
C2_DEGREES = (2, 6)  # C2: polynomial degrees in relative depth: <= 1 interior peak vs room for three peaks


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
              "05: distill_per_user.parquet, fisher_topk:<v> and random#<d>:<v> rows of one variant v"),
    Criterion("H3a", "depth-increasing layer weights in the layer-wise loss beat uniform weights",
              "h3_depth_vs_uniform", "per-seed paired mean NDCG@10 difference over test users, relative to "
              "kd+uniform; t-test across seeds", MIN_RELATIVE_GAIN, "greater", "H3",
              "supported if better with Holm-adjusted p < 0.05 and a relative gain >= +1%; contradicted if worse with "
              "adjusted p < 0.05, else inconclusive",
              "05: distill_per_user.parquet, fisher_topk:kd+layer:depth vs fisher_topk:kd+layer:uniform"),
    Criterion("H3b", "Fisher layer weights in the layer-wise loss beat uniform weights",
              "h3_fisher_vs_uniform", "per-seed paired mean NDCG@10 difference over test users, relative to "
              "kd+uniform; t-test across seeds", MIN_RELATIVE_GAIN, "greater", "H3",
              "supported if better with Holm-adjusted p < 0.05 and a relative gain >= +1%; contradicted if worse with "
              "adjusted p < 0.05, else inconclusive",
              "05: distill_per_user.parquet, fisher_topk:kd+layer:fisher vs fisher_topk:kd+layer:uniform"),
    Criterion("H4", "Llama is better for recommendation than other open architectures",
              "h4_architectures", "per-seed paired NDCG@10 difference of the llama teacher minus each other "
              "architecture's (same width, depth, data, budget); t-test across seeds", 0.0, "greater", "H4",
              "supported if llama beats each of >= 3 other architectures (qwen2, mistral, a non-Llama block such as "
              "gpt_neox or gpt2) with Holm-adjusted p < 0.05; contradicted if one beats llama so, else inconclusive",
              "02: per-user test metrics of teachers of >= 3 architectures per seed"),
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

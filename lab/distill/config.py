"""`DistillConfig`: every loss term, weighting, mapping and adapter of the distillation trainer is a switch (chapter 05).

A *variant* names a combination of loss terms: "ce" (next-item CE only, no teacher), "kd" (CE + logit KD), and
"kd+<weighting>" / "ce+<weighting>" (adds the layer-wise hidden-state term under that weighting). Single fields (e.g.
the weighting) are flipped with `dataclasses.replace` or `with_variant`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import TrainConfig
from ..profiles import profile_config

__all__ = ["DISTANCES", "MAPPINGS", "WEIGHTINGS", "POSITIONS", "ADAPTERS", "LLAMA_PROJECTIONS", "TINYBERT",
           "BASELINE_VARIANTS", "METHOD_RULE", "METHOD_VARIANT", "DistillConfig", "DistillGrid"]

DISTANCES = ("mse", "cosine", "slmrec")
MAPPINGS = ("source", "last_of_block", "uniform")
WEIGHTINGS = ("uniform", "depth", "fisher", "none")
POSITIONS = ("all", "last")
ADAPTERS = ("full", "lora", "qlora")
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# TinyBERT's task distillation (Jiao et al. 2020) in one stage: the embedding-layer MSE, per student layer the MSE of
# its hidden states and of its attention maps against the teacher layer its mapping names (TinyBERT's g(m) = m·L/k is
# "last_of_block"), and the prediction layer as soft cross-entropy at T = 1 — no hard labels (alpha 0). Differences,
# stated: one stage instead of intermediate-then-prediction, the layer terms averaged over layers (uniform weights,
# TinyBERT sums: a factor k), attention probabilities (MiniLM's choice) at the KD positions' queries rather than raw
# scores over all positions, no general distillation (the student starts from the teacher's layers, as every student
# of chapter 05 does).
TINYBERT = dict(alpha=0.0, beta=1.0, temperature=1.0, gamma=1.0, weighting="uniform", distance="mse",
                mapping="last_of_block", attention=1.0, embedding=1.0)
BASELINE_VARIANTS = ("tinybert",)  # variants trained as baselines after chapter 05's choices, never chosen by them
# The book's method, as its authors state it: the Fisher-selected layers (selection rule "fisher_topk") distilled with
# logit KD plus the Fisher-weighted layer-wise term ("kd+fisher"). Its student is the one C1 and chapter 06 test
# (`lab.distill.trainer.method_student`); where the grid did not train that variant, the first trained one of a stated
# order (`lab.hypotheses.VARIANT_ORDER`) stands in, never a choice made on test.
METHOD_RULE = "fisher_topk"
METHOD_VARIANT = "kd+fisher"


@dataclass
class DistillConfig:
    """Loss = alpha·CE + beta·T²·KL(teacher ‖ student) + gamma·Σ_i w_i·d(h_s_i, h_t_map(i)); adapters; budget."""

    # --- loss terms ---
    alpha: float = 1.0  # weight of next-item cross-entropy on the true labels (all labelled positions)
    beta: float = 1.0  # weight of logit KD: T²·KL(softmax(t/T) ‖ softmax(s/T)) over the full catalogue
    gamma: float = 1.0  # weight of the layer-wise hidden-state term (0 or weighting "none" switches it off)
    temperature: float = 2.0  # KD softmax temperature T (Hinton et al. 2015; the loss is scaled by T²)
    distance: str = "cosine"  # d(h_s, h_t): "mse", "cosine" (1 − cos), "slmrec" ((1 − cos) + 0.1·‖h_s − h_t‖₂)
    mapping: str = "last_of_block"  # student layer i -> teacher layer of the layer-wise term: "last_of_block"
    #   (SLMRec: last layer of the i-th of k equal blocks, (i+1)·L/k − 1; the default, so the term can carry what the
    #   dropped layers computed), "source" (config.source_layers: a bottom-k student starts with the term at exactly 0),
    #   "uniform" (round(linspace(0, L-1, k)))
    weighting: str = "uniform"  # layer weights w_i, all summing to 1: "uniform", "depth" (∝ linspace(0.1, 1, k)),
    #                             "fisher" (∝ Fisher importance of the mapped teacher layers), "none" (term off)
    attention: float = 0.0  # weight of TinyBERT's attention term: MSE between the attention probabilities of each
    #                         student layer and its mapped teacher layer (all heads, the queries at `positions`); 0 = off
    embedding: float = 0.0  # weight of TinyBERT's embedding-layer term: MSE between the student's and the teacher's
    #                         input embeddings of the batch's items; 0 = off
    positions: str = "last"  # where the KD and hidden terms apply: the "last" position (the one inference scores;
    #                          SLMRec's choice; a KD step then costs about a CE step) or "all" labelled positions
    # --- adapters ---
    adapter: str = "full"  # "full" fine-tuning, "lora" (peft), "qlora" (4-bit NF4 base via bitsandbytes + LoRA)
    lora_r: int = 8  # LoRA rank
    lora_alpha: float = 16.0  # LoRA scaling numerator (scale = lora_alpha / lora_r)
    lora_dropout: float = 0.0  # dropout on the LoRA input
    lora_targets: tuple = LLAMA_PROJECTIONS  # projections that get adapters (attention and MLP)
    lora_train_embeddings: bool = False  # also train the item table (peft modules_to_save); off: the student keeps
    #                                      the teacher's item table, so both score in the same space
    # --- teacher outputs ---
    cache_teacher: bool = True  # run the frozen teacher once over the training set and reuse its outputs (IISAN)
    cache_dtype: str = "float32"  # dtype of cached hidden states ("float32", "bfloat16", "float16")
    # --- budget (overrides the teacher's TrainConfig) ---
    epochs: int = 6  # maximum epochs per student
    patience: int = 2  # early stopping on validation NDCG@10
    lr: float | None = None  # peak learning rate for full fine-tuning (None = the teacher's)
    lora_lr: float | None = None  # peak learning rate with LoRA / QLoRA (None = 2 × lr)

    def __post_init__(self):
        for name, allowed in (("distance", DISTANCES), ("mapping", MAPPINGS), ("weighting", WEIGHTINGS),
                              ("positions", POSITIONS), ("adapter", ADAPTERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        self.lora_targets = tuple(self.lora_targets)

    @classmethod
    def for_profile(cls, profile: str) -> "DistillConfig":
        """The profile's `distill` section: the students' training budget (`lab.profiles`)."""
        return profile_config(cls, profile, "distill")

    @property
    def uses_teacher(self) -> bool:
        """Whether any term needs the teacher (KD, the layer-wise, attention or embedding term)."""
        return self.beta > 0 or self.uses_layers or self.uses_attention or self.embedding > 0

    @property
    def uses_attention(self) -> bool:
        """Whether the attention-map term is on (the student and the teacher then run eager attention)."""
        return self.attention > 0

    @property
    def uses_layers(self) -> bool:
        """Whether the layer-wise hidden-state term is on."""
        return self.gamma > 0 and self.weighting != "none"

    @property
    def variant(self) -> str:
        """The variant name of this loss combination ("ce", "kd", "kd+fisher", "ce+depth", ..., "tinybert")."""
        if self.uses_attention:
            return "tinybert"
        base = "kd" if self.beta > 0 else "ce"
        return f"{base}+{self.weighting}" if self.uses_layers else base

    def with_variant(self, name: str) -> "DistillConfig":
        """A copy switched to a variant: "ce", "kd", "ce+<weighting>" or "kd+<weighting>" (weighting as above), or
        "tinybert" (`TINYBERT`).

        Weights of the terms that stay on keep their values; a term that was 0 is set to 1.
        """
        if name == "tinybert":
            return dataclasses.replace(self, **TINYBERT)
        base, _, w = name.partition("+")
        if base not in ("ce", "kd") or (w and w not in WEIGHTINGS):
            raise ValueError(f"unknown variant {name!r}: use ce | kd, optionally +{'|'.join(WEIGHTINGS)}, or tinybert")
        beta = (self.beta or 1.0) if base == "kd" else 0.0
        gamma = (self.gamma or 1.0) if w and w != "none" else 0.0
        return dataclasses.replace(self, beta=beta, gamma=gamma, weighting=w or "none")

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """The TrainConfig of a student run: the teacher's, with this budget and learning rate."""
        lr = self.lr if self.lr is not None else base.lr
        if self.adapter != "full":
            lr = self.lora_lr if self.lora_lr is not None else 2 * lr
        return dataclasses.replace(base, epochs=self.epochs, patience=self.patience, lr=lr)


@dataclass
class DistillGrid:
    """Which students chapter 05 trains: selection rules × loss variants, plus LoRA / QLoRA on the best setting."""

    rules: tuple = ("fisher_topk", "uniform")  # selection rules whose layer lists (selections.parquet) are distilled
    main_rules: tuple = ("fisher_topk", "uniform")  # rules that get every variant; the others get the best variant
    variants: tuple = ("ce", "kd", "kd+layer")  # (a) CE only, (b) logit KD, (c) logit KD + layer-wise term
    weightings: tuple = ("uniform", "depth", "fisher")  # layer weightings that "kd+layer" is trained with
    n_random: int = 0  # random-selection draws used (rule "random", draws 0..n_random-1)
    adapters: tuple = ("lora", "qlora")  # adapter runs on the best full fine-tuning setting
    tinybert_rules: tuple = ("uniform",)  # selection rules whose layer sets are also distilled TinyBERT's way
    #   (`TINYBERT`, after the choices): the "uniform" *selection rule* (DistilBERT's every-other-layer start); the
    #   layer *mapping* of TinyBERT's terms is its g(m) = m·L/k, "last_of_block"
    extended_teacher: bool = True  # also train the teacher for the students' epochs from its saved weights (the
    #   control "the teacher given the same extra compute", issue 24); off for a pretrained LLM teacher, whose LoRA
    #   recipe a merged checkpoint cannot continue

    @classmethod
    def for_profile(cls, profile: str) -> "DistillGrid":
        """The profile's `distill_grid` section: which students chapter 05 trains (`lab.profiles`). Every profile
        adds TinyBERT's run of the uniform layers."""
        return profile_config(cls, profile, "distill_grid")

    def with_overrides(self, rules=None, main_rules=None, variants=None, weightings=None, n_random: int | None = None,
                       adapters=None) -> "DistillGrid":
        """A copy with chapter 05's parameters-cell overrides; None keeps the profile's value (`lab.resolve`), so
        `adapters=[]` means no adapter runs."""
        given = {"rules": rules, "main_rules": main_rules, "variants": variants, "weightings": weightings,
                 "adapters": adapters}
        out = dataclasses.replace(self, **{k: tuple(v) for k, v in given.items() if v is not None})
        if n_random is not None:
            out.n_random = int(n_random)
        return out

    def split_sets(self, layer_sets) -> tuple[list, list]:
        """`layer_sets` ((name, rule, draw, layers) tuples) split into those of the main rules, trained with every
        variant, and the others, trained with the variant chosen on validation (chapter 05)."""
        main = [s for s in layer_sets if s[1] in self.main_rules]
        return main, [s for s in layer_sets if s[1] not in self.main_rules]

    def variant_runs(self, layer_sets) -> dict[str, list[str]]:
        """{variant: the student names of the main rules' layer sets trained with it}: the same layer sets, one list
        per variant, for the paired variant comparisons (chapter 05)."""
        main, _ = self.split_sets(layer_sets)
        return {v: [f"{name}:{v}" for name, *_ in main] for v in self.variant_names()}

    def layer_sets(self, selections, k: int) -> list[tuple]:
        """(name, rule, draw, layers) of each rule at budget k, from chapter 04's `selections.parquet` (chapter 05).

        A rule gets its first draw; "random" its first `n_random` draws, named "random#<draw>". A rule without a
        selection at k is skipped with a printed note.
        """
        from ..selection import parse_layers

        at_k = selections[selections["k"] == k]
        out = []
        for rule in self.rules:
            rows = at_k[at_k["rule"] == rule].sort_values("draw")
            rows = rows.head(self.n_random if rule == "random" else 1)
            if not len(rows) and (rule != "random" or self.n_random > 0):
                print(f"note: chapter 04 has no {rule!r} selection at k={k}; skipped")
            for _, r in rows.iterrows():
                name = f"{rule}#{int(r['draw'])}" if rule == "random" else rule
                out.append((name, rule, int(r["draw"]), parse_layers(r["layers"])))
        return out

    def variant_names(self) -> list[str]:
        """The loss variants in `DistillConfig.with_variant` names: "kd+layer" expands to one per weighting."""
        out = []
        for v in self.variants:
            out += [f"kd+{w}" for w in self.weightings] if v == "kd+layer" else [v]
        return out

"""The configuration dataclasses every chapter passes around, and the synthetic worlds (leaf: imports nothing of ours).

`DataConfig` (what data, how pre-processed), `ModelConfig` (the teacher's shape), `TrainConfig` (its recipe) and
`BookConfig` (the three, for one profile and seed). The profiles themselves, one block each, live in `lab.profiles`
(`get_config(profile, seed)`). The synthetic data comes in two worlds (`WORLDS`): the `depth` world of issue 12, whose
next item needs composition across positions (`DEPTH_WORLD`, `lab.data.synthetic`), and the `shallow` world the book
began with, whose next item depends on the last item only. `$LAB_RAW_DIR` / `$LAB_CATEGORY` (real Amazon data) and
`$LAB_BACKBONE` (a pretrained LLM teacher) are read here, applied by `get_config`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

__all__ = ["WORLDS", "DataConfig", "ModelConfig", "TrainConfig", "BookConfig", "config_hash", "DEPTH_WORLD",
           "depth_world", "CATEGORY_PATTERN", "check_category", "real_data_from_env", "backbone_from_env"]

WORLDS = ("shallow", "depth")  # the synthetic worlds (`DEPTH_WORLD`)


@dataclass
class DataConfig:
    """What data to generate or read, and how to pre-process it (chapter 01)."""

    source: str = "synthetic"  # "synthetic" (generated Amazon-2023-format files), "amazon" (files on disk) or
    #                            "movielens" (MovieLens-100K from the RecBole wheel `make env` fetches; issue 25)
    category: str = "Synthetic_Books"  # file stem: <category>.jsonl.gz and meta_<category>.jsonl.gz
    raw_dir: str = ""  # where raw files live; "" = <artefacts>/raw
    # --- synthetic generator ---
    n_users: int = 6000  # users generated (before k-core)
    n_items: int = 2500  # items generated (before k-core)
    n_clusters: int = 20  # latent item clusters (tastes)
    mean_seq_len: float = 18.0  # mean interactions per user
    popularity_alpha: float = 1.1  # power-law exponent of item popularity within a cluster
    markov_strength: float = 0.7  # probability the next cluster follows the cluster-level Markov chain
    successor_strength: float = 0.4  # probability the next item is one of the last item's preferred successors
    n_successors: int = 3  # preferred "next" items per item, inside its cluster (item-level sequential pattern)
    duplicate_frac: float = 0.003  # share of review rows written twice (exact duplicates, for de-duplication)
    repeat_frac: float = 0.01  # share of interactions reviewed again later (repeated user-item pairs)
    # --- the depth world (lab.data.synthetic; all strengths 0 = the shallow world above, byte for byte) ---
    induction_strength: float = 0.0  # rho: the next cluster is pi_u(last cluster), pi_u a user's private random map
    pointer_strength: float = 0.0  # eta: the next cluster is that of the item pointer_hops lag-hops back
    pointer_hops: int = 2  # h: hops p <- p - lag(x_p) from the last position (used when pointer_strength > 0)
    max_lag: int = 3  # D: every item's latent lag is uniform in 1..D (used when pointer_strength > 0)
    switch_strength: float = 0.0  # s: mode 1 follows the cluster chain (1 - s) T_0 + s T', mode 0 follows T_0 ...
    n_switch_items: int = 0  # ... and the item after the most recent of these switch items sets the mode (its bit)
    # --- pre-processing ---
    k_core: int = 5  # iterative k-core on users and items
    tie_break: str = "line"  # order of a user's interactions with equal timestamps (`lab.data.preprocess.TIE_BREAKS`):
    #   "line" (file order: Amazon's timestamps are in ms and rarely tie), "item" (the item token, numerically when
    #   every token is an integer: MovieLens, where 75.8% of the ratings tie with another of the same user), or
    #   "shuffle" (a seeded random order, `tie_seed`: how much the split depends on the rule, chapter 01)
    tie_seed: int = 0  # the seed of tie_break="shuffle"
    item_text: str = "title"  # what `RecData.item_titles` holds, the text an LLM teacher reads of an item: "title", or
    #   "title_categories" ("Toy Story (1995) — Animation, Children's, Comedy": MovieLens' genres; issue 25)
    split: str = "leave_last_out"  # "leave_last_out" or "timestamp"
    valid_from_ms: int = 1628643414042  # timestamp split: validation cut-off (Amazon 2023 benchmark value)
    test_from_ms: int = 1658002729837  # timestamp split: test cut-off (Amazon 2023 benchmark value)
    max_len: int = 30  # history length fed to the model (most recent items, left-padded)
    train_windows: int = 1  # training windows of max_len + 1 items per user, newest first (`lab.data.splits.
    #   training_windows`): 1 = the last only (the synthetic profiles: their histories fit one window); 0 = all, so a
    #   long real history (MovieLens: 105 ratings per user on average) is every transition once
    chunk_size: int = 200_000  # rows per chunk when streaming raw files
    strict: bool = False  # raise on the first bad raw row (naming file, line, field) instead of skipping it


@dataclass
class ModelConfig:
    """The teacher's shape: a stack of Hugging Face decoder layers over item embeddings (chapter 02)."""

    arch: str = "llama"  # backbone family: "llama", "qwen2", "mistral", "gpt_neox" (lab.models.ARCHS)
    num_layers: int = 24  # decoder layers of the teacher
    hidden_size: int = 64  # backbone width
    num_heads: int = 4  # attention heads
    intermediate_size: int = 128  # MLP width
    item_dim: int = 64  # item-embedding width (projected to hidden_size when different)
    dropout: float = 0.1  # dropout on item embeddings and attention
    init_std: float = 0.02  # std of the normal init of every linear layer (Llama's initializer_range)
    embedding_std: float = 0.1  # std of the item-embedding init (larger than init_std: items must be told apart
    #                             from the first step; measured on the default teacher, 0.02 sat at popularity longer)
    scale_residual_init: bool = True  # divide the init of each residual output (o_proj, down_proj) by sqrt(2L),
    #                                   as GPT-2 does, so a deep stack starts close to the identity
    use_text: bool = False  # add frozen title features (hashed bag of words) to item embeddings
    text_dim: int = 256  # width of the hashed title features when use_text
    # --- a pretrained LLM as the teacher (issue 13; `lab.models.build_teacher`) ---
    backbone: str | None = None  # a `lab.backbones` name ("smollm2-135m") or a local checkpoint folder: the teacher is
    #                              that LLM's decoder layers (width, heads and depth its own; the size fields above then
    #                              describe the models trained from scratch beside it); None: built from scratch
    tuning: str = "lora"  # the LLM's base: "lora" (frozen, LoRA adapters and the item table trained) or "full"
    lora_r: int = 8  # LoRA rank of the LLM teacher's adapters
    lora_alpha: float = 16.0  # LoRA scaling numerator (scale = lora_alpha / lora_r)
    title_init: bool = True  # start each titled item's ID embedding from the LLM's reading of its text ...
    title_encoding: str = "tokens"  # ... "tokens": the mean of its token embeddings; "hidden": the mean last hidden
    #   state of the whole LLM over it (`lab.backbones.title_hidden_states`: context, so known titles land near each
    #   other; 1,682 MovieLens titles ~110 s on the 2-core CPU, cached)
    head: str = "dot"  # how the LLM teacher scores items from its last hidden state: "dot", the state itself against
    #   the item table; "standardised", a trained per-dimension affine map first, started so that the states of
    #   random histories have mean 0 and variance 1 in every dimension (`lab.constants.HEADS`). SmolLM2's final states
    #   share one large vector whatever the history (squared norm of the mean 2,347 against a total variance of 677
    #   over 64 random histories of 16 items; dimension 199 alone averages 42), so 86% of the variance of the items'
    #   scores at the start was the same for every history (2026-12-07, docs/movielens.md); it did not lift the teacher


@dataclass
class TrainConfig:
    """How a recommender is trained: full-catalogue softmax CE, AdamW, warm-up + cosine (chapter 02)."""

    epochs: int = 30  # maximum epochs
    batch_size: int = 256  # users per step
    lr: float = 3e-3  # peak learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_frac: float = 0.05  # fraction of steps with linear warm-up
    grad_clip: float = 1.0  # max gradient norm
    patience: int = 3  # early stopping on validation NDCG@10 (epochs without improvement)
    eval_batch_size: int = 512  # users per evaluation batch
    max_minutes: float = 9.0  # wall-clock budget; training stops (and says so) when exceeded
    cuda_batch_size: int | None = None  # users per step on a GPU (None: batch_size). No profile sets one: measured
    #   on the CPU (2026-11-27, `python -m lab train --profile default --batch-size B --lr LR`, seed 0, 12 epochs),
    #   the 24-layer default teacher needs steps, not samples: batch 64 reaches validation NDCG@10 0.158, batch 256
    #   0.090 (lr 2e-3) and 0.085 (lr 4e-3, stopped early), about popularity's level. A GPU's gain must come from
    #   faster steps at batch 64 (resident tensors, fused AdamW, no sync, compile), not from bigger batches.
    torch_compile: bool | str = False  # torch.compile the CE training forward on CUDA: True or "default", or a mode:
    #   "reduce-overhead" (CUDA graphs: one launch for a step's many small kernels, the likely win at batch 64),
    #   "max-autotune"; off until measured (`bench train`'s CUDA_VARIANTS). On this CPU the compiled smoke step took
    #   ~2/3 of the eager one after a 42 s compile, with 2 graph breaks.
    cuda_deterministic: bool = False  # deterministic CUDA kernels (slower); CPU training is deterministic regardless


@dataclass
class BookConfig:
    """Everything a chapter needs, for one profile and seed."""

    profile: str = "default"  # a profile's name (`lab.profiles.PROFILES`; `get_config` checks it)
    seed: int = 0  # global seed
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def config_hash(obj) -> str:
    """A short stable hash of a dataclass (or dict), used to key cached artefacts."""
    d = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


# The depth world (issue 12): few clusters so that a user's clusters recur within a history (induction needs an
# earlier occurrence of the last cluster), a weak last-item shortcut, no latent user taste (markov_strength = 1: the
# Bayes-optimal predictor is then exact, `lab.data.synthetic.bayes_scores`), and the three mechanisms that need
# depth. Chosen so that on the processed test split of the `depth` profile the Bayes predictor beats the best
# predictor that sees only the last item by >= 0.10 NDCG@10 (chapter 01 measures both); a steeper popularity
# (alpha 1.4) makes knowing the cluster worth more.
DEPTH_WORLD = dict(n_clusters=10, popularity_alpha=1.4, successor_strength=0.1, markov_strength=1.0,
                   induction_strength=0.5, pointer_strength=0.4, pointer_hops=3, max_lag=2, switch_strength=1.0,
                   n_switch_items=100)


def depth_world(data: DataConfig) -> DataConfig:
    """`data` (its sizes, files and pre-processing) in the depth world: `DEPTH_WORLD`'s knobs, with at most 4% of the
    items as switch items (so small catalogues keep the switch rare)."""
    knobs = dict(DEPTH_WORLD, n_switch_items=min(DEPTH_WORLD["n_switch_items"], max(1, data.n_items // 25)))
    return dataclasses.replace(data, **knobs)


CATEGORY_PATTERN = r"[A-Za-z0-9_]+"  # an Amazon Reviews 2023 category name (Video_Games, All_Beauty, ...)


def check_category(category: str) -> str:
    """`category` when it is safe as a file stem and a folder name (letters, digits, '_'), else ValueError.

    Run folders join profile, category and seed with '-' (`default-Video_Games-seed1`), so a category may not contain
    '-', a path separator or anything a shell would mangle, nor be `seed<N>` (`default-seed1` is synthetic seed 1).
    """
    if (not isinstance(category, str) or not re.fullmatch(CATEGORY_PATTERN, category)
            or re.fullmatch(r"seed\d+", category)):
        raise ValueError(f"category {category!r} is not a valid Amazon Reviews 2023 category name: use letters, "
                         "digits and '_' only, as the file names do (e.g. LAB_CATEGORY=Video_Games for "
                         "Video_Games.jsonl.gz); 'seed<N>' is reserved for run folders")
    return category


def real_data_from_env() -> tuple[str, str] | None:
    """`($LAB_RAW_DIR, $LAB_CATEGORY)` when real Amazon Reviews 2023 files are asked for, None for synthetic data.

    Raises ValueError when `LAB_RAW_DIR` is set without a valid `LAB_CATEGORY` (the category names the files:
    `<Category>.jsonl.gz` and `meta_<Category>.jsonl.gz`).
    """
    raw = os.environ.get("LAB_RAW_DIR")
    if not raw:
        return None
    category = os.environ.get("LAB_CATEGORY")
    if not category:
        raise ValueError(f"LAB_RAW_DIR={raw} is set but LAB_CATEGORY is not: set it to the category whose files "
                         "are there, e.g. LAB_CATEGORY=Video_Games for Video_Games.jsonl.gz and "
                         "meta_Video_Games.jsonl.gz")
    return raw, check_category(category)


def backbone_from_env() -> str | None:
    """`$LAB_BACKBONE`: the pretrained backbone a run's LLM teacher uses (a name such as `smollm2-135m`, or a local
    Hugging Face checkpoint folder; `lab.backbones.load_backbone`), None when unset or empty (issue 13)."""
    return os.environ.get("LAB_BACKBONE") or None

"""Configuration dataclasses and the profiles (`smoke`, `default`, `full`, `shallow` and `llm`).

Every chapter takes a profile name as a papermill parameter and builds its configuration with
`get_config(profile)`. Each config is passed whole into the constructor that uses it. The synthetic data comes in two
worlds (`WORLDS`): the `depth` world of issue 12, whose next item needs composition across positions (`DEPTH_WORLD`,
`lab.data.synthetic`), where `smoke`, `default` and `full` live, and the `shallow` world the book began with, whose next
item depends on the last item only (a 2-layer model matched the 24-layer teacher there), kept as the `shallow` profile
(the default profile's sizes and model in it) for comparison. `get_config(profile, world=...)` puts any profile's
sizes in either world. The `llm` profile (issue 13) makes a pretrained LLM the teacher (`ModelConfig.backbone`,
SmolLM2-135M by default, `$LAB_BACKBONE` for another) on depth-world data small enough for the 2-core CPU.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

PROFILES = ("smoke", "default", "full", "shallow", "llm")  # shallow: the default profile in the shallow world
#                                                            (issue 12); llm: a pretrained LLM teacher (issue 13)
WORLDS = ("shallow", "depth")  # the synthetic worlds (`DEPTH_WORLD`)
BOOK_CHAPTERS = {"llm": ("01", "02", "03", "04", "05")}  # the chapters a profile's book runs when none are named
#   (`lab.notebooks.run_book`; absent: all). llm: chapter 06's baselines and chapter 07's three seeds are sized for
#   the teachers trained from scratch (issue 13 asks for chapters 01-05 on the LLM)


@dataclass
class DataConfig:
    """What data to generate or read, and how to pre-process it (chapter 01)."""

    source: str = "synthetic"  # "synthetic" (generated Amazon-2023-format files) or "amazon" (files on disk)
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
    split: str = "leave_last_out"  # "leave_last_out" or "timestamp"
    valid_from_ms: int = 1628643414042  # timestamp split: validation cut-off (Amazon 2023 benchmark value)
    test_from_ms: int = 1658002729837  # timestamp split: test cut-off (Amazon 2023 benchmark value)
    max_len: int = 30  # history length fed to the model (most recent items, left-padded)
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
    title_init: bool = True  # start each item's ID embedding at the mean LLM token embedding of its title


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

    profile: str = "default"  # one of PROFILES
    seed: int = 0  # global seed
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose one of {PROFILES}")


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


def sizes_of(profile: str) -> str:
    """The profile whose sizes and budgets `profile` uses (`shallow` is `default`'s in the shallow world); every
    `for_profile` of the book's configs goes through it, so a new profile cannot silently get another's budgets.
    Raises for an unknown profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    return "default" if profile == "shallow" else profile


def from_profile(cls, profile: str, per_profile: dict):
    """`cls(**per_profile[sizes_of(profile)])`: a config's fields per profile, written as a table in its
    `for_profile` (missing profiles take the field defaults). Raises for an unknown profile."""
    return cls(**per_profile.get(sizes_of(profile), {}))


def depth_world(data: DataConfig) -> DataConfig:
    """`data` (its sizes, files and pre-processing) in the depth world: `DEPTH_WORLD`'s knobs, with at most 4% of the
    items as switch items (so small catalogues keep the switch rare)."""
    knobs = dict(DEPTH_WORLD, n_switch_items=min(DEPTH_WORLD["n_switch_items"], max(1, data.n_items // 25)))
    return dataclasses.replace(data, **knobs)


def get_config(profile: str = "default", seed: int = 0, world: str | None = None) -> BookConfig:
    """The configuration of a profile. `smoke` is tiny (CI), `default` runs on a 2-core CPU, `full` is large, all three
    in the depth world; `shallow` is `default` in the shallow world.

    Args:
        world: the synthetic world, "shallow" or "depth" (`WORLDS`); None: the profile's (shallow for `shallow`,
            depth for the others). Real data (`$LAB_RAW_DIR`) ignores it.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    world = world if world is not None else ("shallow" if profile == "shallow" else "depth")
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; choose one of {WORLDS}")
    if profile == "llm":
        data, model, train = llm_profile()
    elif profile == "smoke":
        data = DataConfig(n_users=400, n_items=150, n_clusters=6, mean_seq_len=14.0, max_len=16, chunk_size=2_000)
        model = ModelConfig(num_layers=8, hidden_size=32, num_heads=2, intermediate_size=64, item_dim=32)
        train = TrainConfig(epochs=12, batch_size=128, lr=5e-3, patience=3, max_minutes=1.5)
    elif profile in ("default", "shallow"):
        # sized from measured step times on the 2-core CPU so that 12 epochs fit the 10-minute budget; batch 64 gives
        # the 24-layer stack the steps it needs to leave popularity level (README, "What the default profile measured")
        data, model = DataConfig(max_len=20), ModelConfig()
        train = TrainConfig(epochs=12, batch_size=64, lr=2e-3, patience=3, max_minutes=9.5)
    else:
        # issue 16's size (>= 50k users, 10k items, 500k interactions after the 5-core): the depth world's steep
        # popularity (alpha 1.4) leaves few tail items at 5, so 60k x 12k kept only 8,305 items; 90k x 16k keeps
        # 86,500 users, 11,078 items, 1.24 M interactions (seed 0; tests/test_depth_world.py checks it)
        data = DataConfig(n_users=90_000, n_items=16_000, n_clusters=60, mean_seq_len=14.0, max_len=50)
        model = ModelConfig(num_layers=32, hidden_size=128, num_heads=4, intermediate_size=256, item_dim=128)
        train = TrainConfig(epochs=50, max_minutes=240.0)
    if world == "depth":
        data = depth_world(data)
    backbone = backbone_from_env()
    if backbone is not None:  # $LAB_BACKBONE: this LLM is the teacher of any profile
        model.backbone = backbone
    # Real data: point every chapter at downloaded Amazon Reviews 2023 files without editing a notebook.
    real = real_data_from_env()
    if real is not None:
        data.source, data.raw_dir, data.category = "amazon", *real
    return BookConfig(profile=profile, seed=seed, data=data, model=model, train=train)


LLM_BACKBONE = "smollm2-135m"  # the `llm` profile's teacher unless $LAB_BACKBONE names another


def llm_profile() -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """The `llm` profile's data, model and training budget (issue 13): SmolLM2-135M (30 layers, width 576) with LoRA
    as the teacher, the default profile's from-scratch sizes beside it, and depth-world data sized so that chapters
    02-05 finish on the 2-core CPU (README, "The pretrained LLM teacher", gives the measured times)."""
    # measured with SmolLM2-135M + LoRA on the 2-core CPU: a training step of 32 users x 16 positions 2.1 s, a scoring
    # pass over 256 histories 6 s; 1,000 users make an epoch about 70 s of steps and 25 s of validation
    data = DataConfig(n_users=1000, n_items=400, n_clusters=10, mean_seq_len=14.0, max_len=16, chunk_size=20_000)
    model = ModelConfig(num_layers=8, backbone=LLM_BACKBONE)
    train = TrainConfig(epochs=5, batch_size=32, lr=1e-3, patience=2, eval_batch_size=256, max_minutes=12.0)
    return data, model, train


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

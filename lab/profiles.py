"""Every profile of the book, one block each (issue 23): everything that differs by profile lives here.

A profile is one `Profile` block below, in the spirit of nanoGPT's config files: its data, model and training budget
(`lab.config`'s dataclasses), the sizes of chapters 03-06 (`fisher`, `probes`, `selection`, `distill`,
`distill_grid`, `bench`: the fields of `lab.fisher.FisherConfig`, `lab.fisher.probes.ProbeConfig`,
`lab.selection.SelectionConfig`, `lab.distill.DistillConfig` / `DistillGrid`, `lab.bench.compact.BenchConfig`, which
read them through `profile_config`), chapter 02's depth curve and H4's depth, the chapters its book runs, the seeds
chapter 07 pools and the runs it shows beside it. Every number carries the measurement that sized it. A section left
`{}` takes the config class's field defaults, which are the `default` profile's sizes; a field name the class does not
have raises. Adding a profile means adding one block to `PROFILES`, or writing it in a file of one's own named by
`$LAB_PROFILES` (`add_profiles`: every `Profile` in it joins, in this process and in the chapters' kernels, which
inherit the variable; tests/test_profiles.py adds a throw-away one that way and runs chapter 01 on it).

`get_config(profile, seed)` builds a chapter's `BookConfig` from a block (copies: a chapter may change its own).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import runpy
from dataclasses import dataclass
from pathlib import Path

from .config import (BookConfig, DataConfig, ModelConfig, TrainConfig, WORLDS, backbone_from_env, depth_world,
                     real_data_from_env)

__all__ = ["Profile", "PROFILES", "LLM_BACKBONE", "add_profiles", "get_config", "get_profile", "profile_config",
           "profile_names"]

LLM_BACKBONE = "smollm2-135m"  # the LLM profiles' teacher unless $LAB_BACKBONE names another


@dataclass(frozen=True)
class Profile:
    """One profile: every size, budget and choice that differs between profiles."""

    name: str
    about: str  # one line: what the profile is for
    world: str  # the synthetic world ("depth" or "shallow", `lab.config.WORLDS`), or "real" for packaged real data
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    fisher: dict  # chapter 03: FisherConfig fields
    probes: dict  # chapter 03: ProbeConfig fields
    selection: dict  # chapter 04: SelectionConfig fields
    distill: dict  # chapter 05: DistillConfig fields (the students' training budget)
    distill_grid: dict  # chapter 05: DistillGrid fields (which students are trained)
    bench: dict  # chapters 04-06: BenchConfig fields (speed measurement)
    depths: tuple  # chapter 02's depth curve: layers of the models trained from scratch (`lab.bench.depth`)
    arch_depth: int | None  # chapter 02's H4 comparison depth (`lab.bench.arch`); None: no comparison
    chapters: tuple | None = None  # the chapters `python -m lab book` runs when none are named; None: all
    seeds: tuple = (0, 1, 2)  # the seeds chapter 07 pools (`lab.hypotheses.default_seeds`)
    companions: tuple = ()  # profiles whose verdicts chapter 07 shows beside this one's
    sweep: dict = dataclasses.field(default_factory=dict)  # the compression sweep: SweepConfig fields
    #   (`lab.bench.sweep`; {}: every budget of `default_ks`, the seven rules, 3 random draws)


# --- chapter 05's selection rules (`lab.selection.RULES`) distilled in the larger profiles
_ALL_RULES = ("fisher_topk", "uniform", "top", "bottom", "fisher_topk_ends", "block_influence", "angular_block",
              "magnitude", "greedy_valid", "random")

SMOKE = Profile(
    name="smoke", about="tiny, for CI: every chapter in minutes", world="depth",
    data=DataConfig(n_users=400, n_items=150, n_clusters=6, mean_seq_len=14.0, max_len=16, chunk_size=2_000),
    model=ModelConfig(num_layers=8, hidden_size=32, num_heads=2, intermediate_size=64, item_dim=32),
    # an epoch is under 2 s: validation (patience) or the 12 epochs end the run, the 10 minutes are only a guard that
    # stops with a warning recorded in train_info.json (`lab.train.stop_reason`)
    train=TrainConfig(epochs=12, batch_size=128, lr=5e-3, patience=3, max_minutes=10.0),
    fisher=dict(n_samples=96, n_draws=2, chunk_size=48, wrong_batch_size=16, n_boot=200, n_check=4,
                ablation_users=0, bench_fast=96, bench_loop=8, bench_rounds=1),
    probes=dict(n_users=0),  # every validation user (about 400)
    selection=dict(greedy_users=256, n_boot=200),
    distill=dict(epochs=2, patience=1),
    distill_grid=dict(weightings=("fisher",)),  # 2 rules x 3 variants, the Fisher weighting only
    bench=dict(repeats=6, warmup=1),
    depths=(1, 2), arch_depth=2,  # L/4 = 2: chapter 05's from-scratch control, trained here (H4's llama model)
    seeds=(0, 1),  # two in CI
)

DEFAULT = Profile(
    name="default", about="the book on the 2-core CPU: the depth world, a 24-layer teacher", world="depth",
    # batch 64 gives the 24-layer stack the steps it needs to leave popularity level (batch 256 stayed at 0.085-0.090
    # validation NDCG@10). Trained to convergence by validation (issue 24): students keeping 102-104% of a 12-epoch
    # teacher said it had stopped short, so early stopping (patience 3) decides within up to
    # 40 epochs; at the measured ~47 s an epoch on the 2-core CPU that is at most ~31 min. The 120 minutes are a
    # guard, not the budget: a run they stop warns and records `stopped_by_budget` (`lab.train.stop_reason`)
    data=DataConfig(max_len=20),
    model=ModelConfig(),
    train=TrainConfig(epochs=40, batch_size=64, lr=2e-3, patience=3, max_minutes=120.0),
    fisher={},  # 1,024 users, 2 draws (the FisherConfig defaults)
    probes={},  # 2,000 users: under a minute on 2 cores
    selection=dict(greedy_users=1024),
    distill=dict(epochs=3, patience=1),
    # every variant (three weightings) for fisher_topk and uniform, the best variant for every other rule and 5 random
    # draws: up to 22 students + LoRA + QLoRA, ~25 s each on the 2-core CPU (2026-11-26: 21-23 s of training + 6.5 s
    # of teacher cache)
    distill_grid=dict(rules=_ALL_RULES, n_random=5),
    bench={},  # 30 repeats
    depths=(1, 2, 4, 6, 8, 24), arch_depth=8,  # 6 = L/4: chapter 05's control, the students' size from scratch
    companions=("llm",),
)

SHALLOW = dataclasses.replace(
    DEFAULT, name="shallow", world="shallow", companions=(),
    about="the default profile in the shallow world (the next item depends on the last only; issue 12)")

FULL = Profile(
    name="full", about="large: 86,500 users, 11,078 items, 1.24 M interactions after the 5-core (seed 0)",
    world="depth",
    # issue 16's size (>= 50k users, 10k items, 500k interactions after the 5-core): the depth world's steep
    # popularity (alpha 1.4) leaves few tail items at 5, so 60k x 12k kept only 8,305 items; 90k x 16k keeps
    # 86,500 users, 11,078 items, 1.24 M interactions (seed 0; tests/test_depth_world.py checks it)
    data=DataConfig(n_users=90_000, n_items=16_000, n_clusters=60, mean_seq_len=14.0, max_len=50),
    model=ModelConfig(num_layers=32, hidden_size=128, num_heads=4, intermediate_size=256, item_dim=128),
    train=TrainConfig(epochs=50, max_minutes=240.0),
    fisher=dict(n_samples=4096, n_draws=4, chunk_size=128, ablation_users=0),
    probes={},
    selection=dict(random_draws=20, greedy_users=2048),
    distill=dict(epochs=20, patience=3),
    distill_grid=dict(rules=_ALL_RULES, n_random=10),
    bench=dict(repeats=50, warmup=5),
    depths=(1, 2, 4, 8, 32), arch_depth=8,
    companions=("llm",),
)

LLM = Profile(
    name="llm", about="SmolLM2-135M with LoRA as the teacher, on small depth-world data (issue 13)", world="depth",
    # measured with SmolLM2-135M + LoRA on the 2-core CPU: a training step of 32 users x 16 positions 2.1 s, a scoring
    # pass over 256 histories 6 s; 1,000 users make an epoch about 70 s of steps and 25 s of validation
    data=DataConfig(n_users=1000, n_items=400, n_clusters=10, mean_seq_len=14.0, max_len=16, chunk_size=20_000),
    model=ModelConfig(num_layers=8, backbone=LLM_BACKBONE),
    # 5 epochs are ~8 min; the 60 minutes only guard (a budget stop warns and is recorded, `lab.train.stop_reason`)
    train=TrainConfig(epochs=5, batch_size=32, lr=1e-3, patience=2, eval_batch_size=256, max_minutes=60.0),
    # 256 users, one draw, 256 ablation users (a scoring pass of the 30-layer LLM over 256 users is 6 s)
    fisher=dict(n_samples=256, n_draws=1, chunk_size=16, wrong_batch_size=16, n_check=2, ablation_users=256,
                bench_fast=32, bench_loop=4, bench_rounds=1),
    probes=dict(n_users=600),  # the LLM's 576-wide states
    # the budgets L/4 and 8 only (the 32 -> 8 of the method's authors; a zero-shot evaluation of a 15-layer student is
    # 20 s), 32 greedy users (its greedy path down to 7 of 30 layers scores about 9,000 layer-passes: 19 min with 64
    # users at one thread) and every core for the evaluations
    selection=dict(greedy_users=32, k_divisors=(4,), extra_budgets=(8,), eval_threads=0),
    distill=dict(epochs=2, patience=1),
    # every variant (Fisher weighting) for fisher_topk, the best one for uniform, top, bottom and 2 random draws:
    # 8 students of the LLM + LoRA + QLoRA
    # (no extended teacher: a merged LLM checkpoint cannot continue its LoRA recipe)
    distill_grid=dict(rules=("fisher_topk", "uniform", "top", "bottom", "random"), main_rules=("fisher_topk",),
                      weightings=("fisher",), n_random=2, extended_teacher=False),
    bench=dict(repeats=8, warmup=1),  # a batch-256 pass of the 30-layer LLM is 6 s
    # the sweep at three budgets of the 30 layers (a student of the LLM is ~25 s an epoch per 8 layers on the 2-core
    # CPU): the authors' 32 -> 8 as 7 = L/4, and a half and a sixth beside it
    sweep=dict(ks=(4, 7, 15), rules=("fisher_topk", "uniform", "top", "bottom"), n_random=2, greedy_users=32),
    depths=(1, 2, 4, 7, 8),  # the from-scratch models beside the pretrained 30-layer teacher; 7 = L/4, chapter 05's
    #                          control (the students' size trained from scratch with the teacher's recipe)
    arch_depth=None,  # the teacher is pretrained: its rivals would have to be too
    chapters=("01", "02", "03", "04", "05"),  # chapter 06's baselines and 07's three seeds are sized for teachers
    #                                           trained from scratch
    companions=("default",),
)

ML100K = Profile(
    name="ml100k", about="MovieLens-100K (real ratings, real titles) with a from-scratch 24-layer teacher (issue 25)",
    world="real",
    # 943 users, 1,349 items, 99,287 ratings after the 5-core (1,682 items before: 333 have < 5 ratings). 75.6% of
    # the ratings tie in time with another of the same user: ties in a seeded random order (`tie_break="shuffle"`),
    # since ordering them by item id lowers popularity's test NDCG@10 from 0.040 to 0.025 (the last item of a bulk
    # rating becomes its highest id) while a second random order moves no baseline outside its CI (chapter 01,
    # 2026-12-06). Every transition of the long histories trains (`train_windows=0`: 2,398 windows of 51 items,
    # 96,458 training targets vs 38,719 in the last window alone); timestamp split at 1998-03-01 / 1998-04-01 (the
    # data ends 1998-04-22)
    data=DataConfig(source="movielens", category="ml_100k", max_len=50, tie_break="shuffle", train_windows=0,
                    item_text="title_categories", valid_from_ms=888_710_400_000, test_from_ms=891_388_800_000,
                    chunk_size=50_000),
    model=ModelConfig(),  # the default profile's 24-layer teacher: the depth curve says whether 943 users need it
    # early stopping (patience 5) decides within 40 epochs; the 240 minutes only guard (a budget stop warns and is
    # recorded in train_info.json, `lab.train.stop_reason`)
    train=TrainConfig(epochs=40, batch_size=64, lr=2e-3, patience=5, max_minutes=240.0),
    fisher={},
    probes=dict(n_users=0),  # no planted variables in real data: chapter 03 skips the probes
    selection=dict(greedy_users=943),  # every validation user
    distill=dict(epochs=3, patience=1),
    distill_grid=dict(rules=("fisher_topk", "uniform", "top", "bottom", "block_influence", "greedy_valid", "random"),
                      n_random=3),
    bench={},
    depths=(1, 2, 4, 6, 8, 24), arch_depth=8,  # 6 = L/4: chapter 05's from-scratch control
    companions=("default",),
)

ML100K_LLM = Profile(
    name="ml100k-llm", about="MovieLens-100K with SmolLM2-135M + LoRA as the teacher, items started from their titles",
    world="real",
    # windows of 17 items (about 6,000 of them: every transition once), so a step is the llm profile's 32 x 16 (1.4 s
    # on the 2-core CPU alone): ~190 steps an epoch (the epoch count is sized below)
    data=dataclasses.replace(ML100K.data, max_len=16),
    # each item starts at the LLM's mean last hidden state over "Title (Year) — genres" (cached): a first probe ranked
    # every item by the cosine of these to the user's last item at test NDCG@10 0.0143 (token means 0.0125, chance
    # ~0.003), so the titles carry a weak signal of their own
    model=ModelConfig(num_layers=8, backbone=LLM_BACKBONE, title_encoding="hidden"),
    # lr 1e-2, chosen on validation (2026-12-07, docs/movielens.md): after one epoch NDCG@10 0.044 against 0.026-0.031
    # at 1e-3, whose whole budget stopped at 0.042 after 5 epochs. bf16 autocast is not used: a step of 32 x 16 took
    # 1.35 s against 1.42 s in float32 on this CPU (AMX, 2 threads), 5% is not worth a second numeric path. 8 epochs:
    # at 6 (seed 0, 2026-12-07) validation NDCG@10 was still rising (0.058, 0.061 after epochs 5 and 6); an epoch took
    # 276-323 s alone on 2 threads with AMX (2026-12-06), so 8 are 37-43 minutes there, but 538-570 s on an AVX2-only
    # CPU (74 minutes for 8; 2026-12-07, validation 0.069 and 0.079 after epochs 6 and 8, still rising)
    train=TrainConfig(epochs=8, batch_size=32, lr=1e-2, patience=2, eval_batch_size=256,
                      max_minutes=120.0),  # a guard only: a budget stop warns and is recorded
    fisher=LLM.fisher, probes=dict(n_users=0), selection=LLM.selection, distill=LLM.distill,
    distill_grid=LLM.distill_grid, bench=LLM.bench, sweep=LLM.sweep,
    depths=(1, 2, 4, 7, 8), arch_depth=None,  # 7 = L/4 of the 30-layer LLM: chapter 05's from-scratch control
    seeds=(0, 1),  # two: a seed of chapters 01-07 is ~2 hours on the 2-core CPU
    companions=("ml100k", "default"),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SMOKE, DEFAULT, FULL, SHALLOW, LLM, ML100K, ML100K_LLM)}


def add_profiles(path: str | os.PathLike) -> list[str]:
    """Add every `Profile` block defined at the top level of the Python file `path` to `PROFILES` (a user's own
    profiles, e.g. `dataclasses.replace(DEFAULT, name="mine", data=...)`); returns their names. ValueError naming
    the file when it defines none, or one whose name a built-in profile has."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: profile file not found ($LAB_PROFILES)")
    found = [v for v in runpy.run_path(str(path)).values()
             if isinstance(v, Profile) and PROFILES.get(v.name) is not v]  # not the blocks it imported
    if not found:
        raise ValueError(f"{path}: defines no Profile block ($LAB_PROFILES)")
    for p in found:
        if p.name in PROFILES and PROFILES[p.name] != p:
            raise ValueError(f"{path}: profile {p.name!r} is already defined; give the block another name")
        PROFILES[p.name] = p
    return [p.name for p in found]


def profile_names() -> tuple[str, ...]:
    """The profiles' names, in the order of `PROFILES`."""
    return tuple(PROFILES)


def get_profile(profile: str) -> Profile:
    """The block of `profile`; ValueError naming the known profiles for an unknown one."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {profile_names()}")
    return PROFILES[profile]


def profile_config(cls, profile: str, section: str):
    """`cls(**<profile's section>)`: a chapter's config class built from its section of the profile's block (e.g.
    `profile_config(FisherConfig, "smoke", "fisher")`). ValueError for an unknown profile, section or field."""
    fields = getattr(get_profile(profile), section, None)
    if not isinstance(fields, dict):
        raise ValueError(f"profile section {section!r} does not exist; sections: "
                         f"{[f.name for f in dataclasses.fields(Profile) if f.type == 'dict']}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"profile {profile!r}, section {section!r}: {cls.__name__} has no field(s) {unknown}")
    return cls(**copy.deepcopy(fields))


def get_config(profile: str = "default", seed: int = 0, world: str | None = None) -> BookConfig:
    """The configuration of a profile for one seed (every chapter; its block in `PROFILES`).

    Args:
        world: the synthetic world, "shallow" or "depth" (`WORLDS`); None: the profile's. Real data ignores it.
    Environment: `$LAB_BACKBONE` makes that LLM the teacher of any profile; `$LAB_RAW_DIR` + `$LAB_CATEGORY` point every
    chapter at Amazon Reviews 2023 files without editing a notebook.
    """
    block = get_profile(profile)
    world = world if world is not None else block.world
    if world not in WORLDS + ("real",):
        raise ValueError(f"unknown world {world!r}; choose one of {WORLDS}")
    data, model, train = (copy.deepcopy(c) for c in (block.data, block.model, block.train))
    if world == "depth" and data.source == "synthetic":
        data = depth_world(data)
    backbone = backbone_from_env()
    if backbone is not None:
        model.backbone = backbone
    real = real_data_from_env()
    if real is not None:
        data.source, data.raw_dir, data.category = "amazon", *real
    return BookConfig(profile=profile, seed=seed, data=data, model=model, train=train)


if os.environ.get("LAB_PROFILES"):  # a user's own profile blocks, in every process that imports the package
    add_profiles(os.environ["LAB_PROFILES"])

# %% [markdown]
# # 02 · The teacher: a Llama-architecture sequential recommender
#
# **Question.** Can a deep stack of Hugging Face decoder layers, trained for real on the user sequences of chapter 01,
# recommend the next item clearly better than popularity — so that asking *which of its layers matter* (chapter 03 on)
# is asking about a model that has learned something? And does its depth buy anything over shallower models?
#
# The teacher embeds each item of a user's history, runs `transformers` decoder layers (`LlamaModel` by default) over
# them with a causal mask, and scores every item of the catalogue with a dot product against the item embeddings (the
# head is tied to the embeddings, as in SASRec). It is trained with softmax cross-entropy over the **full** catalogue
# at every position, AdamW with warm-up and cosine decay, gradient clipping and early stopping on validation NDCG@10.
# Evaluation ranks **all** items for each user (no sampled negatives), with the user's earlier items masked: the data
# is de-duplicated, so a target is never an item the user already had.
#
# In the `llm` profile (or with `$LAB_BACKBONE` set) the teacher is a **pretrained LLM** instead (`lab.models.
# build_teacher`, E4SRec-style): SmolLM2-135M's 30 pretrained Llama layers, frozen with LoRA adapters, under item-ID
# embeddings in its width that start at the mean token embedding of each item's title; the small model and the depth
# curve below are still trained from scratch, so the pretrained layers are compared with layers that learned only
# this data.

# %% tags=["parameters"]
PROFILE = "smoke"  # smoke | default | full
SEED = 0  # global seed
ARTEFACTS = ""  # artefact root; empty means <repo>/artefacts
ARCH = None  # backbone family: "llama", "qwen2", "mistral" or "gpt_neox"; None: the profile's
SMALL_LAYERS = 2  # depth of the small SASRec-style reference model trained from scratch
DEPTHS = None  # depths of the depth curve's models trained from scratch; None: the profile's (lab.bench.depth.DEPTHS)
H4_ARCHS = None  # architectures trained side by side for H4, llama among them; None: lab.bench.arch.ARCHS; () skips
EASE_LAMBDAS = [1.0, 10.0, 100.0, 1000.0]  # EASE ridge strengths; the best on validation is used, the grid grown past
# an end while the best is there (at most 3 more values, lab.recommenders.choose_on_valid)
H4_DEPTH = None  # their depth; None: the profile's (lab.bench.arch.ARCH_DEPTH: smoke 2, default 8; llm none)

# %%
import torch

import lab
from lab.recommenders import choice_sentence, choose_on_valid, ease_scorer, popularity_scorer
from lab.bench import arch as AB
from lab.bench import depth as DB
from lab.bench import teachers as TB
from lab.chapters import c02_teacher as C
from lab.data import load_rec_data
from lab.evaluation import per_user_table, score_table
from lab.models import build_model, build_teacher, count_parameters, scratch_config
from lab.train import train_or_load
from lab.viz import config_table, learning_curves, metric_bars, quality_by_depth, save

P = lab.setup(SEED, PROFILE, ARTEFACTS or None, chapter="02_teacher")
cfg = lab.get_config(PROFILE, SEED)
cfg.model.arch = lab.resolve(ARCH, cfg.model.arch)
data, report, stats = load_rec_data(cfg.data, P, seed=SEED, progress=False)
print(f"{data.num_users} users, {data.num_items} items, history length T={data.max_len}; device: {lab.device()}")
config_table(cfg.model)

# %% [markdown]
# ## Train (or load) the teacher
# A finished teacher is saved with `save_pretrained` to the profile's artefact folder and loaded from there the next
# time, unless its configuration changed. An interrupted run resumes from its last epoch checkpoint.

# %%
torch.manual_seed(SEED)
teacher = build_teacher(cfg.model, data.num_items, data.max_len, item_titles=data.item_titles,
                        title_cache=P.file("title_cache")).to(lab.device())  # an LLM's reading of the titles, cached
teacher, teacher_hist, teacher_info = train_or_load(teacher, data, cfg.train, P.teacher, seed=SEED,
                                                    key={"model": cfg.model.__dict__, "data": stats.get("config_hash")})
n_params = count_parameters(teacher)
n_layer_params = sum(p.numel() for p in teacher.layers.parameters())
print(C.teacher_line(teacher, cfg.model, teacher_info, n_params, n_layer_params, lab.book.shown_path(P.teacher)))

# %% [markdown]
# ## Reference points: popularity and a small model trained from scratch
# The same code with only a few layers is a SASRec-style model (Kang & McAuley 2018, trained with full softmax CE as
# Klenitskiy & Vasilev 2023 recommend). If the deep teacher were no better than it, depth would have nothing to give.

# %%
small_cfg = scratch_config(cfg.model, SMALL_LAYERS)
torch.manual_seed(SEED)
small = build_model(small_cfg, data.num_items, data.max_len, item_titles=data.item_titles).to(lab.device())
small, small_hist, small_info = train_or_load(small, data, cfg.train, P.root / "small_scratch", seed=SEED,
                                              key={"model": small_cfg.__dict__, "data": stats.get("config_hash")})

scorers = {"popularity": popularity_scorer(data),  # each (B, T) -> (B, N+1) scores
           f"small ({SMALL_LAYERS} layers)": small.recommend_scores,
           f"teacher ({teacher.num_layers} layers)": teacher.recommend_scores}
table, per_user = score_table(scorers, data)  # one row per model and split; per-user test metrics
lab.io.write_parquet(P.file("teacher_eval.parquet"), per_user)
table.round(4)

# %%
fig = learning_curves({"teacher": teacher_hist, "small": small_hist})
save(fig, "02_learning_curves", P)
fig = metric_bars(table[table.split == "test"])
save(fig, "02_test_metrics", P)

# %% [markdown]
# ## What the numbers say

# %%
head = C.headline(table, f"teacher ({teacher.num_layers} layers)", f"small ({SMALL_LAYERS} layers)")  # test metrics
print(C.headline_sentences(head, SMALL_LAYERS, teacher_info, lab.device(), torch.get_num_threads(),
                           cfg.train.batch_size))

# %% [markdown]
# ## The teachers side by side, and on rare items
# The teacher against the other models of the same test users, each difference paired per user (bootstrap CI and
# Wilcoxon): the small model, EASE (Steck 2019; its λ chosen on validation) and, where this data has another teacher
# (the `ml100k` and `ml100k-llm` profiles: trained from scratch, and a pretrained LLM whose items start from their
# titles) whose chapter 02 has run, that one. The same on *rare* targets (items with fewer than 10 training
# interactions), where what a title says should matter most, and on the rest.

# %%
rare = TB.rare_targets(data)
ease_lam, ease_grid = choose_on_valid(lambda lam: ease_scorer(data, lam), EASE_LAMBDAS, data, widen=3)
models = {f"teacher ({PROFILE})": per_user.loc[per_user.model.str.startswith("teacher"), ["user", "ndcg@10"]],
          **TB.companion_teachers(PROFILE, SEED, ARTEFACTS or None),
          f"small ({SMALL_LAYERS} layers)": per_user.loc[per_user.model.str.startswith("small"), ["user", "ndcg@10"]],
          f"EASE (λ={ease_lam:g})": per_user_table({"EASE": ease_scorer(data, ease_lam)}, data)}
teachers = TB.compare_all(models, rare)
lab.io.write_parquet(P.file("02_teachers.parquet"), teachers)
print(f"{int(rare.rare.sum())} of {len(rare)} test targets are rare (< {TB.RARE_BELOW} training interactions)")
print(choice_sentence("EASE's λ", ease_lam, ease_grid))
print(C.comparison_sentences(teachers))
teachers.round(4)

# %% [markdown]
# ## Does depth buy quality here?
# The same recipe at other depths, each model trained from scratch with the teacher's width and epochs (stored in
# `depth_bench/`, where `python -m lab bench depth` finds them and adds more seeds), beside the small model and the
# teacher, all on the same test users. In the depth world (chapter 01, section 6) the **Bayes** predictor is the
# ceiling and first-order **Markov** the floor a model needs no attention for; *gap closed* = (NDCG@10 − Markov) /
# (Bayes − Markov) is the share of what history beyond the last item is worth that a model actually gets. On real data
# there is no ceiling, only the floors. The deepest model is compared with the 2-layer one per user.

# %%
depths = lab.resolve(DEPTHS, DB.profile_depths(PROFILE))
curve = DB.depth_curve(cfg, P, data, stats, depths, models={SMALL_LAYERS: small, teacher.num_layers: teacher},
                       seed=SEED)
save(quality_by_depth(curve.table, curve.refs), "02_quality_by_depth", P)
lab.io.write_parquet(P.file("02_depth_curve.parquet"), curve.per_user)
print(curve.conclusion())
curve.table.round(4)

# %% [markdown]
# ## Is Llama the better block? (H4)
# The method's authors claim Llama is better for recommendation than other open architectures. Here everything but
# the block is held fixed: one model per architecture — Llama, Qwen2 and Mistral (Llama-style blocks with other
# details) and GPT-NeoX (LayerNorm, a GELU MLP, attention and MLP in parallel) — with the teacher's width, heads and MLP
# width, the same data, epochs and recipe, trained from scratch at one depth (`lab.bench.arch`; the Llama one is the
# depth curve's model of that depth). One seed decides nothing; chapter 07 pools the seeds' per-user differences.

# %%
h4_depth = lab.resolve(H4_DEPTH, AB.arch_depth(PROFILE))
h4_archs = tuple(lab.resolve(H4_ARCHS, AB.ARCHS)) if h4_depth else ()
arch = (AB.compare_architectures(cfg, data, stats, P.root / "depth_bench", h4_depth, h4_archs, seed=SEED)
        if h4_archs else None)
if arch:
    lab.io.write_parquet(P.file("02_architectures.parquet"), arch.per_user)
print(arch.conclusion() if arch else f"No architecture comparison in profile {PROFILE} (H4_DEPTH None or H4_ARCHS ()).")
arch.table.round(4) if arch else None

# %% [markdown]
# ## Summary
# - The teacher is a real `transformers` decoder stack trained with full-catalogue cross-entropy; it is saved with
#   `save_pretrained` and later chapters load it from the artefact folder instead of retraining.
# - Its full-ranking test metrics are compared above with popularity and with a shallow model trained the same way;
#   per-user test metrics of all three are saved in `teacher_eval.parquet` for the paired tests of later chapters.
# - The depth curve says whether depth is worth anything on this data at all, against the ceiling and the floors; where
#   it is, which of the teacher's layers carry it is what chapters 03–05 measure.
# - The architectures compared at one depth give H4 its per-user input (`02_architectures.parquet`).

# %%
lab.record_all(C.teacher_record(teacher, cfg.model, teacher_info, n_params, head,
                                comparison=C.comparison_record(teachers, rare, ease_lam, ease_grid), curve=curve, arch=arch))

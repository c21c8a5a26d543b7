# %% [markdown]
# # 06 · Baselines: one leaderboard of recommenders and of compression methods at the same budget
#
# **Question.** Chapter 05's compact student keeps most of the teacher's quality at k = L/4 of its layers. Where does
# that place it among everything a reader would reach for instead — simple recommenders that need no teacher at all,
# and the other ways of making the teacher cheaper (other layer choices, training the small model alone, pruning,
# quantisation)? Every row below is ranked by the book's one evaluator (`lab.metrics.evaluate`: the full catalogue,
# the user's earlier items masked, ties counted against the target) on the same test users, and timed in one run
# against the teacher.
#
# **Recommenders** (no teacher involved): most popular; a first-order Markov chain (how often each item followed the
# last one); ItemKNN (item–item cosine of training co-occurrence, the k nearest neighbours of each history item);
# EASE (Steck 2019: a ridge regression of every item on all others, closed form, λ chosen on validation); GRU4Rec
# (a GRU over the history trained with full-catalogue CE, as the teacher is); SASRec-CE with 2 layers trained from
# scratch (chapter 02's small model: the same Llama layers, the same recipe, not trained again); and the teacher.
# ItemKNN and EASE are hand-rolled (`lab.recommenders`): each is a few lines of closed form, and a user would take
# RecBole's `ItemKNN` / `EASE` / `GRU4Rec` (or implicit's `CosineRecommender`, microsoft/recommenders' SAR) instead;
# none is a dependency because each brings its own data pipeline and evaluator, where this table needs one
# evaluator for every row, and RecBole 1.2.1 pins numpy<2 and pandas<3, which the book's environment cannot share.
#
# **Compression at k = L/4**: the method (chapter 05's own student of the method, the `fisher_topk` layers distilled
# with the Fisher-weighted layer-wise KD, `kd+fisher`, named by that rule and never by a score:
# `lab.chapters.c05_distillation.method_name`); every other layer set chapter 05 distilled, and chapter 05's
# TinyBERT-style distillation of the uniform rule's layers (attention maps + hidden states + embeddings + prediction
# layer, `lab.distill.config.TINYBERT`), all read from its tables, not trained again; the same k-layer model trained
# from scratch without a teacher twice — **with the teacher's full recipe** (its data, epochs, patience and learning
# rate: the control that says whether distillation helps, chapter 02's depth-curve model, loaded) and **on the
# students' budget** (chapter 05's epochs, patience and learning rate); the teacher pruned by weight magnitude to the
# student's parameter count (without training, and then distilled like the students); post-training dynamic INT8
# quantisation of the teacher's linear layers; and 4-bit NF4 weight-only quantisation (bitsandbytes). A cross-check
# of these numbers against RecBole's own SASRec is not part of this chapter.

# %% tags=["parameters"]
PROFILE = "smoke"  # smoke | default | full
SEED = 0  # global seed
ARTEFACTS = ""  # artefact root; empty means <repo>/artefacts
BUDGET_DIVISOR = 4  # layer budget: k is L divided by this (chapter 05's)
METHOD_RULE = "fisher_topk"  # the method: chapter 05's student of this rule with kd+fisher (C5.method_name's rule)
KNN_NEIGHBOURS = [10, 50, 200]  # ItemKNN neighbourhood sizes tried; the best on validation is used
EASE_LAMBDAS = [1.0, 10.0, 100.0, 1000.0]  # EASE ridge strengths tried; the best on validation is used, the grid
# grown past an end while the best is there (at most 3 more values, lab.recommenders.choose_on_valid)
GRU_HIDDEN = None  # GRU4Rec width; None: the teacher's hidden size
GRU_LAYERS = 1  # stacked GRU layers of GRU4Rec
GRU_LRS = [0.002, 0.01, 0.05]  # GRU4Rec peak learning rates tried (the teacher's schedule otherwise); best on valid
SPEED_REPEATS = None  # timed passes per model and batch size; None: the profile's (BenchConfig.for_profile)
ALPHA = 0.05  # family-wise error rate: a difference is clear if its CI excludes 0 and its Holm-adjusted p < ALPHA
MARGIN = 0.01  # NDCG@10: a row whose paired difference CI lies within ±MARGIN of the method is "on par"
GOAL_RETENTION = None  # the retention goal drawn on the retention figure; None: C1's (lab.constants, 0.92)

# %%
import copy
import dataclasses

import pandas as pd
import torch
from IPython.display import display
from transformers.utils import logging as hf_logging

import lab
from lab import compression as C
from lab import recommenders as R
from lab.chapters import c06_baselines as B
from lab import viz as V
from lab.bench import BenchConfig, compare_speed
from lab.bench import depth as DB
from lab.chapters import c05_distillation as C5
from lab.data import load_rec_data
from lab.distill import DistillConfig, distill, freeze_teacher, load_4bit, teacher_key
from lab.evaluation import per_user_table
from lab.io import write_parquet
from lab.models import SeqRecModel, build_model, count_parameters, scratch_config
from lab.train import train_or_load

P = lab.setup(SEED, PROFILE, ARTEFACTS or None, chapter="06_baselines")
cfg = lab.get_config(PROFILE, SEED)
hf_logging.disable_progress_bar()  # save/load progress bars would drown the output
dcfg = DistillConfig.for_profile(PROFILE)  # chapter 05's students' budget (epochs, patience, learning rate)
bcfg = lab.override(BenchConfig.for_profile(PROFILE), repeats=SPEED_REPEATS)
data, _, stats = load_rec_data(cfg.data, P, seed=SEED, progress=False)
teacher = freeze_teacher(lab.load_teacher(P, lab.device()))
L, k = teacher.num_layers, max(1, teacher.num_layers // BUDGET_DIVISOR)
ch05 = B.read_tables(P, {"distill_results.parquet": "05", "distill_per_user.parquet": "05"})
res05, pu05 = ch05["distill_results.parquet"], ch05["distill_per_user.parquet"]
method = B.method_student(res05, METHOD_RULE)  # chapter 05's student of the method (kd+fisher), by the rule
read05 = B.chapter05_rows(res05, method)  # chapter 05's rows this table reads: one per layer set, then adapters
print(f"teacher: {L} layers, {count_parameters(teacher):,} parameters; k = {k}; {len(data.test_target)} test users; "
      f"the method: {method}; read from chapter 05: {', '.join(read05)}")

# %% [markdown]
# ## Recommenders without a teacher
# Popularity and Markov count the training split; ItemKNN and EASE start from the item–item co-occurrence of the
# training windows (the items a model sees in training). Their one knob each — ItemKNN's neighbourhood size, EASE's
# λ — is chosen on the **validation** split; the test split only reports.

# %%
G = R.cooccurrence(data)  # (N+1, N+1) users who had both items
knn_k, knn_valid = R.choose_on_valid(lambda n: R.itemknn_scorer(data, n, G), KNN_NEIGHBOURS, data)
ease_l, ease_valid = R.choose_on_valid(lambda lam: R.ease_scorer(data, lam, G), EASE_LAMBDAS, data, widen=3)
recs = {"popularity": R.popularity_scorer(data), "markov": R.markov_scorer(data),
        "itemknn": R.itemknn_scorer(data, knn_k, G), "ease": R.ease_scorer(data, ease_l, G)}
print(R.choice_sentence("ItemKNN's neighbours", knn_k, knn_valid))
print(R.choice_sentence("EASE's λ", ease_l, ease_valid))

# %% [markdown]
# GRU4Rec is trained like the teacher (`lab.train.train_or_load`: the teacher's schedule, early stopping on
# validation, saved and loaded back when nothing changed), at each learning rate of `GRU_LRS`: without a normalised
# residual stream a GRU learns far more slowly than the decoder layers at the teacher's rate, so its rate is chosen
# on validation like ItemKNN's and EASE's knobs. SASRec-CE with 2 layers is chapter 02's small model: the
# book's Llama layers over item embeddings, tied scoring, full-catalogue CE — the recipe of Kang & McAuley 2018 with
# the CE loss Klenitskiy & Vasilev 2023 recommend — so it is loaded, not trained again.

# %%
gcfg = R.GRU4RecConfig(num_items=data.num_items, hidden_size=lab.resolve(GRU_HIDDEN, cfg.model.hidden_size),
                       num_layers=GRU_LAYERS, dropout=cfg.model.dropout, max_len=data.max_len,
                       embedding_std=cfg.model.embedding_std)


def train_gru(lr):  # one GRU4Rec per learning rate, each from the same seed
    torch.manual_seed(SEED)
    return train_or_load(R.GRU4Rec(gcfg).to(lab.device()), data, dataclasses.replace(cfg.train, lr=lr),
                         P.root / "gru4rec" / f"lr{lr:g}", seed=SEED, progress=False,
                         key={"model": gcfg.to_dict(), "data": stats.get("config_hash")})


# %%
grus = {lr: train_gru(lr) for lr in GRU_LRS}  # lr -> (model, history, info)
gru_lr = max(GRU_LRS, key=lambda lr: grus[lr][2]["best_valid_ndcg@10"])  # the first best on validation
gru, gru_hist, gru_info = grus[gru_lr]
sasrec = SeqRecModel.from_pretrained(P.root / "small_scratch").to(lab.device()).eval()  # chapter 02's, not retrained
print("GRU4Rec validation NDCG@10 by learning rate: "
      + ", ".join(f"{lr:g}: {grus[lr][2]['best_valid_ndcg@10']:.4f}" for lr in GRU_LRS) + f" -> lr {gru_lr:g}")
print(f"GRU4Rec: {count_parameters(gru):,} parameters, {gru_info['epochs']} epochs, "
      f"{'loaded' if gru_info['loaded'] else 'trained'} ({gru_info['train_seconds']:.0f} s of training); "
      f"SASRec-CE: {sasrec.num_layers} layers, {count_parameters(sasrec):,} parameters")

# %% [markdown]
# ## Compression at the same budget
# The k-layer model **from scratch** has the students' shape and CE alone: no teacher, not even its weights. Once with
# the teacher's full recipe (`lab.bench.depth.scratch_control`: chapter 02's depth curve trained it, loaded here), the
# control that decides whether distillation helps, and once on the students' budget (chapter 05's `DistillConfig`:
# its epochs, patience and learning rate), which tells what the students' few epochs give a model without a teacher.
# **Magnitude pruning** zeroes the teacher's decoder linear weights of smallest |w| (one global threshold) until the
# pruned teacher holds as many parameters as the k-layer student; once as it is, once distilled with the method's
# loss at the students' budget (the pruned weights stay 0 while it trains). Its matrices stay dense, so it is timed
# as it would run.

# %%
student = SeqRecModel.from_pretrained(C5.student_dir(P, res05, method)).to(lab.device()).eval()  # the method, saved
r5 = res05.set_index("name")  # chapter 05's rows by name
variant, key = r5.loc[method, "variant"], teacher_key(P.teacher, stats)
print(f"the method as saved: {student.num_layers} layers, {count_parameters(student):,} parameters; variant {variant}")

# %%
scratch_cfg = scratch_config(cfg.model, k)
torch.manual_seed(SEED)
scratch = build_model(scratch_cfg, data.num_items, data.max_len, item_titles=data.item_titles).to(lab.device())
scratch, _, scratch_info = distill(teacher, scratch, data, dcfg.with_variant("ce"), cfg.train, P.root / "scratch",
                                   seed=SEED, progress=False, key={**key, "scratch": scratch_cfg.__dict__})
scratch_full, full_info = DB.scratch_control(cfg, P, data, stats, k, seed=SEED, device=lab.device())  # chapter 02's
for what, info in (("the teacher's recipe", full_info), ("the students' budget", scratch_info)):
    print(f"{k}-layer model from scratch on {what}: {info['epochs']} epochs, validation NDCG@10 "
          f"{info['best_valid_ndcg@10']:.4f}, {info['train_seconds']:.1f} s{' (loaded)' if info.get('loaded') else ''}")

# %%
pruned, pruned_kd = copy.deepcopy(teacher), copy.deepcopy(teacher)
prune_info = C.prune_to(pruned, count_parameters(student))
C.prune_to(pruned_kd, count_parameters(student))
pruned_kd, _, pruned_info = distill(teacher, pruned_kd, data, dcfg.with_variant(variant), cfg.train,
                                    P.root / "pruned", importance=lab.load_importance(P), seed=SEED, progress=False,
                                    key={**key, "pruned_to": prune_info["target"]})
print(f"pruning removed {prune_info['removed']:,} of {prune_info['pool']:,} decoder linear weights "
      f"({prune_info['sparsity']:.1%}); the pruned teacher keeps {C.nonzero_parameters(pruned):,} nonzero "
      f"parameters, the student has {C.nonzero_parameters(student):,}")

# %% [markdown]
# **Quantisation** keeps every weight at lower precision and trains nothing. INT8: `torch.ao.quantization.
# quantize_dynamic` gives every linear layer int8 weights and quantises its inputs per batch (CPU kernels; torch
# 2.13 marks this API deprecated in favour of torchao, which is not a dependency). NF4: the teacher's folder loaded
# with bitsandbytes' 4-bit NF4 weights (`lab.distill.load_4bit`, the CPU-safe path of chapter 05's QLoRA), computing
# in float32 on the CPU. Where a backend cannot run here, its row says why instead of a number.

# %%
int8, int8_status = C.quantize_int8(teacher, lab.device())
try:
    nf4, nf4_status = load_4bit(P.teacher, lab.device()).eval(), "ok"
except Exception as e:  # a bitsandbytes build or CPU that cannot run NF4 here: the row records why
    nf4, nf4_status = None, f"{type(e).__name__}: {e}"
print(f"INT8 dynamic: {int8_status}; NF4: {nf4_status}")

# %% [markdown]
# ## Quality on the same test users
# Every new row is scored here; chapter 05's students and the teacher are read from `distill_per_user.parquet`
# (the teacher's rows are chapter 02's). The models all rank in float64 (the count baselines' tie-breakers need it;
# a float32 model's ranks do not change).

# %%
SCRATCH, SCRATCH_FULL = "scratch (students' budget)", "scratch (teacher's recipe)"  # the two from-scratch rows
models = {**recs, "gru4rec": gru, "sasrec_ce": sasrec, SCRATCH_FULL: scratch_full, SCRATCH: scratch, "prune": pruned,
          "prune+kd": pruned_kd, "int8": int8, "nf4": nf4}
scored = per_user_table({n: m for n, m in models.items() if m is not None}, data)
per_user = pd.concat([pu05[pu05["name"].isin([*read05, "teacher"])], scored], ignore_index=True)
write_parquet(P.file("baselines_per_user.parquet"), per_user)
per_user.groupby("name", sort=False)[["ndcg@10", "hr@10", "mrr"]].mean().round(4).T

# %% [markdown]
# ## Speed and memory, measured in one run
# Every distinct model is timed against the teacher on the same test histories, repeats interleaved
# (`lab.bench.compare_speed`), at batch 1 and the profile's largest batch; peak memory is the stored weights plus the
# activation peak of one pass (chapter 04's measure; quantised weights counted at their stored size). Chapter 05's
# students and the two scratch models all have the method's shapes, so the method's timing stands for them.

# %%
timed = {"teacher": teacher, method: student,
         **{n: m for n, m in models.items() if m is not None and n not in (SCRATCH, SCRATCH_FULL)}}
bmax = max(bcfg.batch_sizes)
speed = compare_speed(timed, data.test_history, batch_sizes=(1, bmax), repeats=bcfg.repeats, warmup=bcfg.warmup)
write_parquet(P.file("baselines_speed.parquet"), speed)
speed[speed["batch"] == bmax][["model", "median_ms", "speedup", "params", "weights_mb", "peak_mb"]].round(3)

# %% [markdown]
# ## The leaderboard
# One row per method: test NDCG@10 / HR@10 / MRR with percentile bootstrap CIs over users, retention of the
# teacher's value with a paired bootstrap CI, and the paired per-user test of the method against the row (NDCG@10;
# diff = method − row, bootstrap CI, Wilcoxon p), Holm-corrected over every row. The verdict uses the thresholds of
# the parameters cell: *method better / worse* when the CI excludes 0 and the Holm-adjusted p < `ALPHA`; *on par* when
# the CI lies within ±`MARGIN`; *inconclusive* otherwise. `params` counts the numbers a model stores (a pruned
# model's nonzero ones; quantised weights once each, their bytes are in `weights_mb`).

# %%
specs = [dict(name="popularity", family="recommender", source="06", detail="training counts"),
         dict(name="markov", family="recommender", source="06", detail="first-order transition counts"),
         dict(name="itemknn", family="recommender", source="06", detail=f"cosine, {knn_k} neighbours (valid)"),
         dict(name="ease", family="recommender", source="06", detail=f"λ = {ease_l:g} (valid)"),
         dict(name="gru4rec", family="recommender", source="06", detail=f"{GRU_LAYERS}-layer GRU, CE, lr {gru_lr:g} (valid)"),
         dict(name="sasrec_ce", family="recommender", source="02", detail=f"{sasrec.num_layers} layers, scratch, CE"),
         dict(name="teacher", family="teacher", source="02", detail=f"{L} layers"),
         *[dict(name=n, family="method" if n == method else "compression", source="05", timed_as=method,
                detail="layers {layers}, {variant}, {adapter}".format(**r5.loc[n])) for n in read05],
         *[dict(name=n, family="compression", source=src, detail=f"{k} layers, scratch, CE, {how}", timed_as=method)
           for n, src, how in ((SCRATCH_FULL, "02", "teacher's recipe"), (SCRATCH, "06", "students' budget"))],
         dict(name="prune", family="compression", source="06", detail=f"magnitude {prune_info['sparsity']:.0%}"),
         dict(name="prune+kd", family="compression", source="06", detail=f"magnitude, then {variant}"),
         dict(name="int8", family="compression", source="06", detail="dynamic INT8 linears", status=int8_status),
         dict(name="nf4", family="compression", source="06", detail="NF4 weights (bitsandbytes)", status=nf4_status)]

# %%
params = {**{n: C.stored_parameters(m) for n, m in timed.items()}, **r5["params"].to_dict(),
          SCRATCH_FULL: count_parameters(scratch_full), SCRATCH: count_parameters(scratch),
          "prune": prune_info["target"], "prune+kd": prune_info["target"]}
board = B.leaderboard(B.board_rows(specs, speed, params), per_user, method, alpha=ALPHA, margin=MARGIN, seed=SEED)
write_parquet(P.file("leaderboard.parquet"), board)

# %%
V.leaderboard_view(board)  # the columns the verdicts need; detail, parameters, memory, batch 1: leaderboard.parquet

# %%
fig = V.quality_vs_speed(board, "ndcg@10", batch=bmax)
V.save(fig, "06_quality_vs_speed", P)

# %%
fig = V.retention_by_method(board, "ndcg@10", goal=lab.resolve(GOAL_RETENTION, C5.GOAL[0]))
V.save(fig, "06_retention", P)

# %% [markdown]
# ## What the leaderboard shows

# %%
b = board.set_index("name")
m = b.loc[method]
recs_board = b[b["family"] == "recommender"].sort_values("test_ndcg@10", ascending=False)
faster = b[(b["speedup"] >= m["speedup"]) & (b.index != method) & (b["status"] == "ok")]
print(f"The method, {method} ({k} of {L} layers), scores NDCG@10 {m['test_ndcg@10']:.4f} (95% CI "
      f"{m['test_ndcg@10_low']:.4f}–{m['test_ndcg@10_high']:.4f}), {m['ret_ndcg@10']:.1%} of the teacher, at "
      f"{m['speedup']:.2f}x its throughput (batch {bmax}; {m['speedup_b1']:.2f}x at batch 1).")
print("Recommenders without a teacher, best first: " + ", ".join(
    f"{n} {r['test_ndcg@10']:.4f} ({r['verdict']})" for n, r in recs_board.iterrows()) + ".")
print(f"Rows at least as fast as the method: {', '.join(faster.index) or 'none'}"
      + (f"; the best of them scores {faster['test_ndcg@10'].max():.4f} ({faster['test_ndcg@10'].idxmax()})."
         if len(faster) else "."))
print("Verdicts of the method against each row (Holm over the family): " + "; ".join(
    f"{v}: {', '.join(g.index)}" for v, g in b[b.index != method].groupby("verdict", sort=False)) + ".")

# %% [markdown]
# What the teacher is worth: a small model without it, and the rows whose paired retention CI lies above 1.

# %%
f, s, sr = b.loc[SCRATCH_FULL], b.loc[SCRATCH], b.loc["sasrec_ce"]
above = B.rows_above_teacher(board)  # measured rows whose paired retention CI lies above 1
print(f"Without the teacher, the {k}-layer model trained from scratch with the teacher's full recipe scores "
      f"{f['test_ndcg@10']:.4f}, {f['ret_ndcg@10']:.1%} of the teacher (the method against it: {f['verdict']}, "
      f"{f['diff']:+.4f} per user); on the students' budget {s['test_ndcg@10']:.4f} ({s['verdict']}); chapter 02's "
      f"{sasrec.num_layers}-layer SASRec-CE, trained from scratch with the teacher's recipe, {sr['test_ndcg@10']:.4f} "
      f"({sr['verdict']}).")
print("Rows better than the teacher (paired retention CI above 1): " + (", ".join(above) or "none") + ".")

# %% [markdown]
# What pruning and quantisation buy on this CPU: their measured speed against the teacher's, and what they keep.

# %%
for n in ("prune", "prune+kd", "int8", "nf4"):
    r = b.loc[n]
    print(f"{n}: " + (f"retention {r['ret_ndcg@10']:.1%} (CI {r['ret_ndcg@10_low']:.1%}–{r['ret_ndcg@10_high']:.1%}), "
                      f"{r['speedup']:.2f}x the teacher at batch {bmax} ({r['speedup_b1']:.2f}x at batch 1), "
                      f"{r['weights_mb']:.2f} MiB of weights vs the teacher's {b.loc['teacher', 'weights_mb']:.2f}"
                      if r["status"] == "ok" else f"not measured ({r['status']})") + ".")

# %% [markdown]
# ## Summary
# Each line is printed from the leaderboard above; `leaderboard.parquet` (one row per method, read by later
# chapters), `baselines_per_user.parquet` (per-user test metrics of every row, the teacher included) and
# `baselines_speed.parquet` (the timing run) hold the numbers; GRU4Rec, the scratch model on the students' budget and
# the distilled pruned teacher are saved under `gru4rec/`, `scratch/` and `pruned/` (the one on the teacher's recipe
# is chapter 02's, under `depth_bench/L<k>`).

# %%
best_rec = recs_board.index[0]
n_better = int((b["verdict"] == "method better").sum())
print(f"- The best recommender is {best_rec} (NDCG@10 {recs_board.loc[best_rec, 'test_ndcg@10']:.4f}); the method "
      f"scores {m['test_ndcg@10']:.4f} and keeps {m['ret_ndcg@10']:.1%} of the teacher at {m['speedup']:.2f}x.")
print(f"- The method is clearly better than {n_better} of {len(b) - 1} rows, clearly worse than "
      f"{int((b['verdict'] == 'method worse').sum())}, on par (±{MARGIN:g} NDCG@10) with "
      f"{int((b['verdict'] == 'on par').sum())} and inconclusive against {int((b['verdict'] == 'inconclusive').sum())}"
      f" (Holm at {ALPHA:g}).")
print(f"- Magnitude pruning to the student's size runs at {b.loc['prune', 'speedup']:.2f}x the teacher (dense "
      f"kernels); the k-layer student at {m['speedup']:.2f}x.")

# %%
lab.record_all(B.leaderboard_record(board, method, k=k, read_from_05=read05, knn=(knn_k, knn_valid),
                                    ease=(ease_l, ease_valid), grus=grus, gru_lr=gru_lr, prune=prune_info, bmax=bmax,
                                    alpha=ALPHA, margin=MARGIN))

# %% [markdown]
# # 05 · Distillation: can a compact student keep the teacher's quality?
#
# **Question.** Chapter 04 cut the teacher down to k = L/4 of its layers and measured the speed-up of the real compact
# model, and how much quality the cut model keeps without training. Can training the compact student against the
# teacher (knowledge distillation) bring it to the method authors' goal, C1's — at least 92% of the teacher's NDCG@10
# at a speed-up of at least 3.2x (`lab.constants.GOAL_RETENTION`, `GOAL_SPEEDUP`, the one place they are stated)?
# Does distillation beat the same k layers trained without a teacher? Does the layer-wise term help, and does
# weighting it by the teacher layers' Fisher importance (chapter 03) help more than uniform or depth weights?
#
# Each student is built from the teacher's layers that a selection rule of chapter 04 chose (`build_student`:
# weights copied, layers renumbered) and trained with
#
# $$\mathcal{L} = \alpha\,\mathrm{CE}(y, s) + \beta\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(t/T)\,\|\,
#   \mathrm{softmax}(s/T)\big) + \gamma \sum_i w_i\, d\big(h^S_i, h^T_{\mathrm{map}(i)}\big)$$
#
# over the full catalogue, where d is 1 − cos by default and map(i) is the teacher layer student layer i is matched
# to: by default (`last_of_block`, as in SLMRec) the last layer of the i-th of k equal blocks of the teacher,
# (i+1)·L/k − 1, so each student layer learns what the teacher has computed by the end of its block, the dropped
# layers included. Matching a student layer to the teacher layer it was copied from (`source`) would give a student of
# the bottom k layers a term of exactly 0 at the start: nothing to teach that the copy does not already know. The
# `mapping` column of the results says which one each row used. The weights w (summing to 1) are uniform, increasing
# with depth, or proportional to the Fisher importance of the mapped teacher layers. CE trains every position; the KD
# and layer-wise terms apply at the last position by default (the one inference scores, as in SLMRec;
# `DistillConfig.positions = "all"` switches to every position).
# Three variants per layer set: **(a)** CE only (no teacher), **(b)** CE + logit KD, **(c)** CE + logit KD + the
# layer-wise term under each weighting. The frozen teacher runs once over the training set and its outputs are
# cached (the decoupling trick of IISAN). The best setting is also trained with **LoRA** and **QLoRA**
# (4-bit NF4 base) adapters, merged back into a plain full-precision model before it is evaluated or timed.
# As a baseline from the literature, the uniform rule's layers (DistilBERT's every-other-layer start) are also
# distilled **TinyBERT's** way (`lab.distill.config.TINYBERT`: embedding-layer, hidden-state and attention-map MSE
# against the mapped teacher layers, soft cross-entropy at T = 1, no hard labels), after every choice is made, so it
# is never chosen; chapter 06 places it on the leaderboard.
#
# The **method** is the authors' own: the Fisher-selected layers (`fisher_topk`) distilled with logit KD plus the
# Fisher-weighted layer-wise term (`kd+fisher`; `lab.chapters.c05_distillation.method_name` names its student by this
# rule, never by a score). The goal is decided for that student; the best student on validation is reported beside it.
# Two controls say what the numbers mean: the **k-layer model from scratch with the teacher's full recipe** (same
# data, epochs, patience and learning rate as the teacher, no teacher: chapter 02's depth curve trained it) — does
# distillation help at all? — and the **teacher trained for the students' extra epochs** — is retention measured
# against a teacher that had the same total compute?
#
# Every choice (the variant the other rules get, the best setting, the weightings that are compared) is made on the
# **validation** split; the test split only reports.

# %% tags=["parameters"]
PROFILE = "smoke"  # smoke | default | full
SEED = 0  # global seed
ARTEFACTS = ""  # artefact root; empty means <repo>/artefacts
BUDGET_DIVISOR = 4  # layer budget: k is L divided by this
RULES = None  # selection rules to distil; None: the profile's grid (DistillGrid.for_profile)
MAIN_RULES = None  # rules trained with every variant, the others get the best one; None: the profile's
VARIANTS = None  # loss variants among "ce", "kd", "kd+layer"; None: the profile's
WEIGHTINGS = None  # layer weightings of "kd+layer" among "uniform", "depth", "fisher"; None: the profile's
MAPPING = None  # teacher layer each student layer is matched to: "last_of_block" | "source" | "uniform"; None: default
N_RANDOM = None  # random-selection draws to distil; None: the profile's
ADAPTERS = None  # adapter runs on the best setting among "lora", "qlora"; None: the profile's; []: none
EPOCHS = None  # maximum epochs per student; None: DistillConfig.for_profile
GOAL_RETENTION = None  # share of the teacher's test NDCG@10 the student should keep; None: C1's (lab.constants, 0.92)
GOAL_SPEEDUP = None  # inference speed-up over the teacher the student should deliver; None: C1's (lab.constants, 3.2)
ALPHA = 0.05  # family-wise error rate: a variant difference is clear if its CI excludes 0 and Holm-adjusted p < ALPHA
SPEED_TOLERANCE = 0.10  # merged adapter students count as fast as the full one within this throughput share

# %%
import time

import pandas as pd
import torch
from IPython.display import display
from transformers.utils import logging as hf_logging

import lab
from lab import viz as V
from lab.bench import BenchConfig, compare_speed
from lab.chapters import c05_distillation as C5
from lab.data import load_rec_data
from lab.distill import (METRICS, DistillConfig, DistillGrid, best_student, build_teacher_cache, choose_variant,
                         describe_adapter, describe_comparison, freeze_teacher, layer_mapping, mapped_teacher_layers,
                         results_table, rule_comparisons, run_grid, scratch_retention, teacher_key,
                         throughput_ratios, time_teacher_cache, valid_means, variant_comparisons)
from lab.io import read_json, write_parquet
from lab.models import SeqRecModel, build_student, count_parameters

P = lab.setup(SEED, PROFILE, ARTEFACTS or None, chapter="05_distillation")
cfg = lab.get_config(PROFILE, SEED)
hf_logging.disable_progress_bar()  # save/load progress bars of every student would drown the output
t_start = time.perf_counter()
goal = (lab.resolve(GOAL_RETENTION, C5.GOAL[0]), lab.resolve(GOAL_SPEEDUP, C5.GOAL[1]))  # C1's unless overridden

# %%
dcfg = lab.override(DistillConfig.for_profile(PROFILE), epochs=EPOCHS, mapping=MAPPING)  # None keeps the profile's
grid = DistillGrid.for_profile(PROFILE).with_overrides(RULES, MAIN_RULES, VARIANTS, WEIGHTINGS, N_RANDOM, ADAPTERS)
data, _, stats = load_rec_data(cfg.data, P, seed=SEED, progress=False)
teacher = freeze_teacher(lab.load_teacher(P, lab.device()))
importance = lab.load_importance(P)  # chapter 03's table, for the Fisher weighting
L = teacher.num_layers
k = max(1, L // BUDGET_DIVISOR)
print(f"teacher: {L} layers, {count_parameters(teacher):,} parameters; budget k = {k}; "
      f"{data.num_users} users, {data.num_items} items; device {lab.device()}, {torch.get_num_threads()} threads")
print(f"variants trained: {', '.join(grid.variant_names())}; the loss terms and budget, and the grid:")
display(V.config_table(dcfg), V.config_table(grid))

# %% [markdown]
# ## The teacher's test metrics, and the layer sets to distil
# Retention is always student ÷ teacher on the **same users** of the test split (full-catalogue ranking, seen items
# masked), so its confidence interval comes from a paired bootstrap over users (`lab.evaluation.paired_ratio_ci`). The
# teacher's per-user test metrics are the ones chapter 02 saved. The layer lists are chapter 04's, at budget k; the
# last column shows the teacher layers the layer-wise term matches them to.

# %%
te = pd.read_parquet(P.file("teacher_eval.parquet"))
teacher_pu = te[te["model"].str.startswith("teacher")][["user", *METRICS]].reset_index(drop=True)
teacher_test = teacher_pu[list(METRICS)].mean()
layer_sets = grid.layer_sets(pd.read_parquet(P.file("selections.parquet")), k)  # (name, rule, draw, layers)
main, _ = grid.split_sets(layer_sets)  # the main rules' sets: every variant is trained on them
sets = pd.DataFrame(layer_sets, columns=["name", "rule", "draw", "layers"])
sets[f"teacher layers ({dcfg.mapping})"] = [layer_mapping(len(s), L, dcfg.mapping, s) for s in sets["layers"]]
display(sets)
display(teacher_test.to_frame("teacher (test)").T.round(4))

# %% [markdown]
# ## Does caching the teacher pay?
# Every KD step needs the teacher's final hidden state (its logits are recomputed from it by the teacher's own scoring
# head, one matrix product) and, with the layer-wise term, its mapped layers' outputs. The teacher is frozen, so these
# never change: one pass over the training set replaces a teacher forward pass in every step of every epoch of every
# run. One cache with the union of the layers all runs need is built once and shared.

# %%
need = mapped_teacher_layers(layer_sets, L, dcfg)  # the teacher layers the layer-wise term reads, all runs together
cache = build_teacher_cache(teacher, data.train_inputs, need, dcfg.positions, batch_size=cfg.train.eval_batch_size,
                            dtype=dcfg.cache_dtype)
probe_layers = (main or layer_sets)[0][3]
probe_cfg = dcfg.with_variant(grid.variant_names()[-1] if grid.variant_names()[-1] != "ce" else "kd")
ct = time_teacher_cache(teacher, build_student(teacher, probe_layers), data, probe_cfg, cfg.train, importance,
                        n_steps=2, cache=cache)
print(f"cache of {len(need)} teacher layers + final state: {cache.nbytes / 2**20:.1f} MiB, built in "
      f"{cache.seconds:.1f} s (one teacher pass over {data.num_users} training rows)")
print(f"training step ({probe_cfg.variant}): {ct['live_step_s']:.3f} s with the teacher run live, "
      f"{ct['cached_step_s']:.3f} s from the cache -> {ct['saved_per_epoch_s']:.1f} s saved per epoch of "
      f"{ct['steps_per_epoch']} steps; the cache "
      + (f"pays for itself after {ct['break_even_epochs']:.2f} epochs of one run" if ct["saved_per_epoch_s"] > 0
         else "did not pay off in this measurement"))

# %% [markdown]
# ## Train the students
# Same hygiene as the teacher (`lab.train.fit`): AdamW with warm-up and cosine decay, early stopping on validation
# NDCG@10 (the best epoch's weights are kept), a checkpoint per epoch and resume, fixed seed. A finished student is
# saved with `save_pretrained` under `students/<name>` and loaded back on a re-run when nothing changed. First every
# variant on the main rules; the variant with the best mean **validation** NDCG@10 there is then used for the other
# rules. Rules often agree on the layers (chapter 04); a rule whose layer set, variant and adapter were already trained
# gets that student's row (same seed, same run) with `same_as` naming it, instead of a second identical run
# (`lab.distill.trainer.StudentRuns`). Last, the adapters are trained on the best setting (next section).
# `lab.distill.run_grid` runs the whole grid and returns one row per student and their per-user test metrics.

# %%
runs, pu_all = run_grid(teacher, data, layer_sets, grid, dcfg, cfg.train, P.root, importance=importance,
                        cache=cache, seed=SEED, key=teacher_key(P.teacher, stats))  # (students, per-user test metrics)
best_variant = choose_variant(runs, grid)  # the variant the other rules got: best on validation over the main rules
best_name = best_student(runs)  # the best full fine-tuned student on validation: the adapters' setting
method = C5.method_name(runs)  # the method's own student: fisher_topk with kd+fisher (the rule, not a score)
print(f"the method's student: {method}; the best on validation: {best_name}")

# %% [markdown]
# ## LoRA and QLoRA on the best setting
# The best setting is the full fine-tuned student with the highest validation NDCG@10. LoRA (rank and targets in
# `DistillConfig`) trains low-rank adapters on every attention and MLP projection; the item table stays the
# teacher's. QLoRA does the same over a 4-bit NF4 copy of the student (bitsandbytes). Both are merged into a plain
# full-precision model before evaluation; the QLoRA merge dequantises the NF4 weights and adds the adapter delta in
# float32 (a unit test checks the merged model scores what was trained).

# %%
runs[runs["name"].str.startswith(best_name)][["name", "adapter", "valid_ndcg@10", "test_ndcg@10", "trainable_params",
                                              "peak_mem_mb", "total_seconds"]]

# %% [markdown]
# ## Inference speed of the merged students
# All students have k layers and the same shapes, so one full fine-tuned student stands for all of them; the merged
# LoRA and QLoRA students are timed too, to measure whether the adapters cost anything after merging. Each is loaded
# back from its `save_pretrained` folder, as it would be deployed. Same batches, repeats interleaved across models
# (`lab.bench.compare_speed`), full-catalogue scoring at the last position. The table is saved as
# `distill_speed.parquet`.

# %%
bcfg = BenchConfig.for_profile(PROFILE)
timed_names = list(dict.fromkeys([best_name, method, *runs.loc[runs["adapter"] != "full", "name"]]))  # + adapters
timed = {"teacher": teacher,  # the students as saved: what would be deployed
         **{n: SeqRecModel.from_pretrained(C5.student_dir(P, runs, n)).to(lab.device()).eval() for n in timed_names}}
speed = compare_speed(timed, data.test_history, batch_sizes=(1, max(bcfg.batch_sizes)), repeats=bcfg.repeats,
                      warmup=bcfg.warmup, memory=False)
write_parquet(P.file("distill_speed.parquet"), speed)
bmax = int(speed["batch"].max())
display(speed[["model", "n_layers", "batch", "median_ms", "throughput", "speedup", "ideal"]].round(3))

# %% [markdown]
# ## The controls: the same k layers without a teacher, and a teacher given the students' epochs
# **From scratch, the teacher's recipe.** A model of k layers, the teacher's width, trained from random weights with
# everything the teacher had (its data, epochs, patience and learning rate; epochs, never minutes) and no teacher:
# chapter 02's depth curve trained it in `depth_bench/L<k>` (`lab.bench.depth.scratch_control`, the same
# train-or-load, so it is loaded here). If the students do not beat it, distillation bought nothing that training the
# small model alone would not. **The teacher, extended.** The students train for up to `DistillConfig.epochs` epochs
# on top of the teacher's; the teacher continued for as many epochs from its saved weights, with its own recipe, is
# the teacher with the same total compute (saved under `teacher_extended/`). Both are scored on the same test users.

# %%
controls = C5.control_models(cfg, P, data, stats, dcfg, grid, k, seed=SEED, device=lab.device())  # name: (model, info)
ctl_pu = C5.control_per_user(controls, data, batch_size=cfg.train.eval_batch_size)  # their per-user test metrics
for n, (_, info) in controls.items():
    print(f"{n}: {info['epochs']} epochs (stopped by {info.get('stopped_by') or 'its saved run'}), validation "
          f"NDCG@10 {info['best_valid_ndcg@10']:.4f}, {'loaded' if info.get('loaded') else 'trained'}")

# %% [markdown]
# ## Results: quality kept, training cost, speed
# Retention per metric with a paired 95% bootstrap CI over test users; training cost as wall time (training plus the
# shared teacher-cache build for runs that use the teacher), trainable parameters and peak training memory (counted
# from the tensors: weights, gradients, AdamW moments, activations saved for backward in one step, teacher and its
# cache; on CUDA the measured peak), summarised as IISAN's TPME (min–max normalised across these runs; lower is
# cheaper). `mapping` and `teacher_layers` say which teacher layers the layer-wise term matched ("none": no such term).

# %%
results = results_table(runs, pu_all, teacher_pu, speed, reference=best_name, seed=SEED)
write_parquet(P.file("distill_results.parquet"), results)
per_user_out = pd.concat([pu_all, ctl_pu, teacher_pu.assign(name="teacher")[["name", "user", *METRICS]]],
                         ignore_index=True)  # the students, the controls, the teacher
write_parquet(P.file("distill_per_user.parquet"), per_user_out)
cols = ["name", "mapping", "teacher_layers", "epochs", "valid_ndcg@10", "test_ndcg@10", "ret_ndcg@10",
        "ret_ndcg@10_low", "ret_ndcg@10_high", "ret_hr@10", "ret_mrr", "total_seconds", "trainable_params",
        "peak_mem_mb", "tpme", "speedup"]
results[cols].sort_values("ret_ndcg@10", ascending=False).round(3)

# %%
fig = V.retention_bars(results, "ndcg@10", goal[0])
V.save(fig, "05_retention", P)

# %%
fig = V.cost_and_speed(results, "ndcg@10", goal[0], goal[1], batch=bmax)
V.save(fig, "05_cost_speed", P)

# %% [markdown]
# ## What the measurement shows
# First the goal (C1's), for the method's own student, and beside it the best student on validation, both reported on
# test.

# %%
r = results.set_index("name")
best = r.loc[best_name]
print("\n".join(C5.method_sentences(results, method, best_name, k, L, bmax, goal)))
meeting = r[C5.meets_goal(r, *goal)]  # the students that meet it on their point estimate
print(f"{len(meeting)} of {len(r)} students meet the goal on their point estimate"
      + (f" ({', '.join(meeting.index[:6])}{'…' if len(meeting) > 6 else ''})." if len(meeting) else "."))

# %% [markdown]
# Does distillation help? The method's student and the best one against the k layers trained from scratch with the
# teacher's recipe (per user, paired), and retention against the teacher given the students' extra epochs. Context:
# chapter 02's small model trained from scratch, without the teacher, on the same test users.

# %%
cs = C5.control_summary(pd.concat([pu_all, ctl_pu]), teacher_pu, controls, method, best_name, seed=SEED)
print("\n".join(C5.control_sentences(cs, method, best_name, k)))
sr = scratch_retention(te, teacher_pu, seed=SEED)  # retention with its CI, or None without a small model
if sr is not None:
    print(f"Reference: the {sr['name']} model trained from scratch in chapter 02 (no teacher) keeps "
          f"{sr['retention']:.1%} (95% CI {sr['ci_low']:.1%}–{sr['ci_high']:.1%}) of the teacher's NDCG@10.")

# %% [markdown]
# Then the loss variants, on the main rules' layer sets (each set trained every way, users paired). The family of
# paired tests — KD vs CE, the layer-wise term (its best weighting **on validation**) vs KD, Fisher weighting vs the
# best other weighting **on validation** — is corrected once with Holm's method: a difference counts as clear only
# when its bootstrap CI excludes 0 **and** its Holm-adjusted Wilcoxon p is below `ALPHA`.

# %%
means = valid_means(results, grid.main_rules)  # the choices: validation NDCG@10 per variant over the main rules
main_ret = results[results["rule"].isin(grid.main_rules) & (results["adapter"] == "full")]
display(pd.DataFrame({"valid NDCG@10 (chooses)": means,
                      "test retention (reports)": main_ret.groupby("variant", sort=False)["ret_ndcg@10"].mean()}))
variant_runs = grid.variant_runs(layer_sets)  # {variant: the main rules' students}: the same layer sets, per variant
comparisons = variant_comparisons(pu_all, variant_runs, means, alpha=ALPHA, seed=SEED)
for c in comparisons.to_dict("records"):
    print(describe_comparison(c, len(comparisons)))
if len(comparisons):
    write_parquet(P.file("distill_comparisons.parquet"), comparisons)
    display(comparisons[["a", "b", "diff", "ci_low", "ci_high", "wilcoxon_p", "holm_p", "clear"]].round(4))

# %% [markdown]
# How the selection rules rank with the chosen variant (test retention, reported only).

# %%
fr = r[(r["variant"] == best_variant) & (r["adapter"] == "full")]
if len(fr) > 1:
    rnd = fr[fr["rule"] == "random"]["ret_ndcg@10"]
    order = fr.sort_values("ret_ndcg@10", ascending=False)
    print(f"With {best_variant}, rules rank by test retention: "
          + ", ".join(f"{n.split(':')[0]} {x:.1%}" for n, x in order["ret_ndcg@10"].items())
          + (f"; random draws average {rnd.mean():.1%}." if len(rnd) else "."))

# %% [markdown]
# Does selecting by Fisher beat the other rules once every student has had the same distillation? The Fisher-selected
# student against each other rule's (the random draws averaged per user), paired per test user, Holm over the family.

# %%
rule_tests = rule_comparisons(results, pu_all, best_variant, alpha=ALPHA, seed=SEED)  # fisher_topk vs each rule
for c in rule_tests.to_dict("records"):
    print(describe_comparison(c, len(rule_tests)))
if len(rule_tests):
    write_parquet(P.file("distill_rule_comparisons.parquet"), rule_tests)

# %% [markdown]
# The adapters: training cost against the full fine-tuned best setting, and the merged models' measured speed
# against it: throughput ratio per batch size from the speed table above, on the 10th-percentile latencies (the
# passes least disturbed by other processes on a shared machine).

# %%
adapter_names = list(runs.loc[runs["adapter"] != "full", "name"])
ratios = throughput_ratios(speed, adapter_names, best_name)  # (batch sizes) x (adapter students)
for n in adapter_names:  # retention, training cost and merged speed against the full fine-tuned best setting
    print(describe_adapter(r.loc[n], best, ratios[n], SPEED_TOLERANCE))

# %%
chapter_seconds = time.perf_counter() - t_start
n_trained = int((r["same_as"] == "").sum())
print(f"Training the {n_trained} distinct students ({len(r) - n_trained} rows share another rule's layers) took "
      f"{r.loc[r['same_as'] == '', 'total_seconds'].sum():.0f} s of wall time (chapter: {chapter_seconds:.0f} s).")

# %% [markdown]
# ## Every budget: when does the choice of layers start to matter?
# This chapter distils at one budget, k = L/4. The compression sweep (`python -m lab sweep compression`,
# `lab.bench.sweep`) repeats it at every budget: each rule's student zero-shot and after this chapter's recipe with
# the variant chosen above, random layer sets, the k-layer model from scratch with the teacher's recipe, and measured
# speed-ups, tested per user with Holm within each budget. When its table exists for this profile, its curve is here.

# %%
sweep = C5.sweep_view(PROFILE, SEED, ARTEFACTS or None)  # the sweep's summary, tests and headline, if it has run
print(sweep["sentence"])
if sweep["found"]:
    V.save(V.compression_curves(sweep["summary"], "ndcg@10", batch=256, goal=goal[0]), "05_compression_curves", P)

# %% [markdown]
# ## Summary
# Each line is printed from the numbers above; `distill_results.parquet` (one row per student),
# `distill_per_user.parquet` (per-user test metrics: the teacher as "teacher", the k-layer model from scratch with the
# teacher's recipe as "scratch_full", the extended teacher as "teacher_extended"), `distill_comparisons.parquet`
# and `distill_speed.parquet` hold them, and the students are saved under `students/<name>`.

# %%
weightings = [w for w in dict.fromkeys(r["weighting"]) if w != "none"]  # the weightings the grid actually ran
n_clear = int(comparisons["clear"].sum()) if len(comparisons) else 0
print(f"- Students of k = {k} of {L} teacher layers were trained with {', '.join(dict.fromkeys(r['variant']))}"
      + (f" (layer-wise weightings: {', '.join(weightings)}; mapping {dcfg.mapping})" if weightings else "") + ".")
for line in C5.method_sentences(results, method, best_name, k, L, bmax, goal) + C5.control_sentences(
        cs, method, best_name, k):
    print(f"- {line}")
print(f"- {n_clear} of {len(comparisons)} variant comparisons are clear after Holm's correction at {ALPHA:g}"
      + (": " + "; ".join(f"{c['a']} vs {c['b']} {c['diff']:+.4f}" for _, c in comparisons[comparisons["clear"]]
                          .iterrows()) if n_clear else "") + ".")

# %%
print(f"- Caching the frozen teacher saved {ct['saved_per_epoch_s']:.1f} s per epoch of {ct['steps_per_epoch']} "
      f"steps in this measurement ({ct['live_step_s']:.3f} s live vs {ct['cached_step_s']:.3f} s cached per step).")
if len(adapter_names):
    cost = ", ".join(f"{a.upper()} {p / best['trainable_params']:.0%} of the trainable parameters, TPME {t:.2f}"
                     for a, p, t in r.loc[adapter_names, ["adapter", "trainable_params", "tpme"]].itertuples(False))
    print(f"- Merged adapter students run at {ratios.min().min():.2f}x–{ratios.max().max():.2f}x the full student's "
          "throughput: " + ("the same speed" if ((ratios - 1).abs() <= SPEED_TOLERANCE).all().all() else
                            "NOT the same speed") + f" within {SPEED_TOLERANCE:.0%}. Training cost against full "
          f"fine-tuning (TPME {best['tpme']:.2f}): {cost}.")

# %%
lab.record_all(C5.distillation_record(results, grid, dcfg, k=k, comparisons=comparisons, ratios=ratios, scratch=sr,
                                      cache=ct, goal=goal, alpha=ALPHA, chapter_seconds=chapter_seconds,
                                      rule_tests=rule_tests, method=method, controls=cs,
                                      teacher_info=read_json(P.teacher / "train_info.json")))

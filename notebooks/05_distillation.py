# %% [markdown]
# # 05 · Distillation: can a compact student keep the teacher's quality?
#
# **Question.** Chapter 04 cut the teacher down to k = L/4 of its layers and measured the speed-up of the real compact
# model. Cut models lose quality. Can training the compact student against the teacher (knowledge distillation) bring
# it back to at least 95% of the teacher's NDCG@10 while it stays at least 3x faster? Does the layer-wise term help,
# and does weighting it by the teacher layers' Fisher importance (chapter 03) help more than uniform or depth weights?
#
# Each student is built from the teacher's layers that a selection rule of chapter 04 chose (`build_student`:
# weights copied, layers renumbered) and trained with
#
# $$\mathcal{L} = \alpha\,\mathrm{CE}(y, s) + \beta\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(t/T)\,\|\,
#   \mathrm{softmax}(s/T)\big) + \gamma \sum_i w_i\, d\big(h^S_i, h^T_{\mathrm{map}(i)}\big)$$
#
# over the full catalogue, where map(i) is the teacher layer student layer i was copied from, d is 1 − cos by default
# and the weights w (summing to 1) are uniform, increasing with depth, or proportional to the Fisher importance of the
# mapped teacher layers. CE trains every position; the KD and layer-wise terms apply at the last position by default
# (the one inference scores, as in SLMRec; `DistillConfig.positions = "all"` switches to every position).
# Three variants per layer set: **(a)** CE only (no teacher), **(b)** CE + logit KD, **(c)** CE + logit KD + the
# layer-wise term under each weighting. The frozen teacher runs once over the training set and its outputs are
# cached (the decoupling trick of IISAN). The best setting is also trained with **LoRA** and **QLoRA**
# (4-bit NF4 base) adapters, merged back into a plain full-precision model before it is evaluated or timed.

# %% tags=["parameters"]
PROFILE = "smoke"  # smoke | default | full
SEED = 0  # global seed
ARTEFACTS = ""  # artefact root; empty means <repo>/artefacts
BUDGET_DIVISOR = 4  # layer budget: k is L divided by this
RULES = []  # selection rules to distil; empty: the profile's grid (DistillGrid.for_profile)
MAIN_RULES = []  # rules trained with every variant, the others get the best one; empty: the profile's
VARIANTS = []  # loss variants among "ce", "kd", "kd+layer"; empty: the profile's
WEIGHTINGS = []  # layer weightings of "kd+layer" among "uniform", "depth", "fisher"; empty: the profile's
N_RANDOM = -1  # random-selection draws to distil; -1: the profile's
ADAPTERS = []  # adapter runs on the best setting among "lora", "qlora"; empty: the profile's; ["none"]: none
EPOCHS = 0  # maximum epochs per student; 0: DistillConfig.for_profile
GOAL_RETENTION = 0.95  # share of the teacher's test NDCG@10 the student should keep
GOAL_SPEEDUP = 3.0  # inference speed-up over the teacher the student should deliver

# %%
import dataclasses
import time

import pandas as pd
import torch
from IPython.display import display
from transformers.utils import logging as hf_logging

import lab
from lab import viz_distill as V
from lab.bench import BenchConfig, compare_speed
from lab.data import load_rec_data
from lab.distill import (METRICS, DistillConfig, DistillGrid, build_teacher_cache, distill, freeze_teacher,
                         per_user_metrics, retention, time_teacher_cache, tpme)
from lab.io import read_json, write_parquet
from lab.models import SeqRecModel, build_student, count_parameters
from lab.selection import layers_str, parse_layers
from lab.stats import compare_paired

P = lab.setup(SEED, PROFILE, ARTEFACTS or None, chapter="05_distillation")
cfg = lab.get_config(PROFILE, SEED)
hf_logging.disable_progress_bar()  # save/load progress bars of every student would drown the output
t_start = time.perf_counter()

dcfg = DistillConfig.for_profile(PROFILE)
dcfg.epochs = EPOCHS or dcfg.epochs
grid = DistillGrid.for_profile(PROFILE)
overrides = {"rules": RULES, "main_rules": MAIN_RULES, "variants": VARIANTS, "weightings": WEIGHTINGS,
             "adapters": [a for a in ADAPTERS if a != "none"] if ADAPTERS else []}
grid = dataclasses.replace(grid, **{k: tuple(v) for k, v in overrides.items() if v or (k == "adapters" and ADAPTERS)})
grid.n_random = grid.n_random if N_RANDOM < 0 else N_RANDOM

data, _, stats = load_rec_data(cfg.data, P, seed=SEED, progress=False)
teacher = freeze_teacher(SeqRecModel.from_pretrained(P.teacher).to(lab.device()))
importance = pd.read_parquet(P.file("importance.parquet"))
selections = pd.read_parquet(P.file("selections.parquet"))
L = teacher.num_layers
k = max(1, L // BUDGET_DIVISOR)
teacher_key = {"teacher": read_json(P.teacher / "train_info.json", {}).get("key"), "data": stats.get("config_hash")}
print(f"teacher: {L} layers, {count_parameters(teacher):,} parameters; budget k = {k}; "
      f"{data.num_users} users, {data.num_items} items; device {lab.device()}, {torch.get_num_threads()} threads")
print(f"loss terms and budget: {dcfg}")
print(f"grid: {grid}; variants {grid.variant_names()}")

# %% [markdown]
# ## The teacher's test metrics, and the layer sets to distil
# Retention is always student ÷ teacher on the **same users** of the test split (full-catalogue ranking, seen items
# masked), so its confidence interval comes from a paired bootstrap over users (`lab.stats.paired_ratio_ci`). The
# teacher's per-user test metrics are the ones chapter 02 saved. The layer lists are chapter 04's, at budget k.

# %%
te = pd.read_parquet(P.file("teacher_eval.parquet"))
teacher_pu = te[te["model"].str.startswith("teacher")][["user", *METRICS]].reset_index(drop=True)
teacher_test = teacher_pu[list(METRICS)].mean()

at_k = selections[selections["k"] == k]
layer_sets = []  # (name, rule, draw, layers)
for rule in grid.rules:
    rows = at_k[at_k["rule"] == rule].sort_values("draw")
    if rule == "random":
        rows = rows.head(grid.n_random)
    elif len(rows):
        rows = rows.head(1)
    if not len(rows):
        print(f"note: chapter 04 has no {rule!r} selection at k={k}; skipped")
    for _, r in rows.iterrows():
        name = f"{rule}#{int(r['draw'])}" if rule == "random" else rule
        layer_sets.append((name, rule, int(r["draw"]), parse_layers(r["layers"])))
main = [s for s in layer_sets if s[1] in grid.main_rules]
others = [s for s in layer_sets if s[1] not in grid.main_rules]
display(pd.DataFrame(layer_sets, columns=["name", "rule", "draw", "layers"]))
display(teacher_test.to_frame("teacher (test)").T.round(4))

# %% [markdown]
# ## Does caching the teacher pay?
# Every KD step needs the teacher's final hidden state (its logits are recomputed from it by the teacher's own scoring
# head, one matrix product) and, with the layer-wise term, its mapped layers' outputs. The teacher is frozen, so these
# never change: one pass over the training set replaces a teacher forward pass in every step of every epoch of every
# run. One cache with the union of the layers all runs need is built once and shared.

# %%
need = sorted({i for _, _, _, layers in layer_sets for i in layers})  # "source" mapping: the kept layers themselves
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
# NDCG@10, a checkpoint per epoch and resume, fixed seed. A finished student is saved with `save_pretrained` under
# `students/<name>` and loaded back on a re-run when nothing changed. First every variant on the main rules; the
# variant with the best mean **validation** NDCG@10 there is then used for the other rules (the test split picks
# nothing). Rules often agree on the layers (chapter 04); a rule whose layer set, variant and adapter were already
# trained gets that student's row (same seed, same run) with `same_as` naming it, instead of a second identical run.

# %%
runs, per_user, histories, trained = [], [], {}, {}


def train(name, rule, draw, layers, variant, adapter="full"):
    """Distil one student, evaluate it on the test split, keep its row, per-user metrics and history."""
    key = (tuple(layers), variant, adapter)
    if key in trained:  # the same student under another rule's name
        done, row, pu, model = trained[key]
        runs.append({**row, "name": name, "rule": rule, "draw": draw, "same_as": done})
        per_user.append(pu.assign(name=name))
        histories[name] = histories[done]
        print(f"{name:<32} same layers as {done}: not trained again")
        return model
    c = dataclasses.replace(dcfg.with_variant(variant), adapter=adapter)
    model, hist, info = distill(teacher, build_student(teacher, layers), data, c, cfg.train,
                                P.root / "students" / name, importance=importance, cache=cache, seed=SEED,
                                progress=False, key=teacher_key)
    pu = per_user_metrics(model, data, name, "test", batch_size=cfg.train.eval_batch_size)
    per_user.append(pu)
    histories[name] = hist
    runs.append({"name": name, "rule": rule, "draw": draw, "k": len(layers), "layers": layers_str(layers),
                 "variant": variant,
                 "adapter": adapter, "weighting": c.weighting if c.uses_layers else "none",
                 "epochs": info["epochs"], "valid_ndcg@10": info["best_valid_ndcg@10"],
                 **{f"test_{m}": float(pu[m].mean()) for m in METRICS},
                 **{c_: info[c_] for c_ in ("train_seconds", "cache_seconds", "total_seconds", "trainable_params",
                                            "peak_mem_mb")},
                 "params": count_parameters(model), "loaded": info["loaded"], "same_as": ""})
    trained[key] = (name, runs[-1], pu, model)
    print(f"{name:<32} valid ndcg@10 {info['best_valid_ndcg@10']:.4f}  test {runs[-1]['test_ndcg@10']:.4f}  "
          f"{info['epochs']} ep  {info['total_seconds']:.1f} s{'  (loaded)' if info['loaded'] else ''}")
    return model


models = {}
for name, rule, draw, layers in main:
    for variant in grid.variant_names():
        models[f"{name}:{variant}"] = train(f"{name}:{variant}", rule, draw, layers, variant)
frame = pd.DataFrame(runs)
by_variant = frame.groupby("variant", sort=False)["valid_ndcg@10"].mean()
best_variant = by_variant.idxmax() if len(by_variant) else grid.variant_names()[-1]
print(f"best variant on validation (mean over {', '.join(grid.main_rules)}): {best_variant}")
for name, rule, draw, layers in others:
    models[f"{name}:{best_variant}"] = train(f"{name}:{best_variant}", rule, draw, layers, best_variant)

# %% [markdown]
# ## LoRA and QLoRA on the best setting
# LoRA (rank and targets in `DistillConfig`) trains low-rank adapters on every attention and MLP projection; the item
# table stays the teacher's. QLoRA does the same over a 4-bit NF4 copy of the student (bitsandbytes). Both are merged
# into a plain full-precision model before evaluation; the QLoRA merge dequantises the NF4 weights and adds the
# adapter delta in float32, so the merged model computes what was trained.

# %%
full = pd.DataFrame(runs)
best_full = full.loc[full.loc[full["same_as"] == "", "valid_ndcg@10"].idxmax()]
best_layers = next(s for s in layer_sets if s[0] == best_full["name"].split(":")[0])
for adapter in grid.adapters:
    nm = f"{best_layers[0]}:{best_full['variant']}:{adapter}"
    models[nm] = train(nm, best_layers[1], best_layers[2], best_layers[3], best_full["variant"], adapter)
print(f"best full fine-tuning setting on validation: {best_full['name']}")

# %% [markdown]
# ## Inference speed of the merged students
# All students have k layers and the same shapes, so one full fine-tuned student stands for all of them; the merged
# LoRA and QLoRA students are timed too, to show that the adapters cost nothing after merging. Each is loaded back
# from its `save_pretrained` folder, as it would be deployed. Same batches, repeats
# interleaved across models (`lab.bench.compare_speed`), full-catalogue scoring at the last position.

# %%
bcfg = BenchConfig.for_profile(PROFILE)
timed_names = [best_full["name"], *[n for n in models if n.endswith((":lora", ":qlora"))]]
timed = {"teacher": teacher,  # the students as saved: what would be deployed
         **{n: SeqRecModel.from_pretrained(P.root / "students" / n).to(lab.device()).eval() for n in timed_names}}
speed = compare_speed(timed, data.test_history, batch_sizes=(1, max(bcfg.batch_sizes)), repeats=bcfg.repeats,
                      warmup=bcfg.warmup, memory=False)
bmax = int(speed["batch"].max())
sp = speed.set_index(["model", "batch"])["speedup"]
display(speed[["model", "n_layers", "batch", "median_ms", "throughput", "speedup", "ideal"]].round(3))

# %% [markdown]
# ## Results: quality kept, training cost, speed
# Retention per metric with a paired 95% bootstrap CI over test users; training cost as wall time (training plus the
# shared teacher-cache build for runs that use the teacher), trainable parameters and peak training memory (counted
# from the tensors: weights, gradients, AdamW moments, activations saved for backward in one step, teacher and its
# cache; on CUDA the measured peak), summarised as IISAN's TPME (min–max normalised across these runs; lower is
# cheaper).

# %%
pu_all = pd.concat(per_user, ignore_index=True)
ret = retention(pu_all, teacher_pu, METRICS, seed=SEED)
wide = ret.pivot(index="name", columns="metric", values=["retention", "ci_low", "ci_high"])
results = pd.DataFrame(runs).set_index("name")
for m in METRICS:
    results[f"ret_{m}"] = wide[("retention", m)]
    results[f"ret_{m}_low"] = wide[("ci_low", m)]
    results[f"ret_{m}_high"] = wide[("ci_high", m)]
results["tpme"] = tpme(results)
full_speed = {b: float(sp[(best_full["name"], b)]) for b in (1, bmax)}
results["speedup"] = [float(sp.get((n, bmax), full_speed[bmax])) for n in results.index]
results["speedup_b1"] = [float(sp.get((n, 1), full_speed[1])) for n in results.index]
results = results.reset_index()
write_parquet(P.file("distill_results.parquet"), results)
per_user_out = pd.concat([pu_all, teacher_pu.assign(name="teacher")[["name", "user", *METRICS]]], ignore_index=True)
write_parquet(P.file("distill_per_user.parquet"), per_user_out)
cols = ["name", "epochs", "valid_ndcg@10", "test_ndcg@10", "ret_ndcg@10", "ret_ndcg@10_low", "ret_ndcg@10_high",
        "ret_hr@10", "ret_mrr", "total_seconds", "trainable_params", "peak_mem_mb", "tpme", "speedup"]
results[cols].sort_values("ret_ndcg@10", ascending=False).round(3)

# %%
fig = V.retention_bars(results, "ndcg@10", GOAL_RETENTION, P.figures / "05_retention.png")

# %%
fig = V.cost_and_speed(results, "ndcg@10", GOAL_RETENTION, GOAL_SPEEDUP, P.figures / "05_cost_speed.png")

# %% [markdown]
# ## What the measurement shows

# %%
r = results.set_index("name")
best = r.loc[best_full["name"]]  # chosen on validation, reported on test
goal_met = bool(best["ret_ndcg@10"] >= GOAL_RETENTION and best["speedup"] >= GOAL_SPEEDUP)
goal_met_ci = bool(best["ret_ndcg@10_low"] >= GOAL_RETENTION and best["speedup"] >= GOAL_SPEEDUP)
meeting = r[(r["ret_ndcg@10"] >= GOAL_RETENTION) & (r["speedup"] >= GOAL_SPEEDUP)]
print(f"Best setting on validation: {best_full['name']} (k = {k} of {L} layers). On test it keeps "
      f"{best['ret_ndcg@10']:.1%} of the teacher's NDCG@10 (95% CI {best['ret_ndcg@10_low']:.1%}–"
      f"{best['ret_ndcg@10_high']:.1%}) at {best['speedup']:.2f}x the teacher's throughput (batch {bmax}; "
      f"{best['speedup_b1']:.2f}x at batch 1).")
print(f"Goal (>= {GOAL_RETENTION:.0%} retention at >= {GOAL_SPEEDUP:.0f}x): "
      + ("met" if goal_met else "NOT met") + (" — and the whole CI clears it." if goal_met_ci else
                                              (" on the point estimate, but the CI reaches below it." if goal_met
                                               else ".")))
print(f"{len(meeting)} of {len(r)} students meet the goal on their point estimate"
      + (f" ({', '.join(meeting.index[:6])}{'…' if len(meeting) > 6 else ''})." if len(meeting) else "."))
# Context: chapter 02's shallow model trained from scratch, without the teacher, on the same test users
small_name = next((m for m in te["model"].unique() if m.startswith("small")), None)
scratch_ret = float("nan")
if small_name is not None:
    small_pu = te[te["model"] == small_name][["user", *METRICS]].assign(name=small_name)
    sr = retention(small_pu, teacher_pu, ["ndcg@10"], seed=SEED).iloc[0]
    scratch_ret = float(sr["retention"])
    print(f"Reference: the {small_name} model trained from scratch in chapter 02 (no teacher) keeps "
          f"{sr['retention']:.1%} (95% CI {sr['ci_low']:.1%}–{sr['ci_high']:.1%}). "
          + ("So on this data the teacher's depth buys little: a student can match the teacher without learning "
             "anything from it, and retention near or above 100% says as much about the data as about distillation."
             if sr["retention"] >= GOAL_RETENTION else
             "The teacher's depth is worth something here: a shallow model trained alone falls short of it."))

mr = r[r["rule"].isin(grid.main_rules) & (r["adapter"] == "full")]
if len(mr):
    vt = mr.groupby("variant", sort=False)["ret_ndcg@10"].mean()
    print("Mean test retention over the main rules by variant: "
          + ", ".join(f"{v} {x:.1%}" for v, x in vt.items()) + ".")
    main_names = lambda v: [f"{n}:{v}" for n, *_ in main]  # the same layer sets, trained with variant v

    def versus(va, vb):
        """Paired test of variant va vs vb on the main rules' test users (NDCG@10 averaged over the rules)."""
        c = compare_paired(pu_all, main_names(va), main_names(vb), "ndcg@10", seed=SEED)
        comparisons.append({"a": va, "b": vb, **c})
        verdict = (("better" if c["diff"] > 0 else "worse") + " (the CI excludes 0)") if c["clear"] else \
            "no different within noise (the CI includes 0)"
        return (f"{va} vs {vb}: NDCG@10 {c['diff']:+.4f} (95% CI {c['ci_low']:+.4f} to {c['ci_high']:+.4f}, "
                f"Wilcoxon p = {c['wilcoxon_p']:.2g}) — {verdict}")

    comparisons = []
    if {"ce", "kd"} <= set(vt.index):
        print("Logit KD over CE alone: " + versus("kd", "ce") + ".")
    lw = {v: vt[v] for v in vt.index if v.startswith("kd+")}
    if lw and "kd" in vt.index:
        top_w = max(lw, key=lw.get)
        print("The layer-wise term (its best weighting) over plain KD: " + versus(top_w, "kd") + ".")
        if len(lw) > 1 and "kd+fisher" in lw:
            rival = max((v for v in lw if v != "kd+fisher"), key=lw.get)
            print("Fisher weighting against the best other weighting: " + versus("kd+fisher", rival) + ".")
    comparisons = pd.DataFrame(comparisons)
    if len(comparisons):
        write_parquet(P.file("distill_comparisons.parquet"), comparisons)
fr = r[(r["variant"] == best_variant) & (r["adapter"] == "full")]
if len(fr) > 1:
    rnd = fr[fr["rule"] == "random"]["ret_ndcg@10"]
    order = fr.sort_values("ret_ndcg@10", ascending=False)
    print(f"With {best_variant}, rules rank by test retention: "
          + ", ".join(f"{n.split(':')[0]} {x:.1%}" for n, x in order["ret_ndcg@10"].items())
          + (f"; random draws average {rnd.mean():.1%}." if len(rnd) else "."))
ad = r[r["adapter"] != "full"]
for n, row in ad.iterrows():
    print(f"{row['adapter'].upper()}: retention {row['ret_ndcg@10']:.1%} with {row['trainable_params']:,} trainable "
          f"parameters ({row['trainable_params'] / best['trainable_params']:.1%} of full fine-tuning), "
          f"{row['peak_mem_mb']:.1f} MiB peak training memory vs {best['peak_mem_mb']:.1f} MiB, "
          f"{row['total_seconds']:.1f} s vs {best['total_seconds']:.1f} s; TPME {row['tpme']:.2f} vs "
          f"{best['tpme']:.2f}; merged speed-up {row['speedup']:.2f}x.")
chapter_seconds = time.perf_counter() - t_start
n_trained = int((r["same_as"] == "").sum())
print(f"Training the {n_trained} distinct students ({len(r) - n_trained} rows share another rule's layers) took "
      f"{r.loc[r['same_as'] == '', 'total_seconds'].sum():.0f} s of wall time (chapter: {chapter_seconds:.0f} s).")

# %% [markdown]
# ## Summary
# - Students of k = L/4 teacher layers were distilled with CE only, logit KD, and logit KD plus a layer-wise hidden
#   term under the grid's weightings (uniform, depth and Fisher in the default profile); their retention of the
#   teacher's test NDCG@10 (paired CIs), training cost (time, trainable parameters, memory, TPME) and measured
#   speed-up are in the table and figures above, and the printed lines state whether the 95% / 3x goal is reached —
#   computed from these numbers, not assumed.
# - Caching the frozen teacher's outputs once replaces a teacher forward pass in every training step; the measured
#   saving per epoch is printed above.
# - LoRA and QLoRA students are merged into ordinary full-precision models, so their inference speed equals the full
#   fine-tuned student's; their benefit, if any, is in training cost.
# - `distill_results.parquet` (one row per student) and `distill_per_user.parquet` (per-user test metrics, the teacher
#   included as "teacher") feed the statistics chapter; the students are saved under `students/<name>`.

# %%
lab.record("k", k)
lab.record("n_students", int(len(r)))
lab.record("best_variant", best_variant)
lab.record("best_setting", best_full["name"])
lab.record("retention", {n: float(x) for n, x in r["ret_ndcg@10"].items()})
lab.record("retention_ci", {n: [float(a), float(b)] for n, a, b in
                            zip(r.index, r["ret_ndcg@10_low"], r["ret_ndcg@10_high"])})
lab.record("best_retention", float(best["ret_ndcg@10"]))
lab.record("best_retention_ci", [float(best["ret_ndcg@10_low"]), float(best["ret_ndcg@10_high"])])
lab.record("max_retention", float(r["ret_ndcg@10"].max()))
lab.record("scratch_small_retention", scratch_ret)
lab.record("variant_comparisons", {
    f"{c_['a']} vs {c_['b']}": {**{kk: float(c_[kk]) for kk in ("diff", "ci_low", "ci_high", "wilcoxon_p")},
                                "clear": bool(c_["clear"])}
    for c_ in (comparisons.to_dict("records") if len(mr) else [])})
lab.record("best_speedup", float(best["speedup"]))
lab.record("best_speedup_b1", float(best["speedup_b1"]))
lab.record("goal_met", goal_met)
lab.record("goal_met_ci", goal_met_ci)
lab.record("train_seconds", {n: float(x) for n, x in r["total_seconds"].items()})
lab.record("train_seconds_total", float(r.loc[r["same_as"] == "", "total_seconds"].sum()))
lab.record("same_as", {n: x for n, x in r["same_as"].items() if x})
lab.record("tpme", {n: float(x) for n, x in r["tpme"].items()})
lab.record("trainable_params", {n: int(x) for n, x in r["trainable_params"].items()})
lab.record("peak_mem_mb", {n: float(x) for n, x in r["peak_mem_mb"].items()})
lab.record("cache", {kk: float(v) for kk, v in ct.items()})
lab.record("chapter_seconds", chapter_seconds)

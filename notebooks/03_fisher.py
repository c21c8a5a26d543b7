# %% [markdown]
# # 03 · Fisher information per layer
#
# **Question.** Which decoder layers of the teacher carry the information its recommendations depend on — measured
# with a correctly computed Fisher information, with its uncertainty — and does that ranking agree with what actually
# happens when a layer is removed?
#
# The diagonal Fisher of a parameter θ_j is F_jj = E_x E_{y~p_θ(y|x)}[(∂ log p_θ(y|x)/∂θ_j)²]. Here a *sample* is
# one user's training sequence; its log-likelihood is the **sum** over its positions of log p(next item), so each
# user contributes one gradient vector, and the model is in eval mode (no dropout). Three estimators:
#
# | estimator | what it averages | status |
# |---|---|---|
# | `fisher_empirical` | squared per-user gradients with the observed next items | exact, the main signal |
# | `fisher_true` | squared per-user gradients, next items **drawn from the model** | exact in expectation (MC) |
# | `batchgrad_squared` | the square of a mini-batch's *mean* gradient | **wrong**: the earlier attempt |
#
# Kunstner et al. (2019) show that the empirical Fisher need not capture curvature the way the true Fisher does, so both
# are computed; the squared batch gradient is the square of a mean, not a mean of squares.
#
# Per-user gradients are computed three exact ways (a per-user backward loop, `torch.func.vmap(grad)`, and batched
# hooks on every `nn.Linear` and RMSNorm); the loop is the reference the others are checked against below. Layer
# scores are reported as the total (trace of the layer's diagonal Fisher), per parameter, and relative to the
# largest layer, with bootstrap CIs over users. Four other signals (Block Influence, angular distance, gradient norm,
# weight magnitude) and the ground truth — the drop in validation NDCG@10 when a single layer is removed — complete
# `importance.parquet`, which chapter 04 selects layers from.

# %% tags=["parameters"]
PROFILE = "smoke"  # smoke | default | full
SEED = 0  # global seed
ARTEFACTS = ""  # artefact root; empty means <repo>/artefacts
N_SAMPLES = None  # users in the Fisher; None: the profile's (FisherConfig.for_profile)
N_DRAWS = None  # Monte Carlo label draws per user for the true Fisher; None: the profile's
N_BOOT = None  # bootstrap resamples for the CIs; None: the profile's
STABILITY_SEEDS = 2  # user subsamples drawn with different seeds for the between-seed rank stability
ABLATION_USERS = None  # validation users for the ablation and representation signals (0: all); None: the profile's
STREAM_USERS = 256  # validation users for the residual-stream diagnostic
EXACT_TOL = None  # largest float64 relative difference to the loop still counted as agreement; None: the profile's
SCALE_FACTOR = 2.0  # the wrong estimator is roughly 1/batch size times the Fisher when within this factor of 1/B
SAME_RANKING_RHO = 0.9  # Spearman above which two estimators are said to rank the layers alike
SCALE_RHO = -0.7  # Spearman of Fisher and stream norm at or below which the Fisher is said to track the stream scale
STABLE_TAU = 0.6  # Kendall tau between user halves at or above which the layer ranking is called stable
MODERATE_TAU = 0.3  # Kendall tau at or above which it is called moderately stable (below: unstable)
PROBE_USERS = None  # validation users probed, half fit and half score (0: all); None: the profile's (ProbeConfig)
PROBE_ITERS = None  # LBFGS iterations per linear probe; None: the profile's
PROBE_DECAY = None  # L2 weight decay of the linear probes; None: the profile's
PROBE_WITHIN = 0.02  # a variable is decodable from the first layer within this accuracy of its best layer

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

import lab
from lab import fisher as lf
from lab import importance as li
from lab import viz
from lab.chapters import c03_fisher as C
from lab.data import load_rec_data
from lab.evaluation import kendall_tau

t_start = time.perf_counter()
P = lab.setup(SEED, PROFILE, ARTEFACTS or None, chapter="03_fisher")
cfg = lab.get_config(PROFILE, SEED)
fc = lab.override(lf.FisherConfig.for_profile(PROFILE), n_samples=N_SAMPLES, n_draws=N_DRAWS, n_boot=N_BOOT,
                  ablation_users=ABLATION_USERS, exact_tol=EXACT_TOL)  # None keeps the profile's value
data, report, stats = load_rec_data(cfg.data, P, seed=SEED, progress=False)
teacher = lab.load_teacher(P)  # FileNotFoundError naming the command that trains it when chapter 02 has not run
L = teacher.num_layers
idx = lf.sample_rows(data.num_users, fc.n_samples, SEED)  # the Fisher's training users, seeded
x, y = data.train_inputs[idx], data.train_labels[idx]  # (S, T) histories and next items
print(f"teacher: {L} decoder layers; Fisher over {len(idx)} of {data.num_users} users "
      f"({int((y != -100).sum())} labelled positions), {fc.n_draws} label draws for the true Fisher, "
      f"{fc.n_boot} bootstrap resamples")
viz.config_table(fc)

# %% [markdown]
# ## Do the fast estimators give the loop's numbers?
# On the same users, every fast implementation must give the per-user loop's numbers. The comparison is run in
# float64 (a copy of the teacher, `lab.fisher.checks.exactness_table`) so that summation-order noise of float32 does
# not hide a real discrepancy; it covers every parameter's diagonal, every per-group total and every per-user squared
# gradient norm (largest relative difference, scaled by the largest entry of each tensor or group). Each method is
# compared with the loop run through the same attention (column `loop_attention`: vmap needs an eager one), since two
# attention kernels round differently where a layer's attention is saturated. The chapter stops if a method's largest
# difference is not below the profile's `exact_tol`. The float32 timings are on the same users.

# %%
xc, yc = x[:fc.n_check], y[:fc.n_check]
check_table = lf.exactness_table(teacher, xc, yc, chunk_size=fc.chunk_size, seed=SEED)  # one row per fast method
rates = lf.users_per_second(teacher, xc, yc, ("loop", "hooks"), fc.chunk_size)  # float32, on the same users
check_table["float32_users_per_s"] = check_table["method"].map(rates)
display(check_table)
print(C.exactness_sentence(check_table, fc.exact_tol, len(xc), rates))  # stops if a method is over its bound

# %% [markdown]
# ## Empirical, true and wrong Fisher of every layer
# One batched forward per chunk of users serves every label set: the observed next items (empirical), `N_DRAWS` sets
# drawn from the model (true), and the observed items restricted to head, torso and tail targets (item subsets:
# positions whose target is in another bucket are left out of the log-likelihood). User subsets (terciles of training
# activity) reuse the per-user values.

# %%
buckets = lf.item_buckets(data.item_counts)  # (N+1,) head / torso / tail of every item
label_sets = lf.label_sets(teacher, x, y, buckets, fc.n_draws, seed=SEED)  # empirical, true (drawn), item:<bucket>
t0 = time.perf_counter()
est = lf.fisher_hooks(teacher, x, label_sets, fc.chunk_size)
fisher_seconds = time.perf_counter() - t0
wrong = lf.batchgrad_squared(teacher, x, y, fc.wrong_batch_size)
emp, true = est["fisher_empirical"], est["fisher_true"]
print(f"Fisher of {len(idx)} users with {len(label_sets)} label families ({lf.backward_passes(label_sets)} backward "
      f"passes per chunk) in {fisher_seconds:.1f} s")
C.bucket_table(buckets, label_sets)

# %%
ubucket = lf.user_buckets(lf.user_activity(data)[idx])  # activity tercile of each of the Fisher's users
groups, seed_layers = C.fisher_groups(est, wrong, ubucket, teacher, data, fc, SEED, STABILITY_SEEDS)
layers = pd.concat([lf.fisher_importance_rows(e, fc.n_boot, SEED) for e in (emp, true, wrong)], ignore_index=True)
fig = viz.layer_bars(layers[layers.norm == "max"].rename(columns={"signal": "estimator"}), hue="estimator",
                     title="Fisher per layer, relative to the largest layer (95% bootstrap CIs over users)",
                     ylabel="score / max")
viz.save(fig, "03_fisher_layers", P)
layers[layers.norm == "per_param"].pivot(index="layer_idx", columns="signal", values="value")

# %%
fig = viz.heatmap_layer_group(groups, "fisher_empirical", "per_param", "all", SEED, log=True,
                              title="empirical Fisher per parameter, log10 (layer x parameter group)")
viz.save(fig, "03_fisher_heatmap", P)
outside = groups[(groups.subset == "all") & (groups.seed == SEED) & (groups.norm == "per_param")
                 & groups.group.isin(["embedding", "final_norm", "out_proj"])]
outside.pivot(index="group", columns="estimator", values="value")

# %% [markdown]
# ### The explorer
# Choose the estimator, normalisation, subset (user activity or target popularity bucket), seed and colour scale;
# the heatmap redraws in place in JupyterLab. (Run headless, the static figures above are what is saved.)

# %%
explorer = viz.layer_explorer(groups, "fisher_empirical", "per_param")
display(explorer.widget)

# %% [markdown]
# ## Do head and tail items, and light and heavy users, use the same layers?

# %%
sub = C.subset_shares(groups, L, SEED)  # (subset, layer_idx): value, share of the subset's layer Fisher
fig = viz.layer_bars(sub.assign(value=sub["share"])[["layer_idx", "value", "subset"]], hue="subset",
                     title="share of each subset's layer Fisher (empirical)", ylabel="share of total")
viz.save(fig, "03_fisher_subsets", P)
profiles = sub.pivot(index="layer_idx", columns="subset", values="share")
lower = np.arange(L) < L / 2
subset_lower = profiles[lower].sum()
tau_head_tail = kendall_tau(profiles["item:head"], profiles["item:tail"])
tau_low_high = kendall_tau(profiles["user:low"], profiles["user:high"])
subset_lower.rename("lower-half share").to_frame().T.round(3)

# %% [markdown]
# ## Rank stability

# %%
tau_halves, taus = lf.kendall_halves(emp.per_layer() / emp.layer_numel(), n_splits=20, seed=SEED)
seed_taus = [kendall_tau(seed_layers[SEED], v) for s, v in seed_layers.items() if s != SEED]
tau_seeds = float(np.mean(seed_taus)) if seed_taus else float("nan")
print(f"Kendall tau of the layer ranking between random halves of the users: {tau_halves:.2f} "
      f"(range {taus.min():.2f} to {taus.max():.2f} over {len(taus)} splits); between user subsamples of different "
      f"seeds: {tau_seeds:.2f}" + (f" ({len(seed_taus)} pairs)" if seed_taus else " (one seed only)"))

# %% [markdown]
# ## Other signals and the ground truth
# Block Influence and angular distance on validation histories, the gradient norm of the mean training loss, weight
# magnitude, and the single-layer ablation: validation NDCG@10 of the teacher minus that of the real `L-1`-layer model
# without the layer (`lab.models.build_student`), with paired bootstrap CIs over users.

# %%
t0 = time.perf_counter()
others = li.importance_signals(teacher, data, n_users=fc.ablation_users, n_boot=fc.n_boot, seed=SEED,
                               grad_samples=fc.n_samples)
others_seconds = time.perf_counter() - t0
importance = pd.concat([layers, others], ignore_index=True)
lf.save_tables(P, importance, groups)
print(f"other signals in {others_seconds:.1f} s; wrote {lab.book.shown_path(P.file('importance.parquet'))} "
      f"({len(importance)} rows, signals: {', '.join(importance.signal.unique())}) and "
      f"{lab.book.shown_path(P.file('fisher_groups.parquet'))} ({len(groups)} rows)")
show = importance[importance.norm.isin(["raw", "per_param"])].copy()
show["value"] = show["value"] / show.groupby("signal")["value"].transform(lambda v: np.abs(v).max() or 1)
fig = viz.layer_bars(show[["layer_idx", "value", "signal"]], hue="signal",
                     title="every signal, scaled to its largest |value|", ylabel="score / max |score|")
viz.save(fig, "03_signals", P)

# %% [markdown]
# ## How the signals agree

# %%
vec = {s: lf.importance_vector(importance, s, "per_param") for s in lf.SIGNALS}  # {signal: (L,)}
agree = lf.signal_agreement(vec, n_boot=min(fc.n_boot, 500), seed=SEED)  # each signal vs the ablation drop
display(agree.round(3))
fig, axes = plt.subplots(2, 2, figsize=(8.0, 7.0))  # three panels at a page's width; the fourth cell stays empty
axes = axes.ravel()
axes[3].set_visible(False)
viz.estimator_scatter(vec["fisher_empirical"], vec["fisher_true"], "empirical Fisher per parameter",
                      "true Fisher per parameter", log=True, ax=axes[0])
viz.estimator_scatter(vec["fisher_empirical"], vec["batchgrad_squared"], "empirical Fisher per parameter",
                      "squared batch gradient per parameter (wrong)", log=True, ax=axes[1])
viz.estimator_scatter(vec["fisher_empirical"], vec["ablation_drop"], "empirical Fisher per parameter",
                      "validation NDCG@10 drop if removed", ax=axes[2])
viz.save(fig, "03_estimator_scatter", P)

# %% [markdown]
# ## Planted layer roles
# The depth world plants the intermediate variables a model must compute to predict the next item
# (`lab.data.planted_variables`): the last item's cluster, the cluster that followed the most recent earlier
# occurrence of that cluster (what an induction head retrieves), the cluster the pointer lands on after its hops, and
# the mode set by the last switch item. A linear probe (softmax regression with weight decay, `lab.fisher.probes`)
# reads each one from the residual stream at the last position of every layer — layer_idx -1 is the input
# embeddings, l the output of layer l — fitted on one half of `PROBE_USERS` validation users and scored on the other,
# beside the majority-class baseline. The variables are those of the window the teacher reads; histories without one
# (-1: no earlier occurrence, the pointer left the window) are left out and counted. If the Fisher marks the layers
# that compute something, a layer's Fisher should follow what it adds to the probes (its gain, accuracy(l) −
# accuracy(l − 1), summed over the variables). Real data and the shallow world plant nothing: nothing is probed there.

# %%
pc = lab.override(lf.ProbeConfig.for_profile(PROFILE), n_users=PROBE_USERS, max_iter=PROBE_ITERS,
                  weight_decay=PROBE_DECAY)  # None keeps the profile's value
probes = lf.run_probes(teacher, data, cfg.data, SEED, pc)  # None outside the depth world
lf.save_probes(P, probes)  # 03_probes.parquet: one row per (layer_idx, variable)
if probes is not None:
    display(probes.baseline)
    fig = viz.probe_accuracy(probes.accuracy, probes.baseline["majority"])
    viz.save(fig, "03_probe_accuracy", P)
    display(probes.accuracy.round(3).T)

# %%
probe_rec = C.probe_record(probes, vec["fisher_empirical"], within=PROBE_WITHIN, n_boot=min(fc.n_boot, 500),
                            seed=SEED)  # where each variable becomes decodable; Spearman(Fisher, summed probe gain)
print(C.probe_conclusion(probe_rec))

# %% [markdown]
# The three views of a layer side by side: its share of the empirical Fisher, the drop when it alone is removed
# (the ground truth above) and, in the depth world, what it adds to the probes — each divided by its own largest value.

# %%
gain = lf.probe_gains(probes.accuracy)["total"] if probes is not None else None  # summed probe gain per layer
fig = viz.signals_by_layer(emp.layer_values("total"), vec["ablation_drop"], gain)
viz.save(fig, "03_signals_by_layer", P)

# %% [markdown]
# ## What the measurement shows
# Every statement below is printed from this run's numbers; the thresholds behind its wording are the
# parameters-cell constants. Where the Fisher mass sits: the lower half's share of the layer Fisher (trace), with a
# bootstrap CI over users; "dominates" means the CI excludes one half.

# %%
lower_half = lf.share_ci(emp.per_layer(), lower, fc.n_boot, seed=SEED)  # (share, ci_low, ci_high) of layers < L/2
print(C.where_sentence(lower_half, C.top_layers(vec["fisher_empirical"], 3), len(idx), L))

# %% [markdown]
# Where the important layers sit, in the bands the method's authors name (H1: the upper 30% of the depth matter more
# than the lower 30%): each band's share of the layer Fisher, with a bootstrap CI over users, and the mean drop in
# validation NDCG@10 when one of its layers is removed.

# %%
bands = lf.band_table(emp.per_layer(), vec["ablation_drop"], fc.n_boot, seed=SEED)  # lower 30% / middle / upper 30%
print(f"- {C.band_sentence(bands)}")
bands.round(4)

# %% [markdown]
# The Fisher against the ground truth: Spearman with the single-layer ablation drop (CI over layers), and the overlap
# of the top three layers of each.

# %%
print(C.ablation_sentence(agree, vec, emp.layer_values("total")))

# %% [markdown]
# Which signal follows the ablation drop most closely:

# %%
print(C.best_signal_sentence(agree))

# %% [markdown]
# The three estimators. For a batch of B users the squared batch-mean gradient has expectation
# Var(g)/B + (E g)², i.e. (1/B + (1 − 1/B)·(E g)²/E[g²]) times the Fisher E[g²]: at least 1/B, and about 1/B when the
# mean gradient is small. The measured ratio (median over layers) is compared with 1/B below.

# %%
print(C.estimators_sentence(vec, fc.wrong_batch_size, SAME_RANKING_RHO))
print(C.wrong_scale_sentence(vec, fc.wrong_batch_size, SCALE_FACTOR))

# %% [markdown]
# A diagnostic: how large is the residual stream each layer reads (mean last-token norm of its input on
# `STREAM_USERS` validation histories), and does the Fisher per parameter follow it?

# %%
stream = li.stream_norms(teacher, li.subsample_valid(data, STREAM_USERS, SEED))  # (L,) mean norm of each input
print(C.stream_sentence(vec["fisher_empirical"], stream, SCALE_RHO))
print(C.stability_sentences((tau_halves, tau_seeds), len(seed_taus), (STABLE_TAU, MODERATE_TAU), subset_lower,
                            (tau_head_tail, tau_low_high)))
print("- Choices here use training users (Fisher) and validation users (ablation, other signals); "
      "the test split is not read by this chapter.")

# %% [markdown]
# ## Summary
# - The Fisher is computed per user (sum of log-likelihoods over the user's positions), squared, then averaged — never
#   a squared batch gradient. The fast implementations are checked against the per-user loop in float64 (the chapter
#   stops above `exact_tol`); the batched hook method is the one used here, and `python -m lab bench fisher` measures
#   its speed against the loop at scale.
# - The statements above are computed from this run's numbers: which half of the stack holds the Fisher mass, how
#   the Fisher ranking relates to the measured effect of removing each layer, how much the three estimators and the
#   user/item subsets differ, and how stable the ranking is.
# - In the depth world, linear probes show from which layer each planted variable (last cluster, induction target,
#   pointer target, mode) can be read off, and whether a layer's Fisher follows what it adds to the probes
#   (`03_probes.parquet`); on real data and in the shallow world they are not measured (recorded as None).
# - `importance.parquet` (every signal, per layer, with CIs) and `fisher_groups.parquet` (per layer x parameter
#   group, estimator, subset, seed and normalisation) are what chapter 04 reads.

# %%
runtime = time.perf_counter() - t_start
lab.record_all(C.fisher_record(
    emp, vec, agree, stream, check_table=check_table, wrong_batch_size=fc.wrong_batch_size,
    lower_half=lower_half, taus=(tau_halves, tau_seeds), thresholds=(STABLE_TAU, MODERATE_TAU),
    exact_tol=fc.exact_tol, users_per_s=rates, fisher_seconds=fisher_seconds,
    runtime_s=runtime, probes=probe_rec, bands=bands))

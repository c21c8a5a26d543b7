"""Diagonal Fisher information per layer and per parameter group, computed exactly and fast (chapter 03).

A *sample* is one user sequence; its log-likelihood is the sum over its labelled positions t of log p(y_t | x_<=t),
so its gradient is one vector per user. With the model in eval mode (no dropout):

- empirical Fisher  F_emp = mean_users (grad log p(observed labels))^2  (elementwise square)
- true Fisher       F_true = mean_users E_{y ~ p_model}[(grad log p(y))^2], Monte Carlo over `n_draws`; the inputs stay
  the observed history, only the labels are drawn from the model at every labelled position (Kunstner et al. 2019).
- batchgrad_squared = mean_batches (grad of the batch-MEAN loss)^2: the earlier attempt's estimator, kept only as a
  labelled WRONG one (it squares a mean instead of averaging squares).

Exact implementations that give the same numbers: `fisher_loop` (one backward per user: the reference),
`fisher_vmap` (`torch.func.vmap(grad(...))` with `functional_call`, chunked), `fisher_hooks` (one batched forward, one
`autograd.grad` per label set to every Linear/RMSNorm output; the loss is a SUM over users, so no 1/B scaling;
Linear: per-user grad = sum_t g_t a_t^T by bmm; RMSNorm: sum_t g_t * x_hat_t; the tied item table: dlogits^T z plus the
scattered input-side gradient) and its `ghost=True` mode (per-group squared norms by the ghost-norm identity
||sum_t g_t a_t^T||^2 = sum_{t,s} (g_t.g_s)(a_t.a_s), no diagonal).

Groups: per decoder layer q/k/v/o, gate/up/down, input_norm/post_norm; outside the stack `embedding` (layer_idx -1:
item table, in/text projections) and `final_norm`/`out_proj` (layer_idx L). The backbone's unused token table is
left out.

The modules, one idea each: `estimators` (the Fisher), `subsets` (whose Fisher: users, buckets, labels, the label
families of one pass), `checks` (exactness against the loop, speed, rank stability, agreement with the ablation),
`tables` (the tidy tables and their contract with chapters 04 and 05), `bands` (where the important layers sit by
depth). Chapter 03's grid, summaries, sentences and record are in `lab.chapters.c03_fisher`.

`probes` (chapter 03's planted layer roles): linear probes of the depth world's planted variables in every layer's
residual stream, held-out accuracy per layer beside the majority baseline, and their per-layer gain against the Fisher.
"""
from .estimators import (ESTIMATORS, GROUP_ORDER, NORMS, SIGNALS, FisherConfig, FisherEstimate, batchgrad_squared,
                         compare, draw_labels, estimate_fisher, estimate_fisher_sharded, eval_mode, fisher_hooks,
                         fisher_loop, fisher_params, fisher_vmap, merge_shards, method_attention, model_logits,
                         normalise, param_key, sample_nll)
from .probes import (PROBE_COLUMNS, PROBE_FILE, VARIABLES, ProbeConfig, ProbeResult, fit_probe,
                     last_states, layer_probes, load_probes, planted_targets, probe_gains,
                     probe_predict, probe_states, probe_summary, run_probes, save_probes)
from .bands import BANDS, band_table, depth_bands, share_ci
from .checks import exactness_table, kendall_halves, signal_agreement, users_per_second
from .subsets import (ITEM_BUCKETS, USER_BUCKETS, backward_passes, item_buckets, label_sets, mask_labels, sample_rows,
                      user_activity, user_buckets)
from .tables import (GROUP_COLUMNS, IMPORTANCE_COLUMNS, fisher_importance_rows, group_frame, importance_rows,
                     importance_vector, load_groups, order_groups, save_tables)

__all__ = [
    "ESTIMATORS", "GROUP_ORDER", "NORMS", "SIGNALS", "GROUP_COLUMNS", "IMPORTANCE_COLUMNS",
    "FisherConfig", "FisherEstimate", "estimate_fisher", "fisher_loop", "fisher_vmap", "method_attention",
    "fisher_hooks",
    "batchgrad_squared", "draw_labels", "compare", "eval_mode", "fisher_params", "model_logits", "normalise",
    "param_key", "sample_nll", "merge_shards", "estimate_fisher_sharded",
    "fisher_importance_rows", "group_frame", "importance_rows", "importance_vector", "item_buckets",
    "kendall_halves", "load_groups", "mask_labels", "order_groups", "save_tables",
    "user_activity", "user_buckets", "exactness_table", "sample_rows", "share_ci", "BANDS",
    "band_table", "depth_bands",
    "ITEM_BUCKETS", "USER_BUCKETS", "backward_passes", "label_sets",
    "signal_agreement", "users_per_second",
    "PROBE_COLUMNS", "PROBE_FILE", "VARIABLES", "ProbeConfig", "ProbeResult", "fit_probe",
    "last_states", "layer_probes", "load_probes", "planted_targets", "probe_gains",
    "probe_predict", "probe_states", "probe_summary", "run_probes", "save_probes",
]

"""Chapter 03's measurements as calls: timing of the Fisher methods, the label sets of one batched pass, the per-group
tables of every subset and seed, the subsets' layer profiles, how the other signals agree with the ablation drop, and
the key results the chapter records (`fisher_record`, the probes' `probe_record` merged in) (chapter 03)."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from ..evaluation import kendall_tau, spearman_ci
from .estimators import SIGNALS, FisherConfig, FisherEstimate, draw_labels, estimate_fisher, fisher_hooks
from .subsets import mask_labels, sample_rows
from .tables import group_frame

ITEM_BUCKETS = ("head", "torso", "tail")  # target-popularity buckets (`item_buckets`)
USER_BUCKETS = ("low", "mid", "high")  # training-activity terciles (`user_buckets`)


def users_per_second(model, inputs: torch.Tensor, labels: torch.Tensor, methods=("loop", "hooks"),
                     chunk_size: int = 128) -> dict:
    """Users per second of each Fisher method on these users, after a warm-up on two of them (chapter 03)."""
    rates = {}
    for method in methods:
        estimate_fisher(model, inputs[:2], labels[:2], method=method, chunk_size=chunk_size)  # warm-up
        t0 = time.perf_counter()
        estimate_fisher(model, inputs, labels, method=method, chunk_size=chunk_size)
        rates[method] = len(inputs) / (time.perf_counter() - t0)
    return rates


def label_sets(model, inputs: torch.Tensor, labels: torch.Tensor, buckets, n_draws: int,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """The label families one batched Fisher pass serves (chapter 03): the observed next items (`fisher_empirical`),
    `n_draws` sets drawn from the model (`fisher_true`, (D, S, T)), and the observed items restricted to each target
    popularity bucket (`item:<bucket>`; `buckets` from `item_buckets`)."""
    out = {"fisher_empirical": labels, "fisher_true": draw_labels(model, inputs, labels, n_draws, seed=seed)}
    out.update({f"item:{b}": mask_labels(labels, buckets == b) for b in ITEM_BUCKETS})
    return out


def backward_passes(sets: dict[str, torch.Tensor]) -> int:
    """Backward passes per chunk of users that `fisher_hooks` makes for these label sets (one per set or draw)."""
    return sum(v.shape[0] if v.dim() == 3 else 1 for v in sets.values())


def bucket_table(buckets, sets: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Items and labelled positions per target-popularity bucket (chapter 03)."""
    return pd.DataFrame({"bucket": list(ITEM_BUCKETS),
                         "items": [int((buckets == b).sum()) for b in ITEM_BUCKETS],
                         "labelled positions": [int((sets[f"item:{b}"] != -100).sum()) for b in ITEM_BUCKETS]})


def fisher_groups(est: dict[str, FisherEstimate], wrong: FisherEstimate, user_bucket, model, data,
                  cfg: FisherConfig, seed: int = 0, n_seeds: int = 2) -> tuple[pd.DataFrame, dict]:
    """Chapter 03's per-(layer, group) table: every estimator on all users, the empirical and true Fisher per user
    activity bucket, the empirical Fisher per target bucket, and the empirical Fisher of `n_seeds` - 1 further user
    subsamples (seeds seed+1, ...; no CIs) for the between-seed rank stability.

    Args:
        est: `fisher_hooks`'s estimates of `label_sets`; `wrong`: the squared batch gradient.
        user_bucket: the activity bucket of each of the estimate's users (`user_buckets`).

    Returns:
        (the group frame, {seed: per-parameter layer values of that seed's empirical Fisher}).
    """
    emp, true = est["fisher_empirical"], est["fisher_true"]
    groups = [group_frame(e, "all", seed, n_boot=cfg.n_boot) for e in (emp, true, wrong)]
    for b in USER_BUCKETS:
        for e in (emp, true):
            groups.append(group_frame(e, f"user:{b}", seed, rows=user_bucket == b, n_boot=cfg.n_boot))
    for b in ITEM_BUCKETS:
        groups.append(group_frame(est[f"item:{b}"], f"item:{b}", seed, n_boot=cfg.n_boot))
    seed_layers = {seed: emp.layer_values("per_param")}
    for s in range(seed + 1, seed + n_seeds):
        ix = sample_rows(data.num_users, cfg.n_samples, s)
        e_s = fisher_hooks(model, data.train_inputs[ix], {"fisher_empirical": data.train_labels[ix]},
                           cfg.chunk_size, diag=False)["fisher_empirical"]
        seed_layers[s] = e_s.layer_values("per_param")
        groups.append(group_frame(e_s, "all", s, n_boot=0))
    return pd.concat(groups, ignore_index=True), seed_layers


def subset_shares(groups: pd.DataFrame, num_layers: int, seed: int = 0,
                  estimator: str = "fisher_empirical") -> pd.DataFrame:
    """Each subset's layer Fisher (trace over the layer's groups) and its share of the subset's total: subset,
    layer_idx, value, share (chapter 03: do head and tail items, light and heavy users, use the same layers?)."""
    sub = groups[(groups.norm == "total") & (groups.estimator == estimator) & (groups.seed == seed)
                 & (groups.layer_idx >= 0) & (groups.layer_idx < num_layers)]
    sub = sub.groupby(["subset", "layer_idx"], as_index=False)["value"].sum()
    sub["share"] = sub["value"] / sub.groupby("subset")["value"].transform("sum")
    return sub


def signal_agreement(vec: dict[str, np.ndarray], n_boot: int = 500, seed: int = 0,
                     truth: str = "ablation_drop", reference: str = "fisher_empirical") -> pd.DataFrame:
    """One row per signal (`SIGNALS` but `truth`): Spearman against the ablation drop with a bootstrap CI over
    layers, Kendall tau against it, and Spearman against the empirical Fisher (chapter 03)."""
    rows = []
    for s in SIGNALS:
        if s == truth:
            continue
        rho, lo, hi = spearman_ci(vec[s], vec[truth], n_boot=n_boot, seed=seed)
        rows.append({"signal": s, "spearman_vs_ablation": rho, "ci_low": lo, "ci_high": hi,
                     "kendall_vs_ablation": kendall_tau(vec[s], vec[truth]),
                     f"spearman_vs_{reference}": spearmanr(vec[s], vec[reference]).statistic})
    return pd.DataFrame(rows)


def top_layers(values, n: int = 3) -> list[int]:
    """The `n` layers with the largest values, largest first (chapter 03)."""
    return [int(i) for i in np.argsort(-np.asarray(values))[:n]]


def top_share(values, n: int = 2) -> float:
    """The share of the total held by the `n` largest values (chapter 03: the two highest-Fisher layers)."""
    v = np.asarray(values, dtype=float)
    return float(np.sort(v)[::-1][:n].sum() / v.sum())


# -- chapter 03: what the measurement shows, and what it keeps ---------------------------------------------------------
def best_signal(agree: pd.DataFrame) -> pd.Series:
    """The row of `signal_agreement` whose signal has the highest Spearman against the ablation drop (chapter 03)."""
    return agree.sort_values("spearman_vs_ablation", ascending=False).iloc[0]


def wrong_scale(vec: dict[str, np.ndarray]) -> float:
    """The median over layers of the squared batch gradient ÷ the empirical Fisher, per parameter (chapter 03: about
    1/B for batches of B users when the mean gradient is small, so the wrong estimator is not a Fisher)."""
    return float(np.median(vec["batchgrad_squared"] / vec["fisher_empirical"]))


def stability_label(tau: float, stable: float, moderate: float) -> str:
    """"stable" when the Kendall tau of the layer ranking between user halves is at least `stable`, "moderately
    stable" when at least `moderate`, else "unstable" (chapter 03)."""
    return "stable" if tau >= stable else ("moderately stable" if tau >= moderate else "unstable")


def fisher_record(emp: FisherEstimate, vec: dict[str, np.ndarray], agree: pd.DataFrame, stream, *,
                  check_table: pd.DataFrame, wrong_batch_size: int, lower_half: tuple, taus: tuple,
                  thresholds: tuple, exact_tol: float, users_per_s: dict, fisher_seconds: float,
                  runtime_s: float, probes: dict | None = None, bands: pd.DataFrame | None = None) -> dict:
    """The key results chapter 03 records, derived from its tables (chapter 03).

    Args:
        emp: the empirical Fisher of the chapter's users (`fisher_hooks`); its layers, users and layer totals.
        vec: {signal: (L,) per-parameter values} of every signal (`importance_vector`), the ablation drop included.
        agree: `signal_agreement(vec)`.
        stream: (L,) mean residual-stream norm each layer reads (`lab.importance.stream_norms`).
        check_table: `exactness_table`: the fast methods against the per-user loop (column rel_diff_max).
        wrong_batch_size: B of the squared batch gradient.
        lower_half: (share, ci_low, ci_high) of the lower half's layer Fisher (`share_ci`).
        taus: (Kendall tau between user halves, mean tau between seeds; NaN with one seed).
        thresholds: (stable, moderate) Kendall tau thresholds of `stability_label`.
        exact_tol: the relative difference below which the fast methods count as exact.
        users_per_s: float32 users per second of each Fisher method (`users_per_second`).
        fisher_seconds, runtime_s: wall time of the batched Fisher and of the chapter.
        probes: the planted layer roles (`lab.fisher.probes.probe_record`; None values outside the depth world),
            merged into the record; None: no probe keys.
        bands: `band_table` (Fisher share with CI and mean ablation drop per depth band); None: no band keys.
    """
    fisher, drop = vec["fisher_empirical"], vec["ablation_drop"]
    top = top_layers(fisher, 3)
    r_abl = agree.set_index("signal").loc["fisher_empirical"]
    rho_true, rho_wrong, rho_stream = (float(spearmanr(fisher, v).statistic)
                                       for v in (vec["fisher_true"], vec["batchgrad_squared"], stream))
    share, share_lo, share_hi = lower_half
    tau_halves, tau_seeds = taus
    stable, moderate = thresholds
    return {
        "n_layers": emp.n_layers,
        "n_samples": emp.n_samples,
        "top_layers_fisher": top,
        "lower_half_share": share,
        "lower_half_share_ci": [share_lo, share_hi],
        "kendall_tau_halves": tau_halves,
        "kendall_tau_seeds": tau_seeds,
        "spearman_fisher_vs_ablation": float(r_abl["spearman_vs_ablation"]),
        "spearman_fisher_vs_ablation_ci": [float(r_abl["ci_low"]), float(r_abl["ci_high"])],
        "spearman_true_vs_empirical": rho_true,
        "spearman_wrong_vs_empirical": rho_wrong,
        "wrong_scale_median": wrong_scale(vec),
        "wrong_inv_batch": 1.0 / wrong_batch_size,
        "stability_label": stability_label(tau_halves, stable, moderate),
        "stability_thresholds": {"stable": stable, "moderate": moderate},
        "best_signal_vs_ablation": best_signal(agree)["signal"],
        "spearman_fisher_vs_stream_norm": rho_stream,
        "top3_overlap_fisher_ablation": len(set(top) & set(top_layers(drop, 3))),
        "top2_share_fisher": top_share(emp.layer_values("total"), 2),
        "fast_vs_loop_max_rel_diff": float(check_table["rel_diff_max"].max()),
        "exact_tol": exact_tol,
        "users_per_s": users_per_s,
        "fisher_seconds": fisher_seconds,
        "runtime_s": runtime_s,
        **(probes or {}),
        **({} if bands is None else {
            "band_layers": bands["layers"].to_dict(),
            "band_fisher_share": bands["fisher_share"].astype(float).to_dict(),
            "band_fisher_share_ci": {b: [float(r.share_low), float(r.share_high)] for b, r in bands.iterrows()},
            "band_ablation_drop": bands["mean_ablation_drop"].astype(float).to_dict()}),
    }

"""Chapter 03's glue: the per-group table of every estimator, subset and seed (its grid), the subsets' layer profiles,
the summaries and sentences the chapter prints (where the Fisher mass sits, how it meets the ablation, the estimators
against each other, the residual stream, the stability, the probes) and what it records (`fisher_record`, with
`probe_record`). The estimators, subsets, checks, tables and bands live in `lab.fisher`, the probes in
`lab.fisher.probes`, the other signals in `lab.importance`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from ..evaluation import spearman_ci
from ..fisher.estimators import FisherConfig, FisherEstimate, fisher_hooks
from ..fisher.probes import ProbeResult, probe_gains, probe_summary
from ..fisher.subsets import ITEM_BUCKETS, USER_BUCKETS, sample_rows
from ..fisher.tables import group_frame

__all__ = ["bucket_table", "fisher_groups", "subset_shares", "top_layers", "top_share", "best_signal", "wrong_scale",
           "stability_label", "band_sentence", "probe_record", "probe_conclusion", "where_sentence",
           "ablation_sentence", "best_signal_sentence", "estimators_sentence", "wrong_scale_sentence",
           "stream_sentence", "stability_sentences", "exactness_sentence", "fisher_record"]


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


def top_layers(values, n: int = 3) -> list[int]:
    """The `n` layers with the largest values, largest first (chapter 03)."""
    return [int(i) for i in np.argsort(-np.asarray(values))[:n]]


def top_share(values, n: int = 2) -> float:
    """The share of the total held by the `n` largest values (chapter 03: the two highest-Fisher layers)."""
    v = np.asarray(values, dtype=float)
    return float(np.sort(v)[::-1][:n].sum() / v.sum())


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


def band_sentence(bands: pd.DataFrame) -> str:
    """Which band holds the most Fisher per layer and which loses the most when one of its layers is removed, with
    the lower and upper bands' Fisher shares and CIs (chapter 03)."""
    top_f, top_a = bands["share_per_layer"].idxmax(), bands["mean_ablation_drop"].idxmax()
    parts = [f"{b} ({r.layers}) {r.fisher_share:.0%} [{r.share_low:.0%}–{r.share_high:.0%}]"
             for b, r in bands.iterrows()]
    return (f"Fisher share by depth band (95% CI over users): {', '.join(parts)}; per layer the {top_f} band holds "
            f"the most Fisher, and removing one layer hurts most in the {top_a} band (mean ablation drop "
            + ", ".join(f"{b} {v:+.4f}" for b, v in bands["mean_ablation_drop"].items()) + ").")


def probe_record(result: ProbeResult | None, fisher, within: float = 0.02, n_boot: int = 1000,
                 seed: int = 0) -> dict:
    """The probe results chapter 03 records (`fisher_record(probes=...)`), None throughout without a depth world.

    Args:
        result: `run_probes`' result, or None.
        fisher: (L,) the per-layer Fisher importance (`importance_vector(..., "fisher_empirical", "per_param")`).
        within: the `probe_summary` threshold of "decodable".
        n_boot, seed: the bootstrap over layers of the Spearman CI (`lab.evaluation.spearman_ci`).

    Returns:
        probe_accuracy {variable: {layer_idx: accuracy}}, probe_majority {variable: accuracy}, probe_counts
        {variable: {train, test, undefined}}, probe_decodable_at {variable: layer_idx or None}, probe_gain_total
        {layer_idx: summed gain}, probe_fisher_spearman (Fisher vs summed gain over layers 0..L-1) and its _ci,
        probe_within, probe_users, probe_seconds.
    """
    keys = ("probe_accuracy", "probe_majority", "probe_counts", "probe_decodable_at", "probe_gain_total",
            "probe_fisher_spearman", "probe_fisher_spearman_ci", "probe_users", "probe_seconds")
    if result is None:
        return {**dict.fromkeys(keys), "probe_within": within}
    acc, base = result.accuracy, result.baseline
    summary = probe_summary(acc, base["majority"], within)
    total = probe_gains(acc)["total"]
    rho, lo, hi = spearman_ci(np.asarray(fisher, dtype=float), total.to_numpy(), n_boot=n_boot, seed=seed)
    plain = lambda v: None if pd.isna(v) else float(v)  # noqa: E731
    return {
        "probe_accuracy": {v: {int(l): plain(a) for l, a in acc[v].items()} for v in acc.columns},
        "probe_majority": {v: plain(base.loc[v, "majority"]) for v in acc.columns},
        "probe_counts": {v: {k: int(base.loc[v, f"n_{k}"]) for k in ("train", "test", "undefined")}
                         for v in acc.columns},
        "probe_decodable_at": {v: None if pd.isna(at) else int(at) for v, at in summary["decodable_at"].items()},
        "probe_gain_total": {int(l): plain(g) for l, g in total.items()},
        "probe_fisher_spearman": plain(rho),
        "probe_fisher_spearman_ci": [plain(lo), plain(hi)],
        "probe_within": within,
        "probe_users": int(result.n_users),
        "probe_seconds": float(result.seconds),
    }


def probe_conclusion(rec: dict) -> str:
    """Chapter 03's printed conclusion of the probes, from `probe_record`'s values: where each variable becomes
    decodable, and how the per-layer gain relates to the Fisher."""
    if rec["probe_accuracy"] is None:
        return ("- Planted layer roles: not measured. Only the synthetic depth world plants the variables a model "
                "must compute; this data (real data or the shallow world) has none, so the probe results are "
                "recorded as None.")
    within = rec["probe_within"]
    lines = [f"- Planted layer roles ({rec['probe_users']} validation users, half fit, half score; "
             f"{rec['probe_seconds']:.1f} s):"]
    for var, at in rec["probe_decodable_at"].items():
        acc = pd.Series(rec["probe_accuracy"][var], dtype=float)
        maj, n = rec["probe_majority"][var], rec["probe_counts"][var]
        if acc.isna().all():
            lines.append(f"  - `{var}`: not probed (fitting half {n['train']}, scoring half {n['test']} users).")
            continue
        best, where = acc.max(), int(acc.idxmax())
        if at is None:
            state = f"never decodable beyond the majority baseline (best {best:.2f} vs {maj:.2f}, margin {within})"
        else:
            state = (f"decodable from {'the embeddings' if at == -1 else f'layer {at}'} (within {within} of its best "
                     f"{best:.2f}, reached at layer_idx {where}; majority baseline {maj:.2f})")
        lines.append(f"  - `{var}`: {state}; {n['undefined']} users without it left out.")
    rho, (lo, hi) = rec["probe_fisher_spearman"], rec["probe_fisher_spearman_ci"]
    if rho is None or lo is None:
        lines.append("  - Spearman of the Fisher with the summed probe gain is undefined (a constant vector).")
    else:
        rel = ("agrees with" if lo > 0 else "runs against" if hi < 0 else "is not distinguishable from no relation to")
        lines.append(f"  - The per-layer Fisher {rel} the per-layer probe gain summed over variables: Spearman "
                     f"{rho:.2f} (95% CI {lo:.2f} to {hi:.2f} over layers).")
    return "\n".join(lines)


# -- the sentences the chapter prints ---------------------------------------------------------------------------------
def where_sentence(share: tuple, top: list, n_users: int, num_layers: int) -> str:
    """Which half of the stack holds the Fisher mass: "dominates" when the CI of the lower half's share excludes one
    half (`share` = (share, ci_low, ci_high) of `lab.fisher.share_ci`), and the top layers (chapter 03)."""
    lower_share, share_lo, share_hi = share
    if share_lo > 0.5:
        where = f"the lower half of the layers dominates: it holds {lower_share:.0%} of the empirical Fisher"
    elif share_hi < 0.5:
        where = f"the upper half of the layers dominates: the lower half holds only {lower_share:.0%} of the Fisher"
    else:
        where = f"neither half clearly dominates: the lower half holds {lower_share:.0%} of the empirical Fisher"
    return (f"- {where} (95% CI {share_lo:.0%}–{share_hi:.0%}, {n_users} users, {num_layers} layers). "
            f"The top layers by empirical Fisher per parameter are {top}.")


def ablation_sentence(agree: pd.DataFrame, vec: dict, layer_totals) -> str:
    """The Fisher layer ranking against the single-layer ablation drop: Spearman with its CI over layers, the range
    of the drops, and the overlap of the top three layers of each (chapter 03)."""
    r_abl = agree.set_index("signal").loc["fisher_empirical"]
    drop = vec["ablation_drop"]
    top, top_abl = top_layers(vec["fisher_empirical"], 3), top_layers(drop, 3)
    abl = ("agrees with the ablation ranking (the CI excludes zero)" if r_abl["ci_low"] > 0 else
           "runs against the ablation ranking (the CI is below zero)" if r_abl["ci_high"] < 0 else
           "is not distinguishable from no relation to the ablation ranking (the CI includes zero)")
    return (f"- The Fisher layer ranking {abl}: Spearman {r_abl['spearman_vs_ablation']:.2f} "
            f"[{r_abl['ci_low']:.2f}, {r_abl['ci_high']:.2f}]. Removing a single layer changes validation NDCG@10 by "
            f"{-drop.max():+.4f} (worst layer, {int(np.argmax(drop))}) to {-drop.min():+.4f} (least harmful, "
            f"{int(np.argmin(drop))}). The three layers whose removal hurts most are {top_abl}; "
            f"{len(set(top) & set(top_abl))} of them are among the Fisher's top three, and the two highest-Fisher "
            f"layers hold {top_share(layer_totals, 2):.0%} of the layer Fisher.")


def best_signal_sentence(agree: pd.DataFrame) -> str:
    """The signal whose Spearman against the ablation drop is highest, with its CI (chapter 03)."""
    b = best_signal(agree)
    return (f"- The signal with the highest Spearman against the ablation drop is `{b['signal']}` "
            f"({b['spearman_vs_ablation']:.2f}, 95% CI {b['ci_low']:.2f} to {b['ci_high']:.2f}).")


def estimators_sentence(vec: dict, batch_size: int, same_rho: float) -> str:
    """Empirical against true Fisher, and the wrong squared batch gradient against the empirical one, as Spearman
    over layers; "alike" above `same_rho` (chapter 03)."""
    rho_true, rho_wrong = (float(spearmanr(vec["fisher_empirical"], vec[s]).statistic)
                           for s in ("fisher_true", "batchgrad_squared"))
    alike = rho_wrong > same_rho
    return (f"- Empirical and true Fisher rank layers with Spearman {rho_true:.2f}. The wrong squared batch gradient "
            f"(batches of B = {batch_size}) ranks them with Spearman {rho_wrong:.2f} against the empirical Fisher "
            f"({'above' if alike else 'not above'} {same_rho}: {'alike' if alike else 'a different ranking'}).")


def wrong_scale_sentence(vec: dict, batch_size: int, factor: float) -> str:
    """The wrong estimator's median ratio to the empirical Fisher against 1/B, within `factor` of it or not
    (chapter 03)."""
    scale, inv_b = wrong_scale(vec), 1.0 / batch_size
    if scale > factor * inv_b:
        txt = "more than 1/B: the squared mean gradient (E g)² adds to Var(g)/B"
    elif scale < inv_b / factor:
        txt = "below 1/B, which the expectation cannot be: the few batches make it noisy"
    else:
        txt = f"within a factor {factor:g} of 1/B: roughly 1/batch size, as expected when E g is small"
    return (f"- Its values are not a Fisher: the median layer is {scale:.3g} times the empirical Fisher, against "
            f"1/B = {inv_b:.3g} (ratio {scale / inv_b:.2f}) — {txt}.")


def stream_sentence(fisher, stream, scale_rho: float) -> str:
    """Whether the Fisher per parameter falls as the residual stream a layer reads grows (Spearman at or below
    `scale_rho` with a growing stream) (chapter 03)."""
    rho = float(spearmanr(fisher, stream).statistic)
    grows = bool(stream[-1] > stream[0])
    tracks = rho <= scale_rho and grows
    return (f"- The residual stream a layer reads {'grows' if grows else 'shrinks'} from {stream[0]:.2g} (layer 0) "
            f"to {stream[-1]:.2g} (layer {len(stream) - 1}) in norm; the Fisher per parameter and the stream norm have "
            f"Spearman {rho:.2f}"
            + (f" (at or below {scale_rho}): the Fisher falls as the stream grows, consistent with sensitivity to "
               "scale — a change in a layer that reads a small stream is a larger relative change — which is not the "
               "same as the layer being needed (compare the ablation above)." if tracks else
               f" (not at or below {scale_rho} with a growing stream): the Fisher ranking is not simply the inverse "
               "of the stream scale."))


def stability_sentences(taus: tuple, n_seed_pairs: int, thresholds: tuple, subset_lower: pd.Series,
                        subset_taus: tuple) -> str:
    """The ranking's stability under resampling users, and the head/tail and light/heavy subsets' lower-half shares
    and Kendall tau of their layer profiles (chapter 03)."""
    (tau_halves, tau_seeds), (stable, moderate), (tau_ht, tau_lh) = taus, thresholds, subset_taus
    return (f"- The ranking is {stability_label(tau_halves, stable, moderate)} under resampling users (Kendall tau "
            f"{tau_halves:.2f} between halves" + (f", {tau_seeds:.2f} between seeds" if n_seed_pairs else "")
            + f"; stable means tau >= {stable}, moderately stable >= {moderate}).\n"
            f"- Head vs tail targets: lower-half share {subset_lower['item:head']:.0%} vs "
            f"{subset_lower['item:tail']:.0%}, Kendall tau of their layer profiles {tau_ht:.2f}; light vs heavy users: "
            f"{subset_lower['user:low']:.0%} vs {subset_lower['user:high']:.0%} (tau {tau_lh:.2f}).")


def exactness_sentence(check_table: pd.DataFrame, exact_tol: float, n_users: int, users_per_s: dict) -> str:
    """Chapter 03's check that the fast Fisher methods give the per-user loop's numbers: each method's largest float64
    relative difference (`exactness_table`'s rel_diff_max) against the bound `exact_tol` (`FisherConfig.exact_tol`);
    raises ValueError naming every method over it."""
    rows = list(zip(check_table["method"], check_table["rel_diff_max"]))
    over = [f"{m} {d:.1e} >= {exact_tol:.0e}" for m, d in rows if not d < exact_tol]
    if over:
        raise ValueError("fast Fisher methods differ from the per-user loop beyond their bound: " + ", ".join(over))
    diffs = ", ".join(f"{m} {d:.1e} < {exact_tol:.0e}" for m, d in rows)
    return (f"The fast methods agree with the per-user loop (float64, {n_users} users; largest relative difference "
            f"and its bound): {diffs}. float32 users/s on these users: "
            + ", ".join(f"{k} {v:.1f}" for k, v in users_per_s.items())
            + " (tiny batches here; `python -m lab bench fisher` measures speed at scale).")


# -- the record --------------------------------------------------------------------------------------------------------
def fisher_record(emp: FisherEstimate, vec: dict[str, np.ndarray], agree: pd.DataFrame, stream, *,
                  check_table: pd.DataFrame, wrong_batch_size: int, lower_half: tuple, taus: tuple,
                  thresholds: tuple, exact_tol: float, users_per_s: dict, fisher_seconds: float,
                  runtime_s: float, probes: dict | None = None,
                  bands: pd.DataFrame | None = None) -> dict:
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
        exact_tol: the relative difference below which the fast methods count as exact (`FisherConfig.exact_tol`).
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
        "fast_vs_loop_by_method": {str(m): float(d) for m, d in
                                   zip(check_table["method"], check_table["rel_diff_max"])},
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

"""`python -m lab bench fisher`: users per second of the exact Fisher estimators against the per-user loop (ch. 03).

Moved here from `lab.fisher` so that the science module does not carry its benchmark.
"""
from __future__ import annotations

import copy

import torch

from ..book import paths as _paths, trained_or_fresh_teacher
from ..profiles import get_config
from ..data import load_rec_data, rec_data_from_sequences, toy_markov_sequences
from ..fisher import FisherConfig, compare, fisher_hooks, fisher_loop, fisher_vmap, method_attention
from .timing import seconds

__all__ = ["bench_inputs", "benchmark"]


def bench_inputs(profile: str, seed: int = 0, artefacts=None):
    """(model, inputs, labels, info): the trained teacher and its training sequences when they exist, else a fresh
    teacher of the profile's shape and toy sequences of the profile's max_len."""
    cfg = get_config(profile, seed)
    P = _paths(profile, artefacts, seed)
    data, data_src = None, ""
    if P.processed.exists() and any(P.processed.iterdir()):
        try:
            data = load_rec_data(cfg.data, P, seed, progress=False)[0]
            data_src = f"processed data ({P.processed})"
        except Exception as e:  # noqa: BLE001 - fall back to toy sequences, and say why
            data_src = f"(processed data unusable: {type(e).__name__}) "
    torch.manual_seed(seed)
    model, model_src = trained_or_fresh_teacher(P, cfg.model, data.num_items if data is not None else cfg.data.n_items,
                                                cfg.data.max_len)
    n_items, T = model.config.num_items, model.config.max_len
    if data is not None and (data.num_items != n_items or data.max_len != T):
        data, data_src = None, "(processed data does not match the teacher) "
    if data is None:
        fc = FisherConfig.for_profile(profile)
        seqs = toy_markov_sequences(max(fc.bench_fast, fc.n_check), min(n_items, T + 3), T + 3, seed)
        data = rec_data_from_sequences(seqs, n_items, T)
        data_src += f"toy Markov sequences (T={T})"
    return model, data.train_inputs, data.train_labels, {"model": model_src, "data": data_src}


def benchmark(profile: str, seed: int = 0, artefacts: str | None = None) -> dict:
    """Samples/s of the fastest exact estimator vs the per-sample loop on the same model and samples, one run.

    Each method is warmed up, then timed in `bench_rounds` interleaved rounds (best round counts: the machine is
    shared). Agreement: float64 copies of the model on `n_check` users (loop vs hooks, vmap, ghost: per-layer
    totals, per-group totals, per-sample norms and the per-parameter diagonal), and the float32 hooks result against
    the float32 loop on the loop's users.
    """
    fc = FisherConfig.for_profile(profile)
    model, x, y, info = bench_inputs(profile, seed, artefacts)
    n_fast, n_loop = min(fc.bench_fast, len(x)), min(fc.bench_loop, len(x))
    n_vmap = min(max(n_loop, 2 * min(fc.chunk_size, 32)), len(x))
    ch = fc.chunk_size
    runs = {
        "hooks": (n_fast, lambda n: fisher_hooks(model, x[:n], {"e": y[:n]}, ch)["e"]),
        "ghost": (n_fast, lambda n: fisher_hooks(model, x[:n], {"e": y[:n]}, ch, ghost=True)["e"]),
        "vmap": (n_vmap, lambda n: fisher_vmap(model, x[:n], y[:n], chunk_size=min(ch, 32))),
        "loop": (n_loop, lambda n: fisher_loop(model, x[:n], y[:n])),
    }
    for name, (n, f) in runs.items():  # warm-up
        f(min(n, 2 if name == "loop" else min(ch, n)))
    best = {k: 0.0 for k in runs}
    for _ in range(fc.bench_rounds):
        for name, (n, f) in runs.items():
            best[name] = max(best[name], n / seconds(lambda: f(n), model.device))
    fast = max(("hooks", "vmap"), key=lambda k: best[k])  # full diagonal; ghost (norms only) is reported alongside
    # agreement in float64 on the same users
    m64 = copy.deepcopy(model).double()
    xc, yc = x[:fc.n_check], y[:fc.n_check]
    ref = fisher_loop(m64, xc, yc)
    d64 = {"hooks": compare(fisher_hooks(m64, xc, {"e": yc}, ch)["e"], ref),
           "vmap": compare(fisher_vmap(m64, xc, yc, chunk_size=min(ch, 32)),  # the loop through vmap's attention
                           fisher_loop(m64, xc, yc, attn=method_attention(m64, "vmap"))),
           "ghost": compare(fisher_hooks(m64, xc, {"e": yc}, ch, ghost=True)["e"], ref)}
    xl, yl = x[:n_loop], y[:n_loop]
    d32 = compare(fisher_hooks(model, xl, {"e": yl}, ch)["e"], fisher_loop(model, xl, yl))
    return {
        "profile": profile, "method": fast, "n_samples": n_fast if fast != "vmap" else n_vmap,
        "n_loop_samples": n_loop, "vmap_samples_per_s": best[fast], "loop_samples_per_s": best["loop"],
        "ratio": best[fast] / best["loop"],
        "samples_per_s": best, "ghost_ratio": best["ghost"] / best["loop"], "max_rel_diff": d64[fast]["max"],
        "max_rel_diff_compared": f"float64 copy of the model, {len(xc)} users: per-layer, per-group and "
                                 f"per-user squared-norm totals and the per-parameter diagonal of every parameter, "
                                 f"{fast} vs loop",
        "rel_diff_float64": d64, "rel_diff_float32_hooks_vs_loop": d32,
        "n_layers": model.num_layers, "num_items": model.config.num_items, "T": int(x.shape[1]),
        "threads": torch.get_num_threads(), **info,
    }

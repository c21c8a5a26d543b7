"""The runs of the command line that work on one process or N: `python -m lab train | fisher | distill` (issue 16).

Each is one code path for both. Launched plainly it is an ordinary one-process run; launched with
`accelerate launch --multi_gpu --num_processes N -m lab <cmd> ...` (NCCL on N GPUs, gloo on a CPU-only machine) the
same function runs on every rank:

- `train_run`: the profile's teacher, chapter 02's recipe, through `lab.train.fit` (DDP; `--batch-size` is the
  global batch, split across the ranks).
- `fisher_run`: chapter 03's Fisher over the profile's Fisher users through `lab.fisher.estimate_fisher_sharded`
  (each rank a contiguous 1/N of the users, all-gathered and merged: the one-process estimate to float order).
- `distill_run`: one student of chapter 05 (layers given or selected by a chapter 04 rule) through
  `lab.distill.distill`, whose `fit` all-reduces the distillation loss's gradients.

Rank 0 loads the data first (and caches it; the others then read the cache), and rank 0 alone writes; every rank
returns the same summary. The teacher is read from `--teacher DIR` or from the run's chapter 02 folder.
"""
from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch

__all__ = ["train_run", "fisher_run", "distill_run"]


def _context(profile: str, seed: int, artefacts):
    """(accelerator or None, Paths, BookConfig, RecData, device, data stats) of a launched run; rank 0 builds the
    data first."""
    from . import book
    from .profiles import get_config
    from .data import load_rec_data
    from .train import accelerator

    acc = accelerator()
    P = book.setup(seed, profile, artefacts)
    cfg = get_config(profile, seed)
    # under N processes rank 0 generates and caches the data, the others then read the cache
    with acc.main_process_first() if acc is not None else nullcontext():
        data, _, stats = load_rec_data(cfg.data, P, seed=seed, progress=False)
    return acc, P, cfg, data, (acc.device if acc is not None else book.device()), stats


def _done(acc) -> None:
    if acc is not None:
        acc.wait_for_everyone()


def train_run(profile: str, out: str | os.PathLike, seed: int = 0, epochs: int | None = None, artefacts=None,
              dropout: float | None = None, batch_size: int | None = None, lr: float | None = None,
              max_minutes: float | None = None, progress: bool = False, head: str | None = None) -> dict:
    """`python -m lab train --profile P --out DIR`: train the profile's teacher (chapter 02's recipe) into `DIR`.
    `batch_size` is the global batch, split across the ranks. Rank 0 saves the model (`save_pretrained`),
    `history.csv`, `train_info.json` and `loss_curve.json` (each step's global-batch loss)."""
    from .book import override
    from .io import jsonable, write_json
    from .models import build_teacher
    from .train import fit, is_main_process, save_finished

    acc, P, cfg, data, dev, stats = _context(profile, seed, artefacts)
    cfg.train = override(cfg.train, epochs=epochs, batch_size=batch_size, lr=lr,  # None keeps the profile's value
                         max_minutes=1e9 if acc is not None else max_minutes)  # ranks must not disagree on stopping
    cfg.model = override(cfg.model, dropout=dropout, head=head)
    torch.manual_seed(seed)
    model = build_teacher(cfg.model, data.num_items, data.max_len, item_titles=data.item_titles,
                          title_cache=P.file("title_cache")).to(dev)
    out = Path(out)
    losses: list[float] = []
    t0 = time.perf_counter()
    history = fit(model, data, cfg.train, seed=seed, progress=progress, step_losses=losses)
    summary = {"profile": profile, "seed": seed, "world_size": acc.num_processes if acc is not None else 1,
               "global_batch": cfg.train.batch_size, "lr": cfg.train.lr, "epochs": int(len(history)),
               "steps": len(losses), "best_valid_ndcg@10": float(history["valid_ndcg@10"].max()),
               "train_seconds": time.perf_counter() - t0, "step_loss": losses,
               "history": jsonable(history.to_dict(orient="records"))}
    if is_main_process():
        info = {k: v for k, v in summary.items() if k not in ("step_loss", "history")}
        save_finished(model, history, {**info, "train": asdict(cfg.train), "model": asdict(cfg.model)}, out,
                      "train_info.json")
        write_json(out / "loss_curve.json", summary)
    _done(acc)
    return summary


def fisher_run(profile: str, out: str | os.PathLike, seed: int = 0, artefacts=None, teacher=None,
               estimator: str = "fisher_empirical", method: str = "hooks", n_samples: int | None = None) -> dict:
    """`python -m lab fisher --profile P --out DIR`: chapter 03's Fisher of the teacher over the profile's Fisher
    users (`FisherConfig.for_profile`, the same seeded users), sharded over the ranks. Rank 0 writes
    `fisher_layers.parquet` (layer_idx, signal, norm, value, ci_low, ci_high: chapter 03's importance rows),
    `fisher_per_sample.npz` (per-user, per-(layer, group) rows, for checks) and `fisher_info.json`.

    The true Fisher's Monte Carlo labels are drawn over all users on every rank (same seed), so N processes give the
    one-process estimate for either estimator."""
    import numpy as np

    from .book import load_teacher, override
    from .fisher import FisherConfig, draw_labels, estimate_fisher_sharded
    from .fisher.subsets import sample_rows
    from .fisher.tables import fisher_importance_rows
    from .io import atomic_path, write_json, write_parquet
    from .train import is_main_process

    if estimator not in ("fisher_empirical", "fisher_true"):
        raise ValueError(f"estimator must be 'fisher_empirical' or 'fisher_true', not {estimator!r}")
    acc, P, cfg, data, dev, stats = _context(profile, seed, artefacts)
    model = load_teacher(P, dev, folder=teacher)
    fc = override(FisherConfig.for_profile(profile), n_samples=n_samples)  # None keeps the profile's
    idx = sample_rows(data.num_users, fc.n_samples, seed)  # the Fisher's training users, seeded as in chapter 03
    x, y = data.train_inputs[idx].to(dev), data.train_labels[idx].to(dev)
    if estimator == "fisher_true":
        y = draw_labels(model, x, y, fc.n_draws, seed)  # over all users, identical on every rank
    t0 = time.perf_counter()
    est = estimate_fisher_sharded(model, x, y, estimator="fisher_empirical", method=method,
                                  chunk_size=fc.chunk_size)
    est.estimator = estimator
    seconds = time.perf_counter() - t0
    rows = fisher_importance_rows(est, fc.n_boot, seed)
    per_param = rows[rows.norm == "per_param"].set_index("layer_idx")["value"]
    summary = {"profile": profile, "seed": seed, "world_size": acc.num_processes if acc is not None else 1,
               "estimator": estimator, "method": method, "users": int(len(idx)), "seconds": seconds,
               "users_per_second": len(idx) / max(seconds, 1e-9), "num_layers": int(est.n_layers),
               "top_layers": [int(i) for i in per_param.sort_values(ascending=False).index[:4]]}
    if is_main_process():
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_parquet(out / "fisher_layers.parquet", rows)
        with atomic_path(out / "fisher_per_sample.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, per_sample=est.per_sample, users=idx, keys=np.array([f"{i}:{g}" for i, g in est.keys]))
        write_json(out / "fisher_info.json", summary)
    _done(acc)
    return summary


def distill_run(profile: str, out: str | os.PathLike, seed: int = 0, artefacts=None, teacher=None,
                layers: list[int] | None = None, rule: str = "fisher_topk", k: int | None = None,
                variant: str = "kd+fisher", adapter: str = "full", epochs: int | None = None,
                importance: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """`python -m lab distill --profile P --out DIR`: distil the teacher into one student (chapter 05's trainer)
    built from `layers`, or from the `k` layers (default L/4) that chapter 04's `rule` selects with the run's
    importance table, needed by the Fisher rules and the "fisher" weighting: `importance` (a parquet of chapter 03's
    importance rows, e.g. `python -m lab fisher`'s `fisher_layers.parquet`) or the run's chapter 03
    `importance.parquet`.
    Rank 0 saves the merged student (`save_pretrained`) and `distill_info.json` into `DIR`; run again with the same
    settings, teacher weights and data, it loads that student instead of training (`distill`'s run key)."""
    from . import book
    from .distill import DistillConfig, distill, teacher_key
    from .models import build_student
    from .selection import select_layers
    from .train import is_main_process

    acc, P, cfg, data, dev, stats = _context(profile, seed, artefacts)
    t = book.load_teacher(P, dev, folder=teacher)
    dc = book.override(DistillConfig.for_profile(profile).with_variant(variant), adapter=adapter, epochs=epochs)
    needs_importance = dc.uses_layers and dc.weighting == "fisher" or (layers is None and rule.startswith("fisher"))
    if not needs_importance:
        importance = None
    else:
        importance = book.load_importance(P, file=importance)
    if layers is None:
        k = k if k is not None else max(1, t.num_layers // 4)
        layers = select_layers(importance if importance is not None else t.num_layers, k, rule, seed=seed,
                               model=t, data=data)
    student = build_student(t, sorted(int(i) for i in layers)).to(dev)
    model, history, info = distill(t, student, data, dc, cfg.train, out, importance=importance, seed=seed,
                                   progress=progress and is_main_process(),
                                   key=teacher_key(teacher or P.teacher, stats))
    summary = {"profile": profile, "seed": seed, "world_size": acc.num_processes if acc is not None else 1,
               "layers": [int(i) for i in student.config.source_layers], "variant": dc.variant, "adapter": adapter,
               **{k_: info[k_] for k_ in ("epochs", "best_valid_ndcg@10", "train_seconds", "trainable_params",
                                          "teacher_layers", "finished", "loaded") if k_ in info}}
    _done(acc)
    return summary

"""The distillation trainer: (teacher, student, layers) -> a merged, saved student with its training cost (chapter 05).

Training hygiene is the teacher's (`lab.train.fit`): early stopping on validation NDCG@10, a checkpoint every epoch,
resume after an interruption, tqdm progress, fixed seeds. The teacher is frozen and in eval mode. Cost per run: wall
time, trainable parameters, peak memory, and IISAN's TPME across compared runs.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import TrainConfig
from ..data import RecData
from ..io import jsonable, read_json
from ..models import SeqRecModel, count_parameters
from ..stats import paired_ratio_ci
from ..train import autocast, evaluate_model, fit, save_finished
from .adapters import apply_adapter, merge_student
from .config import DistillConfig
from .losses import (DistillLoss, TeacherCache, build_teacher_cache, importance_vector, layer_mapping,
                     layer_weights)

METRICS = ("ndcg@10", "hr@10", "mrr")


def freeze_teacher(teacher: SeqRecModel) -> SeqRecModel:
    """Eval mode and requires_grad False on every parameter: the teacher only ever gives targets."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def plan_layers(teacher: SeqRecModel, student: SeqRecModel, cfg: DistillConfig,
                importance=None) -> tuple[list[int], torch.Tensor]:
    """(teacher layer for each student layer, weights w_i) for a run; `importance` is chapter 03's frame or array."""
    t_layers = layer_mapping(student.num_layers, teacher.num_layers, cfg.mapping, student.config.source_layers)
    imp = importance_vector(importance, num_layers=teacher.num_layers) if importance is not None else None
    return t_layers, layer_weights(cfg.weighting if cfg.uses_layers else "none", t_layers, imp)


# -- memory -------------------------------------------------------------------------------------------------------
def _nbytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def estimate_training_memory(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor,
                             rows: torch.Tensor | None = None, extra_bytes: int = 0) -> dict:
    """Bytes a training step holds at its peak, counted from the tensors themselves (deterministic, CPU or GPU).

    weights (all, frozen included) + gradients and two AdamW moments of the trainable ones + activations saved for
    backward in one step (`saved_tensors_hooks`, storages shared with weights excluded) + `extra_bytes` (the frozen
    teacher and its cache). The step runs under a forked RNG and leaves no gradients behind.
    """
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    weight_ptrs = {(p.untyped_storage().data_ptr(), p.device) for p in params}
    saved = []

    def pack(t):
        if (t.untyped_storage().data_ptr(), t.device) not in weight_ptrs:
            saved.append(t)
        return t

    with torch.random.fork_rng(devices=[]), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(x.device):
            loss = loss_fn(model, x, y, rows)
    act = _nbytes(saved)
    del saved, loss
    for p in trainable:
        p.grad = None
    w = _nbytes(params)
    g = sum(p.numel() * 4 for p in trainable)  # float32 gradient per trainable parameter
    out = {"weights": w, "grads": g, "optimizer": 2 * g, "activations": act, "extra": int(extra_bytes)}
    out["total"] = sum(out.values())
    return out


def _module_bytes(m: nn.Module | None) -> int:
    if m is None:
        return 0
    return _nbytes([*m.parameters(), *m.buffers()])


# -- the run ------------------------------------------------------------------------------------------------------
def distill(teacher: SeqRecModel, student: SeqRecModel, data: RecData, cfg: DistillConfig, train_cfg: TrainConfig,
            out_dir: str | Path, importance=None, cache: TeacherCache | None = None, seed: int = 0,
            progress: bool = True, stop_after_epochs: int | None = None,
            key: dict | None = None) -> tuple[SeqRecModel, pd.DataFrame, dict]:
    """Distil `teacher` into `student` and `save_pretrained` the merged student into `out_dir`, or load it back.

    Args:
        student: the compact model to train (`lab.models.build_student(teacher, layers)`); modified in place.
        cfg: loss terms, weighting, mapping, adapter and budget; `train_cfg` gives the rest (batch size, decay, ...).
        importance: per-layer Fisher importance (chapter 03's frame or a length-L array), for weighting "fisher".
        cache: teacher outputs shared between runs (`build_teacher_cache`); built for this run when None and
            `cfg.cache_teacher`.
        stop_after_epochs: stop as if interrupted (the checkpoint in `out_dir/ckpt` resumes on the next call).
        key: extra identity of the run (e.g. the teacher's path); a finished run with the same key is loaded.

    Returns:
        (merged student in eval mode, per-epoch history, info) — info has train_seconds, cache_seconds,
        trainable_params, peak_mem_mb, mem_method, teacher_layers, weights, term means, finished, loaded.
    """
    out_dir = Path(out_dir)
    tc = cfg.train_config(train_cfg)
    t_layers, weights = plan_layers(teacher, student, cfg, importance)
    full_key = jsonable({"distill": dataclasses.asdict(cfg), "train": dataclasses.asdict(tc), "seed": seed,
                          "layers": student.config.source_layers, "teacher_layers": t_layers,
                          "weights": [round(float(w), 6) for w in weights], **(key or {})})
    info = read_json(out_dir / "distill_info.json")
    if info and info.get("key") == full_key and (out_dir / "config.json").exists():
        dev = next(student.parameters()).device
        loaded = SeqRecModel.from_pretrained(out_dir).to(dev).eval()
        return loaded, pd.read_csv(out_dir / "history.csv"), {**info, "loaded": True}

    torch.manual_seed(seed)
    freeze_teacher(teacher)
    need = t_layers if cfg.uses_layers else []
    cache_s = 0.0
    if cfg.uses_teacher and cfg.cache_teacher:
        if cache is None or not cache.covers(need, cfg.positions):
            cache = build_teacher_cache(teacher, data.train_inputs, need, cfg.positions,
                                        batch_size=tc.eval_batch_size, dtype=cfg.cache_dtype)
        cache_s = cache.seconds
    else:
        cache = None
    model = apply_adapter(student, cfg, out_dir / "qlora_base")
    loss = DistillLoss(teacher if cfg.uses_teacher else None, cfg, t_layers, weights, cache)
    dev = next(model.parameters()).device

    # memory: measured peak on CUDA, counted from tensors on CPU
    extra = 0
    if cfg.uses_teacher:  # the frozen teacher and the parts of the cache this run reads
        used = [cache.final, *[cache.hidden[j] for j in set(need)]] if cache is not None else []
        extra = _module_bytes(teacher) + sum(t.numel() * t.element_size() for t in used)
    x0 = data.train_inputs[:tc.batch_size].to(dev)
    y0 = data.train_labels[:tc.batch_size].to(dev)
    rows0 = torch.arange(len(x0), device=dev)
    mem = estimate_training_memory(model, loss, x0, y0, rows0, extra_bytes=extra)
    loss.totals, loss.steps = {}, 0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    t0 = time.perf_counter()
    history = fit(model, data, tc, ckpt_dir=out_dir / "ckpt", seed=seed, progress=progress, loss_fn=loss,
                  stop_after_epochs=stop_after_epochs)
    fit_s = time.perf_counter() - t0
    state = _ckpt_state(out_dir / "ckpt")
    train_s = state["elapsed"] if state else fit_s
    finished = state is None or not (state["epoch"] < tc.epochs and state["bad_epochs"] < tc.patience
                                     and state["elapsed"] / 60 <= tc.max_minutes)
    if dev.type == "cuda":
        peak_mb, how = torch.cuda.max_memory_allocated(dev) / 2**20, "cuda_max_allocated"
    else:
        peak_mb, how = mem["total"] / 2**20, "tensor_count"
    info = {
        "key": full_key, "variant": cfg.variant, "adapter": cfg.adapter, "epochs": int(len(history)),
        "best_valid_ndcg@10": float(history["valid_ndcg@10"].max()) if len(history) else float("nan"),
        "train_seconds": float(train_s), "cache_seconds": float(cache_s), "total_seconds": float(train_s + cache_s),
        "trainable_params": int(count_parameters(model, trainable_only=True)),
        "peak_mem_mb": float(peak_mb), "mem_method": how, "mem_breakdown_mb": {k: v / 2**20 for k, v in mem.items()},
        "teacher_layers": t_layers, "student_layers": list(student.config.source_layers or []),
        "weights": [float(w) for w in weights], "terms": loss.summary(), "finished": bool(finished),
    }
    if not finished:
        return model, history, {**info, "loaded": False}

    merged = merge_student(model, cfg, out_dir / "qlora_base")
    info["params"] = int(count_parameters(merged))
    return save_finished(merged, history, info, out_dir, "distill_info.json")


def _ckpt_state(ckpt: Path) -> dict | None:
    if not (ckpt / "last.pt").exists():
        return None
    return torch.load(ckpt / "last.pt", map_location="cpu", weights_only=False)["state"]


# -- does caching the teacher pay? ----------------------------------------------------------------------------
def time_teacher_cache(teacher: SeqRecModel, student: SeqRecModel, data: RecData, cfg: DistillConfig,
                       train_cfg: TrainConfig, importance=None, n_steps: int = 3,
                       cache: TeacherCache | None = None) -> dict:
    """Seconds per training step (forward + backward) with the teacher run live vs read from a cache.

    Times `n_steps` steps of each after one warm-up step, on a copy of `student`; the cache build (one teacher pass
    over the training set) is timed too, or read from `cache` when one is given. Returns both step times, the build
    time, steps per epoch, the seconds saved per epoch and the epochs after which the cache has paid for itself.
    """
    freeze_teacher(teacher)
    s = copy.deepcopy(student).train()
    t_layers, w = plan_layers(teacher, s, cfg, importance)
    need = t_layers if cfg.uses_layers else []
    if cache is None or not cache.covers(need, cfg.positions):
        cache = build_teacher_cache(teacher, data.train_inputs, need, cfg.positions,
                                    batch_size=train_cfg.eval_batch_size, dtype=cfg.cache_dtype)
    bs = train_cfg.batch_size
    dev = next(s.parameters()).device
    x = data.train_inputs[:bs].to(dev)
    y = data.train_labels[:bs].to(dev)
    rows = torch.arange(len(x), device=dev)

    def step_time(loss):
        times = []
        for i in range(n_steps + 1):
            t0 = time.perf_counter()
            with autocast(dev):
                out = loss(s, x, y, rows)
            out.backward()
            times.append(time.perf_counter() - t0)
            s.zero_grad(set_to_none=True)
        return float(np.median(times[1:]))

    live = step_time(DistillLoss(teacher, cfg, t_layers, w, cache=None))
    cached = step_time(DistillLoss(teacher, cfg, t_layers, w, cache=cache))
    steps = int(np.ceil(data.train_inputs.shape[0] / bs))
    saved = (live - cached) * steps
    return {"live_step_s": live, "cached_step_s": cached, "cache_build_s": cache.seconds,
            "cache_mb": cache.nbytes / 2**20, "steps_per_epoch": steps, "saved_per_epoch_s": saved,
            "break_even_epochs": cache.seconds / saved if saved > 0 else float("inf")}


# -- reporting ----------------------------------------------------------------------------------------------------
def tpme(frame: pd.DataFrame, time_col: str = "total_seconds", params_col: str = "trainable_params",
         mem_col: str = "peak_mem_mb") -> pd.Series:
    """IISAN's TPME = 0.45·t + 0.1·p + 0.45·m of min–max normalised time, trainable parameters and memory across the
    rows compared (lower is better; a column that does not vary contributes 0)."""
    def mm(c):
        v = frame[c].astype(float)
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else v * 0.0
    return 0.45 * mm(time_col) + 0.1 * mm(params_col) + 0.45 * mm(mem_col)


def per_user_metrics(model: SeqRecModel, data: RecData, name: str, split: str = "test",
                     batch_size: int = 512) -> pd.DataFrame:
    """Tidy per-user metrics (name, user, ndcg@10, hr@10, mrr) of a model on a split."""
    _, pu = evaluate_model(model, data, split, batch_size=batch_size)
    out = pu[["user", *METRICS]].copy()
    out.insert(0, "name", name)
    return out


def retention(student_pu: pd.DataFrame, teacher_pu: pd.DataFrame, metrics=METRICS, n_boot: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """Retention = mean(student) / mean(teacher) per metric, with a paired bootstrap CI over users.

    Args:
        student_pu: per-user frame of one or more students (name, user, metrics...).
        teacher_pu: the teacher's per-user frame (user, metrics...) on the same split.

    Returns:
        tidy frame: name, metric, student, teacher, retention, ci_low, ci_high.
    """
    rows = []
    t = teacher_pu.set_index("user")
    for name, g in student_pu.groupby("name", sort=False):
        g = g.set_index("user")
        users = g.index.intersection(t.index)
        if len(users) != len(g):
            raise ValueError(f"{name}: {len(g) - len(users)} users have no teacher value")
        for m in metrics:
            r, lo, hi = paired_ratio_ci(g.loc[users, m].to_numpy(), t.loc[users, m].to_numpy(), n_boot=n_boot,
                                        seed=seed)
            rows.append({"name": name, "metric": m, "student": float(g.loc[users, m].mean()),
                         "teacher": float(t.loc[users, m].mean()), "retention": r, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)

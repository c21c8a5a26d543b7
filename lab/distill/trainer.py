"""The distillation trainer: (teacher, student, layers) -> a merged, saved student with its training cost (chapter 05).

Training hygiene is the teacher's (`lab.train.fit`): early stopping on validation NDCG@10, a checkpoint every epoch,
resume after an interruption, tqdm progress, fixed seeds. The teacher is frozen and in eval mode. Cost per run: wall
time, trainable parameters, peak memory, and IISAN's TPME across compared runs.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import TrainConfig
from ..constants import METRICS
from ..data import RecData
from ..evaluation import compare_runs, holm_family, paired_ratio_ci, per_user_table
from ..fisher.tables import importance_vector
from ..io import jsonable
from ..models import SeqRecModel, build_student, count_parameters
from ..selection import layers_str, parse_layers
from ..train import (accelerator, autocast, checkpoint_state, config_defaults, fit, load_finished,
                     save_finished)
from .adapters import apply_adapter, merge_student
from .config import BASELINE_VARIANTS, METHOD_RULE, METHOD_VARIANT, DistillConfig, DistillGrid
from .losses import (DistillLoss, TeacherCache, build_teacher_cache, eager_attention, layer_mapping,
                     layer_weights)

__all__ = ["freeze_teacher", "plan_layers", "estimate_training_memory", "distill", "time_teacher_cache", "tpme",
           "retention", "mapped_teacher_layers", "StudentRuns", "weights_fingerprint", "teacher_key", "run_grid",
           "choose_variant", "scratch_retention", "valid_means", "best_student", "method_student", "layerwise_choices",
           "variant_comparisons", "rule_comparisons", "comparison_records", "describe_comparison", "describe_adapter",
           "results_table", "throughput_ratios"]


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
    done = load_finished(out_dir, full_key, "distill_info.json", SeqRecModel, next(student.parameters()).device,
                         defaults=config_defaults(DistillConfig))
    if done is not None:
        return done

    torch.manual_seed(seed)
    freeze_teacher(teacher)
    need = t_layers if cfg.uses_layers else []
    need_att = t_layers if cfg.uses_attention else []
    cache_s = 0.0
    if cfg.uses_teacher and cfg.cache_teacher:
        if cache is None or not cache.covers(need, cfg.positions, need_att):
            cache = build_teacher_cache(teacher, data.train_inputs, need, cfg.positions,
                                        batch_size=tc.eval_batch_size, dtype=cfg.cache_dtype, attention=need_att)
        cache_s = cache.seconds
    else:
        cache = None
    model = apply_adapter(student, cfg, out_dir / "qlora_base")
    loss = DistillLoss(teacher if cfg.uses_teacher else None, cfg, t_layers, weights, cache)
    dev = next(model.parameters()).device

    # memory: measured peak on CUDA, counted from tensors on CPU
    extra = 0
    if cfg.uses_teacher:  # the frozen teacher and the parts of the cache this run reads
        used = ([cache.final, *[cache.hidden[j] for j in set(need)], *[cache.attention[j] for j in set(need_att)]]
                if cache is not None else [])
        extra = _module_bytes(teacher) + sum(t.numel() * t.element_size() for t in used)
    x0 = data.train_inputs[:tc.batch_size].to(dev)
    y0 = data.train_labels[:tc.batch_size].to(dev)
    rows0 = torch.arange(len(x0), device=dev)
    with eager_attention(model) if cfg.uses_attention else nullcontext():  # TinyBERT reads attention probabilities;
        mem = estimate_training_memory(model, loss, x0, y0, rows0, extra_bytes=extra)  # sdpa is back after the block
        loss.totals, loss.steps = {}, 0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        history = fit(model, data, tc, ckpt_dir=out_dir / "ckpt", seed=seed, progress=progress, loss_fn=loss,
                      stop_after_epochs=stop_after_epochs)
        fit_s = time.perf_counter() - t0
    state = checkpoint_state(out_dir / "ckpt")
    train_s = state["elapsed"] if state else fit_s
    stopped_by = state.get("stopped_by") if state else history.attrs.get("stopped_by")
    finished = state is None or stopped_by is not None or not (state["epoch"] < tc.epochs
                                                               and state["bad_epochs"] < tc.patience)
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
        "stopped_by": stopped_by, "stopped_by_budget": stopped_by == "budget",  # validation or the clock (`fit`)
    }
    if not finished:
        return model, history, {**info, "loaded": False}

    merged = merge_student(model, cfg, out_dir / "qlora_base")
    info["params"] = int(count_parameters(merged))
    acc = accelerator()
    if acc is not None:  # under accelerate launch: rank 0 writes, the others wait for it
        out = save_finished(merged, history, info, out_dir, "distill_info.json") if acc.is_main_process else None
        acc.wait_for_everyone()
        return out or (merged, history, {**info, "loaded": False})
    return save_finished(merged, history, info, out_dir, "distill_info.json")


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


# -- chapter 05: the runs, the choices (on validation) and the table ---------------------------------------------
def mapped_teacher_layers(layer_sets, num_teacher: int, cfg: DistillConfig) -> list[int]:
    """The teacher layers the layer-wise term reads, over all of chapter 05's layer sets under `cfg.mapping`: what one
    shared teacher cache must hold. `layer_sets` are (name, rule, draw, layers) tuples."""
    return sorted({j for *_, layers in layer_sets
                   for j in layer_mapping(len(layers), num_teacher, cfg.mapping, [int(i) for i in layers])})


class StudentRuns:
    """Chapter 05's students: each run's row, per-user test metrics, history and merged model, kept by name.

    A student whose (layers, variant, adapter) was already trained under another rule's name is not trained again: it
    gets that run's row with `same_as` naming it. Rows carry the validation NDCG@10 (`valid_ndcg@10`, the best epoch's,
    which is the model kept) that every choice of the chapter is made on; test metrics only report.
    """

    def __init__(self, teacher: SeqRecModel, data: RecData, cfg: DistillConfig, train_cfg: TrainConfig,
                 root: str | Path, importance=None, cache: TeacherCache | None = None, seed: int = 0,
                 key: dict | None = None):
        self.teacher, self.data, self.cfg, self.train_cfg, self.root = teacher, data, cfg, train_cfg, Path(root)
        self.importance, self.cache, self.seed, self.key = importance, cache, seed, key
        self.rows: list[dict] = []
        self.per_user: list[pd.DataFrame] = []
        self.histories: dict[str, pd.DataFrame] = {}
        self.models: dict[str, SeqRecModel] = {}
        self._done: dict[tuple, tuple] = {}

    def train(self, name: str, rule: str, draw: int, layers: list[int], variant: str, adapter: str = "full",
              verbose: bool = True) -> SeqRecModel:
        """Distil one student (`distill`, saved under `root/students/<name>`), evaluate it on test, keep its row."""
        key = (tuple(layers), variant, adapter)
        if key in self._done:  # the same student under another rule's name
            done, row, pu, model = self._done[key]
            self.rows.append({**row, "name": name, "rule": rule, "draw": draw, "same_as": done})
            self.per_user.append(pu.assign(name=name))
            self.histories[name], self.models[name] = self.histories[done], model
            if verbose:
                print(f"{name:<32} same layers as {done}: not trained again")
            return model
        c = dataclasses.replace(self.cfg.with_variant(variant), adapter=adapter)
        student = build_student(self.teacher, [int(i) for i in layers])
        model, hist, info = distill(self.teacher, student, self.data, c, self.train_cfg, self.root / "students" / name,
                                    importance=self.importance, cache=self.cache, seed=self.seed, progress=False,
                                    key=self.key)
        pu = per_user_table({name: model}, self.data, "test", batch_size=self.train_cfg.eval_batch_size)
        row = {"name": name, "rule": rule, "draw": draw, "k": len(layers), "layers": layers_str(layers),
               "variant": variant, "adapter": adapter, "weighting": c.weighting if c.uses_layers else "none",
               "mapping": c.mapping if c.uses_layers else "none",
               "teacher_layers": layers_str(info["teacher_layers"]) if c.uses_layers else "",
               "epochs": info["epochs"], "valid_ndcg@10": info["best_valid_ndcg@10"],
               **{f"test_{m}": float(pu[m].mean()) for m in METRICS},
               **{k: info[k] for k in ("train_seconds", "cache_seconds", "total_seconds", "trainable_params",
                                       "peak_mem_mb")},
               "params": count_parameters(model), "loaded": info["loaded"], "same_as": ""}
        self.rows.append(row)
        self.per_user.append(pu)
        self.histories[name], self.models[name] = hist, model
        self._done[key] = (name, row, pu, model)
        if verbose:
            print(f"{name:<32} valid ndcg@10 {row['valid_ndcg@10']:.4f}  test {row['test_ndcg@10']:.4f}  "
                  f"{row['epochs']} ep  {row['total_seconds']:.1f} s{'  (loaded)' if row['loaded'] else ''}")
        return model

    def frame(self) -> pd.DataFrame:
        """One row per student name (shared runs included, with `same_as`)."""
        return pd.DataFrame(self.rows)

    def per_user_frame(self) -> pd.DataFrame:
        """Per-user test metrics of every student name (name, user, metrics...)."""
        return pd.concat(self.per_user, ignore_index=True)


def weights_fingerprint(folder: str | Path) -> str:
    """sha256 of a `save_pretrained` folder's weight files (`*.safetensors`, sorted by name) (chapter 05)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(Path(folder).glob("*.safetensors")):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def teacher_key(teacher_folder: str | Path, stats: dict) -> dict:
    """What every student's run key holds about its teacher and data (chapters 05 and 06, `python -m lab distill`):
    the fingerprint of the teacher's weights (`weights_fingerprint`) and the processed data's hash, so a retrained
    teacher or changed data retrains the students instead of loading stale ones, and a student distilled by the
    chapter or by the command from the same teacher and data is the same run."""
    return {"teacher": weights_fingerprint(teacher_folder), "data": stats.get("config_hash")}


def run_grid(teacher: SeqRecModel, data: RecData, layer_sets, grid: DistillGrid, cfg: DistillConfig,
             train_cfg: TrainConfig, root: str | Path, importance=None, cache: TeacherCache | None = None,
             seed: int = 0, key: dict | None = None, verbose: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Chapter 05's grid of students, every choice on validation: each loss variant on the main rules' layer sets,
    the variant with the best mean validation NDCG@10 there (`choose_variant`) on the other rules' sets, then each
    of `grid.adapters` (LoRA, QLoRA) on the best full fine-tuned student (`best_student`).

    Args:
        layer_sets: (name, rule, draw, layers) tuples (`DistillGrid.layer_sets`).
        root: the run's artefact folder; students are saved under `root/students/<name>` and loaded back when
            nothing changed (`distill`).
        importance, cache, seed, key: passed to every `distill` run (`teacher_key` for `key`).

    Returns:
        (one row per student name: rule, draw, layers, variant, adapter, validation and test metrics, training cost,
        `same_as` for a layer set another rule already trained; per-user test metrics of every student).
    """
    runs = StudentRuns(teacher, data, cfg, train_cfg, root, importance=importance, cache=cache, seed=seed, key=key)
    main, others = grid.split_sets(layer_sets)
    for name, rule, draw, layers in main:
        for variant in grid.variant_names():
            runs.train(f"{name}:{variant}", rule, draw, layers, variant, verbose=verbose)
    variant = choose_variant(runs.frame(), grid)
    if verbose:
        means = valid_means(runs.frame(), grid.main_rules)
        print(f"best variant on validation (mean over {', '.join(grid.main_rules)}): {variant}  "
              f"({', '.join(f'{v} {x:.4f}' for v, x in means.items())})")
    for name, rule, draw, layers in others:
        runs.train(f"{name}:{variant}", rule, draw, layers, variant, verbose=verbose)
    best = best_student(runs.frame())
    row = runs.frame().set_index("name").loc[best]
    if verbose:
        print(f"best full fine-tuning setting on validation: {best}")
    for adapter in grid.adapters:
        runs.train(f"{best}:{adapter}", row["rule"], int(row["draw"]), parse_layers(row["layers"]), row["variant"],
                   adapter, verbose=verbose)
    for name, rule, draw, layers in (s for s in layer_sets if s[1] in grid.tinybert_rules):  # a baseline, not a choice
        runs.train(f"{name}:tinybert", rule, draw, layers, "tinybert", verbose=verbose)
    return runs.frame(), runs.per_user_frame()


def choose_variant(frame: pd.DataFrame, grid: DistillGrid) -> str:
    """The loss variant with the best mean validation NDCG@10 over the main rules' full fine-tuned students (the one
    the other rules get); the grid's last variant when none ran (chapter 05)."""
    means = valid_means(frame, grid.main_rules)
    return str(means.idxmax()) if len(means) else grid.variant_names()[-1]


def scratch_retention(teacher_eval: pd.DataFrame, teacher_pu: pd.DataFrame, metric: str = "ndcg@10",
                      seed: int = 0) -> pd.Series | None:
    """Retention (with its paired CI) of chapter 02's small model trained from scratch, on the teacher's test users:
    the row of `retention` named after the model, or None when `teacher_eval.parquet` has no "small..." model
    (chapter 05's reference: what a student reaches without the teacher)."""
    small = next((m for m in teacher_eval["model"].unique() if m.startswith("small")), None)
    if small is None:
        return None
    pu = teacher_eval[teacher_eval["model"] == small][["user", *METRICS]].assign(name=small)
    return retention(pu, teacher_pu, [metric], seed=seed).iloc[0]


def valid_means(frame: pd.DataFrame, rules, metric: str = "valid_ndcg@10") -> pd.Series:
    """Mean validation metric per variant over the full fine-tuned students of `rules` (chapter 05's choices)."""
    sel = frame[frame["rule"].isin(list(rules)) & (frame["adapter"] == "full")
                & ~frame["variant"].isin(BASELINE_VARIANTS)]
    return sel.groupby("variant", sort=False)[metric].mean()


def best_student(frame: pd.DataFrame, metric: str = "valid_ndcg@10") -> str:
    """The distinct full fine-tuned student with the highest validation NDCG@10 (chapter 05's best setting; the first
    one on ties, in training order)."""
    sel = frame[(frame["same_as"] == "") & (frame["adapter"] == "full") & ~frame["variant"].isin(BASELINE_VARIANTS)]
    return str(sel.loc[sel[metric].idxmax(), "name"])


def method_student(frame: pd.DataFrame, rule: str = METHOD_RULE, variant: str = METHOD_VARIANT,
                   fallback=()) -> str:
    """The method's own student (chapters 05 and 06, and C1): the full fine-tuned student of selection rule `rule`
    trained with `variant` (the method: `METHOD_RULE`, `METHOD_VARIANT`, Fisher-weighted layer-wise KD); where the
    grid did not train that variant for the rule, the first of `fallback` (a stated order of variants) it did train.
    Decided by this rule alone, never by validation or test scores; ValueError when the rule has none of them."""
    sel = frame[(frame["rule"] == rule) & (frame["adapter"] == "full")]
    trained = list(dict.fromkeys(sel["variant"]))
    for v in (variant, *fallback):
        if v in trained:
            return str(sel.loc[sel["variant"] == v, "name"].iloc[0])
    raise ValueError(f"no {rule!r} student trained with {variant!r} or any of {tuple(fallback)}; its variants: "
                     f"{trained}")


def layerwise_choices(means: pd.Series) -> dict:
    """Which layer-wise variants chapter 05 tests, chosen on validation means (`valid_means`): `top_w`, the best
    "kd+<weighting>", and `rival`, the best one other than "kd+fisher" (None where the grid did not run them)."""
    lw = {v: float(x) for v, x in means.items() if v.startswith("kd+")}
    others = {v: x for v, x in lw.items() if v != "kd+fisher"}
    return {"top_w": max(lw, key=lw.get) if lw else None,
            "rival": max(others, key=others.get) if others and "kd+fisher" in lw else None}


def variant_comparisons(per_user: pd.DataFrame, names: dict, means: pd.Series, alpha: float = 0.05,
                        metric: str = "ndcg@10", seed: int = 0) -> pd.DataFrame:
    """Chapter 05's family of paired tests of loss variants, each on the same layer sets trained two ways.

    KD vs CE; the layer-wise term (its best weighting on validation) vs KD; Fisher weighting vs the best other
    weighting on validation — those the grid ran. Each is `lab.evaluation.compare_runs` (per-user test `metric`
    averaged over the layer sets); Holm adjusts the Wilcoxon p-values over the family, and a difference is `clear`
    only when its CI excludes 0 and its Holm-adjusted p is below `alpha` (`lab.evaluation.holm_family`).

    Args:
        names: variant -> the student names of the main rules' layer sets trained with it.
        means: validation means per variant (`valid_means`): the test split picks nothing.
    """
    ch = layerwise_choices(means)
    pairs = [("kd", "ce", "logit KD over CE alone"),
             (ch["top_w"], "kd", "the layer-wise term (best weighting on validation) over plain KD"),
             ("kd+fisher", ch["rival"], "Fisher weighting against the best other weighting on validation")]
    rows = [{"a": a, "b": b, "question": q, "a_runs": list(names[a]), "b_runs": list(names[b]),
             **compare_runs(per_user, names[a], names[b], metric, seed=seed)}
            for a, b, q in pairs if names.get(a) and names.get(b)]
    return pd.DataFrame(holm_family(rows, alpha=alpha))


def rule_comparisons(results: pd.DataFrame, per_user: pd.DataFrame, variant: str, reference: str = "fisher_topk",
                     alpha: float = 0.05, metric: str = "ndcg@10", seed: int = 0) -> pd.DataFrame:
    """Chapter 05's family of paired tests of selection rules (issue 13): the `reference` rule's student against each
    other rule's, all full fine-tuned with the same `variant`, on per-user test `metric` (`lab.evaluation.compare_runs`;
    a rule with several students, the random draws, is averaged per user), Holm over the family
    (`lab.evaluation.holm_family`). Rows as `variant_comparisons`'; empty when the grid has no such pair."""
    sel = results[(results["variant"] == variant) & (results["adapter"] == "full")]
    names = {rule: list(g["name"]) for rule, g in sel.groupby("rule", sort=False)}
    if reference not in names:
        return pd.DataFrame()
    rows = [{"a": reference, "b": rule, "question": f"{reference} students against {rule} students ({variant})",
             "a_runs": names[reference], "b_runs": runs,
             **compare_runs(per_user, names[reference], runs, metric, seed=seed)}
            for rule, runs in names.items() if rule != reference]
    return pd.DataFrame(holm_family(rows, alpha=alpha))


def comparison_records(comparisons: pd.DataFrame) -> dict:
    """`variant_comparisons` as plain values for `results.json`: {"<a> vs <b>": diff, ci_low, ci_high, wilcoxon_p,
    holm_p, clear, ci_clear, a_runs, b_runs} (chapter 05)."""
    return {f"{c['a']} vs {c['b']}": {**{k: float(c[k]) for k in ("diff", "ci_low", "ci_high", "wilcoxon_p", "holm_p")},
                                      "clear": bool(c["clear"]), "ci_clear": bool(c["ci_clear"]),
                                      "a_runs": list(c["a_runs"]), "b_runs": list(c["b_runs"])}
            for c in comparisons.to_dict("records")}


def describe_comparison(c: dict, n_tests: int) -> str:
    """One printed sentence for a row of `variant_comparisons`: difference, CI, raw and Holm-adjusted p, verdict."""
    if c["clear"]:
        verdict = (f"{'better' if c['diff'] > 0 else 'worse'}: the CI excludes 0 and the Holm-adjusted p is below "
                   f"{c['alpha']:g}")
    elif c["ci_clear"]:
        verdict = (f"not clear: the CI excludes 0, but the Holm-adjusted p is not below {c['alpha']:g} once the "
                   f"{n_tests} tests are counted")
    else:
        verdict = "no different within noise (the CI includes 0)"
    return (f"{c['question'][0].upper() + c['question'][1:]}: {c['a']} vs {c['b']}, NDCG@10 {c['diff']:+.4f} "
            f"(95% CI {c['ci_low']:+.4f} to {c['ci_high']:+.4f}; Wilcoxon p = {c['wilcoxon_p']:.2g}, "
            f"Holm-adjusted over {n_tests} tests {c['holm_p']:.2g}) — {verdict}.")


def describe_adapter(row: pd.Series, full: pd.Series, ratios: pd.Series, tolerance: float = 0.10) -> str:
    """One printed sentence for an adapter student (chapter 05): its retention and training cost (trainable
    parameters, peak memory, seconds, TPME) against the full fine-tuned `full` row of `results_table`, and its merged
    throughput per batch size (`ratios`, a column of `throughput_ratios`), the same speed when within `tolerance`."""
    same = bool((ratios - 1).abs().max() <= tolerance)
    return (f"{row['adapter'].upper()}: retention {row['ret_ndcg@10']:.1%} with {row['trainable_params']:,} trainable "
            f"parameters ({row['trainable_params'] / full['trainable_params']:.1%} of full fine-tuning), "
            f"{row['peak_mem_mb']:.1f} MiB peak training memory vs {full['peak_mem_mb']:.1f} MiB, "
            f"{row['total_seconds']:.1f} s vs {full['total_seconds']:.1f} s; TPME {row['tpme']:.2f} vs "
            f"{full['tpme']:.2f}. Merged, it runs at " + ", ".join(f"{v:.2f}x (batch {b})" for b, v in ratios.items())
            + " the full student's throughput: " + ("the same" if same else "NOT the same")
            + f" within {tolerance:.0%}.")


def results_table(runs: pd.DataFrame, per_user: pd.DataFrame, teacher_pu: pd.DataFrame, speed: pd.DataFrame,
                  reference: str, seed: int = 0) -> pd.DataFrame:
    """Chapter 05's table: each run with its retention per metric (paired CI over test users), TPME and speed-up.

    `speed` is `lab.bench.compare_speed`'s frame; students not timed get the speed of `reference` (a timed full
    fine-tuned student: all k-layer students have the same shapes), at the largest batch (`speedup`) and batch 1
    (`speedup_b1`).
    """
    ret = retention(per_user, teacher_pu, METRICS, seed=seed)
    wide = ret.pivot(index="name", columns="metric", values=["retention", "ci_low", "ci_high"])
    out = runs.set_index("name")
    for m in METRICS:
        out[f"ret_{m}"] = wide[("retention", m)]
        out[f"ret_{m}_low"] = wide[("ci_low", m)]
        out[f"ret_{m}_high"] = wide[("ci_high", m)]
    out["tpme"] = tpme(out)
    sp = speed.set_index(["model", "batch"])["speedup"]
    for col, b in (("speedup", int(speed["batch"].max())), ("speedup_b1", 1)):
        out[col] = [float(sp.get((n, b), sp[(reference, b)])) for n in out.index]
    return out.reset_index()


def throughput_ratios(speed: pd.DataFrame, names, reference: str, latency: str = "p10_ms") -> pd.DataFrame:
    """Throughput of each of `names` ÷ that of `reference` per batch size (rows), from one `compare_speed` frame:
    `reference`'s latency ÷ the model's (chapter 05: do merged LoRA / QLoRA students run as fast as the full
    fine-tuned one?). The default uses the 10th-percentile latencies, the passes least disturbed by other processes
    on a shared machine; "median_ms" gives the median's ratio."""
    lat = speed.pivot(index="batch", columns="model", values=latency)
    return pd.DataFrame({n: lat[reference] / lat[n] for n in names}, index=lat.index)

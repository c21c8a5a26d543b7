"""Measured speed and memory of real models: teacher vs compact students, timed in the same run (chapter 04).

Every model scores the full catalogue at the last position (`model(x, score="last")`, what inference needs) under
`torch.inference_mode`, on the same batches, with the timing repeats interleaved across models (alternating order) so
machine noise hits all of them. Peak memory is the weights plus the activation peak of one forward pass: on CUDA from
`torch.cuda.max_memory_allocated`, on CPU from the process's resident-set high-water mark (Linux `/proc/self/status`
VmHWM, reset through `/proc/self/clear_refs` after `malloc_trim`).
`python -m lab bench compact --profile P` runs `main`.
"""
from __future__ import annotations

import ctypes
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..book import paths, trained_or_fresh_teacher
from ..profiles import get_config, profile_config
from ..models import SeqRecModel, build_student, count_parameters
from ..selection import budgets, uniform_layers
from .timing import seconds

__all__ = ["BenchConfig", "summarize_times", "time_forward", "time_components", "activation_peak_mb", "weights_mb",
           "compare_speed", "random_histories", "compact_students", "run"]


@dataclass
class BenchConfig:
    """How the speed comparison is run."""

    batch_sizes: tuple = (1, 64, 256)  # users per forward pass
    repeats: int = 30  # timed forward passes per model and batch size (interleaved across models)
    warmup: int = 3  # untimed passes per model and batch size before timing
    memory: bool = True  # also measure peak memory (one extra pass per model and batch size)
    # torch threads while timing: 0 = $LAB_BENCH_THREADS, else $LAB_THREADS (a run told to share the machine: timing
    # it on every core beside another job oversubscribes them; ml100k's teacher took ~1.3 s a batch-1 pass that way,
    # 2026-12-07), else os.cpu_count(), what the machine has
    threads: int = 0

    def num_threads(self) -> int:
        """The thread count to time with: `threads`, else $LAB_BENCH_THREADS, else $LAB_THREADS, else
        os.cpu_count()."""
        env = os.environ.get("LAB_BENCH_THREADS") or os.environ.get("LAB_THREADS")
        return int(self.threads or env or os.cpu_count() or 1)

    @classmethod
    def for_profile(cls, profile: str) -> "BenchConfig":
        """The profile's `bench` section (`lab.profiles`)."""
        return profile_config(cls, profile, "bench")


def _call(model: SeqRecModel, x: torch.Tensor) -> float:
    """Seconds of one last-position scoring pass (inference mode, synchronised on CUDA)."""
    with torch.inference_mode():
        return seconds(lambda: model(x, score="last"), x.device)


def summarize_times(times, batch: int) -> dict:
    """Median, p10, p90 and mean latency (ms) of a list of seconds, and throughput = batch / median (users/s)."""
    t = np.asarray(times, dtype=float)
    med = float(np.median(t))
    return {"batch": int(batch), "repeats": int(len(t)), "median_ms": 1e3 * med,
            "p10_ms": 1e3 * float(np.quantile(t, 0.1)), "p90_ms": 1e3 * float(np.quantile(t, 0.9)),
            "mean_ms": 1e3 * float(t.mean()), "throughput": batch / med}


def _batch(history_pool: torch.Tensor, b: int, device: torch.device) -> torch.Tensor:
    """The first b histories of the pool (tiled when the pool is smaller).  # (b, T)"""
    reps = -(-b // history_pool.shape[0])
    return history_pool.repeat(reps, 1)[:b].to(device)


def time_forward(model: SeqRecModel, history: torch.Tensor, repeats: int = 30, warmup: int = 3) -> dict:
    """Latency of `model(history, score="last")` after `warmup` untimed passes: median, p10/p90, throughput."""
    model.eval()
    x = history.to(model.device)
    for _ in range(warmup):
        _call(model, x)
    return summarize_times([_call(model, x) for _ in range(repeats)], x.shape[0])


def time_components(model: SeqRecModel, history: torch.Tensor, repeats: int = 20, warmup: int = 3) -> dict:
    """Median ms of the pieces of a scoring pass: embeddings, the backbone (mask + layer stack + norm), last-position
    scoring, and the whole call, to show where the time goes."""
    model.eval()
    x = history.to(model.device)  # (B, T)
    mask = (x != 0).long()  # (B, T)
    with torch.inference_mode():
        e = model.embed(x)  # (B, T, H)
        h = model.run_backbone(e, mask).last_hidden_state  # (B, T, H)
    parts = {
        "embed": lambda: model.embed(x),
        "backbone": lambda: model.run_backbone(e, mask),
        "score": lambda: model.score(h[:, -1]),  # (B, N+1)
        "total": lambda: model(x, score="last"),
    }
    times = {k: [] for k in parts}
    with torch.inference_mode():
        for _ in range(warmup):
            for f in parts.values():
                f()
        for _ in range(repeats):
            for k, f in parts.items():
                times[k].append(seconds(f, x.device))
    return {f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}


# -- memory ---------------------------------------------------------------------------------------------------------
def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(key)


def activation_peak_mb(model: SeqRecModel, history: torch.Tensor, warm: bool = True) -> float:
    """Extra memory (MiB) one scoring pass needs on top of what is already allocated; NaN when it cannot be read.

    CUDA: `max_memory_allocated` after a reset. CPU (Linux): free heap pages are returned (`malloc_trim`), the
    resident high-water mark is reset (`/proc/self/clear_refs` = 5), and the peak is VmHWM - VmRSS after one pass.
    `warm` runs one untimed pass first (skip it when the model just ran on this batch).
    """
    model.eval()
    x = history.to(model.device)
    with torch.inference_mode():
        if warm:
            model(x, score="last")  # lazily created buffers do not count
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
            base = torch.cuda.memory_allocated(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            model(x, score="last")
            torch.cuda.synchronize(x.device)
            return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _proc_status_mb("VmRSS")
            model(x, score="last")
            return max(0.0, _proc_status_mb("VmHWM") - base)
        except (OSError, KeyError):  # not Linux, or /proc not writable
            return float("nan")


def weights_mb(model: torch.nn.Module) -> float:
    """Bytes of parameters and buffers, in MiB, with the packed weights of quantised layers that they do not show
    (INT8 dynamic linears, NF4 block scales: `lab.compression.stored_bytes`, chapter 06)."""
    from ..compression import stored_bytes

    return stored_bytes(model) / 2**20


# -- the comparison -------------------------------------------------------------------------------------------------
def compare_speed(models: dict[str, SeqRecModel], history_pool: torch.Tensor, batch_sizes=(1, 64, 256),
                  repeats: int = 30, warmup: int = 3, reference: str | None = None,
                  memory: bool = True) -> pd.DataFrame:
    """Time every model on the same batches in one run; one row per model and batch size.

    Repeats are interleaved (round r runs the models in order, round r+1 in reverse), so drifts in machine load hit
    every model alike. Ratios are to `reference` (default: the first model, the teacher): `speedup` = median
    throughput ratio, `speedup_p10` = the same from the 10th-percentile latencies (less sensitive to other processes
    on a shared machine), `ideal` = reference layers / model layers (the layer stack's share only), `params_ratio`,
    `mem_ratio`. `load_avg` is the machine's 1-minute load average when timing began.

    Args:
        models: name -> model (all on the same device).
        history_pool: (N, T) histories; each batch size takes the first b rows (tiled when N < b).
    """
    names = list(models)
    reference = reference or names[0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    device = next(models[reference].parameters()).device
    for m in models.values():
        m.eval()
    rows = []
    for b in batch_sizes:
        x = _batch(history_pool, int(b), device)  # (b, T)
        for name in names:
            for _ in range(warmup):
                _call(models[name], x)
        times = {name: [] for name in names}
        for r in range(repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                times[name].append(_call(models[name], x))
        for name in names:
            m = models[name]
            row = {"model": name, "n_layers": m.num_layers, **summarize_times(times[name], b),
                   "params": count_parameters(m), "weights_mb": weights_mb(m)}
            if memory:
                row["act_peak_mb"] = activation_peak_mb(m, x, warm=False)
                row["peak_mb"] = row["weights_mb"] + row["act_peak_mb"]
            rows.append(row)
    df = pd.DataFrame(rows)
    ref = df[df["model"] == reference].set_index("batch")
    df["speedup"] = df["throughput"] / df["batch"].map(ref["throughput"])
    df["speedup_p10"] = df["batch"].map(ref["p10_ms"]) / df["p10_ms"]
    df["ideal"] = models[reference].num_layers / df["n_layers"]
    df["params_ratio"] = df["params"] / int(ref["params"].iloc[0])
    if memory:
        df["mem_ratio"] = df["peak_mb"] / df["batch"].map(ref["peak_mb"])
    df["device"] = str(device)
    df["threads"] = torch.get_num_threads()
    df["load_avg"] = load
    return df


def random_histories(num_items: int, max_len: int, n: int, seed: int = 0) -> torch.Tensor:
    """Full-length random histories of items 1..num_items for speed tests (shape matters, not content).  # (n, T)"""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, num_items + 1, (n, max_len), generator=g)


def compact_students(teacher: SeqRecModel, ks=None) -> dict[str, SeqRecModel]:
    """The teacher and uniformly selected compact students of `ks` layers (None: k = L/8, L/4, L/2, `budgets`):
    {"teacher", "k=3", ...} (chapter 04)."""
    L = teacher.num_layers
    out = {"teacher": teacher.eval()}
    for k in (budgets(L) if ks is None else sorted({int(k) for k in ks})):
        if k < L:
            out[f"k={k}"] = build_student(teacher, uniform_layers(L, k)).eval()
    return out


def run(profile: str = "default", seed: int = 0, artefacts=None) -> dict:
    """`python -m lab bench compact`: time the teacher against uniform compact students, print a table, return a
    JSON-able dict. The run's trained teacher when there is one, else a fresh one of the profile's shape."""
    cfg, bcfg = get_config(profile, seed), BenchConfig.for_profile(profile)
    torch.set_num_threads(bcfg.num_threads())
    torch.manual_seed(seed)
    P = paths(profile, artefacts, seed)
    teacher, source = trained_or_fresh_teacher(P, cfg.model, cfg.data.n_items, cfg.data.max_len)
    teacher = teacher.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    models = compact_students(teacher)
    L = teacher.num_layers
    pool = random_histories(teacher.config.num_items, teacher.config.max_len, max(bcfg.batch_sizes), seed)
    print(f"[bench compact] {source}; L={L}, hidden={teacher.config.backbone_config.hidden_size}, "
          f"items={teacher.config.num_items}, T={teacher.config.max_len}; device={teacher.device}, "
          f"torch threads={torch.get_num_threads()} (os.cpu_count()={os.cpu_count()}); "
          f"{bcfg.repeats} interleaved repeats after {bcfg.warmup} warm-up passes; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.perf_counter()
    df = compare_speed(models, pool, bcfg.batch_sizes, bcfg.repeats, bcfg.warmup, memory=bcfg.memory)
    cols = ["model", "n_layers", "batch", "median_ms", "p10_ms", "p90_ms", "throughput", "speedup", "speedup_p10",
            "ideal", "params_ratio", "act_peak_mb", "peak_mb", "mem_ratio"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(df[[c for c in cols if c in df]].to_string(index=False))
    kq = max(1, L // 4)
    x = _batch(pool, max(bcfg.batch_sizes), teacher.device)
    parts = {name: time_components(models[name], x, repeats=bcfg.repeats, warmup=bcfg.warmup)
             for name in ("teacher", f"k={kq}") if name in models}
    for name, p in parts.items():
        print(f"[bench compact] where the time goes, {name} at batch {x.shape[0]}: "
              + ", ".join(f"{k[:-3]} {v:.2f} ms" for k, v in p.items()))
    bmax = max(bcfg.batch_sizes)
    q = df[(df["model"] == f"k={kq}") & (df["batch"] == bmax)].iloc[0]
    out = {
        "profile": profile, "teacher": source, "device": str(teacher.device), "threads": torch.get_num_threads(),
        "L": L, "k_quarter": kq, f"speedup_quarter_b{bmax}": float(q["speedup"]),
        f"speedup_p10_quarter_b{bmax}": float(q["speedup_p10"]), "ideal_quarter": L / kq,
        "params_ratio_quarter": float(q["params_ratio"]),
        "mem_ratio_quarter": float(q["mem_ratio"]) if "mem_ratio" in q else None,
        "speedup": {f"{r.model}_b{r.batch}": float(r.speedup) for r in df.itertuples() if r.model != "teacher"},
        "ideal": {r.model: float(r.ideal) for r in df.itertuples() if r.model != "teacher" and r.batch == bmax},
        "params_ratio": {r.model: float(r.params_ratio) for r in df.itertuples()
                         if r.model != "teacher" and r.batch == bmax},
        "mem_ratio": {f"{r.model}_b{r.batch}": float(r.mem_ratio) for r in df.itertuples()
                      if r.model != "teacher" and "mem_ratio" in df},
        "components_ms": parts, "load_avg_start": float(df["load_avg"].iloc[0]),
        "load_avg_end": os.getloadavg()[0], "seconds": time.perf_counter() - t0,
    }
    return out

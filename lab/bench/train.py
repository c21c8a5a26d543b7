"""Training throughput (issue 16, item 1): `python -m lab bench train --profile P`.

Times optimiser steps, on the device `lab.device()` finds, of (a) the profile's teacher with chapter 02's recipe
(full-catalogue CE at every position, AdamW, gradient clipping, the profile's batch size) and (b) a distillation step of
its uniform L/4 student (logit KD + the layer-wise term, the teacher run live under no_grad: a step's cost without
chapter 05's teacher cache). The inputs are random full-length histories of the profile's catalogue (shape matters,
not content). Per model: the median step seconds after warm-up, steps/s, samples/s and the seconds an epoch of the
profile's generated users would take (validation not included). The last line the CLI prints is the JSON object.

A step is `lab.train.fit`'s: bf16 autocast on CUDA (a no-op on the CPU), fused AdamW on CUDA, clipping. On CUDA the
benchmark also times the teacher's step with each of issue 16's changes on its own (`CUDA_VARIANTS`: float32 at the
CPU's batch, bf16, torch.compile and CUDA graphs at that batch, bigger batches), so each change is measured, and
`against` (a JSON this benchmark printed on another device, e.g. the 2-core CPU's) adds the epoch-time ratios of this
run to that one.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..book import device
from ..profiles import get_config
from ..distill import DistillConfig, DistillLoss, freeze_teacher, layer_mapping, layer_weights
from ..models import build_student, build_teacher
from ..selection import uniform_layers
from ..train import autocast, compile_mode, train_batch_size
from .compact import random_histories
from .timing import seconds

__all__ = ["step_seconds", "throughput", "CUDA_VARIANTS", "histories", "cuda_variants", "ratios_against", "run"]


def step_seconds(model, loss_fn, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int,
                 grad_clip: float = 1.0, bf16: bool = True, compile: bool | str = False) -> list[float]:
    """Wall seconds of each of `steps` optimiser steps (forward, backward, clipping, AdamW) after `warmup` untimed ones;
    `loss_fn(model, x, y, rows)` as `lab.train.fit` calls it, under its autocast (bf16 on CUDA unless `bf16` is
    False) and, with `compile` (True or a mode, as `TrainConfig.torch_compile`), on `torch.compile(model)`."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, **({"fused": True} if x.is_cuda else {}))  # as `fit` on a GPU
    rows = torch.arange(len(x), device=x.device)
    model.train()
    net = torch.compile(model, mode=compile_mode(compile)) if compile else model
    amp = (lambda: autocast(x.device)) if bf16 else (lambda: torch.autocast(x.device.type, enabled=False))

    def step():
        with amp():
            loss = loss_fn(net, x, y, rows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()

    times = [seconds(step, x.device) for _ in range(warmup + steps)]
    return times[warmup:]


def throughput(times: list[float], batch_size: int, n_users: int) -> dict:
    """Median step seconds, steps/s, samples/s and the seconds of an epoch of `n_users` rows at `batch_size`."""
    step = float(np.median(times))
    return {"step_s": step, "steps_per_s": 1.0 / step, "samples_per_s": batch_size / step,
            "epoch_s": math.ceil(n_users / batch_size) * step, "batch_size": batch_size, "steps_timed": len(times)}


# issue 16, item 1: the teacher's step with one change at a time (CUDA only): (name, batch or None for the CPU's
# batch, bf16 autocast, torch.compile: False or a mode). Batch 64 first: the default teacher does not learn from
# bigger batches (TrainConfig.cuda_batch_size), so the steps at its own batch must get faster; the bigger batches are
# for reference.
CUDA_VARIANTS = (("fp32", None, False, False), ("bf16", None, True, False), ("bf16_compile", None, True, "default"),
                 ("bf16_cudagraphs", None, True, "reduce-overhead"), ("bf16_b256", 256, True, False),
                 ("bf16_b1024", 1024, True, False))


def histories(n_items: int, max_len: int, batch: int, seed: int, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, next items) of `batch` random full-length histories, on `dev`.  # (B, T) each"""
    x = random_histories(n_items, max_len, batch, seed).to(dev)  # (B, T)
    return x, torch.cat([x[:, 1:], random_histories(n_items, 1, batch, seed + 1).to(dev)], dim=1)


def cuda_variants(cfg, teacher, ce, seed: int, steps: int, warmup: int, names=None) -> list[dict]:
    """The teacher's step under each of `CUDA_VARIANTS` (issue 16's changes, measured one at a time), or the ones
    `names` lists (ValueError naming the variants for an unknown one)."""
    known = [v[0] for v in CUDA_VARIANTS]
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown CUDA variant(s) {unknown}; choose from {known}")
    out = []
    for name, batch, bf16, comp in (v for v in CUDA_VARIANTS if names is None or v[0] in names):
        B = batch or cfg.train.batch_size
        x, y = histories(cfg.data.n_items, cfg.data.max_len, B, seed, next(teacher.parameters()).device)
        times = step_seconds(teacher, ce, x, y, steps, warmup + (3 if comp else 0), cfg.train.grad_clip, bf16, comp)
        out.append({"variant": name, "bf16": bf16, "compile": comp, **throughput(times, B, cfg.data.n_users)})
    return out


def ratios_against(out: dict, other: dict) -> dict:
    """Epoch-time ratios of another device's `bench train` JSON to this run's (>1: this run is faster): the teacher's
    and the KD step's at their own batches, and each CUDA variant's against the other's teacher."""
    r = {"against_device": other.get("device"), "against_threads": other.get("threads"),
         "teacher_epoch_speedup": other["teacher"]["epoch_s"] / out["teacher"]["epoch_s"],
         "distill_epoch_speedup": other["distill"]["epoch_s"] / out["distill"]["epoch_s"]}
    for v in out.get("cuda_variants", []):
        r[f"teacher_epoch_speedup_{v['variant']}"] = other["teacher"]["epoch_s"] / v["epoch_s"]
    return r


def run(profile: str = "default", seed: int = 0, steps: int = 10, warmup: int = 2, against: dict | None = None,
        variants: list[str] | None = None) -> dict:
    """`python -m lab bench train`: the teacher's CE step and the L/4 student's live KD + layer step (and on CUDA the
    teacher under each of `CUDA_VARIANTS`); prints a line per model and returns the JSON-able summary, with the
    epoch-time ratios to `against` (another run's JSON) when given; `variants` picks some of `CUDA_VARIANTS`."""
    cfg = get_config(profile, seed)
    dev = device()
    torch.manual_seed(seed)
    N, T, B = cfg.data.n_items, cfg.data.max_len, train_batch_size(cfg.train, dev)  # the GPU batch on a GPU
    x, y = histories(N, T, B, seed, dev)  # (B, T) histories and their next items
    teacher = build_teacher(cfg.model, N, T).to(dev)
    ce = lambda m, xb, yb, rows: m(xb, labels=yb, score="none").loss  # noqa: E731
    out = {"bench": "train", "profile": profile, "device": str(dev), "threads": torch.get_num_threads(),
           "teacher": {"n_layers": teacher.num_layers,
                       **throughput(step_seconds(teacher, ce, x, y, steps, warmup, cfg.train.grad_clip), B,
                                    cfg.data.n_users)}}
    if dev.type == "cuda":  # before the teacher is frozen for the KD step
        out["cuda_variants"] = cuda_variants(cfg, teacher, ce, seed, steps, warmup, variants)
    L = teacher.num_layers
    k = max(1, L // 4)
    student = build_student(teacher, uniform_layers(L, k)).to(dev)
    freeze_teacher(teacher)
    dcfg = DistillConfig.for_profile(profile).with_variant("kd+uniform")
    t_layers = layer_mapping(k, L, dcfg.mapping, student.config.source_layers)
    loss = DistillLoss(teacher, dcfg, t_layers, layer_weights("uniform", t_layers))
    out["distill"] = {"n_layers": k, "variant": dcfg.variant, "teacher": "live",
                      **throughput(step_seconds(student, loss, x, y, steps, warmup, cfg.train.grad_clip), B,
                                   cfg.data.n_users)}
    rows = [("teacher", out["teacher"]), ("distill", out["distill"])]
    rows += [(f"teacher {v['variant']}", {**v, "n_layers": L}) for v in out.get("cuda_variants", [])]
    for name, r in rows:
        print(f"[bench train] {profile} {name} ({r['n_layers']} layers, batch {r['batch_size']}, {dev}): "
              f"{r['step_s'] * 1e3:.1f} ms per step, {r['samples_per_s']:.0f} samples/s, {r['epoch_s']:.1f} s per "
              f"epoch of {cfg.data.n_users} users", flush=True)
    if against is not None:
        out["against"] = ratios_against(out, against)
        print(f"[bench train] epoch time, {against.get('device')} / this run: teacher "
              f"{out['against']['teacher_epoch_speedup']:.1f}x, KD step {out['against']['distill_epoch_speedup']:.1f}x",
              flush=True)
    return out

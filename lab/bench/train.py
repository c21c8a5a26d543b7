"""Training throughput (issue 16, item 1): `python -m lab bench train --profile P`.

Times optimiser steps, on the device `lab.device()` finds, of (a) the profile's teacher with chapter 02's recipe
(full-catalogue CE at every position, AdamW, gradient clipping, the profile's batch size) and (b) a distillation step of
its uniform L/4 student (logit KD + the layer-wise term, the teacher run live under no_grad: a step's cost without
chapter 05's teacher cache). The inputs are random full-length histories of the profile's catalogue (shape matters,
not content). Per model: the median step seconds after warm-up, steps/s, samples/s and the seconds an epoch of the
profile's generated users would take (validation not included). The last line the CLI prints is the JSON object.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..book import device
from ..config import get_config
from ..distill import DistillConfig, DistillLoss, freeze_teacher, layer_mapping, layer_weights
from ..models import build_student, build_teacher
from ..selection import uniform_layers
from ..train import train_batch_size
from .compact import random_histories
from .timing import seconds


def step_seconds(model, loss_fn, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int,
                 grad_clip: float = 1.0) -> list[float]:
    """Wall seconds of each of `steps` optimiser steps (forward, backward, clipping, AdamW) after `warmup` untimed ones;
    `loss_fn(model, x, y, rows)` as `lab.train.fit` calls it."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, **({"fused": True} if x.is_cuda else {}))  # as `fit` on a GPU
    rows = torch.arange(len(x), device=x.device)
    model.train()

    def step():
        loss = loss_fn(model, x, y, rows)
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


def run(profile: str = "default", seed: int = 0, steps: int = 10, warmup: int = 2) -> dict:
    """`python -m lab bench train`: the teacher's CE step and the L/4 student's live KD + layer step; prints a line
    per model and returns the JSON-able summary."""
    cfg = get_config(profile, seed)
    dev = device()
    torch.manual_seed(seed)
    N, T, B = cfg.data.n_items, cfg.data.max_len, train_batch_size(cfg.train, dev)  # the GPU batch on a GPU
    x = random_histories(N, T, B, seed).to(dev)  # (B, T)
    y = torch.cat([x[:, 1:], random_histories(N, 1, B, seed + 1).to(dev)], dim=1)  # (B, T) the next item
    teacher = build_teacher(cfg.model, N, T).to(dev)
    ce = lambda m, xb, yb, rows: m(xb, labels=yb, score="none").loss  # noqa: E731
    out = {"bench": "train", "profile": profile, "device": str(dev), "threads": torch.get_num_threads(),
           "teacher": {"n_layers": teacher.num_layers,
                       **throughput(step_seconds(teacher, ce, x, y, steps, warmup, cfg.train.grad_clip), B,
                                    cfg.data.n_users)}}
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
    for name in ("teacher", "distill"):
        r = out[name]
        print(f"[bench train] {profile} {name} ({r['n_layers']} layers, batch {B}, {dev}): {r['step_s'] * 1e3:.0f} ms "
              f"per step, {r['samples_per_s']:.0f} samples/s, {r['epoch_s']:.0f} s per epoch of {cfg.data.n_users} "
              "users", flush=True)
    return out

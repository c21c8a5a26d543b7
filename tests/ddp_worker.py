"""Worker of tests/test_distributed.py, one `accelerate launch --num_processes N` for two checks (a launch costs ~10 s):

- `fisher_case()`: the Fisher of a tiny float64 model over 8 users, every process taking its own shard of the users,
  all-gathered (`estimate_fisher_sharded`); rank 0 writes the merged estimate to argv[1] (.npz).
- `distill_curve()`: distil a tiny 4-layer teacher into a 2-layer student (KD + uniform layer term at every labelled
  position, live teacher) with `lab.train.fit`; rank 0 writes each step's global-batch loss to argv[2] (.json).

Run without the launcher, both functions give the one-process numbers the test compares with."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from lab.profiles import get_config
from lab.constants import IGNORE, PAD
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.models import build_model, build_student

sys.path.insert(0, str(Path(__file__).parent))
from toys import tiny_model, toy_data  # noqa: E402


def fisher_case(n_users: int = 8):
    """(model, inputs, labels): a 2-layer float64 Llama recommender with perturbed weights, histories of mixed length."""
    cfg = dataclasses.replace(get_config("smoke").model, num_layers=2, hidden_size=16, num_heads=2,
                              intermediate_size=24, item_dim=16)
    torch.manual_seed(0)
    m = build_model(cfg, 20, 8).to(torch.float64)
    for p in m.parameters():
        with torch.no_grad():
            p.add_(0.2 * torch.randn_like(p))
    data = rec_data_from_sequences(toy_markov_sequences(16, 20, 10, seed=0), 20, 8)
    x, y = data.train_inputs[:n_users].clone(), data.train_labels[:n_users].clone()
    for i in range(n_users):  # histories of different lengths
        k = (3 * i) % 7
        x[i, :k], y[i, :k] = PAD, IGNORE
    return m, x, y


def to_arrays(est) -> dict:
    return {"per_sample": est.per_sample, **{f"diag:{k}": v.numpy() for k, v in est.diag.items()}}


def distill_curve() -> list[float]:
    """Each step's global-batch loss of 2 epochs of distillation (batch 16 of 64 toy users: 8 steps)."""
    from lab.config import TrainConfig
    from lab.distill import DistillConfig, DistillLoss, freeze_teacher, layer_mapping, layer_weights
    from lab.train import fit

    data = toy_data(64)
    teacher = tiny_model(4, layer_std=0.3)
    student = build_student(teacher, [0, 3])
    freeze_teacher(teacher)
    cfg = dataclasses.replace(DistillConfig.for_profile("smoke").with_variant("kd+uniform"), positions="all")
    t_layers = layer_mapping(2, 4, cfg.mapping, student.config.source_layers)
    loss = DistillLoss(teacher, cfg, t_layers, layer_weights("uniform", t_layers))
    losses: list[float] = []
    fit(student, data, TrainConfig(epochs=2, batch_size=16, lr=3e-3, patience=5), seed=0, progress=False,
        loss_fn=loss, step_losses=losses)
    return losses


if __name__ == "__main__":
    import torch.distributed as dist
    from accelerate import PartialState

    from lab.fisher import estimate_fisher_sharded

    state = PartialState(cpu=not torch.cuda.is_available())  # the process group (gloo on CPU)
    assert dist.is_initialized() and dist.get_world_size() == state.num_processes
    torch.set_num_threads(1)
    m, x, y = fisher_case()
    est = estimate_fisher_sharded(m, x, y, method="hooks", chunk_size=3)
    if state.is_main_process:
        np.savez(sys.argv[1], world_size=state.num_processes, **to_arrays(est))
    curve = distill_curve()  # lab.train.fit's Accelerator shares this process group
    if state.is_main_process:
        Path(sys.argv[2]).write_text(json.dumps({"world_size": state.num_processes, "step_loss": curve}))
    state.wait_for_everyone()

"""Worker of tests/test_distributed.py: the Fisher of a tiny float64 model over 8 users, computed by every process of
`accelerate launch --num_processes N` on its own shard of the users and all-gathered (`estimate_fisher_sharded`);
rank 0 writes the merged estimate to argv[1] (.npz). `case()` is the model and users both sides use."""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
import torch

from lab.config import get_config
from lab.constants import IGNORE, PAD
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.models import build_model


def case(n_users: int = 8):
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


if __name__ == "__main__":
    import torch.distributed as dist
    from accelerate import PartialState

    from lab.fisher import estimate_fisher_sharded

    state = PartialState(cpu=not torch.cuda.is_available())  # the process group (gloo on CPU)
    assert dist.is_initialized() and dist.get_world_size() == state.num_processes
    m, x, y = case()
    est = estimate_fisher_sharded(m, x, y, method="hooks", chunk_size=3)
    if state.is_main_process:
        np.savez(sys.argv[1], world_size=state.num_processes, **to_arrays(est))
    state.wait_for_everyone()

"""Layer-importance signals other than the Fisher, and the ground truth they are judged against (chapter 03).

- Block Influence (ShortGPT, Men et al. 2024): BI_l = 1 - E[cos(h_in, h_out)] over real (non-pad) tokens.
- Angular distance (Gromov et al. 2024): arccos(cos(h_l, h_{l+n})) / pi on the last token, h_l = the input of layer l;
  n = 1 per layer, any n for choosing a contiguous block (`angular_block_distance`, used by chapter 04).
- Gradient norm: ||grad of the mean training loss|| over each layer's parameters.
- Weight magnitude: mean |w| over the weights of each layer's linear projections (q/k/v/o, gate/up/down), as in
  magnitude pruning; RMSNorm gains and biases are left out.
- Ablation drop (ground truth): validation NDCG@10 of the teacher minus that of `build_student(teacher, all but l)`.

Higher = more important for every signal. Histories are the validation histories unless given.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .constants import IGNORE, PAD
from .data import RecData
from .evaluation import bootstrap_ci, score_split
from .fisher.subsets import sample_rows
from .fisher.tables import importance_rows
from .models import build_student

__all__ = ["LayerPass", "layer_pass", "stream_norms", "block_influence", "angular_per_sample", "angular_block_distance",
           "grad_norm", "weight_magnitude", "subsample_valid", "ablation_drop", "importance_signals"]


@dataclass
class LayerPass:
    """Per-sample statistics of one forward pass through every decoder layer."""

    bi_sum: np.ndarray  # (S, L) sum over the sample's real tokens of 1 - cos(h_in, h_out)
    n_tok: np.ndarray  # (S,) real tokens per sample
    last: torch.Tensor  # (S, L+1, H) last-token states: [l] = input of layer l, [L] = output of the last layer


def _history(data_or_history) -> torch.Tensor:
    return data_or_history.valid_history if isinstance(data_or_history, RecData) else data_or_history


@torch.no_grad()
def layer_pass(model, history, batch_size: int = 256) -> LayerPass:
    """One eval-mode pass over `history` (B, T) with hooks on every decoder layer (outputs before the final norm)."""
    history = _history(history)
    L = model.num_layers
    cur: dict = {}

    def hook(i):
        def f(mod, args, kwargs, out):
            cur[i] = (args[0] if args else kwargs["hidden_states"], out[0] if isinstance(out, tuple) else out)
        return f

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(model.layers)]
    was = model.training
    model.eval()
    bi, ntok, last = [], [], []
    dev = next(model.parameters()).device
    try:
        for s in range(0, len(history), batch_size):
            x = history[s:s + batch_size].to(dev)
            real = (x != PAD).float()  # (B, T)
            model(x, score="none")
            cos = torch.stack([torch.cosine_similarity(cur[i][0].float(), cur[i][1].float(), dim=-1)
                               for i in range(L)], 1)  # (B, L, T)
            bi.append(((1 - cos) * real[:, None]).sum(-1).cpu())  # (B, L)
            ntok.append(real.sum(-1).cpu())
            last.append(torch.stack([cur[i][0][:, -1] for i in range(L)] + [cur[L - 1][1][:, -1]], 1).float().cpu())
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return LayerPass(torch.cat(bi).double().numpy(), torch.cat(ntok).double().numpy(), torch.cat(last))


def stream_norms(model, data_or_history, batch_size: int = 256) -> np.ndarray:
    """Mean last-token norm of the residual stream each decoder layer reads (its input), over the given validation
    histories (chapter 03: does the Fisher per parameter follow the stream's scale?).  # (L,)"""
    lp = layer_pass(model, data_or_history, batch_size)
    return lp.last[:, :model.num_layers].norm(dim=-1).mean(0).numpy()


def block_influence(model, history=None, batch_size: int = 256, n_boot: int = 1000, seed: int = 0,
                    lp: LayerPass | None = None):
    """(value, ci_low, ci_high), each (L,): 1 - token-weighted mean cos(h_in, h_out); CIs resample users."""
    lp = lp or layer_pass(model, history, batch_size)
    S = len(lp.n_tok)
    vals = np.concatenate([lp.bi_sum, lp.n_tok[:, None]], 1)  # ratio of means: sum(bi) / sum(tokens)
    ratio = lambda m: m[:-1] / max(m[-1], 1e-12)  # noqa: E731
    if n_boot:
        return bootstrap_ci(vals, n_boot, seed=seed, transform=ratio)
    v = ratio(vals.mean(0)) if S else np.full(lp.bi_sum.shape[1], np.nan)
    return v, np.full_like(v, np.nan), np.full_like(v, np.nan)


def angular_per_sample(last: torch.Tensor, n: int = 1) -> np.ndarray:
    """arccos(cos(h_l, h_{l+n})) / pi per sample and start l from last-token states (S, L+1, H).  # -> (S, L-n+1)"""
    a, b = last[:, : last.shape[1] - n], last[:, n:]
    cos = torch.cosine_similarity(a.double(), b.double(), dim=-1).clamp(-1, 1)
    return (torch.arccos(cos) / torch.pi).numpy()


def angular_block_distance(model, data, n: int, batch_size: int = 256, lp: LayerPass | None = None) -> np.ndarray:
    """Mean angular distance between the input of layer l and the input of layer l+n, for every start l (chapter 03).

    Chapter 04 removes the block of n consecutive layers with the SMALLEST distance (Gromov et al. 2024).
    Args:
        data: a RecData (its validation histories) or a (B, T) history tensor.
    Returns:
        (L - n + 1,) array indexed by the start layer l.
    """
    lp = lp or layer_pass(model, data, batch_size)
    if not 1 <= n <= lp.last.shape[1] - 1:
        raise ValueError(f"n must be in [1, {lp.last.shape[1] - 1}], got {n}")
    return angular_per_sample(lp.last, n).mean(0)


def grad_norm(model, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 128) -> np.ndarray:
    """(L,) L2 norm, per decoder layer, of the gradient of the mean training CE over the given sequences."""
    was = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    dev = next(model.parameters()).device
    total = int((labels != IGNORE).sum())
    for s in range(0, len(inputs), batch_size):
        x, y = inputs[s:s + batch_size].to(dev), labels[s:s + batch_size].to(dev)
        n = int((y != IGNORE).sum())
        if n:
            (model(x, labels=y, score="none").loss * n / total).backward()
    out = np.array([float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in layer.parameters()
                                         if p.grad is not None))) for layer in model.layers])
    model.zero_grad(set_to_none=True)
    model.train(was)
    return out


def _linear_weights(layer: torch.nn.Module) -> list[torch.Tensor]:
    """The weight matrices of a decoder layer's linear projections (q/k/v/o, gate/up/down): no norms, no biases."""
    ws = [m.weight for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    if not ws:
        raise ValueError(f"{type(layer).__name__} has no nn.Linear projections")
    return ws


def weight_magnitude(model) -> np.ndarray:
    """(L,) mean |w| over the linear projection weights of each decoder layer (chapter 03).

    Magnitude pruning ranks the weights of linear maps; RMSNorm gains (initialised at 1, a per-channel scale) would
    otherwise dominate a small layer's mean, so they are left out, as are biases.
    """
    return np.array([float(torch.cat([w.detach().abs().flatten() for w in _linear_weights(layer)]).mean())
                     for layer in model.layers])


def subsample_valid(data: RecData, n_users: int | None = 0, seed: int = 0) -> RecData:
    """The same data with a seeded random subset of `n_users` validation rows (0, None or >= all keeps everything):
    the one validation subsampler of chapters 03 and 04 (ablation, other signals, stream norms, the greedy
    validation search), so the same `n_users` and seed always mean the same users (`lab.fisher.subsets.sample_rows`)."""
    n = len(data.valid_target)
    if not n_users or n_users >= n:
        return data
    idx = torch.from_numpy(sample_rows(n, n_users, seed))
    return dataclasses.replace(data, valid_history=data.valid_history[idx], valid_target=data.valid_target[idx],
                               valid_users=data.valid_users[idx], valid_seen=data.valid_seen[idx])


def ablation_drop(teacher, data: RecData, n_users: int = 0, seed: int = 0, n_boot: int = 1000,
                  metric: str = "ndcg@10", batch_size: int = 512) -> pd.DataFrame:
    """Single-layer ablation: for every layer l, validation `metric` of the teacher minus that of the real compact
    model without l (`build_student`), on `n_users` validation users (`subsample_valid`; 0 = all). Paired bootstrap
    CIs over users (`n_boot` = 0: none). The one "teacher minus one layer" of the book: chapter 03's ground truth,
    and chapter 04's when chapter 03's table lacks it (`lab.selection.GreedyValidSearch.single_layer_drops`).

    Returns a frame: layer_idx, value (the drop), ci_low, ci_high, teacher, without (the two means), n_users.
    """
    sub = subsample_valid(data, n_users, seed)
    mean, base = score_split(teacher, sub, "valid", batch_size=batch_size)
    base = base[metric].to_numpy()
    L = teacher.num_layers
    rows = []
    for i in range(L):
        student = build_student(teacher, [j for j in range(L) if j != i])
        mean_i, per = score_split(student, sub, "valid", batch_size=batch_size)
        per = per[metric].to_numpy()
        d, lo, hi = (bootstrap_ci(base - per, n_boot, seed=seed) if n_boot else
                     (mean[metric] - mean_i[metric], np.nan, np.nan))
        rows.append({"layer_idx": i, "value": d, "ci_low": lo, "ci_high": hi, "teacher": mean[metric],
                     "without": mean_i[metric], "n_users": len(base)})
    return pd.DataFrame(rows)


def _raw(v_lo_hi):
    v, lo, hi = v_lo_hi
    return v, "raw", lo, hi


def importance_signals(model, data: RecData, n_users: int = 0, n_boot: int = 1000, seed: int = 0,
                       grad_samples: int = 512, batch_size: int = 256, ablation: bool = True) -> pd.DataFrame:
    """Every non-Fisher signal as importance-table rows (norm "raw"): block_influence, angular, grad_norm,
    magnitude and (if `ablation`) ablation_drop. `n_users` subsamples validation users (0 = all)."""
    sub = subsample_valid(data, n_users, seed)
    lp = layer_pass(model, sub.valid_history, batch_size)
    frames = [importance_rows("block_influence", *_raw(block_influence(model, lp=lp, n_boot=n_boot, seed=seed)))]
    ang = angular_per_sample(lp.last, 1)  # (S, L)
    frames.append(importance_rows("angular", *_raw(bootstrap_ci(ang, n_boot, seed=seed))) if n_boot
                  else importance_rows("angular", ang.mean(0)))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train_inputs), generator=g)[:grad_samples]
    frames.append(importance_rows("grad_norm", grad_norm(model, data.train_inputs[idx], data.train_labels[idx])))
    frames.append(importance_rows("magnitude", weight_magnitude(model)))
    if ablation:
        ab = ablation_drop(model, data, n_users, seed, n_boot)
        frames.append(importance_rows("ablation_drop", ab["value"], "raw", ab["ci_low"], ab["ci_high"]))
    return pd.concat(frames, ignore_index=True)

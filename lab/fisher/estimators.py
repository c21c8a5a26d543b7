"""Fisher estimators: the per-user loop (reference), vmap(grad), batched hooks, ghost norms, the wrong one (ch. 03)."""
from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..profiles import profile_config
from ..constants import IGNORE, PAD
from ..models import mask_pad

__all__ = ["ESTIMATORS", "NORMS", "SIGNALS", "GROUP_ORDER", "FisherConfig", "param_key", "fisher_params",
           "FisherEstimate", "normalise", "model_logits", "sample_nll", "draw_labels", "eval_mode", "fisher_loop",
           "fisher_vmap", "method_attention", "fisher_hooks", "batchgrad_squared", "estimate_fisher", "compare",
           "merge_shards", "estimate_fisher_sharded"]

ESTIMATORS = ("fisher_empirical", "fisher_true", "batchgrad_squared")
NORMS = ("per_param", "total", "max")
SIGNALS = ("fisher_empirical", "fisher_true", "batchgrad_squared", "block_influence", "angular", "grad_norm",
           "magnitude", "ablation_drop")
GROUP_ORDER = ("q", "k", "v", "o", "gate", "up", "down", "input_norm", "post_norm", "embedding", "final_norm",
               "out_proj")
_GROUP_OF = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up",
             "down_proj": "down", "input_layernorm": "input_norm", "post_attention_layernorm": "post_norm",
             "query_key_value": "qkv", "dense": "o", "dense_h_to_4h": "up", "dense_4h_to_h": "down"}  # gpt_neox's
_SKIP = ("backbone.embed_tokens.", "backbone.embed_in.")  # the backbone's own token table (Llama-style, GPT-NeoX):
# items enter as inputs_embeds, it is never used
_FINAL_NORMS = ("backbone.norm.", "backbone.final_layer_norm.")  # Llama-style, GPT-NeoX


@dataclass
class FisherConfig:
    """How the Fisher of chapter 03 is estimated."""

    n_samples: int = 1024  # users (training sequences) the Fisher averages over
    n_draws: int = 2  # Monte Carlo label draws per user for the true Fisher
    chunk_size: int = 128  # users per batched forward (hooks / vmap)
    method: str = "hooks"  # "hooks" (fastest), "vmap", "loop" (reference) or "ghost" (norms only)
    wrong_batch_size: int = 64  # mini-batch size of the (wrong) squared batch gradient
    n_boot: int = 1000  # bootstrap resamples for CIs
    n_check: int = 8  # users on which the fast methods are checked against the loop (float64)
    exact_tol: float = 1e-10  # largest float64 relative difference to the loop that still counts as agreement
    ablation_users: int = 1000  # validation users for the ablation and representation signals (0 = all)
    bench_fast: int = 256  # users timed for the fast methods in `benchmark`
    bench_loop: int = 32  # users timed for the per-sample loop in `benchmark`
    bench_rounds: int = 2  # timing rounds (methods interleaved; the best round counts)

    @classmethod
    def for_profile(cls, profile: str) -> "FisherConfig":
        """The profile's `fisher` section (`lab.profiles`)."""
        return profile_config(cls, profile, "fisher")


# ---------------------------------------------------------------------------------------------------------------------
# parameters and groups
def param_key(name: str, num_layers: int) -> tuple[int, str]:
    """(layer_idx, group) of a parameter name; layer_idx -1 = embedding side, L = head side."""
    m = re.search(r"(?:^|\.)layers\.(\d+)\.(.+)$", name)
    if m:
        sub = m.group(2).split(".")
        mod = sub[-2] if len(sub) >= 2 else sub[-1]
        return int(m.group(1)), _GROUP_OF.get(mod, mod)
    if name.startswith(("item_emb.", "in_proj.", "text_proj.")):
        return -1, "embedding"
    if name.startswith(_FINAL_NORMS):
        return num_layers, "final_norm"
    if name.startswith("out_proj."):
        return num_layers, "out_proj"
    return -1, name.rsplit(".", 1)[0]


def _num_layers(model: nn.Module) -> int:
    return int(getattr(model, "num_layers", 0))


def fisher_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters the Fisher covers: every trainable one except the backbone's unused token table."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith(_SKIP)]


def _keys(model: nn.Module):
    L = _num_layers(model)
    params = fisher_params(model)
    keys = sorted({param_key(n, L) for n, _ in params},
                  key=lambda k: (k[0], GROUP_ORDER.index(k[1]) if k[1] in GROUP_ORDER else 99, k[1]))
    col = {k: i for i, k in enumerate(keys)}
    numel = np.zeros(len(keys))
    for n, p in params:
        numel[col[param_key(n, L)]] += p.numel()
    return params, keys, col, numel


@dataclass
class FisherEstimate:
    """Per-sample squared gradient norms per (layer_idx, group), and optionally the full diagonal."""

    estimator: str  # "fisher_empirical", "fisher_true" or "batchgrad_squared"
    method: str  # "loop", "vmap", "hooks", "ghost" or "batch"
    keys: list  # (layer_idx, group) of each column of per_sample
    numel: np.ndarray  # (K,) parameters per group
    per_sample: np.ndarray  # (S, K) squared gradient norm per sample (mean over MC draws); batches for the wrong one
    n_layers: int  # L
    diag: dict | None = None  # parameter name -> diagonal Fisher (mean over samples), float64
    seconds: float = 0.0  # wall-clock time of the estimate
    meta: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.per_sample.shape[0])

    def per_layer(self) -> np.ndarray:
        """(S, L) per-sample squared gradient norm of each decoder layer's parameters."""
        out = np.zeros((self.n_samples, self.n_layers))
        for j, (l, _) in enumerate(self.keys):
            if 0 <= l < self.n_layers:
                out[:, l] += self.per_sample[:, j]
        return out

    def layer_numel(self) -> np.ndarray:
        """(L,) parameters per decoder layer."""
        out = np.zeros(self.n_layers)
        for j, (l, _) in enumerate(self.keys):
            if 0 <= l < self.n_layers:
                out[l] += self.numel[j]
        return out

    def layer_values(self, norm: str = "per_param", rows=None) -> np.ndarray:
        """(L,) layer scores under a normalisation: total (trace), per_param (mean per parameter), max (total / max)."""
        pl = self.per_layer() if rows is None else self.per_layer()[rows]
        return normalise(pl.mean(0), self.layer_numel(), norm)


def normalise(total: np.ndarray, numel: np.ndarray, norm: str) -> np.ndarray:
    """Named normalisations of per-layer totals: "total", "per_param" (/ numel), "max" (/ largest total)."""
    total = np.asarray(total, dtype=float)
    if norm == "total":
        return total
    if norm == "per_param":
        return total / np.maximum(numel, 1)
    if norm == "max":
        return total / max(float(np.max(total)), 1e-300)
    raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")


# ---------------------------------------------------------------------------------------------------------------------
# the per-sample loss
def _is_seqrec(model) -> bool:
    return hasattr(model, "item_table") and hasattr(model, "backbone")


def model_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Logits at every position: SeqRecModel (B, T) -> (B, T, N+1); any other module is called as `model(inputs)`."""
    return _logits_call(model, _is_seqrec(model), inputs)


def _logits_call(call, seqrec: bool, inputs: torch.Tensor) -> torch.Tensor:
    return call(inputs, score="all").logits if seqrec else call(inputs)


def sample_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample negative log-likelihood: sum over labelled positions.  (B, T, N) & (B, T) -> (B,)

    Unlabelled positions gather column 0, which is -inf for a recommender (PAD, `mask_pad`): `where`, not a product
    with the mask, keeps their -inf out of the sum (−inf·0 = NaN) and sends them zero gradient.
    """
    keep = labels != IGNORE
    logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return -torch.where(keep, logp, 0.0).sum(-1)


@torch.no_grad()
def draw_labels(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, n_draws: int, seed: int = 0,
                chunk_size: int = 256) -> torch.Tensor:
    """Labels drawn from the model's predictive distribution where `labels` is not IGNORE.  # -> (D, S, T)

    Every method gets the same draws, so the true-Fisher implementations are compared exactly. A recommender's PAD
    has probability 0 (`mask_pad`), so it is never drawn.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    with eval_mode(model):
        for i in range(0, inputs.shape[0], chunk_size):
            p = torch.softmax(model_logits(model, inputs[i:i + chunk_size]).double(), -1).cpu()  # (C, T, N)
            y = torch.multinomial(p.reshape(-1, p.shape[-1]), n_draws, replacement=True, generator=g)  # (C*T, D)
            y = y.T.reshape(n_draws, *p.shape[:2])  # (D, C, T)
            out.append(torch.where(labels[i:i + chunk_size].cpu() != IGNORE, y, IGNORE))
    return torch.cat(out, 1).to(labels.device)


@contextlib.contextmanager
def eval_mode(model: nn.Module, attn: str | None = None):
    """Eval mode (no dropout) and optionally another attention implementation, restored on exit."""
    was = model.training
    cfgs = [c for c in {id(c): c for c in _attn_configs(model)}.values()] if attn else []
    old = [c._attn_implementation for c in cfgs]
    model.eval()
    for c in cfgs:
        c._attn_implementation = attn
    try:
        yield model
    finally:
        for c, o in zip(cfgs, old):
            c._attn_implementation = o
        model.train(was)


def _vmap_attention() -> str:
    """Register (once) and name an eager attention safe under vmap and in float64.

    sdpa's mask builder branches on the data (no vmap); HF eager softmaxes in float32, where float64's mask value
    becomes -inf and the fully masked rows of left padding give NaN. This one softmaxes in the query's dtype.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    def attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)  # (B, heads, T, d)
        w = query @ key.transpose(2, 3) * scaling  # (B, heads, T, T)
        if attention_mask is not None:
            w = w + attention_mask[..., : key.shape[-2]]
        w = torch.softmax(w, -1, dtype=torch.promote_types(query.dtype, torch.float32)).to(query.dtype)
        return (w @ value).transpose(1, 2).contiguous(), w  # (B, T, heads, d)

    AttentionInterface.register("fisher_vmap", attention)
    AttentionMaskInterface.register("fisher_vmap", eager_mask)
    return "fisher_vmap"


def method_attention(model: nn.Module, method: str) -> str | None:
    """The attention implementation a Fisher method runs the model with: vmap's own (`_vmap_attention`) for a
    `SeqRecModel` under vmap, else None (the model's own, sdpa for the Llama stacks). Chapter 03 checks each method
    against the loop run with the same attention: eager and sdpa attention are equal in exact arithmetic but not in
    float64 where a layer's attention is saturated (issue 25: on the 8-epoch ml100k-llm teacher, the loop through
    each differed by 8.0e-7 in layer 3's q_proj, a group holding 6e-21 of the largest group's Fisher, while vmap and
    the loop through the same attention agreed to 1e-15)."""
    return _vmap_attention() if method == "vmap" and _is_seqrec(model) else None


def _attn_configs(model):
    return [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")
            and m is not model]


def _by_length(inputs: torch.Tensor, chunk_size: int, seqrec: bool):
    """Chunks of row indices, users of similar history length together (all rows in order for other models)."""
    if not seqrec:
        return [torch.arange(i, min(i + chunk_size, len(inputs))) for i in range(0, len(inputs), chunk_size)]
    order = torch.argsort((inputs != PAD).sum(1), stable=True)
    return [order[i:i + chunk_size] for i in range(0, len(order), chunk_size)]


def _trim(x: torch.Tensor, *ys: torch.Tensor, seqrec: bool = True):
    """Drop leading columns that are padding in every row (exact: positions come from the mask, pads are masked).

    Label tensors (..., B, T) lose the same columns; their padded positions carry no label."""
    if not seqrec or x.dim() != 2:
        return (x, *ys)
    real = (x != PAD).any(0)
    start = int(real.int().argmax()) if bool(real.any()) else x.shape[1] - 1
    return (x[:, start:], *(y[..., start:] for y in ys))


def _label_sets(labels: torch.Tensor) -> torch.Tensor:
    return labels.unsqueeze(0) if labels.dim() == 2 else labels  # (D, S, T)


def _estimate(model, keys, numel, per_sample, diag, estimator, method, t0, **meta) -> FisherEstimate:
    return FisherEstimate(estimator=estimator, method=method, keys=list(keys), numel=numel, per_sample=per_sample,
                          n_layers=_num_layers(model), diag=diag, seconds=time.perf_counter() - t0, meta=meta)


# ---------------------------------------------------------------------------------------------------------------------
# reference: one backward per sample
def fisher_loop(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                estimator: str = "fisher_empirical", attn: str | None = None) -> FisherEstimate:
    """Reference per-sample loop: one forward+backward per user (and per label draw).

    Args:
        labels: (S, T) observed labels, or (D, S, T) label sets (e.g. `draw_labels`); squares are averaged over D.
        attn: the attention implementation to run (`method_attention`); None: the model's own.
    """
    t0 = time.perf_counter()
    params, keys, col, numel = _keys(model)
    L = _num_layers(model)
    sets = _label_sets(labels)
    D, S = sets.shape[0], inputs.shape[0]
    cols = torch.tensor([col[param_key(n, L)] for n, _ in params])
    per_sample = torch.zeros(S, len(keys), dtype=torch.float64)
    plist = [p for _, p in params]
    diag = [torch.zeros_like(p) for p in plist]
    seq = _is_seqrec(model)
    with eval_mode(model, attn=attn):
        for i in range(S):
            xi, yi = _trim(inputs[i:i + 1], sets[:, i:i + 1], seqrec=seq)  # (1, t), (D, 1, t): no padding
            for d in range(D):
                loss = sample_nll(model_logits(model, xi), yi[d]).sum()
                grads = torch.autograd.grad(loss, plist, allow_unused=True)
                sq = torch._foreach_mul([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, plist)],
                                        [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, plist)])
                torch._foreach_add_(diag, sq)
                norms = torch.stack([t.sum() for t in sq]).double().cpu()  # (P,)
                per_sample[i].index_add_(0, cols, norms / D)
    diag = [t.double() / (S * D) for t in diag]
    return _estimate(model, keys, numel, per_sample.numpy(), {n: t for (n, _), t in zip(params, diag)}, estimator,
                     "loop", t0)


# ---------------------------------------------------------------------------------------------------------------------
# torch.func: vmap(grad(...))
def fisher_vmap(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, estimator: str = "fisher_empirical",
                chunk_size: int = 32) -> FisherEstimate:
    """Per-sample gradients with `torch.func.vmap(grad(loss))` over users, chunked; eager attention inside vmap."""
    from torch.func import functional_call, grad, vmap

    t0 = time.perf_counter()
    params, keys, col, numel = _keys(model)
    L = _num_layers(model)
    sets = _label_sets(labels)
    D, S = sets.shape[0], inputs.shape[0]
    pdict = {n: p.detach() for n, p in params}
    rest = {n: p.detach() for n, p in model.named_parameters() if n not in pdict}
    buffers = dict(model.named_buffers())

    seq = _is_seqrec(model)

    def loss(pd_, x, y):  # one sample: x (T,) or (T, d), y (T,)
        call = lambda *a, **k: functional_call(model, {**pd_, **rest, **buffers}, a, k)  # noqa: E731
        logits = _logits_call(call, seq, x.unsqueeze(0))  # (1, T, N)
        return sample_nll(logits, y.unsqueeze(0)).sum()

    per_grad = vmap(grad(loss), in_dims=(None, 0, 0))
    per_sample = np.zeros((S, len(keys)))
    diag = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params}
    with eval_mode(model, attn=method_attention(model, "vmap")):
        for rows in _by_length(inputs, chunk_size, seq):
            x, ys = _trim(inputs[rows], sets[:, rows], seqrec=seq)  # (C, t), (D, C, t)
            for d in range(D):
                gs = per_grad(pdict, x, ys[d])  # name -> (C, *shape)
                for n, gr in gs.items():
                    sq = gr.double() ** 2
                    diag[n] += sq.sum(0) / (S * D)
                    per_sample[rows.numpy(), col[param_key(n, L)]] += sq.flatten(1).sum(1).numpy() / D
    return _estimate(model, keys, numel, per_sample, diag, estimator, "vmap", t0)


# ---------------------------------------------------------------------------------------------------------------------
# hooks: one batched forward, per-sample weight gradients by bmm
def _is_rmsnorm(m: nn.Module) -> bool:
    return type(m).__name__.endswith("RMSNorm") and isinstance(getattr(m, "weight", None), nn.Parameter)


def _rms_hat(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x / rms(x) as the HF RMSNorm computes it (float32 inside, cast back).  # (B, T, H)"""
    eps = getattr(m, "variance_epsilon", getattr(m, "eps", 1e-6))
    xf = x.to(torch.float32)
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


@dataclass
class _Target:
    """A module whose parameters' per-sample gradients come from its input and its output's gradient."""

    module: nn.Module
    rmsnorm: bool  # RMSNorm (weight only) or nn.Linear (weight, optional bias)
    weight: str | None  # covered parameter names (None: not in the Fisher)
    bias: str | None


def _targets(model: nn.Module, names: set) -> list[_Target]:
    """Every nn.Linear and RMSNorm with a parameter among `names`, in module order."""
    out = []
    for mname, m in model.named_modules():
        if not (isinstance(m, nn.Linear) or _is_rmsnorm(m)):
            continue
        full = {pn: f"{mname}.{pn}" if mname else pn for pn, _ in m.named_parameters(recurse=False)}
        w, b = full.get("weight"), full.get("bias")
        w, b = (w if w in names else None), (b if b in names else None)
        if w is not None or b is not None:
            out.append(_Target(m, _is_rmsnorm(m), w, b))
    return out


class _Capture:
    """Forward hooks that keep each target's input (detached) and graph-connected output, in call order."""

    def __init__(self, targets: list[_Target]):
        self.records: list[tuple[_Target, torch.Tensor, torch.Tensor]] = []  # (target, input, output)
        self.handles = [t.module.register_forward_hook(self._hook(t)) for t in targets]

    def _hook(self, target: _Target):
        def f(mod, inp, out):
            if torch.is_grad_enabled():
                self.records.append((target, inp[0].detach(), out))
        return f

    def close(self):
        for h in self.handles:
            h.remove()


class _Buffers:
    """Named scratch tensors reused from chunk to chunk: the (C, T, N+1) logits, probabilities and their gradient,
    the (c, N+1, D) per-sample table gradients and the (C, out, in) per-sample weight gradients are allocated once
    instead of once per chunk and module (fresh allocations of this size page-fault on every use)."""

    def __init__(self):
        self._bufs: dict = {}

    def get(self, name, shape, like: torch.Tensor) -> torch.Tensor:
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._bufs[name] = torch.empty(n, dtype=like.dtype, device=like.device)
        return buf[:n].view(shape)


def _seqrec_forward(model, ids):
    """SeqRecModel's forward up to z = out_proj(h), the item table detached.  # (B, T) -> (B, T, D)

    Returns (z, x0, W): x0 = the looked-up item embeddings (its grad is the input-side table gradient), W = the item
    table (N+1, D). The logits z W^T (PAD masked, as `SeqRecModel.score`) stay out of the graph: their gradient is
    known in closed form, and `fisher_hooks` back-propagates dz = dlogits W from z, which is what autograd's matmul
    backward would compute, without a (B, T, N+1) node and its masked copy.
    """
    with torch.no_grad():  # the table's gradient is assembled per sample by `_per_sample_table`
        W = model.item_table().detach()  # (N+1, D)
    x0 = F.embedding(ids, W, padding_idx=PAD).requires_grad_()  # (B, T, D)
    mask = (ids != PAD).long()  # (B, T)
    h = model.run_backbone(model.emb_dropout(model.in_proj(x0)), mask, use_cache=False).last_hidden_state  # (B, T, H)
    return model.out_proj(h), x0, W  # (B, T, D)


def _dlogits(prob: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Gradient of the per-sample NLL (`sample_nll`) with respect to the logits: softmax - one-hot on labelled
    positions, 0 elsewhere.  (C, T, N) & (C, T) -> (C, T, N), written into `out`."""
    keep = (y != IGNORE).unsqueeze(-1).to(prob.dtype)  # (C, T, 1)
    return torch.mul(prob, keep, out=out).scatter_add_(-1, y.clamp(min=0).unsqueeze(-1), -keep)


def fisher_hooks(model: nn.Module, inputs: torch.Tensor, label_sets: dict, chunk_size: int = 128,
                 ghost: bool = False, diag: bool = True) -> dict:
    """Per-sample gradients for several label sets from ONE batched forward per chunk (the fast exact method).

    Forward hooks keep each Linear's and RMSNorm's input; one backward per label draw gives the gradient of each of
    their outputs, from which, in a hook on that output (`_backward`), every user's weight gradient is a
    (out, T) x (T, in) product (`_per_sample_module`); the tied item table's comes from the logits' gradient
    (`_per_sample_table`).

    Args:
        label_sets: {name: (S, T) or (D, S, T) labels}; e.g. {"fisher_empirical": labels,
            "fisher_true": draw_labels(...), "item:tail": labels masked to tail targets}.
        ghost: per-group squared norms of Linear weights by the ghost-norm identity, without per-sample gradients
            (no diagonal); RMSNorm and table gradients are per-sample vectors either way.
        diag: also accumulate the per-parameter diagonal (ignored with ghost).

    Returns:
        {name: FisherEstimate}.
    """
    t0 = time.perf_counter()
    params, keys, col, numel = _keys(model)
    L = _num_layers(model)
    names = {n for n, _ in params}
    column = {n: col[param_key(n, L)] for n in names}  # parameter name -> column of per_sample
    sets = {k: _label_sets(v) for k, v in label_sets.items()}
    S = inputs.shape[0]
    diag = diag and not ghost
    dev = next(model.parameters()).device
    out_ps = {k: torch.zeros(S, len(keys), dtype=torch.float64, device=dev) for k in sets}
    out_dg = {k: {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params} for k in sets} if diag else None
    seq = _is_seqrec(model)
    targets = _targets(model, names)
    covered = {n for t in targets for n in (t.weight, t.bias) if n is not None}
    if seq:
        covered |= {"item_emb.weight", "text_proj.weight"}
    missing = names - covered
    if missing:
        raise NotImplementedError(f"hooks method does not cover {sorted(missing)}; use method='vmap' or 'loop'")
    cap, bufs = _Capture(targets), _Buffers()
    try:
        with eval_mode(model):
            for rows in _by_length(inputs, chunk_size, seq):
                x, *ysets = _trim(inputs[rows], *(v[:, rows] for v in sets.values()), seqrec=seq)  # (C, t)
                C = x.shape[0]
                cap.records.clear()
                if seq:
                    z, x0, W = _seqrec_forward(model, x)  # (C, t, D)
                    with torch.no_grad():
                        logits = torch.matmul(z.detach(), W.T, out=bufs.get("logits", (C, x.shape[1], len(W)), z))
                        logits = mask_pad(logits, inplace=True)  # (C, t, N+1)
                    top = z  # back-propagated from z (dz = dlogits W)
                else:
                    logits = model_logits(model, x)
                    top, ins = logits, [r[2] for r in cap.records]  # any other module: from its logits
                prob = torch.softmax(logits.detach(), -1, out=bufs.get("prob", logits.shape, logits))  # (C, T, N)
                hats: dict = {}  # record index -> an RMSNorm's normalised input, shared by the label draws
                n_draws = sum(ys.shape[0] for ys in ysets)
                for name, ys in zip(sets, ysets):
                    D = ys.shape[0]
                    acc = _Acc(torch.zeros(C, len(keys), dtype=torch.float64, device=dev), column, D, S,
                               out_dg[name] if diag else None, bufs)
                    for d in range(D):
                        n_draws -= 1
                        dlog = _dlogits(prob, ys[d], bufs.get("dlog", prob.shape, prob))  # (C, t, N)
                        g_top = torch.matmul(dlog, W) if seq else dlog  # (C, t, D): the mm backward of z W^T
                        grads = _backward(top, g_top, [x0] if seq else ins, cap.records, acc, ghost, hats,
                                          retain=n_draws > 0)
                        if seq:
                            _per_sample_table(model, x, dlog, grads[0], z.detach(), acc)
                    out_ps[name][rows.to(dev)] = acc.ps
    finally:
        cap.close()
    res = {}
    for name in sets:
        est = name if name in ESTIMATORS else "fisher_empirical"
        res[name] = _estimate(model, keys, numel, out_ps[name].cpu().numpy(), out_dg[name] if diag else None, est,
                              "ghost" if ghost else "hooks", t0, label_set=name)
    return res


class _Acc:
    """Adds a chunk's per-sample squared gradients, draw by draw, into its (C, K) norms and the diagonal."""

    def __init__(self, ps: torch.Tensor, column: dict, D: int, S: int, diag: dict | None, bufs: _Buffers):
        self.ps, self.column, self.D, self.S, self.diag, self.bufs = ps, column, D, S, diag, bufs

    def add(self, name: str, g: torch.Tensor | None = None, sq_norm: torch.Tensor | None = None, rows=slice(None)):
        """g: (c, *shape) per-sample gradients (overwritten by their squares) of the chunk's `rows`; or sq_norm: (c,)
        squared norms only."""
        if g is not None:
            sq = g.square_()  # in place: the per-sample gradient is not needed again
            sq_norm = sq.flatten(1).sum(1)  # (c,)
            if self.diag is not None:
                self.diag[name] += sq.sum(0).double() / (self.S * self.D)
        self.ps[rows, self.column[name]] += sq_norm.double() / self.D


def _backward(top, g_top, wanted: list, records: list, acc: _Acc, ghost: bool, hats: dict, retain: bool):
    """One backward from `top` (seeded with `g_top`), returning the gradients of `wanted`; each target's per-sample
    products are taken in a hook on its output, the moment autograd has that output's gradient (still in cache, and
    freed after its use rather than held until the backward ends)."""
    def hook(i, target, a):
        return lambda g: _per_sample_module(target, a, g, acc, ghost, hats, i)

    handles = [out.register_hook(hook(i, target, a)) for i, (target, a, out) in enumerate(records)]
    try:
        return torch.autograd.grad(top, wanted, g_top, retain_graph=retain, allow_unused=True)
    finally:
        for h in handles:
            h.remove()


def _per_sample_module(t: _Target, a, g, acc: _Acc, ghost: bool, hats: dict, key):
    """One target's per-sample gradients from its input a (C, ..., in) and its output's gradient g (C, ..., out)
    (called from `_backward`'s hooks: a module off the path to the loss is never called); `hats[key]` caches an
    RMSNorm's normalised input for the next label draw."""
    C = a.shape[0]
    a3, g3 = a.reshape(C, -1, a.shape[-1]), g.reshape(C, -1, g.shape[-1])  # (C, T, in), (C, T, out)
    if t.rmsnorm:
        if key not in hats:
            hats[key] = _rms_hat(t.module, a3)  # (C, T, H)
        acc.add(t.weight, (g3 * hats[key]).sum(1))  # (C, H)
        return
    if t.weight is not None:
        if ghost:
            sq = (torch.bmm(g3, g3.transpose(1, 2)) * torch.bmm(a3, a3.transpose(1, 2))).sum((1, 2))  # (C,)
            acc.add(t.weight, sq_norm=sq)
        else:
            shape = (C, g3.shape[-1], a3.shape[-1])  # (C, out, in)
            acc.add(t.weight, torch.bmm(g3.transpose(1, 2), a3, out=acc.bufs.get("weight", shape, g3)))
    if t.bias is not None:
        acc.add(t.bias, g3.sum(1))  # (C, out)


def _per_sample_table(model, ids, dlog, g_x0, z, acc: _Acc, sub: int = 32):
    """Per-sample gradient of the tied item table: scoring side dlogits^T z plus the scattered input side."""
    if g_x0 is not None:
        g_x0 = g_x0 * (ids != PAD).unsqueeze(-1)  # F.embedding(padding_idx=PAD) sends no gradient to row 0
    tf = getattr(model, "text_features", None) if model.config.text_dim else None
    for j in range(0, ids.shape[0], sub):
        rows = slice(j, j + sub)
        shape = (len(ids[rows]), dlog.shape[2], z.shape[2])  # (c, N+1, D)
        gw = torch.bmm(dlog[rows].transpose(1, 2), z[rows], out=acc.bufs.get("table", shape, z))
        if g_x0 is not None:
            idx = ids[rows].unsqueeze(-1).expand(-1, -1, gw.shape[-1])  # (c, T, D)
            gw.scatter_add_(1, idx, g_x0[rows])  # (c, N+1, D)
        gt = torch.einsum("cnd,nk->cdk", gw, tf) if tf is not None else None  # (c, D, text_dim)
        acc.add("item_emb.weight", gw, rows=rows)
        if gt is not None:
            acc.add("text_proj.weight", gt, rows=rows)


# ---------------------------------------------------------------------------------------------------------------------
# the wrong estimator, and the one entry point
def batchgrad_squared(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                      batch_size: int = 64) -> FisherEstimate:
    """WRONG on purpose (the earlier attempt): the square of each mini-batch's mean-loss gradient, batch-averaged.

    It estimates (E g)^2 + Var(g)/B, not E[g^2]; at a well-fitted model the mean gradient is ~0 while the Fisher is not.
    Rows of `per_sample` are mini-batches.
    """
    t0 = time.perf_counter()
    params, keys, col, numel = _keys(model)
    L = _num_layers(model)
    nb = math.ceil(inputs.shape[0] / batch_size)
    per_batch = np.zeros((nb, len(keys)))
    diag = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params}
    with eval_mode(model):
        for b in range(nb):
            x, y = inputs[b * batch_size:(b + 1) * batch_size], labels[b * batch_size:(b + 1) * batch_size]
            loss = sample_nll(model_logits(model, x), y).mean()
            grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
            for (n, _), gr in zip(params, grads):
                if gr is not None:
                    sq = gr.double() ** 2
                    diag[n] += sq / nb
                    per_batch[b, col[param_key(n, L)]] += float(sq.sum())
    return _estimate(model, keys, numel, per_batch, diag, "batchgrad_squared", "batch", t0, batch_size=batch_size)


def estimate_fisher(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, estimator: str = "fisher_empirical",
                    method: str = "hooks", n_draws: int = 1, seed: int = 0, chunk_size: int = 128) -> FisherEstimate:
    """One Fisher estimate: `estimator` in ESTIMATORS, `method` in loop / vmap / hooks / ghost."""
    if estimator == "batchgrad_squared":
        return batchgrad_squared(model, inputs, labels, chunk_size)
    if estimator == "fisher_true":
        labels = draw_labels(model, inputs, labels, n_draws, seed)
    elif estimator != "fisher_empirical":
        raise ValueError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
    if method == "loop":
        return fisher_loop(model, inputs, labels, estimator)
    if method == "vmap":
        return fisher_vmap(model, inputs, labels, estimator, chunk_size=min(chunk_size, 32))
    if method in ("hooks", "ghost"):
        return fisher_hooks(model, inputs, {estimator: labels}, chunk_size, ghost=method == "ghost")[estimator]
    raise ValueError(f"unknown method {method!r}")


def compare(a: FisherEstimate, b: FisherEstimate, floor: float = 1e-12) -> dict:
    """Largest relative differences between two estimates: per-layer/group totals, and the diagonal (if both have it).

    Relative = |a - b| / max|b| within each group column or parameter tensor (scale-aware, so tiny entries of a
    tensor do not blow up the ratio), that scale floored at `floor` times the largest value of its kind in `b`: a
    group or tensor holding less than 1e-12 of the model's largest Fisher moves no reported share, and its float64
    value depends on the kernel's rounding where attention saturates (issue 25: layer 3's q_proj of the 8-epoch
    ml100k-llm teacher held 4.6e-19 against a largest entry of 222, and two attention kernels differed there by 8e-7).
    """
    ta, tb = a.per_sample.mean(0), b.per_sample.mean(0)
    group_scale = np.maximum(np.abs(tb), max(floor * float(np.abs(tb).max(initial=0.0)), 1e-300))
    out = {"groups": float(np.max(np.abs(ta - tb) / group_scale))}
    la, lb = a.per_layer().mean(0), b.per_layer().mean(0)
    out["layers"] = float(np.max(np.abs(la - lb) / np.maximum(np.abs(lb), 1e-300))) if len(lb) else 0.0
    col_max = np.abs(b.per_sample).max(0, keepdims=True)  # (1, G)
    ps = np.abs(a.per_sample - b.per_sample) / np.maximum(col_max, max(floor * float(col_max.max(initial=0.0)),
                                                                       1e-300))
    out["per_sample"] = float(ps.max())
    if a.diag is not None and b.diag is not None:
        tmax = {n: float(b.diag[n].abs().max()) for n in b.diag}
        lowest = max(floor * max(tmax.values(), default=0.0), 1e-300)
        out["diag"] = max(float((a.diag[n] - b.diag[n]).abs().max()) / max(tmax[n], lowest) for n in b.diag)
    out["max"] = max(out.values())
    return out


# ---------------------------------------------------------------------------------------------------------------------
# shards of users (issue 16, item 2): the Fisher is a sum over users of per-user squared gradients
def merge_shards(parts: list[FisherEstimate]) -> FisherEstimate:
    """One estimate from estimates on disjoint shards of users, in shard order: per-sample rows concatenated (so their
    sum over users is the sum of the shards' sums), the diagonal — a mean over samples — re-weighted by each shard's
    sample count. Equals the estimate of all users at once up to float summation order."""
    parts = [p for p in parts if p.n_samples > 0] or parts[:1]
    first = parts[0]
    S = sum(p.n_samples for p in parts)
    diag = None
    if all(p.diag is not None for p in parts):
        diag = {n: sum(p.diag[n].double() * p.n_samples for p in parts) / max(S, 1) for n in first.diag}
    return FisherEstimate(estimator=first.estimator, method=first.method, keys=list(first.keys), numel=first.numel,
                          per_sample=np.concatenate([p.per_sample for p in parts], 0), n_layers=first.n_layers,
                          diag=diag, seconds=max(p.seconds for p in parts), meta={**first.meta, "shards": len(parts)})


def estimate_fisher_sharded(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, **kwargs) -> FisherEstimate:
    """`estimate_fisher` over every user, each process of a `torch.distributed` run (e.g. `accelerate launch
    --num_processes N`) taking a contiguous 1/N shard of the users; the shards are all-gathered and merged
    (`merge_shards`), so every rank returns the whole estimate. Without a process group: `estimate_fisher`.
    Exact for "fisher_empirical"; "fisher_true" draws its Monte Carlo labels per shard (same seed), so pass labels
    drawn over all users (`draw_labels`) to `fisher_hooks`/`fisher_loop` when the draws must match one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return estimate_fisher(model, inputs, labels, **kwargs)
    rank, world = dist.get_rank(), dist.get_world_size()
    rows = torch.arange(inputs.shape[0]).tensor_split(world)[rank]
    lab_rows = labels[rows] if labels.dim() == 2 else labels[:, rows]
    part = estimate_fisher(model, inputs[rows], lab_rows, **kwargs)
    if part.diag is not None:
        part.diag = {n: t.detach().cpu() for n, t in part.diag.items()}
    parts: list = [None] * world
    dist.all_gather_object(parts, part)
    return merge_shards(parts)

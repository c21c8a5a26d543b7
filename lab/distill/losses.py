"""The distillation loss: next-item CE, logit KD and a weighted layer-wise hidden-state term (chapter 05).

Hidden states are the raw outputs of decoder layers, captured with forward hooks (`LayerTap`): the last entry of
`output_hidden_states` is after the final RMSNorm, so it is not comparable with an intermediate layer's output.
The frozen teacher's outputs can be computed once for the whole training set (`build_teacher_cache`, the decoupling
trick of IISAN); teacher logits are then recomputed from the cached final hidden state by the teacher's own head.
"""
from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..constants import IGNORE, PAD
from .config import DistillConfig

__all__ = ["SLMREC_L2", "layer_mapping", "layer_weights", "hidden_distance", "kd_loss", "base_model", "LayerTap",
           "AttentionTap", "eager_attention", "attention_rows", "position_mask", "TeacherCache", "build_teacher_cache",
           "DistillLoss"]

SLMREC_L2 = 0.1  # weight of the L2 distance in SLMRec's hidden-state loss


# -- which teacher layer teaches which student layer, and how much ----------------------------------------------
def layer_mapping(num_student: int, num_teacher: int, mapping: str = "last_of_block",
                  source_layers: list[int] | None = None) -> list[int]:
    """The teacher layer whose output each student layer's output is matched to (chapter 05).

    "last_of_block" is the default: student layer i learns what the teacher has computed by the end of the i-th of k
    equal blocks, so the term carries what the dropped layers computed. Under "source" a bottom-k student built from
    the teacher starts equal to its targets: the term is 0 at step 0 and cannot teach what the dropped layers did.

    Args:
        num_student: k, the student's depth.
        num_teacher: L, the teacher's depth.
        mapping: "last_of_block" (SLMRec: the last layer of the i-th of k consecutive blocks, floor((i+1)·L/k) − 1;
            L=8, k=2 -> [3, 7]), "source" (the layer each student layer was copied from), "uniform"
            (round(linspace(0, L−1, k))).
        source_layers: `student.config.source_layers`, needed by "source".
    """
    k, L = int(num_student), int(num_teacher)
    if mapping == "source":
        if source_layers is None or len(source_layers) != k:
            raise ValueError(f"mapping 'source' needs source_layers of length {k}, got {source_layers}")
        out = [int(i) for i in source_layers]
    elif mapping == "last_of_block":
        out = [(i + 1) * L // k - 1 for i in range(k)]
    elif mapping == "uniform":
        out = [int(round(v)) for v in np.linspace(0, L - 1, k)]
    else:
        raise ValueError(f"unknown mapping {mapping!r}")
    if min(out) < 0 or max(out) >= L:
        raise ValueError(f"mapping {mapping!r} gives teacher layers {out} outside [0, {L})")
    return out


def layer_weights(weighting: str, teacher_layers: list[int], importance=None) -> torch.Tensor:
    """Weights w_i of the layer-wise term, one per student layer; every weighting sums to 1 ("none": all 0).

    "uniform": 1/k. "depth": linspace(0.1, 1.0, k) normalised (deeper student layers weigh more). "fisher": the
    importance of the mapped teacher layers (negative values clipped to 0) divided by their sum, so only the
    distribution over layers changes between weightings, never the term's total scale.

    Args:
        importance: a length-L array (see `lab.fisher.tables.importance_vector`), needed by "fisher".
    """
    k = len(teacher_layers)
    if weighting == "none":
        return torch.zeros(k)
    if weighting == "uniform":
        w = np.ones(k)
    elif weighting == "depth":
        w = np.linspace(0.1, 1.0, k) if k > 1 else np.ones(1)
    elif weighting == "fisher":
        if importance is None:
            raise ValueError("weighting 'fisher' needs the per-layer importance (chapter 03)")
        w = np.clip(np.asarray(importance, dtype=float)[list(teacher_layers)], 0.0, None)
        if not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(f"Fisher importance of layers {teacher_layers} has no positive mass: {w}")
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    return torch.as_tensor(w / w.sum(), dtype=torch.float32)


# -- distances ----------------------------------------------------------------------------------------------------
def hidden_distance(hs: torch.Tensor, ht: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Mean distance between matched hidden states.  # (M, H), (M, H) -> ()

    "mse": mean squared error over positions and features; "cosine": mean 1 − cos; "slmrec": mean
    (1 − cos) + 0.1·‖h_s − h_t‖₂ (SLMRec's block-boundary loss).
    """
    if hs.shape[0] == 0:
        return hs.sum() * 0.0
    ht = ht.to(hs.dtype)
    if kind == "mse":
        return F.mse_loss(hs, ht)
    cos = 1.0 - F.cosine_similarity(hs, ht, dim=-1, eps=1e-8)  # (M,)
    if kind == "cosine":
        return cos.mean()
    if kind == "slmrec":
        return (cos + SLMREC_L2 * torch.linalg.vector_norm(hs - ht, dim=-1)).mean()
    raise ValueError(f"unknown distance {kind!r}")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(t/T) ‖ softmax(s/T)) over real items, averaged over positions.  # (M, N+1), (M, N+1) -> ()

    Both distributions leave the padding item out: its column is dropped, not masked (the -inf of `mask_pad` in both
    would make 0·(−inf − −inf) = NaN in the KL), so the loss and its gradient never see the PAD logits.
    """
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    T = float(temperature)
    items = slice(PAD + 1, None)  # PAD = 0 is the first column
    log_s = F.log_softmax(student_logits[:, items].float() / T, dim=-1)  # (M, N)
    log_t = F.log_softmax(teacher_logits[:, items].float() / T, dim=-1)  # (M, N)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * T * T


# -- capturing layer outputs ----------------------------------------------------------------------------------------
def base_model(model: nn.Module) -> nn.Module:
    """The `SeqRecModel` inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class LayerTap:
    """Forward hooks that keep the raw outputs of chosen decoder layers during a forward pass."""

    def __init__(self, layers: nn.ModuleList, idx: list[int]):
        self.out: dict[int, torch.Tensor] = {}
        self._handles = [layers[i].register_forward_hook(self._hook(i)) for i in idx]

    def _hook(self, i: int):
        def f(module, args, output):
            self.out[i] = output[0] if isinstance(output, tuple) else output  # (B, T, H)
        return f

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class AttentionTap(LayerTap):
    """`LayerTap` on the layers' `self_attn`, keeping the attention probabilities (its second output, which eager
    attention fills; `eager_attention`).  # layer -> (B, heads, T, T)"""

    def __init__(self, layers: nn.ModuleList, idx: list[int]):
        super().__init__([layer.self_attn for layer in layers], idx)

    def _hook(self, i: int):
        def f(module, args, output):
            if output[1] is None:
                raise RuntimeError("the attention term needs eager attention (lab.distill.losses.eager_attention)")
            self.out[i] = output[1]  # (B, heads, T, T)
        return f


@contextmanager
def eager_attention(model: nn.Module):
    """Run `model`'s decoder with eager attention (which returns its probabilities) inside the block, and put back the
    implementation it had (sdpa: the fast one every timing and saved config uses) after it."""
    backbone = base_model(model).backbone
    before = backbone.config._attn_implementation
    backbone.set_attn_implementation("eager")
    try:
        yield model
    finally:
        backbone.set_attn_implementation(before)


def attention_rows(att: torch.Tensor, positions: str) -> torch.Tensor:
    """The attention rows of the queries at `positions`, query-major.  # (B, heads, T, T) -> (B, T', heads, T)"""
    cut = slice(None) if positions == "all" else slice(-1, None)
    return att[:, :, cut].transpose(1, 2)


def position_mask(labels: torch.Tensor, positions: str) -> torch.Tensor:
    """Where the KD and hidden terms apply: labelled positions, or only the last one.  # (B, T) -> (B, T') bool"""
    keep = labels != IGNORE  # (B, T)
    return keep if positions == "all" else keep[:, -1:]  # (B, 1) for "last"


# -- teacher cache -------------------------------------------------------------------------------------------------
@dataclass
class TeacherCache:
    """The frozen teacher's outputs on the training rows: raw outputs of `layers` and the final hidden state."""

    layers: list[int]  # teacher layers cached
    positions: str  # "all" (U, T, H) or "last" (U, 1, H)
    hidden: dict = field(default_factory=dict)  # teacher layer -> (U, T', H) raw layer output
    final: torch.Tensor | None = None  # (U, T', H) after the final norm (teacher logits = teacher.score(final))
    seconds: float = 0.0  # wall time of the teacher pass that built it
    attention: dict = field(default_factory=dict)  # teacher layer -> (U, T', heads, T) attention rows (TinyBERT)

    @property
    def nbytes(self) -> int:
        ts = [*self.hidden.values(), *self.attention.values(), self.final]
        return int(sum(t.numel() * t.element_size() for t in ts if t is not None))

    def covers(self, layers: list[int], positions: str, attention=()) -> bool:
        return (self.positions == positions and set(layers) <= set(self.layers)
                and set(attention) <= set(self.attention))


@torch.no_grad()
def build_teacher_cache(teacher: nn.Module, inputs: torch.Tensor, layers: list[int], positions: str = "all",
                        batch_size: int = 512, dtype: str = "float32", attention=()) -> TeacherCache:
    """Run the frozen teacher once over `inputs` (the training histories) and keep what the loss needs.

    Args:
        inputs: (U, T) training histories (`data.train_inputs`).
        layers: teacher layers whose raw outputs are kept (the union of the mappings of the runs sharing it).
        attention: teacher layers whose attention rows are kept (TinyBERT's term; the pass then runs eager attention).
    """
    teacher.eval()
    dev = next(teacher.parameters()).device
    dt = getattr(torch, dtype)
    layers = sorted(set(int(i) for i in layers))
    attention = sorted(set(int(i) for i in attention))
    t0 = time.perf_counter()
    hidden, att = {i: [] for i in layers}, {i: [] for i in attention}
    final = []
    with LayerTap(teacher.layers, layers) as tap, AttentionTap(teacher.layers, attention) as atap, \
            (eager_attention(teacher) if attention else nullcontext()):
        for s in range(0, inputs.shape[0], batch_size):
            x = inputs[s:s + batch_size].to(dev)  # (B, T)
            h = teacher(x, score="none").last_hidden_state  # (B, T, H)
            cut = slice(None) if positions == "all" else slice(-1, None)
            final.append(h[:, cut].to(dt))  # (B, T', H)
            for i in layers:
                hidden[i].append(tap.out[i][:, cut].to(dt))
            for i in attention:
                att[i].append(attention_rows(atap.out[i], positions).to(dt))  # (B, T', heads, T)
    return TeacherCache(layers=layers, positions=positions, hidden={i: torch.cat(v) for i, v in hidden.items()},
                        final=torch.cat(final), seconds=time.perf_counter() - t0,
                        attention={i: torch.cat(v) for i, v in att.items()})


# -- the loss ---------------------------------------------------------------------------------------------------------
class DistillLoss:
    """alpha·CE + beta·T²·KL(teacher ‖ student) + gamma·Σ_i w_i·d(h_s_i, h_t_map(i)) (+ TinyBERT's attention·Σ_i w_i·
    MSE(A_s_i, A_t_map(i)) + embedding·MSE(E_s, E_t)); a `loss_fn` for `lab.train.fit`.

    Args:
        teacher: the frozen teacher (eval mode, requires_grad False); may be None for the "ce" variant.
        cfg: which terms, distance and positions.
        teacher_layers: map(i) for each student layer i (`layer_mapping`).
        weights: w_i (`layer_weights`).
        cache: precomputed teacher outputs on the training rows; None runs the teacher live (under no_grad).
    """

    def __init__(self, teacher: nn.Module | None, cfg: DistillConfig, teacher_layers: list[int],
                 weights: torch.Tensor, cache: TeacherCache | None = None):
        if cfg.uses_teacher and teacher is None:
            raise ValueError(f"variant {cfg.variant!r} needs the teacher")
        if cache is not None and cfg.uses_teacher and not cache.covers(
                teacher_layers if cfg.uses_layers else [], cfg.positions, teacher_layers if cfg.uses_attention else []):
            raise ValueError(f"the cache ({cache.positions}, layers {cache.layers}, attention "
                             f"{sorted(cache.attention)}) lacks {teacher_layers}")
        self.teacher, self.cfg, self.cache = teacher, cfg, cache
        self.teacher_layers = list(teacher_layers)
        self.weights = weights.float()
        self.totals: dict[str, float] = {}
        self.steps = 0

    def _teacher_outputs(self, x: torch.Tensor, rows: torch.Tensor | None) -> tuple[torch.Tensor, list, list]:
        """Teacher final hidden (B, T', H), mapped layer outputs and mapped attention rows (B, T', heads, T), from the
        cache or a live no-grad pass."""
        need = self.teacher_layers if self.cfg.uses_layers else []
        need_att = self.teacher_layers if self.cfg.uses_attention else []
        if self.cache is not None:
            if rows is None:
                raise ValueError("a cached teacher needs the batch's row numbers")
            r = rows.to(self.cache.final.device)
            dev = x.device
            return (self.cache.final[r].to(dev).float(), [self.cache.hidden[j][r].to(dev).float() for j in need],
                    [self.cache.attention[j][r].to(dev).float() for j in need_att])
        cut = slice(None) if self.cfg.positions == "all" else slice(-1, None)
        with torch.no_grad(), LayerTap(self.teacher.layers, sorted(set(need))) as tap, \
                AttentionTap(self.teacher.layers, sorted(set(need_att))) as atap, \
                (eager_attention(self.teacher) if need_att else nullcontext()):
            h = self.teacher(x, score="none").last_hidden_state  # (B, T, H)
            return (h[:, cut], [tap.out[j][:, cut] for j in need],
                    [attention_rows(atap.out[j], self.cfg.positions) for j in need_att])

    def terms(self, student: nn.Module, x: torch.Tensor, labels: torch.Tensor,
              rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every term of the loss for one batch, and their weighted sum as "loss".

        Args:
            x: (B, T) histories; labels: (B, T) next items (IGNORE where none); rows: (B,) training-row numbers.
        """
        cfg = self.cfg
        base = base_model(student)
        keep = labels != IGNORE  # (B, T)
        pkeep = position_mask(labels, cfg.positions)  # (B, T')
        cut = slice(None) if cfg.positions == "all" else slice(-1, None)
        k = base.num_layers
        tap = LayerTap(base.layers, list(range(k))) if cfg.uses_layers else None
        atap = AttentionTap(base.layers, list(range(k))) if cfg.uses_attention else None  # needs `eager_attention`
        try:
            h = student(x, score="none").last_hidden_state  # (B, T, H)
        finally:
            for t in (tap, atap):
                if t is not None:
                    t.remove()
        zero = h.sum() * 0.0
        out = {"ce": zero, "kd": zero, "layer": zero, "attention": zero, "embedding": zero}
        s_logits = base.score(h[keep]) if keep.any() else None  # (M, N+1) at labelled positions
        if cfg.alpha > 0 and s_logits is not None:
            out["ce"] = F.cross_entropy(s_logits, labels[keep])
        if cfg.embedding > 0:  # TinyBERT's embedding layer: the items' input vectors against the teacher's
            real = x != PAD  # (B, T)
            with torch.no_grad():
                te = self.teacher.item_table()[x[real]]  # (R, D)
            out["embedding"] = F.mse_loss(base.item_table()[x[real]], te.to(h.dtype)) if real.any() else zero
        if cfg.uses_teacher:
            t_final, t_layers, t_att = self._teacher_outputs(x, rows)  # (B, T', H), k x (B, T', H), k x (B, T', h, T)
            if cfg.beta > 0:
                if cfg.positions == "all" and s_logits is not None:
                    sl = s_logits  # (M, N+1), shared with CE
                else:
                    sl = base.score(h[:, cut][pkeep])  # (M', N+1)
                with torch.no_grad():
                    tl = self.teacher.score(t_final[pkeep].to(h.dtype))  # (M', N+1)
                out["kd"] = kd_loss(sl, tl, cfg.temperature)
            if cfg.uses_layers:
                w = self.weights.to(h.device)
                terms = [hidden_distance(tap.out[i][:, cut][pkeep], t_layers[i][pkeep], cfg.distance)
                         for i in range(k)]
                out["layer"] = (w * torch.stack(terms)).sum()
                for i, t in enumerate(terms):
                    out[f"layer_{i}"] = t
            if cfg.uses_attention:  # TinyBERT's attention term, the same layer weights
                w = self.weights.to(h.device)
                terms = [F.mse_loss(attention_rows(atap.out[i], cfg.positions)[pkeep], t_att[i][pkeep].to(h.dtype))
                         if pkeep.any() else zero for i in range(k)]
                out["attention"] = (w * torch.stack(terms)).sum()
        out["loss"] = (cfg.alpha * out["ce"] + cfg.beta * out["kd"] + cfg.gamma * out["layer"]
                       + cfg.attention * out["attention"] + cfg.embedding * out["embedding"])
        return out

    @property
    def mean_over_labels(self) -> bool:
        """Every term a mean over the labelled positions (positions "all"): `lab.train.fit` under N processes then
        weights each rank's loss by its labelled positions (exact); "last" terms are means over rows (weighted by rows:
        the CE term's weighting is then approximate when the shards' label counts differ)."""
        return self.cfg.positions == "all"

    def __call__(self, student: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
        """The `loss_fn(model, input_ids, labels, rows)` hook of `lab.train.fit`; keeps running means of every term."""
        out = self.terms(student, x, labels, rows)
        for name, v in out.items():
            self.totals[name] = self.totals.get(name, 0.0) + float(v.detach())
        self.steps += 1
        return out["loss"]

    def summary(self) -> dict[str, float]:
        """Mean of every term over the steps seen so far."""
        return {k: v / max(1, self.steps) for k, v in self.totals.items()}

"""Compressing the teacher instead of distilling it (chapter 06): unstructured magnitude pruning, dynamic INT8
quantisation, and how many numbers and bytes a (pruned, quantised) model stores."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["decoder_linear_weights", "magnitude_prune", "prune_to", "nonzero_parameters", "quantize_int8",
           "stored_parameters", "stored_bytes"]


def decoder_linear_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, weight) of every `nn.Linear` inside the decoder layers (`model.layers`), in order (chapter 06)."""
    return [(f"layers.{n}.weight", m.weight) for n, m in model.layers.named_modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def magnitude_prune(model: nn.Module, n_remove: int) -> dict:
    """Unstructured global magnitude pruning (Han et al. 2015), in place (chapter 06): the `n_remove` decoder linear
    weights of smallest |w|, over all layers at once (one threshold; `torch.topk`, so exactly `n_remove`), are set to
    0 and kept there if the model trains: those weights become trainable, and a gradient hook multiplies each
    gradient by its mask, so AdamW's moments and its decoupled weight decay leave the pruned weights at 0.
    `torch.nn.utils.prune.global_unstructured` makes the same choice through a reparametrisation (weight_orig ×
    mask) that `save_pretrained` would write as extra tensors; the mask here leaves an ordinary model. The matrices
    stay dense, so dense kernels do the same work: pruning saves nothing at inference unless a sparse kernel runs.

    Returns {"removed", "pool" (decoder linear weights), "sparsity" (share of the pool removed), "threshold"}.
    """
    ws = decoder_linear_weights(model)
    flat = torch.cat([w.detach().abs().reshape(-1) for _, w in ws])  # (pool,)
    if not 0 <= n_remove <= len(flat):
        raise ValueError(f"cannot remove {n_remove} of {len(flat)} decoder linear weights")
    drop = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    idx = torch.topk(flat, int(n_remove), largest=False).indices
    drop[idx] = True
    start = 0
    for _, w in ws:
        mask = (~drop[start:start + w.numel()]).reshape(w.shape).to(w.dtype)
        start += w.numel()
        w.mul_(mask)
        w.requires_grad_(True)
        w.register_hook(lambda g, m=mask: g * m)
    return {"removed": int(n_remove), "pool": int(len(flat)), "sparsity": float(n_remove / max(len(flat), 1)),
            "threshold": float(flat[idx].max()) if len(idx) else 0.0}


def prune_to(model: nn.Module, target_params: int) -> dict:
    """`magnitude_prune` `model` until it holds `target_params` parameters (count_parameters less the weights set to
    0), e.g. a k-layer student's count (chapter 06); returns its info with "target"."""
    n = sum(p.numel() for p in model.parameters())
    return {**magnitude_prune(model, n - int(target_params)), "target": int(target_params)}


def nonzero_parameters(model: nn.Module) -> int:
    """Parameters that are not exactly 0 (a pruned model's effective size)."""
    return int(sum(int((p != 0).sum()) for p in model.parameters()))


def quantize_int8(model: nn.Module, device: torch.device | str = "cpu") -> tuple[nn.Module | None, str]:
    """Post-training dynamic INT8 quantisation of a copy of `model` (chapter 06): every `nn.Linear` gets int8 weights
    (per-tensor scale) and quantises its input on the fly per batch (`torch.ao.quantization.quantize_dynamic`, the
    CPU backends fbgemm / x86). Returns (the quantised copy on the CPU in eval mode, "ok"), or (None, the error) where
    this torch build or CPU has no quantised engine. torch 2.13 marks `torch.ao.quantization` deprecated (its
    successor, torchao, is not a dependency); its warnings are silenced here. `device`: where the run's other
    models are; these kernels run on the CPU only, so a CUDA run gets (None, the reason)."""
    import copy
    import warnings

    if torch.device(device).type != "cpu":
        return None, f"dynamic INT8 kernels run on the CPU only; this run is on {device}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            q = quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)
            q.recommend_scores(torch.ones(1, 2, dtype=torch.long))  # fails here if the engine cannot run
        return q, "ok"
    except Exception as e:  # noqa: BLE001 — any failure of the quantised engine becomes the row's status
        return None, f"{type(e).__name__}: {e}"


def _is_int8_linear(mod: nn.Module) -> bool:
    return type(mod).__name__ == "Linear" and type(mod).__module__.startswith("torch.ao.nn.quantized")


def stored_parameters(model: nn.Module) -> int:
    """Numbers a model stores, each weight once whatever its precision (chapter 06): its parameters, with the
    weights of dynamically quantised INT8 linears and bitsandbytes 4-bit linears counted by their logical shape."""
    n = 0
    for mod in model.modules():
        if _is_int8_linear(mod):
            w, b = mod._weight_bias()
            n += w.numel() + (b.numel() if b is not None else 0)
            continue
        for name, p in mod.named_parameters(recurse=False):
            qs = getattr(p, "quant_state", None)
            n += qs.shape.numel() if qs is not None else p.numel()
    return int(n)


def stored_bytes(model: nn.Module) -> int:
    """Bytes a model stores (chapter 06; `lab.bench.weights_mb`): parameters and buffers as held, plus what they
    do not show: the int8 weights (and float biases) of dynamically quantised linears, and the block scales of
    bitsandbytes NF4 weights (double-quantised: their own scales too)."""
    tensors = list(model.parameters()) + list(model.buffers())
    total = sum(t.numel() * t.element_size() for t in tensors)
    for mod in model.modules():
        if _is_int8_linear(mod):
            w, b = mod._weight_bias()
            total += w.numel() + 8 + (b.numel() * b.element_size() if b is not None else 0)  # int8 + scale, zp
        qs = getattr(getattr(mod, "weight", None), "quant_state", None)
        if qs is not None:
            total += qs.absmax.numel() * qs.absmax.element_size()
            if getattr(qs, "state2", None) is not None:
                total += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
    return int(total)

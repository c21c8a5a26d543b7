"""How a student is trained: full fine-tuning, LoRA, or QLoRA (4-bit NF4 base + LoRA), and how it is merged back into
an ordinary full-precision `SeqRecModel` so adapters cost nothing at inference (chapter 05).

LoRA (peft) goes on the decoder's attention and MLP projections. By default the item table stays frozen: the student
keeps the teacher's item representations and scoring table, and only the adapters train (`lora_train_embeddings`
trains it too, as a peft `modules_to_save` copy). QLoRA saves the student with `save_pretrained`, reloads it with
`BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")` (embeddings and norms stay in full precision), runs
`peft.prepare_model_for_kbit_training` and adds LoRA. Merging a QLoRA student dequantises every NF4 weight
(`bitsandbytes.functional.dequantize_4bit`) and adds the LoRA delta in float32, into a fresh full-precision copy of the
student: the merged model computes the function that was trained (the NF4-rounded base plus the adapter), with no
re-quantisation (peft's own `merge_and_unload` on a 4-bit model would round the merged weight to NF4 again).

One path on every CPU, and a faithful one (bitsandbytes 0.50.2, measured on this book's 2-core CPU):
- bitsandbytes repacks a `Linear4bit`'s NF4 weight in place for a fused kernel the first time it runs in eval mode
  without grad on a CPU with AVX512-BF16 (`Linear4bit.forward`). That layout needs the output width to be a multiple
  of 32, rounds the block scales to bfloat16 and is not what `dequantize_4bit` reads: validation forwards crashed the
  smoke width (32) and silently corrupted the merge at width 64. `load_4bit` switches the repacking off on every
  layer (`keep_off_cpu_packing`), so CPUs with and without AVX512-BF16 run the same dequantise-then-matmul path.
- The CPU `dequantize_4bit` kernel is right only when a layer's input width is a multiple of the NF4 block size
  (blocks of 64 on a 32-wide layer dequantised with relative error 0.37-0.78 instead of NF4's 0.09). On CPU each
  layer is therefore quantised with the largest block in `CPU_BLOCKSIZES` that divides its input width; a layer that
  no block divides raises before training, naming the layer, its width and the multiple it needs. `check_4bit`
  compares every layer's dequantised weight with a plain-torch dequantisation of the same codes.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from ..console import bitsandbytes_path, quiet_bitsandbytes
from ..models import SeqRecModel
from .config import DistillConfig

__all__ = ["lora_config", "CPU_BLOCKSIZES", "load_4bit", "linear4bit_layers", "keep_off_cpu_packing", "cpu_blocksize",
           "requantize", "reference_dequantize", "check_4bit", "apply_adapter", "TrainableView", "merge_student",
           "dequantize_merge"]

quiet_bitsandbytes()  # before bitsandbytes is imported: its kernels-community warning is about a kernel not used here
_SAID_PATH: set = set()  # the devices whose NF4 path `load_4bit` has named in this process


def lora_config(cfg: DistillConfig):
    """The peft `LoraConfig` of a distillation run."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), bias="none",
                      modules_to_save=["item_emb"] if cfg.lora_train_embeddings else None)


CPU_BLOCKSIZES = (64, 32)  # NF4 block sizes the CPU kernel dequantises correctly for input widths divisible by them


def load_4bit(folder: str | Path, device: torch.device | str = "cpu") -> SeqRecModel:
    """A saved `SeqRecModel` with every decoder Linear quantised to 4-bit NF4 (bitsandbytes; runs on CPU too), on
    every CPU the same way (see the module docstring), checked layer by layer with `check_4bit`."""
    from transformers import BitsAndBytesConfig

    device = torch.device(device)
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=compute)
    dm = {"": device.index or 0} if device.type == "cuda" else "cpu"
    model = SeqRecModel.from_pretrained(folder, quantization_config=q, device_map=dm)
    keep_off_cpu_packing(model)
    if device.type == "cpu":
        reference = SeqRecModel.from_pretrained(folder)
        ref = reference.state_dict()
        for name, mod in linear4bit_layers(model):
            if mod.in_features % mod.weight.blocksize:
                requantize(mod, ref[f"{name}.weight"], cpu_blocksize(name, mod.in_features))
    check_4bit(model)
    if device.type not in _SAID_PATH:  # once per process, in words (lab.console.bitsandbytes_path)
        _SAID_PATH.add(device.type)
        print(bitsandbytes_path(device))
    return model


def linear4bit_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every bitsandbytes `Linear4bit` in `model`."""
    import bitsandbytes as bnb

    return [(n, m) for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]


def keep_off_cpu_packing(model: nn.Module) -> int:
    """Switch off bitsandbytes' in-place CPU repacking of NF4 weights (AVX512-BF16 CPUs only, see the module
    docstring) on every `Linear4bit`; returns how many layers had it on. Chapter 05."""
    n = 0
    for _, mod in linear4bit_layers(model):
        n += bool(getattr(mod, "support_avx512bf16_for_cpu", False))
        mod.support_avx512bf16_for_cpu = False
    return n


def cpu_blocksize(name: str, in_features: int) -> int:
    """The largest of `CPU_BLOCKSIZES` dividing a layer's input width; a clear error when none does."""
    for bs in CPU_BLOCKSIZES:
        if in_features % bs == 0:
            return bs
    raise ValueError(f"{name}: input width {in_features} cannot be quantised to NF4 on CPU: bitsandbytes' CPU "
                     f"kernel needs it to be a multiple of {min(CPU_BLOCKSIZES)} (choose hidden and intermediate "
                     f"sizes divisible by {min(CPU_BLOCKSIZES)}, or use adapter='lora')")


@torch.no_grad()
def requantize(mod: nn.Module, weight: torch.Tensor, blocksize: int) -> None:
    """Quantise a float `weight` into the `Linear4bit` `mod` with NF4 blocks of `blocksize` (double-quantised
    scales, as `load_4bit`'s config asks)."""
    from bitsandbytes.nn import Params4bit

    old = mod.weight
    mod.weight = Params4bit(weight.detach().float().clone(), requires_grad=False, blocksize=blocksize,
                            compress_statistics=True, quant_type="nf4", quant_storage=old.quant_storage,
                            module=mod).to(old.device)


@torch.no_grad()
def reference_dequantize(weight) -> torch.Tensor:
    """Plain-torch dequantisation of an NF4 `Params4bit` (unpack two codes a byte, look them up, scale each block
    by its absmax, double-quantised absmax decoded first): the check on bitsandbytes' own kernel."""
    import bitsandbytes.functional as F

    qs = weight.quant_state
    absmax = qs.absmax
    if qs.nested:
        absmax = F.dequantize_blockwise(qs.absmax, qs.state2).float() + qs.offset
    raw = weight.data.view(torch.uint8).reshape(-1)
    codes = torch.stack([raw >> 4, raw & 0xF], dim=1).reshape(-1).long()  # high nibble first
    n = qs.shape.numel()
    values = qs.code.float().to(raw.device)[codes][:n]  # (n,)
    scale = absmax.float().repeat_interleave(qs.blocksize)[:n]
    return (values * scale).reshape(qs.shape)


@torch.no_grad()
def check_4bit(model: nn.Module, atol: float = 1e-5) -> dict[str, float]:
    """Max |bitsandbytes' dequantised weight - `reference_dequantize`| per `Linear4bit`, relative to the layer's
    largest weight. Raises `ValueError` naming the layer, its widths and block size where they differ by more than
    `atol` (a layout or kernel bitsandbytes gets wrong on this machine) or where the weight is in the repacked CPU
    layout. Chapter 05."""
    from peft.utils.integrations import dequantize_bnb_weight

    errors = {}
    for name, mod in linear4bit_layers(model):
        qs = mod.weight.quant_state
        where = (f"{name} (in_features={mod.in_features}, out_features={mod.out_features}, "
                 f"NF4 block {qs.blocksize})")
        if getattr(qs, "packing_format_for_cpu", False):
            raise ValueError(f"{where}: weight is in bitsandbytes' repacked CPU layout, which dequantize_4bit does "
                             f"not read; build 4-bit students with lab.distill.adapters.load_4bit")
        got = dequantize_bnb_weight(mod.weight, state=qs).float()
        want = reference_dequantize(mod.weight)
        err = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
        if not err <= atol:
            raise ValueError(f"{where}: bitsandbytes dequantises this layer wrongly on this machine (relative "
                             f"error {err:.3g}); its input width must be a multiple of the block size")
        errors[name] = err
    return errors


def apply_adapter(student: SeqRecModel, cfg: DistillConfig, workdir: str | Path | None = None) -> nn.Module:
    """The trainable model for `cfg.adapter`: the student itself ("full"), or a peft model ("lora", "qlora") seen
    through `TrainableView`.

    Args:
        workdir: where the QLoRA base is saved before 4-bit loading (kept until `merge_student`).
    """
    if cfg.adapter == "full":
        student.requires_grad_(True)
        student.train()
        return student
    from peft import get_peft_model, prepare_model_for_kbit_training

    with warnings.catch_warnings():  # peft probes the deprecated `is_gradient_checkpointing`
        warnings.simplefilter("ignore", FutureWarning)
        if cfg.adapter == "lora":
            model = get_peft_model(student, lora_config(cfg))
        else:
            if workdir is None:
                raise ValueError("QLoRA needs a workdir to save the full-precision base before 4-bit loading")
            base_dir = Path(workdir)
            student.save_pretrained(base_dir)
            q = load_4bit(base_dir, student.device)
            q = prepare_model_for_kbit_training(q, use_gradient_checkpointing=False)
            model = get_peft_model(q, lora_config(cfg))
    model.train()
    return TrainableView(model)


class TrainableView(nn.Module):
    """A (Q)LoRA model seen by `lab.train.fit`: its state dict (checkpoints, best weights) holds only the trainable
    tensors, since a 4-bit base cannot be reloaded with `load_state_dict` and frozen weights never change."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def get_base_model(self) -> nn.Module:
        return self.model.get_base_model()

    def recommend_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_base_model().recommend_scores(input_ids)

    def state_dict(self, *args, **kwargs) -> dict:
        return {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        params = dict(self.model.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in state_dict]
        unexpected = [n for n in state_dict if n not in params]
        if strict and (missing or unexpected):
            raise RuntimeError(f"trainable state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for n, v in state_dict.items():
            if n in params:
                params[n].copy_(v)


def merge_student(model: nn.Module, cfg: DistillConfig, workdir: str | Path | None = None) -> SeqRecModel:
    """An ordinary full-precision `SeqRecModel` (eval mode) computing what the trained model computes.

    "full": the model itself. "lora": peft's `merge_and_unload` (W + scale·B·A). "qlora": `dequantize_merge` into
    a fresh float32 copy loaded from `workdir` (the folder `apply_adapter` saved), which is then removed.
    """
    if isinstance(model, TrainableView):
        model = model.model
    if cfg.adapter == "full":
        merged = model
    elif cfg.adapter == "lora":
        merged = model.merge_and_unload()
    else:
        template = SeqRecModel.from_pretrained(workdir).to(model.get_base_model().device)
        merged = dequantize_merge(model, template)
        shutil.rmtree(workdir, ignore_errors=True)
    merged.eval()
    return merged


@torch.no_grad()
def dequantize_merge(peft_model: nn.Module, template: SeqRecModel) -> SeqRecModel:
    """Write a (Q)LoRA model's effective weights into `template`: dequant(W_nf4) + Σ adapters' deltas, in float32.

    Args:
        peft_model: a peft model over a `SeqRecModel` (4-bit or not).
        template: a full-precision `SeqRecModel` of the same shape (its weights are overwritten).
    """
    import bitsandbytes as bnb
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_bnb_weight
    from peft.utils.other import ModulesToSaveWrapper

    base = peft_model.get_base_model()
    check_4bit(base)  # a layer repacked or mis-dequantised since loading would merge the wrong weights
    override: dict[str, torch.Tensor] = {}
    for name, mod in base.named_modules():
        if isinstance(mod, LoraLayer):
            lin = mod.get_base_layer()
            w = lin.weight
            w = dequantize_bnb_weight(w, state=w.quant_state) if w.__class__.__name__ == "Params4bit" else w.data
            w = w.float().clone()
            if not mod.merged:
                for a in mod.active_adapters:
                    if a in mod.lora_A:
                        w += mod.get_delta_weight(a).float()
            override[f"{name}.weight"] = w
            if getattr(lin, "bias", None) is not None:
                override[f"{name}.bias"] = lin.bias.data.float()
        elif isinstance(mod, bnb.nn.Linear4bit):
            override[f"{name}.weight"] = dequantize_bnb_weight(mod.weight, state=mod.weight.quant_state).float()
            if mod.bias is not None:
                override[f"{name}.bias"] = mod.bias.data.float()
        elif isinstance(mod, ModulesToSaveWrapper):
            trained = mod.modules_to_save[mod.active_adapters[0]]
            override.update({f"{name}.{k}": v.float() for k, v in trained.state_dict().items()})
    rest = base.state_dict()
    sd = {}
    for key, ref in template.state_dict().items():
        v = override.get(key, rest.get(key))
        if v is None:
            raise KeyError(f"no trained value for {key}")
        sd[key] = v.to(ref.dtype).reshape(ref.shape)
    template.load_state_dict(sd, strict=True)
    return template

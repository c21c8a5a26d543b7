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
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from ..models import SeqRecModel
from .config import DistillConfig


def lora_config(cfg: DistillConfig):
    """The peft `LoraConfig` of a distillation run."""
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), bias="none",
                      modules_to_save=["item_emb"] if cfg.lora_train_embeddings else None)


def load_4bit(folder: str | Path, device: torch.device | str = "cpu") -> SeqRecModel:
    """A saved `SeqRecModel` with every decoder Linear quantised to 4-bit NF4 (bitsandbytes; runs on CPU too)."""
    from transformers import BitsAndBytesConfig

    device = torch.device(device)
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=compute)
    dm = {"": device.index or 0} if device.type == "cuda" else "cpu"
    return SeqRecModel.from_pretrained(folder, quantization_config=q, device_map=dm)


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

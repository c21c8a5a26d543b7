"""Recommenders that are not the book's transformer, each scored like every model (chapters 01, 02 and 06): the count
baselines (popularity, first-order Markov), ItemKNN and EASE, all as `ItemScorer` modules, and GRU4Rec.

Chapter 01 introduced the popularity and first-order Markov baselines (`sequential_structure`: is there sequential
signal to learn?); chapter 02 compares the teacher with `popularity_scorer`; chapter 06 puts every one of them on its
leaderboard (`lab.chapters.c06_baselines`). Each is a module from a history batch (B, T) to (B, N+1) scores (fixed
tables held as frozen parameters, so it is counted, timed and measured like a model), scored by
`lab.evaluation.score_split`, so baselines and models share one ranking (`target_ranks`: full catalogue, seen items
masked, ties counted against the target).
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

from .constants import IGNORE, PAD
from .data import RecData
from .evaluation import score_split
from .models import Recommender, SeqRecOutput, mask_pad

__all__ = ["TIE_BREAK", "BASELINES", "KNN_TIE_BREAK", "ItemScorer", "multi_hot", "transition_counts",
           "popularity_scorer", "markov_scorer", "count_scorers", "sequential_structure", "training_matrix",
           "cooccurrence", "item_cosine", "itemknn_table", "ease_table", "itemknn_scorer", "ease_scorer",
           "choose_on_valid", "GRU4RecConfig", "GRU4Rec"]

TIE_BREAK = 1e-3  # popularity as a tie-breaker is scaled below this, so it never outweighs one transition count
BASELINES = ("popularity", "markov", "markov_reversed")  # the count baselines of `sequential_structure`
KNN_TIE_BREAK = 1e-6  # ItemKNN's popularity tie-breaker: far below any cosine difference that changes a ranking


def multi_hot(history: torch.Tensor, num_items: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The items of each history as a 0/1 row over the catalogue, PAD left out.  # (B, T) -> (B, N+1)"""
    x = torch.zeros(len(history), num_items + 1, dtype=dtype, device=history.device)
    x.scatter_(1, history, 1.0)
    x[:, PAD] = 0.0
    return x


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


# -- the count baselines (chapter 01) ---------------------------------------------------------------------------------
def transition_counts(rd: RecData) -> sparse.csr_matrix:
    """How often item b followed item a in the training windows (`train_inputs` -> `train_labels`).  # (N+1, N+1)"""
    n = rd.num_items + 1
    x = rd.train_inputs.reshape(-1).numpy()  # (U*T,) last item ...
    y = rd.train_labels.reshape(-1).numpy()  # (U*T,) ... and the item that followed it
    ok = (x != PAD) & (y != IGNORE) & (y != PAD)
    return sparse.csr_matrix((np.ones(int(ok.sum())), (x[ok], y[ok])), shape=(n, n))


def _tie(rd: RecData, scale: float) -> np.ndarray:
    pop = rd.item_counts.numpy().astype(np.float64)
    return pop / (pop.max() + 1.0) * scale  # (N+1,)


def popularity_scorer(rd: RecData) -> ItemScorer:
    """Most popular (chapter 01; chapters 02 and 06 compare every model with it): training counts, the same for every
    user."""
    return ItemScorer(rd.item_counts.double())


def markov_scorer(rd: RecData, transitions: sparse.spmatrix | None = None) -> ItemScorer:
    """First-order Markov chain (chapter 01; a row of chapter 06's leaderboard): how often each item followed the
    history's last item in training (`transition_counts`; pass its transpose for the reversed chain), with popularity
    below `TIE_BREAK` breaking ties. No library is needed for a table of counts (RecBole's FPMC factorises the same
    transitions)."""
    table = transition_counts(rd) if transitions is None else transitions
    return ItemScorer(torch.from_numpy(_tie(rd, TIE_BREAK)), torch.from_numpy(table.toarray()), "last")


def count_scorers(rd: RecData, transitions: sparse.csr_matrix | None = None) -> dict[str, "ItemScorer"]:
    """The three count baselines of chapter 01, built from the training split only (`popularity_scorer`,
    `markov_scorer`):

    * `popularity`: training counts;
    * `markov`: how often each item followed the history's last item (first-order Markov chain);
    * `markov_reversed`: how often each item came before it (the same counts read backwards: co-occurrence without
      order).

    The Markov scores add popularity scaled below `TIE_BREAK` as a tie-breaker; scores are float64 (the book ranks in
    float64, `lab.evaluation.score_split`: in float32 the tie-breaker would round into ties).
    """
    fwd = transition_counts(rd) if transitions is None else transitions
    return {"popularity": popularity_scorer(rd), "markov": markov_scorer(rd, fwd),
            "markov_reversed": markov_scorer(rd, fwd.T)}


def sequential_structure(rd: RecData, k: int = 10, split: str = "valid", batch: int = 1024) -> dict:
    """Is there sequential signal a model can learn? Full-ranking HR@k / NDCG@k of the three count baselines of
    `count_scorers` (chapter 01), scored with `lab.metrics.evaluate` on `split`. Forward Markov beating popularity says
    the last item predicts the next; beating its reverse says the order matters. `chance_hr` is k / N;
    `top_successor_share` is the share of training transitions whose next item is the last item's most frequent
    successor."""
    target = rd.split(split)[1]
    fwd = transition_counts(rd)
    out = {"rows": int(len(target)), "chance_hr": float(k / max(rd.num_items, 1)), "train_transitions": int(fwd.sum())}
    for name, fn in count_scorers(rd, fwd).items():
        means = score_split(fn, rd, split, ks=(k,), batch_size=batch)[0] if len(target) else {}
        out[f"hr@{k}_{name}"] = float(means.get(f"hr@{k}", 0.0))
        out[f"ndcg@{k}_{name}"] = float(means.get(f"ndcg@{k}", 0.0))
    if fwd.nnz:
        out["top_successor_share"] = float(fwd.max(axis=1).toarray().ravel().sum() / fwd.sum())
    return out


# -- item-item tables: ItemKNN and EASE (chapter 06) ------------------------------------------------------------------
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


def choose_on_valid(make: Callable, values, rd: RecData, metric: str = "ndcg@10",
                    widen: int = 0) -> tuple[object, pd.DataFrame]:
    """(the value whose scorer `make(value)` has the best validation `metric`, the first on ties; a frame value ->
    validation metric, `at_edge` marking the chosen value when it is still the grid's first or last) — chapter 06
    picks ItemKNN's neighbourhood and EASE's λ this way, never on test.

    `widen` > 0 (a grid of positive numbers in a geometric progression, like EASE's λ): while the best value is at an
    end of the grid, one more value is tried beyond that end (the grid's own ratio), at most `widen` times, so a best
    value at the edge of the first grid is not taken for the best there is."""
    values = [*values]
    scores = [float(score_split(make(v), rd, "valid")[0][metric]) for v in values]
    for _ in range(widen):
        best = int(np.argmax(scores))
        if 0 < best < len(values) - 1:
            break
        step = values[1] / values[0] if best == 0 else values[-1] / values[-2]
        new = values[0] / step if best == 0 else values[-1] * step
        at = 0 if best == 0 else len(values)
        values.insert(at, new)
        scores.insert(at, float(score_split(make(new), rd, "valid")[0][metric]))
    best = int(np.argmax(scores))
    frame = pd.DataFrame({"value": values, f"valid_{metric}": scores})
    frame["at_edge"] = (frame.index == best) & (best in (0, len(values) - 1))
    return values[best], frame


def choice_sentence(what: str, value, frame: pd.DataFrame, metric: str = "ndcg@10") -> str:
    """The choice `choose_on_valid` made, in words: the value, the grid it was chosen from (with each validation
    score) and, when the value is still at an end of the grid, that a wider grid might do better (chapters 02, 06)."""
    grid = ", ".join(f"{v:g} ({s:.4f})" for v, s in zip(frame["value"], frame[f"valid_{metric}"]))
    edge = bool(frame["at_edge"].any()) if "at_edge" in frame else False
    return (f"{what} chosen on validation {metric.upper()}: {value:g}, from {grid}."
            + (" It is at the edge of the grid tried, so a value beyond it may do better." if edge else ""))


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

"""A seeded synthetic data set in the Amazon Reviews 2023 file format, with known structure (chapter 01).

`simulate_synthetic` draws user histories from a latent world (`SyntheticWorld`: item clusters, power-law popularity,
a cluster-level Markov chain, preferred successor items, user tastes); `generate_synthetic` adds timestamps, ratings,
ids, metadata, repeats and exact duplicates and writes reviews and metadata as gzipped JSON Lines, byte-identical for
the same seed and parameters; `ensure_synthetic` writes them only when missing or made otherwise. The knobs live in
`DataConfig`; the generator's fixed numbers in `SyntheticConstants`. `toy_markov_sequences` makes the tiny learnable
sequences of the unit tests.

Two worlds (issue 12)
---------------------
*Shallow* (every depth knob 0; the files of every earlier run, byte for byte): the next item depends on the last item
and on a latent user taste, so the last item is (almost) all a model can use: depth buys nothing.

*Depth* (`DataConfig.induction_strength`, `pointer_strength` or `switch_strength` with `n_switch_items` > 0;
`lab.config.DEPTH_WORLD`): the next item needs composition across positions, and its Bayes-optimal law is computed
exactly. Items never repeat within a user, so the mechanisms key on clusters. There is no latent taste after the first
item (`markov_strength` must be 1; the first item's cluster comes from the user's taste and is never needed again).
Given the history x_0..x_{t-1} (c_j = cluster of x_j), step t draws x_t:

1. *Successor* (the last-item shortcut): with probability sigma (`successor_strength`) a preferred successor of
   x_{t-1} is proposed (weights `successor_decay ** k`); it is taken when unseen, else step 2 decides.
2. *Cluster*, a mixture over the mechanisms:
   - *induction* (rho, `induction_strength`): c = pi_u(c_{t-1}), where pi_u is the user's private random map over
     clusters, pi_u(c) uniform over the clusters != c, independently per c (a map, not a permutation, so the
     posterior factorises per cluster). Predicting it means finding an earlier occurrence of c_{t-1} and copying the
     cluster that followed it (a previous-token head plus an induction head).
   - *h-hop pointer* (eta, `pointer_strength`): from p = t-1 follow p <- p - lag(x_p) `pointer_hops` times (lag(i)
     uniform in 1..`max_lag`, a latent property of each item); c = c(x_p) when p stays >= 0, else this mass falls to
     the Markov chain.
   - *Markov* (the rest): c ~ T_z[c_{t-1}], z the user's mode: the bit (latent, per item) of the item that followed
     the most recent *switch item* at a position <= t-2 (0 before any). T_0 is the shallow world's chain, T_1 =
     (1 - s) T_0 + s T' with T' a second chain of the same kind (s = `switch_strength`).
3. *Item*: drawn from cluster c by popularity renormalised over the user's unseen items (exact, no rejection loop);
   uniformly from all unseen items when the cluster is exhausted.

Everything in step 2 but pi_u is a deterministic function of the history, and each step's likelihood depends on pi_u
through one entry, pi_u(c_{j-1}), so `bayes_scores` is exact: P(pi_u(c_{t-1}) = d | H) is proportional to the product
over the earlier steps j with c_{j-1} = c_{t-1} of L_j(d) = S_j(x_j) + (1 - sigma u_j) (O_j(x_j) + rho q_j(x_j | d)),
where S_j is the successor part, u_j the unseen successors' weight, O_j the non-induction mixture's item probability
and q_j(x | d) the item law of cluster d at step j (all known given H_<j). `last_item_bayes_scores` is the best
predictor that sees only the last item (and, as every ranked scorer does through masking, which items were seen, not
their order): induction is replaced by its prior (uniform over the other clusters) and the pointer and mode by their
marginal given the last item's cluster, lag, bit and switch flag, estimated by averaging the exact per-step laws over
`SyntheticConstants.last_item_users` freshly simulated users of the same world (`last_item_table`). With pointer and
switch off that table is T_0's row, exactly. `planted_variables` gives the intermediate variables a model must compute
(the retrieved cluster, each hop's position, the mode), the ground truth of probes. `synthetic_world` rebuilds the
world of a seed with the generated ids and histories, and `reference_scorers` scores a processed `RecData` with both
predictors: Bayes given the user's whole generated history before the target (the items k-core dropped included,
`GeneratedPrefixes`), which makes the ceiling exact for the targets the models are scored on.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from ..config import DataConfig
from ..console import progress_bar
from ..constants import PAD
from ..io import read_json, write_json, write_jsonl_gz
from .amazon import fingerprint


def toy_markov_sequences(n_users: int = 64, n_items: int = 30, length: int = 12, seed: int = 0) -> list[list[int]]:
    """Tiny learnable sequences for unit tests: item i is mostly followed by item i+1 (mod n), no repeats per user."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n_users):
        start = int(torch.randint(1, n_items + 1, (1,), generator=g))
        s = [(start - 1 + t) % n_items + 1 for t in range(min(length, n_items))]
        seqs.append(s)
    return seqs


__all__ = ["GENERATOR_VERSION", "DAY_MS", "GENERATOR_FIELDS", "DEPTH_FIELDS", "SYNTHETIC", "SyntheticConstants",
           "SyntheticWorld", "toy_markov_sequences", "is_depth_world", "generator_params", "simulate_synthetic",
           "generate_synthetic", "ensure_synthetic", "pointer_positions", "bayes_scores", "last_item_table",
           "last_item_bayes_scores", "planted_variables", "synthetic_world", "generated_ids", "reference_scorers",
           "GeneratedPrefixes"]

GENERATOR_VERSION = 1  # bump when the generator's output changes, so cached raw files are regenerated
DAY_MS = 86_400_000  # one day in milliseconds (Amazon timestamps are Unix ms)
GENERATOR_FIELDS = ("category", "n_users", "n_items", "n_clusters", "mean_seq_len", "popularity_alpha",
                    "markov_strength", "successor_strength", "n_successors", "duplicate_frac", "repeat_frac")
DEPTH_FIELDS = ("induction_strength", "pointer_strength", "pointer_hops", "max_lag", "switch_strength",
                "n_switch_items")  # the depth world's knobs: in the parameters only when the depth world is on

_GENRES = ["Mystery", "Romance", "Science Fiction", "Fantasy", "History", "Cooking", "Travel", "Poetry", "Biography",
           "Self-Help", "Business", "Horror", "Children's", "Thriller", "Philosophy", "Gardening", "Art",
           "Music", "Sports", "Religion", "Science", "Health", "Parenting", "Comics", "Crafts", "Law", "Medicine",
           "Economics", "Psychology", "Nature"]
_ADJ = ["Silent", "Hidden", "Golden", "Broken", "Lost", "Secret", "Last", "Wild", "Quiet", "Burning", "Frozen",
        "Crimson", "Distant", "Ancient", "Bright", "Dark", "Gentle", "Hollow", "Iron", "Little", "Midnight", "Open",
        "Painted", "Restless", "Salt", "Simple", "Stolen", "Sweet", "Tender", "Winter", "Summer", "Northern",
        "Velvet", "Wandering", "Young", "Old", "Curious", "Brave", "Endless", "Fragile", "Glass", "Green", "Honest",
        "Invisible", "Lucky", "Modern", "Perfect", "Practical", "Radical", "Rising", "Scarlet", "Shining", "Strange",
        "Twisted", "Unlikely", "Vanishing", "Whispering", "Complete", "Essential", "Everyday"]
_NOUN = ["Harbor", "Garden", "River", "Kingdom", "Letters", "Mountain", "House", "Road", "Island", "Forest", "City",
         "Storm", "Bridge", "Child", "Witness", "Promise", "Journey", "Kitchen", "Machine", "Mirror", "Ocean",
         "Orchard", "Painter", "Pilgrim", "Queen", "Shadow", "Sister", "Soldier", "Stranger", "Tower", "Valley",
         "Voyage", "Watcher", "Window", "Wolf", "Atlas", "Recipes", "Habits", "Guide", "Handbook", "Secrets",
         "Lessons", "Stories", "Dreams", "Echoes", "Empire", "Engine", "Field", "Fire", "Flight", "Heart", "Hunter",
         "Light", "Map", "Moon", "Night", "Path", "Season", "Song", "Star", "Sun", "Theory", "Time", "Tide",
         "Trail", "Truth", "Wave", "World", "Year", "Market", "Mind", "Body", "Code", "Craft", "Game", "Life",
         "Method", "Mountains", "Rules", "Science"]
_FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Frank", "Grace", "Henry", "Iris", "Jonas", "Kara", "Leo",
          "Maya", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor", "Wen", "Yara", "Zoe"]
_LAST = ["Adler", "Brooks", "Chen", "Diaz", "Ellis", "Fischer", "Garcia", "Hughes", "Ito", "Jensen", "Kowalski",
         "Larsen", "Moreau", "Nakamura", "Okafor", "Patel", "Quist", "Rossi", "Silva", "Tanaka", "Ueda", "Varga",
         "Weber", "Young", "Zimmer"]
_REVIEW_TITLE = {1: ["Disappointing", "Not for me", "Waste of money", "One Star"],
                 2: ["Meh", "Expected more", "Two Stars", "Not great"],
                 3: ["It was okay", "Average", "Three Stars", "Mixed feelings"],
                 4: ["Good read", "Enjoyed it", "Four Stars", "Worth it"],
                 5: ["Five Stars", "Loved it", "A must-read", "Wonderful"]}
_REVIEW_TEXT = {1: ["I could not finish it.", "Poorly written and dull.", "Would not recommend."],
                2: ["Some good parts but mostly slow.", "Not what I hoped for.", "The middle drags."],
                3: ["Fine for a rainy afternoon.", "Some chapters shine, others do not.", "Decent but forgettable."],
                4: ["Well written and engaging.", "I would read more by this author.", "A solid book."],
                5: ["Could not put it down!", "One of the best I have read this year.", "Beautifully done."]}


@dataclass(frozen=True)
class SyntheticConstants:
    """The generator's fixed numbers: everything about the synthetic world and its raw files that `DataConfig` does
    not set. Changing one changes every generated data set, so bump `GENERATOR_VERSION` with it."""

    # simulate_synthetic: the latent world and the histories
    world_salt: int = 2023  # mixed with the seed for the world and the histories
    self_transition: float = 0.5  # weight of staying in the same cluster in the cluster-level Markov chain
    transition_concentration: float = 0.2  # Dirichlet concentration of the chain's other moves (small: few favourites)
    taste_concentration: float = 0.3  # Dirichlet concentration of a user's taste over clusters (small: a few clusters)
    successor_decay: float = 0.5  # an item's j-th preferred successor is picked with weight successor_decay ** j
    min_seq_len: int = 3  # every simulated history has at least this many items
    seq_len_offset: float = 2.5  # lengths are min_seq_len + floor(lognormal) with lognormal mean mean_seq_len - 2.5
    seq_len_sigma: float = 0.8  # sigma of that lognormal (long-tailed history lengths)
    seq_len_mu_shift: float = 0.32  # seq_len_sigma ** 2 / 2: mu = log(mean) - shift gives the lognormal that mean
    max_len_factor: int = 8  # the longest history is max_len_factor * mean_seq_len ...
    max_len_floor: int = 10  # ... but at least this, and at most half the catalogue
    resample_in_cluster: int = 6  # an already-seen pick is redrawn this many times inside its cluster ...
    resample_tries: int = 12  # ... then anywhere, up to this many tries in all (a user still stuck skips the step)
    seen_block_cells: int = 20_000_000  # users simulated at once: a (block, n_items) bool "seen" matrix of ~20 MB

    # generate_synthetic: timestamps, ratings, ids, repeats, metadata
    files_salt: int = 2024  # mixed with the seed for everything generate_synthetic adds
    t_start_ms: int = 1546300800000  # 2019-01-01 00:00 UTC: first synthetic timestamp
    t_end_ms: int = 1696032000000  # 2023-09-30 00:00 UTC: last one (the Amazon 2023 crawl ends in 2023)
    start_span: float = 0.93  # users start uniformly in the first 93% of [t_start_ms, t_end_ms]
    gap_days: int = 25  # median over users of the mean gap between two reviews (lognormal across users) ...
    gap_sigma: float = 0.9  # ... with this sigma; gaps are exponential around each user's mean
    tie_frac: float = 0.02  # share of zero gaps (same-time ties)
    squeeze: tuple = (0.5, 1.0)  # a user who would run past t_end_ms ends at a uniform fraction of the time left
    rating_base: float = 4.5  # rating = rint(base + weight * log(taste * K + floor) + quality + noise), clipped to 1-5
    affinity_weight: float = 0.3
    affinity_floor: float = 0.05
    quality_sd: float = 0.5  # sd of an item's quality
    rating_noise: float = 0.9  # sd of a review's noise
    variant_frac: float = 0.25  # share of items with several asins under one parent_asin ...
    variants: tuple = (2, 4)  # ... 2 or 3 of them (integers' [low, high))
    asin_digits: int = 8  # base-36 digits after "B0" in an asin
    user_digits: tuple = (11, 8)  # base-36 digits of a user_id after "A": a unique part and a random part
    repeat_delay_days: tuple = (1, 120)  # a repeated review comes this many days (uniform) after the first
    helpful_p: float = 0.55  # helpful_vote is geometric(p) - 1
    verified_frac: float = 0.88  # share of verified purchases
    review_text_picks: int = 12  # a review's title and text are pick % 4 and pick % 3 (12 = lcm)
    adjectives_per_cluster: int = 8  # title vocabulary of each cluster
    nouns_per_cluster: int = 10
    authors_per_cluster: int = 5
    price_median: float = 14.0  # prices are lognormal around this median ...
    price_sigma: float = 0.5  # ... with this sigma
    price_missing: float = 0.1  # share of items without a price
    pages: tuple = (90, 700)  # print length range (integers' [low, high))

    # the depth world (issue 12; the shallow world never draws from these)
    depth_salt: int = 2026  # mixed with the seed and world_salt for the depth world's mechanisms and histories
    last_item_users: int = 20_000  # fresh users simulated for the last-item predictor's marginal table
    bayes_chunk: int = 512  # users scored at once by bayes_scores (a (chunk, n_items) float matrix)


SYNTHETIC = SyntheticConstants()  # the constants every generated data set uses


def is_depth_world(cfg: DataConfig) -> bool:
    """Whether `cfg` asks for the depth world (a depth mechanism is on); with every one off it is the shallow world."""
    return (cfg.induction_strength > 0 or cfg.pointer_strength > 0
            or (cfg.switch_strength > 0 and cfg.n_switch_items > 0))


def generator_params(cfg: DataConfig, seed: int) -> dict:
    """The parameters that determine the synthetic raw files (written next to them as `<category>.synthetic.json`);
    the depth knobs only in the depth world, so the shallow world's record is what it always was."""
    out = {"version": GENERATOR_VERSION, "seed": int(seed), **{f: getattr(cfg, f) for f in GENERATOR_FIELDS}}
    if is_depth_world(cfg):
        out.update({f: getattr(cfg, f) for f in DEPTH_FIELDS})
    return out


def _base36(codes: np.ndarray, width: int) -> np.ndarray:
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    digits = np.empty((len(codes), width), dtype=np.int64)
    c = np.asarray(codes, dtype=np.int64).copy()
    for j in range(width - 1, -1, -1):
        digits[:, j], c = c % 36, c // 36
    return np.ascontiguousarray(alphabet[digits]).view(f"<U{width}").ravel()


def _unique_ids(n: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct base-36 strings of `width` characters: a bijection idx -> (idx * A + salt) mod 36^width."""
    m = 36 ** width
    salt = int(rng.integers(0, m))
    codes = (np.arange(n, dtype=object) * 2654435761 + salt) % m  # object ints: no overflow
    return _base36(codes.astype(np.int64), width)


def _sample_rows(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sample one column per row from row-wise cumulative weights `cum` (R, K) with uniforms `u` (R,)."""
    k = (cum < (u * cum[:, -1])[:, None]).sum(1)
    return np.minimum(k, cum.shape[1] - 1)


@dataclass
class SyntheticWorld:
    """The latent structure behind the synthetic data (ground truth, for checks; not written to the raw files)."""

    item_cluster: np.ndarray  # (I,) cluster of each generated item
    popularity: np.ndarray  # (I,) within-cluster sampling probability
    successors: np.ndarray  # (I, S) preferred next items of each item (inside its cluster)
    cluster_transition: np.ndarray  # (K, K) cluster-level Markov chain
    user_taste: np.ndarray  # (U, K) each user's taste over clusters
    successor_weights: np.ndarray | None = None  # (S,) probability of proposing each preferred successor
    seq_lengths: np.ndarray | None = None  # (U,) generated history lengths
    seed: int = 0
    # the depth world (None / 0 in the shallow world)
    successor_strength: float = 0.0  # sigma
    induction_strength: float = 0.0  # rho
    pointer_strength: float = 0.0  # eta
    pointer_hops: int = 0  # h
    max_lag: int = 0  # D
    item_lag: np.ndarray | None = None  # (I,) lag(i) in 1..D
    switch_item: np.ndarray | None = None  # (I,) bool: the switch items
    mode_bit: np.ndarray | None = None  # (I,) 0/1: the mode an item sets when it follows a switch item
    mode_transition: np.ndarray | None = None  # (2, K, K) T_0 (= cluster_transition) and T_1
    user_map: np.ndarray | None = None  # (U, K) pi_u of each generated user (pi_u(c) != c)
    sequences: np.ndarray | None = None  # (U, max length) each generated user's items in order, -1 after the end
    # ids written to the raw files (set by generate_synthetic and synthetic_world)
    item_ids: np.ndarray | None = None  # (I,) parent_asin of each generated item
    user_ids: np.ndarray | None = None  # (U,) user_id of each generated user
    _last_item: tuple | None = field(default=None, repr=False)  # cache of last_item_table

    @property
    def depth(self) -> bool:
        """Whether this is the depth world (exact Bayes available)."""
        return self.item_lag is not None

    @property
    def n_clusters(self) -> int:
        return int(self.cluster_transition.shape[0])

    @property
    def n_items(self) -> int:
        return int(len(self.item_cluster))


def simulate_synthetic(cfg: DataConfig, seed: int = 0, progress: bool = False) -> tuple[pd.DataFrame, SyntheticWorld]:
    """Simulate user histories (vectorised over users, one step at a time).

    Each user has a taste over `n_clusters` item clusters; items have power-law popularity inside their cluster
    (`popularity_alpha`) and `n_successors` preferred next items inside it. At each step the next item is, with
    probability `successor_strength`, one of the last item's preferred successors; otherwise a cluster is drawn from the
    cluster-level Markov chain (probability `markov_strength`) or from the user's taste, and an item from that cluster
    by popularity. A user never repeats an item here (repeats are added later, on purpose, for de-duplication).
    Returns the interactions (`user`, `item`, `step`: generated item indices 0..I-1) and the latent world.

    In the depth world (`is_depth_world`) the same clusters, popularity, successors, chain, tastes and lengths are
    drawn, and the histories follow the module docstring's law instead (`_simulate_depth`).
    """
    sc = SYNTHETIC
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), sc.world_salt]))
    K, I, U = int(cfg.n_clusters), int(cfg.n_items), int(cfg.n_users)
    if I < 2 * K:
        raise ValueError(f"n_items ({I}) must be at least 2 * n_clusters ({K})")
    depth = is_depth_world(cfg)
    if depth:
        _check_depth_knobs(cfg)
    item_cluster = rng.permutation(np.arange(I) % K)
    order = np.argsort(item_cluster, kind="stable")  # items grouped by cluster
    bounds = np.searchsorted(item_cluster[order], np.arange(K + 1))
    popularity = np.empty(I)
    cum = np.empty(I)  # global cdf: cluster c occupies (c, c + 1]
    S = int(max(1, min(cfg.n_successors, np.diff(bounds).min() - 1)))
    successors = np.empty((I, S), dtype=np.int64)
    for c in range(K):
        members = order[bounds[c]:bounds[c + 1]]
        m = len(members)
        w = (rng.permutation(m) + 1.0) ** -cfg.popularity_alpha
        w /= w.sum()
        popularity[members] = w
        cum[bounds[c]:bounds[c + 1]] = c + np.cumsum(w)
        cum[bounds[c + 1] - 1] = c + 1.0
        r = rng.random((m, m))
        r[np.arange(m), np.arange(m)] = 2.0  # never oneself
        successors[members] = members[np.argsort(r, axis=1)[:, :S]]
    succ_cum = np.cumsum(sc.successor_decay ** np.arange(S))
    succ_cum /= succ_cum[-1]

    def in_cluster(c, u):
        return order[np.minimum(np.searchsorted(cum, c + u, side="right"), I - 1)]

    transition = (sc.self_transition * np.eye(K)
                  + (1 - sc.self_transition) * rng.dirichlet(np.full(K, sc.transition_concentration), size=K))
    trans_cum = np.cumsum(transition, axis=1)
    taste = rng.dirichlet(np.full(K, sc.taste_concentration), size=U)
    taste_cum = np.cumsum(taste, axis=1)
    mu = math.log(max(cfg.mean_seq_len - sc.seq_len_offset, 1.0)) - sc.seq_len_mu_shift
    l_max = int(min(max(sc.max_len_factor * cfg.mean_seq_len, sc.max_len_floor), I // 2))
    lengths = np.minimum(sc.min_seq_len + np.floor(rng.lognormal(mu, sc.seq_len_sigma, U)).astype(np.int64), l_max)
    world = SyntheticWorld(item_cluster=item_cluster, popularity=popularity, successors=successors,
                           cluster_transition=transition, user_taste=taste,
                           successor_weights=np.diff(np.r_[0.0, succ_cum]), seq_lengths=lengths, seed=int(seed))
    if depth:
        drng = np.random.default_rng(np.random.SeedSequence([int(seed), sc.world_salt, sc.depth_salt]))
        _add_depth_mechanisms(world, cfg, drng)
        world.user_map = _random_maps(U, K, drng)
        seq = _simulate_depth(world, lengths, taste_cum, world.user_map, drng, progress=progress)
        world.sequences = seq
        uu, tt = np.nonzero(seq >= 0)
        return pd.DataFrame({"user": uu, "item": seq[uu, tt], "step": tt}), world

    users, items, steps = [], [], []
    block = max(1, min(U, sc.seen_block_cells // max(I, 1)))  # a (block, I) bool "seen" matrix
    for b0 in progress_bar(range(0, U, block), enabled=progress, desc="simulating users", file=sys.stderr):
        b1 = min(U, b0 + block)
        B = b1 - b0
        L = lengths[b0:b1]
        seen = np.zeros((B, I), dtype=bool)
        seq = np.full((B, int(L.max())), -1, dtype=np.int64)
        rows = np.arange(B)
        c0 = _sample_rows(taste_cum[b0:b1], rng.random(B))
        prev = in_cluster(c0, rng.random(B))
        seq[:, 0] = prev
        seen[rows, prev] = True
        for t in range(1, int(L.max())):
            act = np.flatnonzero(L > t)
            p = prev[act]
            n = len(act)
            cand = successors[p, np.searchsorted(succ_cum, rng.random(n), side="right").clip(0, S - 1)]
            follow = (rng.random(n) < cfg.successor_strength) & ~seen[act, cand]
            rest = np.flatnonzero(~follow)
            if rest.size:
                ua = act[rest]
                markov = rng.random(rest.size) < cfg.markov_strength
                c_m = _sample_rows(trans_cum[item_cluster[p[rest]]], rng.random(rest.size))
                c_t = _sample_rows(taste_cum[b0 + ua], rng.random(rest.size))
                c = np.where(markov, c_m, c_t)
                pick = in_cluster(c, rng.random(rest.size))
                for attempt in range(sc.resample_tries):  # resample already-seen items: in the cluster, then anywhere
                    bad = np.flatnonzero(seen[ua, pick])
                    if not bad.size:
                        break
                    pick[bad] = (in_cluster(c[bad], rng.random(bad.size)) if attempt < sc.resample_in_cluster
                                 else rng.integers(0, I, bad.size))
                cand[rest] = pick
            ok = ~seen[act, cand]  # a user stuck on seen items simply skips the step
            seq[act[ok], t] = cand[ok]
            seen[act[ok], cand[ok]] = True
            prev[act[ok]] = cand[ok]
        uu, tt = np.nonzero(seq >= 0)
        users.append(uu + b0)
        items.append(seq[uu, tt])
        steps.append(tt)
    inter = pd.DataFrame({"user": np.concatenate(users), "item": np.concatenate(items),
                          "step": np.concatenate(steps)})
    inter["step"] = inter.groupby("user").cumcount()
    return inter, world


def generate_synthetic(cfg: DataConfig, raw_dir: str | os.PathLike, seed: int = 0,
                       progress: bool = False) -> dict[str, Path]:
    """Write seeded synthetic raw files in the Amazon Reviews 2023 format (chapter 01).

    Files: `<raw_dir>/<category>.jsonl.gz` (reviews, every field of the real format, sorted by timestamp) and
    `<raw_dir>/meta_<category>.jsonl.gz` (item metadata), plus `<category>.synthetic.json` recording the parameters.
    The same seed and parameters give byte-identical files (gzip with mtime 0 and no file name). On top of
    `simulate_synthetic`'s histories it adds timestamps spanning 2019-2023 (per-user activity rates, a few same-time
    ties), ratings from the user's affinity to the item's cluster plus item quality and noise, titles from per-cluster
    vocabularies, asin variants sharing a parent_asin, `repeat_frac` repeated user-item reviews (later in time) and
    `duplicate_frac` exact duplicate rows. Returns {"reviews": path, "meta": path, "params": path}.
    """
    t0 = time.perf_counter()
    raw_dir = Path(raw_dir)
    inter, world = simulate_synthetic(cfg, seed, progress)
    f = _draw_files(cfg, seed, inter, world)
    q = json.dumps
    tq = {r: [q(x) for x in v] for r, v in _REVIEW_TITLE.items()}
    xq = {r: [q(x) for x in v] for r, v in _REVIEW_TEXT.items()}
    uq = [q(str(x)) for x in f.user_ids]
    aq = {}
    tmpl = ('{"rating": %.1f, "title": %s, "text": %s, "images": [], "asin": %s, "parent_asin": %s, "user_id": %s, '
            '"timestamp": %d, "helpful_vote": %d, "verified_purchase": %s}')
    parent_q = [q(str(x)) for x in f.parent]

    def review_lines():
        for j in f.rows.tolist():
            r = int(f.all_rating[j])
            a = f.all_asin[j]
            if a not in aq:
                aq[a] = q(str(a))
            yield tmpl % (f.all_rating[j], tq[r][f.txt_pick[j] % 4], xq[r][f.txt_pick[j] % 3], aq[a],
                          parent_q[f.all_item[j]], uq[f.all_user[j]], f.all_ts[j], f.helpful[j],
                          "true" if f.verified[j] else "false")

    def meta_lines():
        for j in range(int(cfg.n_items)):
            c = world.item_cluster[j]
            store = f.store[j]
            yield q({"main_category": "Books", "title": f.titles[j], "subtitle": None,
                     "author": {"name": store}, "average_rating": round(float(f.avg[j]), 1) if f.cnt[j] else None,
                     "rating_number": int(f.cnt[j]), "features": [],
                     "description": [f"A {f.genres[c].lower()} book by {store}."],
                     "price": float(f.price[j]) if f.has_price[j] else None, "images": [], "videos": [],
                     "store": store, "categories": ["Books", f.genres[c]],
                     "details": {"Publisher": f"{store.split()[-1]} Press", "Language": "English",
                                 "Print length": f"{f.pages[j]} pages"},
                     "parent_asin": str(f.parent[j]), "bought_together": None})

    out = {"reviews": raw_dir / f"{cfg.category}.jsonl.gz", "meta": raw_dir / f"meta_{cfg.category}.jsonl.gz",
           "params": raw_dir / f"{cfg.category}.synthetic.json"}
    write_jsonl_gz(out["reviews"], review_lines())
    write_jsonl_gz(out["meta"], meta_lines())
    write_json(out["params"], {**generator_params(cfg, seed), "rows": int(len(f.rows)), "interactions": int(f.n),
                               "repeats": int(f.rep.size), "duplicates": int(f.dup.size),
                               "files": {k: fingerprint(v) for k, v in out.items() if k != "params"},
                               "seconds": round(time.perf_counter() - t0, 2)})
    return out


def _draw_files(cfg: DataConfig, seed: int, inter: pd.DataFrame, world: SyntheticWorld) -> SimpleNamespace:
    """Everything `generate_synthetic` draws on top of the histories (timestamps, ratings, ids, repeats, duplicates,
    metadata), from its own seeded stream; sets `world.item_ids` and `world.user_ids` (the ids written)."""
    sc = SYNTHETIC
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), sc.files_salt]))
    K, I, U = int(cfg.n_clusters), int(cfg.n_items), int(cfg.n_users)
    user = inter["user"].to_numpy()
    item = inter["item"].to_numpy()
    n = len(user)
    first = np.r_[True, user[1:] != user[:-1]]

    # timestamps: per-user start and activity rate; gaps exponential, ~2% zero gaps (same-time ties)
    start = sc.t_start_ms + rng.random(U) * (sc.t_end_ms - sc.t_start_ms) * sc.start_span
    gap_scale = rng.lognormal(math.log(sc.gap_days * DAY_MS), sc.gap_sigma, U)
    gaps = rng.exponential(1.0, n) * gap_scale[user]
    gaps[rng.random(n) < sc.tie_frac] = 0.0
    gaps[first] = 0.0
    csum = np.cumsum(gaps)
    offs = csum - csum[np.flatnonzero(first)][np.cumsum(first) - 1]  # per-user cumulative gap
    span = np.zeros(U)
    np.maximum.at(span, user, offs)
    room = (sc.t_end_ms - start) * rng.uniform(*sc.squeeze, U)  # users who would run past the end are squeezed to
    scale = np.where(span > room, room / np.maximum(span, 1.0), 1.0)  # end at a random point before it
    ts = np.floor(start[user] + offs * scale[user]).astype(np.int64)

    # ratings: affinity of the user to the item's cluster + item quality + noise, rounded to 1..5
    quality = rng.normal(0.0, sc.quality_sd, I)
    aff = np.log(world.user_taste[user, world.item_cluster[item]] * K + sc.affinity_floor)
    rating = np.clip(np.rint(sc.rating_base + sc.affinity_weight * aff + quality[item]
                             + rng.normal(0.0, sc.rating_noise, n)), 1, 5)

    # ids: parent_asin per item; ~25% of items have 2-3 variant asins
    n_var = np.where(rng.random(I) < sc.variant_frac, rng.integers(*sc.variants, I), 1)
    ids = _unique_ids(I + int(n_var[n_var > 1].sum()), sc.asin_digits, rng)
    parent = np.char.add("B0", ids[:I])
    var_start = np.zeros(I, dtype=np.int64)
    var_start[n_var > 1] = I + np.cumsum(np.r_[0, n_var[n_var > 1][:-1]])
    variants = np.char.add("B0", ids)
    ud, ur = sc.user_digits
    user_ids = np.char.add(np.char.add("A", _unique_ids(U, ud, rng)), _base36(rng.integers(0, 36 ** ur, U), ur))
    pick = (rng.random(n) * n_var[item]).astype(np.int64)
    asin = np.where(n_var[item] > 1, variants[var_start[item] + pick], parent[item])

    # repeated user-item reviews (later in time, fresh rating) and exact duplicate rows
    rep = np.sort(rng.choice(n, size=int(round(cfg.repeat_frac * n)), replace=False))
    rep_ts = ts[rep] + rng.integers(sc.repeat_delay_days[0] * DAY_MS, sc.repeat_delay_days[1] * DAY_MS, rep.size)
    rep_rating = rng.integers(1, 6, rep.size).astype(np.float64)
    all_user = np.r_[user, user[rep]]
    all_item = np.r_[item, item[rep]]
    all_asin = np.r_[asin, asin[rep]]
    all_ts = np.r_[ts, rep_ts]
    all_rating = np.r_[rating, rep_rating]
    m = len(all_user)
    helpful = rng.geometric(sc.helpful_p, m) - 1
    verified = rng.random(m) < sc.verified_frac
    txt_pick = rng.integers(0, sc.review_text_picks, m)
    dup = np.sort(rng.choice(m, size=int(round(cfg.duplicate_frac * m)), replace=False))
    rows = np.r_[np.arange(m), dup]  # duplicates come right after their originals (stable sort, same timestamp)
    rows = rows[np.argsort(all_ts[rows], kind="stable")]

    # item metadata: titles from per-cluster vocabularies, authors ("store"), prices
    genres = [(_GENRES[c % len(_GENRES)] + ("" if c < len(_GENRES) else f" {c // len(_GENRES) + 1}"))
              for c in range(K)]
    na, nn_, nau = sc.adjectives_per_cluster, sc.nouns_per_cluster, sc.authors_per_cluster
    vocab_adj = [rng.choice(_ADJ, na, replace=False) for _ in range(K)]
    vocab_noun = [rng.choice(_NOUN, nn_, replace=False) for _ in range(K)]
    authors = [[f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" for _ in range(nau)] for _ in range(K)]
    title_pat = rng.integers(0, 4, I)  # one of the 4 title patterns below
    wa, wn, wn2, wau = (rng.integers(0, na, I), rng.integers(0, nn_, I), rng.integers(0, nn_, I),
                        rng.integers(0, nau, I))
    titles = []
    for j in range(I):
        c = world.item_cluster[j]
        a, nn, n2 = vocab_adj[c][wa[j]], vocab_noun[c][wn[j]], vocab_noun[c][wn2[j]]
        titles.append([f"The {a} {nn}", f"{nn} of the {a} {n2}", f"The {a} {nn}: A {genres[c]} Novel",
                       f"{a} {nn}: {genres[c]} Essentials"][title_pat[j]])
    store = [authors[world.item_cluster[j]][wau[j]] for j in range(I)]
    price = np.round(rng.lognormal(math.log(sc.price_median), sc.price_sigma, I), 2)
    has_price = rng.random(I) > sc.price_missing
    pages = rng.integers(*sc.pages, I)
    cnt = np.bincount(item, minlength=I)
    avg = np.bincount(item, weights=rating, minlength=I) / np.maximum(cnt, 1)
    world.item_ids, world.user_ids = parent, user_ids
    return SimpleNamespace(n=n, rows=rows, rep=rep, dup=dup, all_rating=all_rating, all_asin=all_asin,
                           all_item=all_item, all_user=all_user, all_ts=all_ts, helpful=helpful, verified=verified,
                           txt_pick=txt_pick, parent=parent, user_ids=user_ids, titles=titles, store=store,
                           genres=genres, price=price, has_price=has_price, pages=pages, cnt=cnt, avg=avg)


def ensure_synthetic(cfg: DataConfig, raw_dir: str | os.PathLike, seed: int = 0, progress: bool = False) -> bool:
    """Generate the synthetic raw files unless files made with the same parameters and seed are already there.
    Returns True when it generated them."""
    raw_dir = Path(raw_dir)
    info = read_json(raw_dir / f"{cfg.category}.synthetic.json")
    want = generator_params(cfg, seed)
    if info is not None and all(info.get(k) == want.get(k) for k in (*want, *DEPTH_FIELDS)):
        files = {"reviews": raw_dir / f"{cfg.category}.jsonl.gz", "meta": raw_dir / f"meta_{cfg.category}.jsonl.gz"}
        if all(p.is_file() and p.stat().st_size == info["files"][k]["size"] for k, p in files.items()):
            return False
    generate_synthetic(cfg, raw_dir, seed, progress)
    return True



# ---------------------------------------------------------------------------------------------------- the depth world
def _check_depth_knobs(cfg: DataConfig) -> None:
    """ValueError naming the knob when the depth world's settings cannot give an exact Bayes predictor."""
    if cfg.markov_strength != 1.0:
        raise ValueError(f"the depth world draws clusters without a latent user taste (so that its Bayes predictor "
                         f"is exact): set markov_strength = 1, not {cfg.markov_strength}")
    rho, eta, s = cfg.induction_strength, cfg.pointer_strength, cfg.switch_strength
    if min(rho, eta, s) < 0 or rho + eta > 1 or s > 1 or not 0 <= cfg.successor_strength <= 1:
        raise ValueError(f"depth world knobs out of range: need induction_strength ({rho}) + pointer_strength ({eta}) "
                         f"<= 1, both >= 0, 0 <= switch_strength ({s}) <= 1, 0 <= successor_strength <= 1")
    if cfg.pointer_hops < 1 or cfg.max_lag < 1:
        raise ValueError(f"pointer_hops ({cfg.pointer_hops}) and max_lag ({cfg.max_lag}) must be >= 1")
    if not 0 <= cfg.n_switch_items <= cfg.n_items or cfg.n_clusters < 2:
        raise ValueError(f"n_switch_items ({cfg.n_switch_items}) must be in 0..n_items and n_clusters >= 2")


def _add_depth_mechanisms(world: SyntheticWorld, cfg: DataConfig, rng: np.random.Generator) -> SyntheticWorld:
    """Draw the depth world's latent item properties (lags, switch items, mode bits) and the mode-1 chain."""
    sc = SYNTHETIC
    K, I = world.n_clusters, world.n_items
    world.successor_strength = float(cfg.successor_strength)
    world.induction_strength = float(cfg.induction_strength)
    world.pointer_strength = float(cfg.pointer_strength)
    world.pointer_hops, world.max_lag = int(cfg.pointer_hops), int(cfg.max_lag)
    world.item_lag = rng.integers(1, world.max_lag + 1, I)
    world.switch_item = np.zeros(I, dtype=bool)
    world.switch_item[rng.choice(I, int(cfg.n_switch_items), replace=False)] = True
    world.mode_bit = rng.integers(0, 2, I)
    other = (sc.self_transition * np.eye(K)
             + (1 - sc.self_transition) * rng.dirichlet(np.full(K, sc.transition_concentration), size=K))
    t0 = world.cluster_transition
    world.mode_transition = np.stack([t0, (1 - cfg.switch_strength) * t0 + cfg.switch_strength * other])
    return world


def _random_maps(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, k) independent random maps over k clusters with pi(c) uniform over the clusters != c."""
    return (np.arange(k)[None, :] + 1 + rng.integers(0, k - 1, (n, k))) % k


def _members(world: SyntheticWorld) -> tuple[np.ndarray, np.ndarray]:
    """(K, m) the items of each cluster (padded with item 0) and (K, m) their popularity (0 on the padding)."""
    order = np.argsort(world.item_cluster, kind="stable")
    sizes = np.bincount(world.item_cluster, minlength=world.n_clusters)
    idx = np.zeros((world.n_clusters, sizes.max()), dtype=np.int64)
    pop = np.zeros(idx.shape)
    col = np.arange(world.n_items) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    idx[world.item_cluster[order], col] = order
    pop[world.item_cluster[order], col] = world.popularity[order]
    return idx, pop


def pointer_positions(world: SyntheticWorld, seq: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n, h) the position after each of the pointer's h hops, -1 once it falls before the history.

    `seq` (n, T) holds histories left-aligned (position 0 = first item), `t` (n,) how many items each row has: the
    pointer starts at p = t - 1 and moves p <- p - lag(x_p)."""
    n = len(t)
    rows = np.arange(n)
    pos = np.full((n, world.pointer_hops), -1, dtype=np.int64)
    p = np.asarray(t, dtype=np.int64) - 1
    for k in range(world.pointer_hops):
        p = np.where(p >= 0, p - world.item_lag[seq[rows, np.maximum(p, 0)]], -1)
        p = np.where(p >= 0, p, -1)
        pos[:, k] = p
    return pos


def _cluster_law(world: SyntheticWorld, seq: np.ndarray, t: np.ndarray, mode: np.ndarray):
    """The non-induction part of the cluster mixture at step t: ((n, K) pointer + Markov law, summing to
    1 - induction_strength; (n,) the last cluster)."""
    rows = np.arange(len(t))
    c_last = world.item_cluster[seq[rows, np.asarray(t) - 1]]
    markov = world.mode_transition[mode, c_last]  # (n, K)
    law = (1.0 - world.induction_strength) * markov
    if world.pointer_strength > 0:
        p = pointer_positions(world, seq, t)[:, -1]
        ok = p >= 0
        law -= (world.pointer_strength * ok)[:, None] * markov
        law[rows[ok], world.item_cluster[seq[rows[ok], p[ok]]]] += world.pointer_strength
    return law, c_last


def _draw_items(world: SyntheticWorld, members, clusters: np.ndarray, seen: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """One item per row from `clusters` (n,) by popularity renormalised over the row's unseen items (`seen` (n, I)),
    uniformly from all unseen items where the cluster is exhausted."""
    idx, pop = members
    rows = np.arange(len(clusters))
    w = pop[clusters] * ~seen[rows[:, None], idx[clusters]]  # (n, m)
    u1, u2 = 1.0 - rng.random(len(clusters)), 1.0 - rng.random(len(clusters))  # in (0, 1]: never a 0-weight item
    cum = np.cumsum(w, axis=1)
    out = idx[clusters, _sample_rows(cum, u1)]
    dry = np.flatnonzero(cum[:, -1] <= 0)
    if dry.size:
        out[dry] = _sample_rows(np.cumsum(~seen[dry], axis=1, dtype=np.float64), u2[dry])
    return out


def _simulate_depth(world: SyntheticWorld, lengths: np.ndarray, taste_cum: np.ndarray, user_map: np.ndarray,
                    rng: np.random.Generator, progress: bool = False, tally: tuple | None = None) -> np.ndarray:
    """(U, max length) histories of the depth world (module docstring), -1 after each user's end.

    `tally` = (sums (n_keys, K), counts (n_keys,)): add each step's non-induction cluster law, normalised, to the row
    of the last item's key (`last_item_table`)."""
    sc = SYNTHETIC
    I, U = world.n_items, len(lengths)
    members = _members(world)
    succ, succ_cum = world.successors, np.cumsum(world.successor_weights)
    S = succ.shape[1]
    sigma, rho = world.successor_strength, world.induction_strength
    out = np.full((U, int(lengths.max())), -1, dtype=np.int64)
    block = max(1, min(U, sc.seen_block_cells // max(I, 1)))
    for b0 in progress_bar(range(0, U, block), enabled=progress, desc="simulating users", file=sys.stderr):
        b1 = min(U, b0 + block)
        L = lengths[b0:b1]
        B = b1 - b0
        seq = np.full((B, int(L.max())), -1, dtype=np.int64)
        seen = np.zeros((B, I), dtype=bool)
        mode = np.zeros(B, dtype=np.int64)
        first = _draw_items(world, members, _sample_rows(taste_cum[b0:b1], rng.random(B)), seen, rng)
        seq[:, 0] = first
        seen[np.arange(B), first] = True
        for t in range(1, int(L.max())):
            act = np.flatnonzero(L > t)
            n = len(act)
            prev = seq[act, t - 1]
            cand = succ[prev, np.searchsorted(succ_cum, rng.random(n) * succ_cum[-1], side="right").clip(0, S - 1)]
            follow = (rng.random(n) < sigma) & ~seen[act, cand]
            law, c_last = _cluster_law(world, seq[act], np.full(n, t), mode[act])
            if tally is not None and rho < 1:
                keys = _item_keys(world, prev)
                np.add.at(tally[0], keys, law / (1.0 - rho))
                np.add.at(tally[1], keys, 1)
            law[np.arange(n), user_map[b0 + act, c_last]] += rho
            c = _sample_rows(np.cumsum(law, axis=1), 1.0 - rng.random(n))
            x = np.where(follow, cand, _draw_items(world, members, c, seen[act], rng))
            seq[act, t] = x
            seen[act, x] = True
            mode[act] = np.where(world.switch_item[prev], world.mode_bit[x], mode[act])
        out[b0:b1, :seq.shape[1]] = seq
    return out


def _as_rows(histories) -> tuple[np.ndarray, np.ndarray]:
    """Histories of generated item ids (a list of sequences, or a 2-D array padded with negative values on either
    side) as ((B, T) left-aligned rows padded with -1, (B,) lengths)."""
    if isinstance(histories, torch.Tensor):
        histories = histories.cpu().numpy()
    rows = [np.asarray(h, dtype=np.int64) for h in histories]
    rows = [h[h >= 0] for h in rows]
    n = np.array([len(h) for h in rows], dtype=np.int64)
    if len(rows) and n.min() < 1:
        raise ValueError("every history needs at least one item")
    seq = np.full((len(rows), int(n.max()) if len(rows) else 1), -1, dtype=np.int64)
    for i, h in enumerate(rows):
        seq[i, :len(h)] = h
    return seq, n


def _require_depth(world: SyntheticWorld) -> None:
    if not world.depth:
        raise ValueError("the Bayes predictor is exact only in the depth world (lab.config.DEPTH_WORLD); the shallow "
                         "world's latent user taste makes it intractable")


def _next_item_law(world: SyntheticWorld, law: np.ndarray, last: np.ndarray, seen: np.ndarray, count: np.ndarray,
                   mass: np.ndarray) -> np.ndarray:
    """(n, I) the step's item law: the successor part, then the cluster mixture `law` (n, K) drawn through each
    cluster's popularity renormalised over the unseen items (uniform over them where a cluster is exhausted)."""
    n, I = seen.shape
    rows = np.arange(n)[:, None]
    clus = world.item_cluster
    unseen = ~seen
    dry = count == 0  # (n, K) exhausted clusters
    per_item = law[:, clus] * world.popularity[None, :] / np.where(dry, 1.0, mass)[:, clus]  # (n, I)
    spill = (law * dry).sum(1) / np.maximum(I - seen.sum(1), 1)  # (n,) exhausted clusters' mass, spread uniformly
    p = unseen * (per_item + spill[:, None])
    s_unseen = unseen[rows, world.successors[last]]  # (n, S)
    w = world.successor_strength * world.successor_weights[None, :] * s_unseen
    p *= (1.0 - w.sum(1))[:, None]
    p[rows, world.successors[last]] += w  # successors of one item are distinct
    return p


def bayes_scores(world: SyntheticWorld, histories) -> np.ndarray:
    """(B, I) the exact next-item distribution of the depth world given each complete history (generated item ids;
    see `_as_rows` for the formats): 0 on the history's items, summing to 1 over the rest (module docstring)."""
    _require_depth(world)
    seq, n = _as_rows(histories)
    out = np.zeros((len(n), world.n_items))
    step = SYNTHETIC.bayes_chunk
    for i in range(0, len(n), step):
        out[i:i + step] = _bayes_chunk(world, seq[i:i + step], n[i:i + step])
    return out


def _bayes_chunk(world: SyntheticWorld, seq: np.ndarray, n: np.ndarray) -> np.ndarray:
    K, I = world.n_clusters, world.n_items
    B, T = seq.shape
    seq = seq[:, :max(int(n.max()), 1)]
    clus, pop = world.item_cluster, world.popularity
    sigma, rho = world.successor_strength, world.induction_strength
    rows = np.arange(B)
    seen = np.zeros((B, I), dtype=bool)
    count = np.tile(np.bincount(clus, minlength=K), (B, 1))  # (B, K) unseen items per cluster
    mass = np.ones((B, K))  # (B, K) unseen popularity per cluster
    mode = np.zeros(B, dtype=np.int64)
    loglik = np.zeros((B, K, K))  # [b, c, d]: log-likelihood of the history given pi_u(c) = d

    def observe(r, x):
        seen[r, x] = True
        count[r, clus[x]] -= 1
        mass[r, clus[x]] -= pop[x]

    observe(rows, seq[:, 0])
    for j in range(1, seq.shape[1]):
        a = np.flatnonzero(n > j)
        x, prev = seq[a, j], seq[a, j - 1]
        if rho > 0:
            law, c_prev = _cluster_law(world, seq[a], np.full(len(a), j), mode[a])
            succ = world.successors[prev]  # (nA, S)
            s_unseen = ~seen[a[:, None], succ]
            s_w = sigma * world.successor_weights[None, :] * s_unseen
            s_x = (s_w * (succ == x[:, None])).sum(1)
            item_x = (count[a] == 0) / float(I - j)  # (nA, K) q_j(x | d): uniform spill of exhausted clusters
            item_x[np.arange(len(a)), clus[x]] += pop[x] / mass[a, clus[x]]
            lik = s_x[:, None] + (1.0 - s_w.sum(1))[:, None] * ((law * item_x).sum(1)[:, None] + rho * item_x)
            with np.errstate(divide="ignore"):
                loglik[a, c_prev] += np.log(lik)
        mode[a] = np.where(world.switch_item[prev], world.mode_bit[x], mode[a])
        observe(a, x)
    law, c_last = _cluster_law(world, seq, n, mode)
    if rho > 0:
        lp = loglik[rows, c_last]  # (B, K)
        lp[rows, c_last] = -np.inf
        top = lp.max(1, keepdims=True)
        lp = np.where(np.isfinite(top), lp - top, np.where(np.isinf(lp), -np.inf, 0.0))  # impossible: the prior
        post = np.exp(lp)
        law = law + rho * post / post.sum(1, keepdims=True)
    return _next_item_law(world, law, seq[rows, n - 1], seen, count, mass)


def _item_keys(world: SyntheticWorld, items: np.ndarray) -> np.ndarray:
    """What the last item alone tells the non-induction mechanisms: its cluster, lag, mode bit and switch flag."""
    c, lag = world.item_cluster[items], world.item_lag[items] - 1
    return ((c * world.max_lag + lag) * 2 + world.mode_bit[items]) * 2 + world.switch_item[items]


def last_item_table(world: SyntheticWorld) -> np.ndarray:
    """(n_keys, K) the non-induction cluster law (pointer + Markov, normalised) given the last item's key
    (`_item_keys`), averaged over every step of `SyntheticConstants.last_item_users` freshly simulated users of this
    world (new maps, tastes and lengths drawn as the generator draws them); keys never met fall back to their
    cluster's average. Cached on the world."""
    _require_depth(world)
    if world._last_item is not None:
        return world._last_item[0]
    sc = SYNTHETIC
    K = world.n_clusters
    rng = np.random.default_rng(np.random.SeedSequence([int(world.seed), sc.world_salt, sc.depth_salt, 1]))
    U = sc.last_item_users
    n_keys = K * world.max_lag * 4
    tally = (np.zeros((n_keys, K)), np.zeros(n_keys))
    lengths = rng.choice(world.seq_lengths, U)
    taste_cum = np.cumsum(rng.dirichlet(np.full(K, sc.taste_concentration), size=U), axis=1)
    _simulate_depth(world, lengths, taste_cum, _random_maps(U, K, rng), rng, tally=tally)
    sums, counts = tally
    key_cluster = np.arange(n_keys) // (world.max_lag * 4)
    c_sums = np.zeros((K, K))
    np.add.at(c_sums, key_cluster, sums)
    c_counts = np.bincount(key_cluster, weights=counts, minlength=K)
    c_law = np.where(c_counts[:, None] > 0, c_sums / np.maximum(c_counts, 1)[:, None], world.mode_transition[0])
    table = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c_law[key_cluster])
    world._last_item = (table, counts)
    return table


def last_item_bayes_scores(world: SyntheticWorld, last_item, seen) -> np.ndarray:
    """(B, I) the best next-item law that sees only the last item (generated ids, (B,)) and the set of seen items
    (`seen`: histories in any `_as_rows` format; order unused): the successor part and the item draw exactly,
    induction by its prior (uniform over the other clusters), pointer and mode by their marginal given the last item
    (`last_item_table`). 0 on the seen items, summing to 1 over the rest."""
    _require_depth(world)
    K, I = world.n_clusters, world.n_items
    last = np.asarray(last_item, dtype=np.int64)
    seq, _ = _as_rows(seen)
    B = len(last)
    rows = np.arange(B)
    seen_m = np.zeros((B, I), dtype=bool)
    r, c = np.nonzero(seq >= 0)
    seen_m[r, seq[r, c]] = True
    seen_m[rows, last] = True
    onehot = np.eye(K)[world.item_cluster]  # (I, K)
    count = np.bincount(world.item_cluster, minlength=K)[None, :] - seen_m @ onehot.astype(np.int64)
    mass = 1.0 - (seen_m * world.popularity[None, :]) @ onehot
    c_last = world.item_cluster[last]
    prior = (1.0 - np.eye(K)[c_last]) / (K - 1)
    rho = world.induction_strength
    law = rho * prior + (1.0 - rho) * last_item_table(world)[_item_keys(world, last)]
    return _next_item_law(world, law, last, seen_m, count, mass)


def planted_variables(world: SyntheticWorld, histories, users=None) -> pd.DataFrame:
    """The intermediate variables a model must compute to predict the item after each history (generated ids; see
    `_as_rows`), one row per history: the ground truth of layer probes (chapter 03).

    Columns: `length`; `last_cluster`; `induction_cluster` - the cluster that followed the most recent earlier
    occurrence of the last cluster (-1: none; what an induction head retrieves); `hop<k>_pos` - the pointer's
    position after hop k (0-based index into the history, -1 once it falls before the start; in a left-padded window
    of width T the position is T - length + pos); `pointer_cluster` - the cluster at the last hop (-1: none);
    `switch_pos` - the most recent switch item with a follower (-1: none); `mode` - the mode it set (0 without one).
    With `users` (generated user indices) also `map_cluster` = pi_u(last cluster), what induction draws.
    """
    _require_depth(world)
    seq, n = _as_rows(histories)
    B, T = seq.shape
    rows = np.arange(B)
    clus = np.where(seq >= 0, world.item_cluster[np.maximum(seq, 0)], -1)  # (B, T)
    c_last = clus[rows, n - 1]
    before = np.arange(T)[None, :] < (n - 1)[:, None]  # positions with a follower in the history

    def latest(mask):  # (B,) the last True column of each row, -1 when none
        return np.where(mask.any(1), T - 1 - np.argmax(mask[:, ::-1], axis=1), -1)

    j = latest((clus == c_last[:, None]) & before)
    out = {"length": n, "last_cluster": c_last,
           "induction_cluster": np.where(j >= 0, clus[rows, np.minimum(j + 1, T - 1)], -1)}
    hops = pointer_positions(world, seq, n)
    for k in range(hops.shape[1]):
        out[f"hop{k + 1}_pos"] = hops[:, k]
    out["pointer_cluster"] = np.where(hops[:, -1] >= 0, clus[rows, np.maximum(hops[:, -1], 0)], -1)
    sw = latest(world.switch_item[np.maximum(seq, 0)] & (seq >= 0) & before)
    out["switch_pos"] = sw
    out["mode"] = np.where(sw >= 0, world.mode_bit[seq[rows, np.minimum(sw + 1, T - 1)]], 0)
    if users is not None:
        out["map_cluster"] = world.user_map[np.asarray(users), c_last]
    return pd.DataFrame(out)


def synthetic_world(cfg: DataConfig, seed: int = 0) -> SyntheticWorld:
    """The latent world behind `generate_synthetic(cfg, raw_dir, seed)`'s files, rebuilt from the seed, with the
    generated ids (`item_ids`, `user_ids`) that map a processed data set back to it (chapter 01)."""
    inter, world = simulate_synthetic(cfg, seed)
    _draw_files(cfg, seed, inter, world)
    return world


def generated_ids(world: SyntheticWorld, item_ids: list) -> np.ndarray:
    """(N+1,) the generated id of each processed item, whose parent_asin is `item_ids[i]` (`RecData.item_ids`), -1
    for PAD (chapter 01: the references score processed data with it; chapter 03's probes read planted variables).
    Raises when a processed item is not an item of `world` (data made with another seed or other parameters)."""
    index = {str(a): g for g, a in enumerate(world.item_ids)}
    missing = [a for a in item_ids[1:] if str(a) not in index]
    if missing:
        raise ValueError(f"{len(missing)} processed items (e.g. {missing[0]!r}) are not items of this synthetic "
                         "world: the data were made with another seed or other parameters")
    return np.array([-1] + [index[str(a)] for a in item_ids[1:]], dtype=np.int64)


def reference_scorers(world: SyntheticWorld, item_ids: list) -> dict:
    """Score functions of the reference predictors on a processed data set whose item i has parent_asin `item_ids[i]`
    (`RecData.item_ids`; 0 = padding), each mapping a (B, S) batch of *complete* processed histories, left-padded with
    PAD (`RecData.test_seen`), to (B, N+1) float64 probabilities (chapter 01):

    - `bayes`, the ceiling: the generator's exact law of the target given the user's whole *generated* history before
      it (`GeneratedPrefixes`), items the pre-processing dropped (k-core) included. The processed history is part of
      that history, so no predictor of the processed history can beat it in expectation: it is exact for the item
      that followed, and a bound for the models. A history that does not match one generated history (ties
      reordered, or users alike whose generated histories differ) falls back to `bayes_processed` and is counted (`bayes.prefixes`, a `GeneratedPrefixes`).
    - `bayes_processed`: the same law applied to the processed history as if it were complete (the book's ceiling
      before issue 24): neither exact nor a bound once k-core drops items; kept to measure the difference.
    - `last_item_bayes`: the best law given the last processed item only (and which items were seen).
    """
    gen = generated_ids(world, item_ids)  # processed id -> generated id
    prefixes = GeneratedPrefixes(world, gen) if world.sequences is not None else None

    def scores(p: np.ndarray) -> torch.Tensor:
        out = np.zeros((len(p), len(gen)))
        out[:, 1:] = p[:, gen[1:]]
        return torch.from_numpy(out)  # (B, N+1)

    def bayes_processed(h: torch.Tensor) -> torch.Tensor:
        return scores(bayes_scores(world, gen[h.cpu().numpy()]))

    def bayes(h: torch.Tensor) -> torch.Tensor:
        g = gen[h.cpu().numpy()]  # (B, S), -1 = PAD
        full = prefixes.prefixes(g) if prefixes is not None else [None] * len(g)
        rows = [f if f is not None else r for f, r in zip(full, g)]  # unmatched: the processed history
        return scores(bayes_scores(world, rows))

    def last_item_bayes(h: torch.Tensor) -> torch.Tensor:
        g = gen[h.cpu().numpy()]  # (B, S), -1 = PAD, the last item in the last column
        return scores(last_item_bayes_scores(world, g[:, -1], g))

    assert PAD == 0
    bayes.prefixes = prefixes  # how many rows matched their generated history, how many fell back
    return {"bayes": bayes, "bayes_processed": bayes_processed, "last_item_bayes": last_item_bayes}


class GeneratedPrefixes:
    """Each processed history mapped back to the generated history before the item that follows it (chapter 01's
    exact ceiling, issue 24).

    A kept user's processed sequence is their generated sequence with the items the pre-processing dropped left out
    (the depth world never repeats an item within a user; the files' repeats and duplicates come later in time and
    are removed; ties keep the generated order under `tie_break="line"`). So a processed history h_1..h_m that is the
    first m kept items of exactly one user u is followed by u's next kept item, generated at step t; the generated
    history before it is u's first t items. `prefixes` returns that history per row; None where no user has h as the
    start of their kept items, or users with different generated histories do (counted in `matched` and
    `fallbacks`). Users k-core removed are indexed too: they can only make a history ambiguous, never wrong.
    """

    def __init__(self, world: SyntheticWorld, gen: np.ndarray):
        kept = np.zeros(world.n_items, dtype=bool)
        kept[gen[1:]] = True
        self.sequences = world.sequences
        self.index: dict[tuple, list] = {}
        for u, row in enumerate(world.sequences):
            row = row[row >= 0]
            pos = np.flatnonzero(kept[row])  # generation steps of the kept items
            items = row[pos]
            for m in range(1, len(pos)):  # the first m kept items, followed by the one generated at step pos[m]
                self.index.setdefault(tuple(items[:m].tolist()), []).append((u, int(pos[m])))
        self.matched, self.fallbacks = 0, 0

    def prefixes(self, histories: np.ndarray) -> list:
        """For each row of `histories` ((B, S) generated ids, -1 = PAD) the generated history before the next kept
        item (1-D array), or None when the row matches no single user."""
        out = []
        for h in histories:
            hit = {tuple(self.sequences[u, :t].tolist()) for u, t in self.index.get(tuple(h[h >= 0].tolist()), [])}
            if len(hit) == 1:  # one user, or users whose generated histories agree (the law reads only the history)
                out.append(np.array(hit.pop(), dtype=np.int64))
                self.matched += 1
            else:
                out.append(None)
                self.fallbacks += 1
        return out

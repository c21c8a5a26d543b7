"""A seeded synthetic data set in the Amazon Reviews 2023 file format, with known structure (chapter 01).

`simulate_synthetic` draws user histories from a latent world (`SyntheticWorld`: item clusters, power-law popularity,
a cluster-level Markov chain, preferred successor items, user tastes); `generate_synthetic` adds timestamps, ratings,
ids, metadata, repeats and exact duplicates and writes reviews and metadata as gzipped JSON Lines, byte-identical for
the same seed and parameters; `ensure_synthetic` writes them only when missing or made otherwise. The knobs live in
`DataConfig`; the generator's fixed numbers in `SyntheticConstants`. `toy_markov_sequences` makes the tiny learnable
sequences of the unit tests.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import DataConfig
from ..io import atomic_path, read_json, write_json
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


GENERATOR_VERSION = 1  # bump when the generator's output changes, so cached raw files are regenerated
DAY_MS = 86_400_000  # one day in milliseconds (Amazon timestamps are Unix ms)
GENERATOR_FIELDS = ("category", "n_users", "n_items", "n_clusters", "mean_seq_len", "popularity_alpha",
                    "markov_strength", "successor_strength", "n_successors", "duplicate_frac", "repeat_frac")

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


SYNTHETIC = SyntheticConstants()  # the constants every generated data set uses


def generator_params(cfg: DataConfig, seed: int) -> dict:
    """The parameters that determine the synthetic raw files (written next to them as `<category>.synthetic.json`)."""
    return {"version": GENERATOR_VERSION, "seed": int(seed), **{f: getattr(cfg, f) for f in GENERATOR_FIELDS}}


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


def simulate_synthetic(cfg: DataConfig, seed: int = 0, progress: bool = False) -> tuple[pd.DataFrame, SyntheticWorld]:
    """Simulate user histories (vectorised over users, one step at a time).

    Each user has a taste over `n_clusters` item clusters; items have power-law popularity inside their cluster
    (`popularity_alpha`) and `n_successors` preferred next items inside it. At each step the next item is, with
    probability `successor_strength`, one of the last item's preferred successors; otherwise a cluster is drawn from the
    cluster-level Markov chain (probability `markov_strength`) or from the user's taste, and an item from that cluster
    by popularity. A user never repeats an item here (repeats are added later, on purpose, for de-duplication).
    Returns the interactions (`user`, `item`, `step`: generated item indices 0..I-1) and the latent world.
    """
    sc = SYNTHETIC
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), sc.world_salt]))
    K, I, U = int(cfg.n_clusters), int(cfg.n_items), int(cfg.n_users)
    if I < 2 * K:
        raise ValueError(f"n_items ({I}) must be at least 2 * n_clusters ({K})")
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

    users, items, steps = [], [], []
    block = max(1, min(U, sc.seen_block_cells // max(I, 1)))  # a (block, I) bool "seen" matrix
    from tqdm import tqdm

    for b0 in tqdm(range(0, U, block), desc="simulating users", disable=not progress, file=sys.stderr):
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
    world = SyntheticWorld(item_cluster=item_cluster, popularity=popularity, successors=successors,
                           cluster_transition=transition, user_taste=taste)
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

    # write: reviews (JSON Lines, key order as in the real files), meta, then the parameters (last = complete)
    q = json.dumps
    tq = {r: [q(x) for x in v] for r, v in _REVIEW_TITLE.items()}
    xq = {r: [q(x) for x in v] for r, v in _REVIEW_TEXT.items()}
    uq = [q(str(x)) for x in user_ids]
    aq = {}
    tmpl = ('{"rating": %.1f, "title": %s, "text": %s, "images": [], "asin": %s, "parent_asin": %s, "user_id": %s, '
            '"timestamp": %d, "helpful_vote": %d, "verified_purchase": %s}')
    parent_q = [q(str(x)) for x in parent]

    def review_lines():
        for j in rows.tolist():
            r = int(all_rating[j])
            a = all_asin[j]
            if a not in aq:
                aq[a] = q(str(a))
            yield tmpl % (all_rating[j], tq[r][txt_pick[j] % 4], xq[r][txt_pick[j] % 3], aq[a],
                          parent_q[all_item[j]], uq[all_user[j]], all_ts[j], helpful[j],
                          "true" if verified[j] else "false")

    def meta_lines():
        for j in range(I):
            c = world.item_cluster[j]
            yield q({"main_category": "Books", "title": titles[j], "subtitle": None,
                     "author": {"name": store[j]}, "average_rating": round(float(avg[j]), 1) if cnt[j] else None,
                     "rating_number": int(cnt[j]), "features": [],
                     "description": [f"A {genres[c].lower()} book by {store[j]}."],
                     "price": float(price[j]) if has_price[j] else None, "images": [], "videos": [],
                     "store": store[j], "categories": ["Books", genres[c]],
                     "details": {"Publisher": f"{store[j].split()[-1]} Press", "Language": "English",
                                 "Print length": f"{pages[j]} pages"},
                     "parent_asin": str(parent[j]), "bought_together": None})

    out = {"reviews": raw_dir / f"{cfg.category}.jsonl.gz", "meta": raw_dir / f"meta_{cfg.category}.jsonl.gz",
           "params": raw_dir / f"{cfg.category}.synthetic.json"}
    _write_jsonl_gz(out["reviews"], review_lines())
    _write_jsonl_gz(out["meta"], meta_lines())
    write_json(out["params"], {**generator_params(cfg, seed), "rows": int(len(rows)), "interactions": int(n),
                               "repeats": int(rep.size), "duplicates": int(dup.size),
                               "files": {k: fingerprint(v) for k, v in out.items() if k != "params"},
                               "seconds": round(time.perf_counter() - t0, 2)})
    return out


def _write_jsonl_gz(path: Path, lines, batch: int = 50_000) -> None:
    """Write lines as gzipped JSON Lines, atomically and reproducibly (mtime 0, no file name in the header)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f, \
            gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
        buf = []
        for line in lines:
            buf.append(line)
            if len(buf) >= batch:
                gz.write(("\n".join(buf) + "\n").encode("utf-8"))
                buf = []
        if buf:
            gz.write(("\n".join(buf) + "\n").encode("utf-8"))


def ensure_synthetic(cfg: DataConfig, raw_dir: str | os.PathLike, seed: int = 0, progress: bool = False) -> bool:
    """Generate the synthetic raw files unless files made with the same parameters and seed are already there.
    Returns True when it generated them."""
    raw_dir = Path(raw_dir)
    info = read_json(raw_dir / f"{cfg.category}.synthetic.json")
    want = generator_params(cfg, seed)
    if info is not None and all(info.get(k) == v for k, v in want.items()):
        files = {"reviews": raw_dir / f"{cfg.category}.jsonl.gz", "meta": raw_dir / f"meta_{cfg.category}.jsonl.gz"}
        if all(p.is_file() and p.stat().st_size == info["files"][k]["size"] for k, p in files.items()):
            return False
    generate_synthetic(cfg, raw_dir, seed, progress)
    return True


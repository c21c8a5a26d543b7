"""The entry point: generate or read, pre-process, cache, split (chapter 01).

`load_rec_data(cfg.data, paths, seed)` is what every chapter calls. It

1. generates synthetic raw files in the Amazon Reviews 2023 format when `cfg.source == "synthetic"` and they are
   missing (`ensure_synthetic`), or writes MovieLens-100K from the RecBole wheel in that format when
   `cfg.source == "movielens"` (`ensure_movielens`),
2. streams the review file in chunks (`read_reviews`), skipping-and-counting bad rows in a `LoadReport`,
3. pre-processes as the Amazon 2023 benchmark does (`preprocess_reviews`),
4. attaches item titles from the metadata file (`read_meta`),
5. caches the result (`Processed`) under `Paths.processed/<category>/` and rebuilds it when the inputs or parameters
   change (`cache_key`),
6. splits it (`cfg.split`: `leave_last_out` or the absolute `timestamp` split, `build_rec_data`) into `RecData`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..config import DataConfig, config_hash
from ..io import read_json, write_json, write_parquet
from .amazon import SUFFIXES, LoadReport, fingerprint, raw_files, read_meta, read_reviews
from .preprocess import dataset_stats, preprocess_reviews, sequences_from_interactions
from .splits import RecData, build_rec_data, split_stats
from .movielens import ensure_movielens
from .synthetic import ensure_synthetic

if TYPE_CHECKING:  # pragma: no cover
    from .. import Paths

__all__ = ["PIPELINE_VERSION", "SPLIT_ONLY_FIELDS", "Processed", "raw_dir_of", "SOURCES", "ensure_raw", "cache_folder",
           "cache_key", "prepare_data", "ITEM_TEXTS", "item_texts", "to_rec_data", "load_rec_data"]

PIPELINE_VERSION = 1  # bump when pre-processing changes, so caches are rebuilt
SPLIT_ONLY_FIELDS = ("split", "valid_from_ms", "test_from_ms", "max_len", "train_windows", "item_text",
                     "chunk_size")  # do not touch the cache


@dataclass
class Processed:
    """A pre-processed data set before splitting (what the cache holds)."""

    interactions: pd.DataFrame  # user (0..U-1), item (1..N), timestamp (ms), rating; sorted by user, then time
    items: pd.DataFrame  # index item 0..N (0 = padding): parent_asin, title, main_category, categories, store, ...
    user_ids: list  # user_id of user u at position u
    report: LoadReport
    stats: dict  # dataset_stats + provenance (cache hit/built, files, config hash, seconds)

    @property
    def num_items(self) -> int:
        return len(self.items) - 1

    @property
    def num_users(self) -> int:
        return len(self.user_ids)


def raw_dir_of(cfg: DataConfig, paths: "Paths") -> Path:
    """Where the raw files live: `cfg.raw_dir`, or `<artefacts>/<profile>/raw`."""
    return Path(cfg.raw_dir) if cfg.raw_dir else Path(paths.raw)


SOURCES = ("synthetic", "movielens", "amazon")  # where `DataConfig.source` says the raw files come from


def ensure_raw(cfg: DataConfig, raw: Path, seed: int = 0, progress: bool = False) -> bool:
    """Make the raw files of `cfg` in `raw` when the source writes them: generated synthetic data
    (`ensure_synthetic`), MovieLens-100K from the RecBole wheel (`ensure_movielens`); Amazon files are the user's
    own. Returns True when files were written now (chapter 01)."""
    if cfg.source == "synthetic":
        return ensure_synthetic(cfg, raw, seed, progress)
    if cfg.source == "movielens":
        return ensure_movielens(cfg, raw)
    if cfg.source != "amazon":
        raise ValueError(f"DataConfig.source must be one of {SOURCES}, not {cfg.source!r}")
    return False


def cache_folder(cfg: DataConfig) -> str:
    """The processed cache's folder under `Paths.processed`: the category, and the tie rule when it is not the file's
    order (`ml_100k-shuffle0`, `Synthetic_Books-item`), so chapter 01's check of other tie orders never overwrites the
    run's own cache."""
    if cfg.tie_break == "line":
        return cfg.category
    return f"{cfg.category}-{cfg.tie_break}" + (str(cfg.tie_seed) if cfg.tie_break == "shuffle" else "")


def cache_key(cfg: DataConfig, seed: int, files: Sequence[Path | None]) -> dict:
    """What the processed cache depends on: the pre-processing parameters (every DataConfig field except those in
    `SPLIT_ONLY_FIELDS`), the seed (synthetic data only), and the raw files' names, sizes and modification times."""
    params = {k: v for k, v in vars(cfg).items() if k not in SPLIT_ONLY_FIELDS}
    return {"pipeline": PIPELINE_VERSION, "params_hash": config_hash(params),
            "seed": int(seed) if cfg.source == "synthetic" else None,
            "files": {p.name: fingerprint(p) for p in files if p is not None}}


def prepare_data(cfg: DataConfig, paths: "Paths", seed: int = 0, progress: bool = True) -> Processed:
    """Generate (synthetic, when missing), read, pre-process and cache a data set; load it from the cache when
    nothing it depends on changed (chapter 01). See `load_rec_data` for the split."""
    t0 = time.perf_counter()
    raw = raw_dir_of(cfg, paths)
    generated = ensure_raw(cfg, raw, seed, progress)
    rev_path, meta_path = raw_files(cfg.category, raw)
    key = cache_key(cfg, seed, [rev_path, meta_path])
    cdir = Path(paths.processed) / cache_folder(cfg)
    manifest = read_json(cdir / "manifest.json")
    names = {"interactions": cdir / "interactions.parquet", "items": cdir / "items.parquet",
             "users": cdir / "users.parquet"}
    if manifest is not None and manifest.get("key") == key and all(p.is_file() for p in names.values()):
        inter = pd.read_parquet(names["interactions"])
        items = pd.read_parquet(names["items"])
        users = pd.read_parquet(names["users"])["user_id"].tolist()
        stats = dict(manifest["stats"], cache="hit", seconds=round(time.perf_counter() - t0, 3),
                     generated_raw=generated)
        return Processed(inter, items, users, LoadReport.from_dict(manifest["report"]), stats)

    report = LoadReport()
    reviews = read_reviews(rev_path, cfg.chunk_size, report, cfg.strict, progress)
    inter, user_ids, item_ids = preprocess_reviews(reviews, cfg.k_core, report, file=rev_path.name,
                                                   tie_break=cfg.tie_break, tie_seed=cfg.tie_seed)
    known = set(reviews["parent_asin"].cat.categories)
    del reviews
    keep = set(item_ids[1:])
    meta_cols = ("title", "main_category", "categories", "store", "price", "average_rating", "rating_number",
                 "details")
    if meta_path is not None:
        meta = read_meta(meta_path, cfg.chunk_size, report, cfg.strict, known=known, keep=keep,
                         columns=meta_cols, progress=progress)
    else:
        meta = pd.DataFrame(columns=list(meta_cols), index=pd.Index([], name="parent_asin"))
        report.notes.append(f"no metadata file meta_{cfg.category}{{{', '.join(SUFFIXES)}}} in {raw}: titles empty")
    items = _items_table(item_ids, meta)
    report.preprocessing["items_without_meta"] = int((~pd.Index(item_ids[1:]).isin(meta.index)).sum())
    stats = dataset_stats(inter, len(user_ids), len(item_ids) - 1)
    stats.update(source=cfg.source, category=cfg.category, k_core=cfg.k_core, seed=key["seed"],
                 config_hash=config_hash(cfg), params_hash=key["params_hash"],
                 files={"reviews": str(rev_path), "meta": str(meta_path) if meta_path else None,
                        **{k: str(v) for k, v in names.items()}},
                 rows_read=report.rows_read, rows_skipped=report.rows_skipped,
                 build_seconds=round(time.perf_counter() - t0, 3))
    write_parquet(names["interactions"], inter)
    write_parquet(names["items"], items)
    write_parquet(names["users"], pd.DataFrame({"user_id": pd.Series(user_ids, dtype=object).astype(str)}))
    write_json(cdir / "manifest.json", {"key": key, "stats": stats, "report": report.to_dict(),
                                        "config": vars(cfg)})  # written last: a partial cache never matches
    stats = dict(stats, cache="built", seconds=round(time.perf_counter() - t0, 3), generated_raw=generated)
    return Processed(inter, items, list(user_ids), report, stats)


def _items_table(item_ids: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
    """Item metadata aligned to item indices 0..N (row 0 = padding); nested fields flattened to strings."""
    m = meta.reindex(pd.Index(item_ids, name="parent_asin"))
    out = pd.DataFrame({"parent_asin": pd.Series(item_ids, dtype=object).astype(str)})
    out["title"] = m["title"].fillna("").astype(str).to_numpy() if "title" in m else ""
    for c in ("main_category", "store"):
        out[c] = [v if isinstance(v, str) else "" for v in m[c]] if c in m else ""
    out["categories"] = [" > ".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else
                         (v if isinstance(v, str) else "") for v in m["categories"]] if "categories" in m else ""
    for c in ("price", "average_rating", "rating_number"):
        out[c] = m[c].to_numpy(dtype=np.float64) if c in m else np.nan
    out["details"] = [json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict) else
                      (v if isinstance(v, str) else "") for v in m["details"]] if "details" in m else ""
    out.loc[0, "title"] = ""
    out.index.name = "item"
    return out


ITEM_TEXTS = ("title", "title_categories")  # `DataConfig.item_text`


def item_texts(items: pd.DataFrame, rule: str = "title") -> list[str]:
    """The text of each item index (0 = padding, ""): its title, or with "title_categories" its title and its
    categories ("Toy Story (1995) — Animation, Children's, Comedy"; the title alone when it has none). Chapter 02's
    LLM teacher reads it (issue 25)."""
    if rule not in ITEM_TEXTS:
        raise ValueError(f"unknown item_text {rule!r}; choose one of {ITEM_TEXTS}")
    titles = items["title"].fillna("").astype(str).tolist()
    if rule == "title":
        return titles
    cats = items["categories"].fillna("").astype(str).tolist() if "categories" in items else [""] * len(titles)
    out = [f"{t} — {c.replace(' > ', ', ')}" if t and c else t for t, c in zip(titles, cats)]
    out[0] = ""
    return out


def to_rec_data(proc: Processed, cfg: DataConfig) -> RecData:
    """Split a `Processed` data set into `RecData` (`cfg.split`: 'leave_last_out' or 'timestamp')."""
    seqs, times = sequences_from_interactions(proc.interactions, proc.num_users)
    return build_rec_data(seqs, proc.num_items, cfg.max_len, cfg.split, times, cfg.valid_from_ms, cfg.test_from_ms,
                          item_texts(proc.items, cfg.item_text), proc.items["parent_asin"].tolist(),
                          list(proc.user_ids),
                          train_windows=cfg.train_windows)


def load_rec_data(cfg: DataConfig, paths: "Paths", seed: int = 0,
                  progress: bool = True) -> tuple[RecData, LoadReport, dict]:
    """THE entry point for every chapter: the data set of `cfg` as `RecData`, its `LoadReport` and a stats dict.

    Generates the synthetic raw files when `cfg.source == "synthetic"` and they are missing (or were made with other
    parameters), reads and pre-processes the raw files, caches the result under `paths.processed/<category>/`
    (reused while the pre-processing parameters, the seed and the raw files are unchanged), and splits it.
    Introduced in chapter 01.
    """
    proc = prepare_data(cfg, paths, seed, progress)
    rd = to_rec_data(proc, cfg)
    stats = dict(proc.stats, split=cfg.split, **{f"split_{k}": v for k, v in split_stats(rd).items()})
    return rd, proc.report, stats

"""Data (chapter 01): Amazon Reviews 2023 readers, a seeded synthetic generator in the same format, pre-processing,
splits and the cache. Every chapter calls `load_rec_data(cfg.data, paths, seed)` -> `(RecData, LoadReport, stats)`.

The modules, in the order data flows through them:

* `amazon`     - raw files: `raw_files` (finding a category's files), `read_reviews` / `read_meta` (streamed in
                 chunks by `iter_records`), `LoadReport` (bad rows skipped and counted), `DataError` (bad files).
* `synthetic`  - `generate_synthetic` / `ensure_synthetic` write seeded raw files in the Amazon format from
                 `simulate_synthetic`'s latent `SyntheticWorld`; `SyntheticConstants` names the generator's numbers;
                 the depth world's exact `bayes_scores`, `last_item_bayes_scores` and `planted_variables`,
                 `synthetic_world` / `reference_scorers` to score processed data with them (`GeneratedPrefixes`:
                 each processed history's generated history, so the ceiling is exact on what the models see);
                 `toy_markov_sequences` for unit tests.
* `preprocess` - `preprocess_reviews` (de-duplication, iterative `k_core`, contiguous ids, chronological order),
                 `sequences_from_interactions`, `dataset_stats`.
* `splits`     - `RecData` (the model-facing tensors), `left_pad`, `build_rec_data` (the one split builder:
                 leave-last-out or the absolute timestamp split), `rec_data_from_sequences`, `split_stats`.
* `cache`      - `prepare_data` (generate or read, pre-process, cache as `Processed`), `to_rec_data`,
                 `load_rec_data` (the entry point).
* `movielens`  - MovieLens-100K (titles, genres, ratings, timestamps) read from the RecBole wheel `make env` fetches,
                 written in the Amazon format by `convert` (`ensure_movielens`; issue 25).
* `convert`    - `python -m lab data convert`: RecBole `.inter`, "user item ..." sequence and CSV files written as the
                 Amazon Reviews 2023 files `amazon` reads (issue 16).

What chapter 01 records of its data is gathered in `lab.chapters.c01_data`.

Item index 0 is padding (`lab.constants.PAD`); real items are 1..num_items. Count baselines over `RecData` live in
`lab.recommenders`, above `lab.metrics`.
"""
from __future__ import annotations

from .amazon import (META_FIELDS, REASONS, REVIEW_FIELDS, SEQ_FIELDS, DataError, LoadReport, find_raw_file,
                     iter_records, raw_categories, raw_files, raw_format, read_meta, read_reviews)
from .cache import SOURCES, Processed, cache_key, ensure_raw, load_rec_data, prepare_data, raw_dir_of, to_rec_data
from .movielens import ensure_movielens, extract_movielens
from .movielens import wheel_path as movielens_wheel
from .preprocess import TIE_BREAKS, dataset_stats, k_core, order_ties, preprocess_reviews, sequences_from_interactions
from .splits import SPLITS, RecData, build_rec_data, left_pad, rec_data_from_sequences, split_stats
from .synthetic import (DEPTH_FIELDS, SYNTHETIC, GeneratedPrefixes, SyntheticConstants, SyntheticWorld, bayes_scores,
                        ensure_synthetic, generate_synthetic, generated_ids, generator_params, is_depth_world, last_item_bayes_scores,
                        last_item_table, planted_variables, pointer_positions, reference_scorers,
                        simulate_synthetic, synthetic_world, toy_markov_sequences)

__all__ = [
    "META_FIELDS", "REASONS", "REVIEW_FIELDS", "SEQ_FIELDS", "DataError", "LoadReport", "find_raw_file",
    "iter_records", "raw_categories", "raw_files", "raw_format", "read_meta", "read_reviews",
    "SOURCES", "Processed", "cache_key", "ensure_raw", "load_rec_data", "prepare_data", "raw_dir_of", "to_rec_data",
    "ensure_movielens", "extract_movielens", "movielens_wheel", "order_ties", "TIE_BREAKS",
    "dataset_stats", "k_core", "preprocess_reviews", "sequences_from_interactions",
    "SPLITS", "RecData", "build_rec_data", "left_pad", "rec_data_from_sequences", "split_stats",
    "DEPTH_FIELDS", "SYNTHETIC", "GeneratedPrefixes", "SyntheticConstants", "SyntheticWorld", "bayes_scores", "ensure_synthetic",
    "generate_synthetic", "generated_ids", "generator_params", "is_depth_world", "last_item_bayes_scores",
    "last_item_table",
    "planted_variables", "pointer_positions", "reference_scorers", "simulate_synthetic", "synthetic_world",
    "toy_markov_sequences",
]

"""Data: Amazon Reviews 2023 readers, a seeded synthetic generator in the same format, pre-processing, splits.

Chapter 01 (`01_data`) introduced this module. The model-facing result is `RecData`: padded, left-aligned item-index
tensors for training and evaluation. Item index 0 is padding; real items are 1..num_items.

The one entry point later chapters call is `load_rec_data(cfg.data, paths, seed)`. It

1. generates synthetic raw files in the Amazon Reviews 2023 format when `cfg.source == "synthetic"` and they are
   missing (`generate_synthetic`),
2. streams the review file in chunks (`read_reviews`; `.jsonl`, `.jsonl.gz` or `.parquet`), keeping only user_id,
   parent_asin, timestamp and rating, and skipping-and-counting bad rows in a `LoadReport`,
3. pre-processes as the Amazon 2023 benchmark does (`preprocess_reviews`: exact duplicates dropped, repeated
   user-item pairs de-duplicated keeping the earliest, iterative k-core, contiguous ids, chronological order),
4. attaches item titles from the metadata file (`read_meta`),
5. caches the result under `Paths.processed/<category>/` and rebuilds it when the inputs or parameters change,
6. splits it (`leave_last_out` via `rec_data_from_sequences`, or the absolute `timestamp` split via
   `rec_data_timestamp_split`) into `RecData`.

Row-level problems (malformed JSON, a missing or mistyped field, a rating outside 1-5) are skipped and counted;
file-level problems (file not found, empty file, truncated gzip, a missing required parquet column) raise `DataError`.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .config import DataConfig, config_hash
from .io import atomic_path, read_json, write_json, write_parquet

if TYPE_CHECKING:  # pragma: no cover
    from . import Paths

PAD = 0  # item index used for padding
IGNORE = -100  # label value ignored by the loss


@dataclass
class RecData:
    """A pre-processed sequential-recommendation data set as tensors.

    All history tensors are left-padded with `PAD` so the most recent item sits at position -1.
    """

    num_items: int  # real items are 1..num_items; 0 is padding
    max_len: int  # T, the history length fed to models
    train_inputs: torch.Tensor  # (U, T) training histories (items before the validation item, last T-step window)
    train_labels: torch.Tensor  # (U, T) the next item at every position, IGNORE where there is none
    valid_history: torch.Tensor  # (Uv, T) the history before each validation target
    valid_target: torch.Tensor  # (Uv,) the validation item
    valid_users: torch.Tensor  # (Uv,) user index of each validation row
    valid_seen: torch.Tensor  # (Uv, S) every item the user interacted with before the target (PAD-padded), for masking
    test_history: torch.Tensor  # (Ut, T)
    test_target: torch.Tensor  # (Ut,)
    test_users: torch.Tensor  # (Ut,)
    test_seen: torch.Tensor  # (Ut, S)
    item_counts: torch.Tensor  # (num_items + 1,) training interactions per item (popularity)
    item_titles: list = field(default_factory=list)  # title of item i at position i ("" for padding)
    item_ids: list = field(default_factory=list)  # parent_asin of item i at position i
    user_ids: list = field(default_factory=list)  # user_id of user u at position u

    @property
    def num_users(self) -> int:
        return int(self.train_inputs.shape[0])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(history, target, seen) of the 'valid' or 'test' split."""
        if name == "valid":
            return self.valid_history, self.valid_target, self.valid_seen
        if name == "test":
            return self.test_history, self.test_target, self.test_seen
        raise ValueError(f"split must be 'valid' or 'test', not {name!r}")


def left_pad(seqs: list[list[int]], length: int, value: int = PAD) -> torch.Tensor:
    """Keep the last `length` items of each sequence and left-pad to `length`.  # (N, length)"""
    out = np.full((len(seqs), max(length, 0)), value, dtype=np.int64)
    if length > 0 and len(seqs):
        tails = [list(s)[-length:] for s in seqs]
        lens = np.fromiter((len(s) for s in tails), dtype=np.int64, count=len(tails))
        if lens.sum():
            flat = np.fromiter((x for s in tails for x in s), dtype=np.int64, count=int(lens.sum()))
            rows = np.repeat(np.arange(len(tails)), lens)
            starts = np.cumsum(lens) - lens
            cols = length - lens[rows] + (np.arange(len(flat)) - starts[rows])
            out[rows, cols] = flat
    return torch.from_numpy(out)


def rec_data_from_sequences(sequences: list[list[int]], num_items: int, max_len: int,
                            item_titles: list | None = None, item_ids: list | None = None,
                            user_ids: list | None = None) -> RecData:
    """Leave-last-out split of chronological per-user item sequences (items 1..num_items) into `RecData`.

    The last item of each user is the test target, the second-last the validation target; training uses the rest
    (every position predicts the next item). Users with fewer than 3 items are dropped (k-core >= 3 prevents it).
    """
    seqs = [list(s) for s in sequences if len(s) >= 3]
    users = [u for u, s in enumerate(sequences) if len(s) >= 3]
    train_part = [s[:-2] for s in seqs]
    window = [s[-(max_len + 1):] for s in train_part]  # (inputs + one more for the labels)
    train_inputs = left_pad([w[:-1] for w in window], max_len)
    train_labels = left_pad([w[1:] for w in window], max_len, value=IGNORE)
    counts = torch.zeros(num_items + 1, dtype=torch.long)
    for s in train_part:
        counts += torch.bincount(torch.as_tensor(s, dtype=torch.long), minlength=num_items + 1)
    valid_hist = [s[:-2] for s in seqs]
    test_hist = [s[:-1] for s in seqs]
    seen_len = max(len(s) for s in test_hist)
    uidx = torch.as_tensor(users, dtype=torch.long)
    return RecData(
        num_items=num_items, max_len=max_len,
        train_inputs=train_inputs, train_labels=train_labels,
        valid_history=left_pad(valid_hist, max_len), valid_target=torch.as_tensor([s[-2] for s in seqs]),
        valid_users=uidx, valid_seen=left_pad(valid_hist, seen_len),
        test_history=left_pad(test_hist, max_len), test_target=torch.as_tensor([s[-1] for s in seqs]),
        test_users=uidx.clone(), test_seen=left_pad(test_hist, seen_len),
        item_counts=counts,
        item_titles=list(item_titles or [""] * (num_items + 1)),
        item_ids=list(item_ids or [str(i) for i in range(num_items + 1)]),
        user_ids=list(user_ids or [str(u) for u in users]),
    )


def toy_markov_sequences(n_users: int = 64, n_items: int = 30, length: int = 12, seed: int = 0) -> list[list[int]]:
    """Tiny learnable sequences for unit tests: item i is mostly followed by item i+1 (mod n), no repeats per user."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n_users):
        start = int(torch.randint(1, n_items + 1, (1,), generator=g))
        s = [(start - 1 + t) % n_items + 1 for t in range(min(length, n_items))]
        seqs.append(s)
    return seqs


# ---------------------------------------------------------------------------------------------------------------------
# Errors and the load report
# ---------------------------------------------------------------------------------------------------------------------

REVIEW_FIELDS = ("rating", "title", "text", "images", "asin", "parent_asin", "user_id", "timestamp", "helpful_vote",
                 "verified_purchase")  # every field of an Amazon Reviews 2023 review record
SEQ_FIELDS = ("user_id", "parent_asin", "timestamp", "rating")  # the only review fields the sequences need
META_FIELDS = ("parent_asin", "title", "main_category", "categories", "price", "average_rating", "rating_number",
               "store", "details")  # item-metadata fields kept by `read_meta` (others too when `columns=None`)
SUFFIXES = (".jsonl.gz", ".jsonl", ".parquet")  # raw formats, in the order `find_raw_file` looks for them
REASONS = {
    "malformed_json": "the line is not valid JSON",
    "not_an_object": "the line is valid JSON but not an object",
    "missing_field": "a required field is absent or null",
    "bad_type": "a field has the wrong type (e.g. rating 'abc')",
    "bad_value": "a field has an impossible value (empty id, timestamp <= 0)",
    "rating_out_of_range": "rating outside 1-5 or NaN",
    "duplicate_row": "an exact copy of an earlier review row (same user, item, timestamp, rating)",
    "unknown_item": "a metadata row for an item no review mentions",
    "duplicate_item": "a second metadata row for the same parent_asin",
}  # row-level problems: skipped and counted in `LoadReport`


class DataError(ValueError):
    """A file-level problem with raw data (missing, empty, truncated, wrong columns), or a bad row in strict mode.

    The message names the file, and the line and field where known.
    """


@dataclass
class LoadReport:
    """What reading raw files skipped and why (chapter 01).

    Row-level problems are skipped and counted per reason (see `REASONS`); the first few examples of each reason keep
    the file, the line (row number for parquet) and the field. `preprocessing` counts what pre-processing removed on
    purpose (repeated user-item pairs, k-core), which are not errors.
    """

    rows_read: int = 0  # data rows seen (non-blank lines / parquet rows) over every file read
    skipped: dict = field(default_factory=dict)  # reason -> rows skipped
    examples: list = field(default_factory=list)  # first few bad rows: {file, line, field, reason, value}
    files: dict = field(default_factory=dict)  # file name -> {"rows_read", "rows_skipped"}
    preprocessing: dict = field(default_factory=dict)  # counts of the pre-processing steps (not errors)
    notes: list = field(default_factory=list)  # free-text remarks (e.g. "no metadata file")
    max_examples: int = 3  # examples kept per reason

    @property
    def rows_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    @property
    def rows_kept(self) -> int:
        return int(self.rows_read - self.rows_skipped)

    def _file(self, file) -> dict:
        return self.files.setdefault(Path(file).name, {"rows_read": 0, "rows_skipped": 0})

    def count_read(self, file, n: int) -> None:
        self.rows_read += int(n)
        self._file(file)["rows_read"] += int(n)

    def skip(self, reason: str, file, line: int | None, field_: str | None = None, value=None) -> None:
        """Count one skipped row and keep it as an example if it is among the first few of its reason."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self._file(file)["rows_skipped"] += 1
        if self.skipped[reason] <= self.max_examples:
            v = value if isinstance(value, str) else repr(value)
            self.examples.append({"file": Path(file).name, "line": None if line is None else int(line),
                                  "field": field_, "reason": reason, "value": v[:80]})

    def skip_many(self, reason: str, file, n: int) -> None:
        """Count `n` skipped rows of one reason without examples."""
        if n > 0:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(n)
            self._file(file)["rows_skipped"] += int(n)

    def table(self) -> pd.DataFrame:
        """Rows skipped per reason, with what each reason means and its share of the rows read."""
        rows = [{"reason": r, "rows": n, "share": n / max(self.rows_read, 1), "meaning": REASONS.get(r, "")}
                for r, n in sorted(self.skipped.items(), key=lambda kv: -kv[1])]
        return pd.DataFrame(rows, columns=["reason", "rows", "share", "meaning"])

    def examples_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.examples, columns=["file", "line", "field", "reason", "value"])

    def files_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"file": k, **v} for k, v in self.files.items()],
                            columns=["file", "rows_read", "rows_skipped"])

    def to_dict(self) -> dict:
        return {"rows_read": self.rows_read, "rows_kept": self.rows_kept, "rows_skipped": self.rows_skipped,
                "skipped": dict(self.skipped), "examples": list(self.examples), "files": dict(self.files),
                "preprocessing": dict(self.preprocessing), "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict) -> "LoadReport":
        return cls(rows_read=d["rows_read"], skipped=dict(d["skipped"]), examples=list(d["examples"]),
                   files=dict(d["files"]), preprocessing=dict(d.get("preprocessing", {})),
                   notes=list(d.get("notes", [])))

    def __str__(self) -> str:
        lines = [f"LoadReport: {self.rows_read:,} rows read, {self.rows_kept:,} kept, {self.rows_skipped:,} skipped"]
        for r, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {r:<20} {n:>8,}")
        for e in self.examples:
            lines.append(f"  e.g. {e['file']}:{e['line']} {e['reason']} field={e['field']} value={e['value']}")
        for k, v in self.preprocessing.items():
            lines.append(f"  pre-processing {k}: {v:,}" if isinstance(v, int) else f"  pre-processing {k}: {v}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Readers (streamed in chunks)
# ---------------------------------------------------------------------------------------------------------------------

def raw_format(path: str | os.PathLike) -> str:
    """'jsonl', 'jsonl.gz' or 'parquet' from the file name; DataError for anything else."""
    name = Path(path).name.lower()
    if name.endswith((".jsonl.gz", ".json.gz")):
        return "jsonl.gz"
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise DataError(f"{path}: unknown raw format (expected .jsonl, .jsonl.gz or .parquet)")


def find_raw_file(raw_dir: str | os.PathLike, stem: str) -> Path | None:
    """The first of `<stem>.jsonl.gz`, `.jsonl`, `.parquet` in `raw_dir` (or its Hugging Face sub-folders
    `review_categories/` and `meta_categories/`), or None."""
    raw_dir = Path(raw_dir)
    for sub in ("", "review_categories", "meta_categories"):
        for suf in SUFFIXES:
            p = raw_dir / sub / f"{stem}{suf}"
            if p.is_file():
                return p
    return None


EXPECTED_RAW = ("the Amazon Reviews 2023 files of one category: reviews <Category>.jsonl.gz (or .jsonl, .parquet) and "
                "item metadata meta_<Category>.jsonl.gz (optional; same formats), e.g. Video_Games.jsonl.gz and "
                "meta_Video_Games.jsonl.gz, directly in the folder or in its review_categories/ and meta_categories/ "
                "sub-folders")  # what `raw_files` looks for, for error messages


def raw_categories(raw_dir: str | os.PathLike) -> list[str]:
    """The categories that have a review file in `raw_dir` (or its `review_categories/`), sorted."""
    raw_dir, found = Path(raw_dir), set()
    for sub in ("", "review_categories"):
        for suf in SUFFIXES:
            found |= {p.name[: -len(suf)] for p in (raw_dir / sub).glob(f"*{suf}")
                      if p.is_file() and not p.name.startswith("meta_")}
    return sorted(found)


def raw_files(category: str, raw_dir: str | os.PathLike) -> tuple[Path, Path | None]:
    """The review file and metadata file (None when absent) of `category` in `raw_dir`.

    Raises DataError naming the folder and the files expected there when the folder or the review file is missing
    (the first thing a new user with a wrong `LAB_RAW_DIR` or `LAB_CATEGORY` sees).
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        which = f", so no review file for category {category!r}" if category else ""
        raise DataError(f"{raw_dir}: raw data folder not found{which} (LAB_RAW_DIR / DataConfig.raw_dir). It should "
                        f"hold {EXPECTED_RAW}, downloaded by hand from the Amazon Reviews 2023 page. Point LAB_RAW_DIR "
                        "at the folder that has them and set LAB_CATEGORY=<Category>.")
    rev = find_raw_file(raw_dir, category)
    if rev is None:
        found = raw_categories(raw_dir)
        raise DataError(f"{raw_dir}: no review file for category {category!r} (looked for {category}.jsonl.gz, "
                        f"{category}.jsonl, {category}.parquet there and in review_categories/); categories found "
                        f"there: {', '.join(found) if found else 'none'}. Expected {EXPECTED_RAW}.")
    return rev, find_raw_file(raw_dir, f"meta_{category}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


def iter_records(path: str | os.PathLike, chunk_size: int = 200_000, fields: Sequence[str] | None = None,
                 required: Sequence[str] = (), report: LoadReport | None = None,
                 strict: bool = False) -> Iterator[tuple[list[int], list]]:
    """Stream a raw file as chunks of `(line_numbers, rows)`.

    Rows are dicts when `fields` is None, else tuples of the `fields` values (None where absent), so that large
    fields (review text) are dropped as soon as a line is parsed. Line numbers are 1-based physical lines of a JSON
    Lines file, or 1-based row numbers of a parquet file. Malformed lines are skipped and counted in `report`
    (`strict=True` raises instead). File-level problems raise `DataError`: not found, empty, truncated or corrupt
    gzip, unreadable parquet, a `required` column absent from a parquet file, no rows at all.
    """
    path = Path(path)
    fmt = raw_format(path)
    _check_file(path)
    report = report if report is not None else LoadReport()
    n_rows = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a corrupt file
            raise DataError(f"{path}: not a readable parquet file ({e})") from None
        names = pf.schema_arrow.names
        missing = [f for f in required if f not in names]
        if missing:
            raise DataError(f"{path}: missing required column(s) {missing} (has {names})")
        cols = None if fields is None else [f for f in fields if f in names]
        for batch in pf.iter_batches(batch_size=max(1, chunk_size), columns=cols):
            n = batch.num_rows
            lines = list(range(n_rows + 1, n_rows + n + 1))
            n_rows += n
            report.count_read(path, n)
            if fields is None:
                rows = batch.to_pylist()
            else:
                data = [batch.column(f).to_pylist() if f in names else [None] * n for f in fields]
                rows = list(zip(*data))
            yield lines, rows
        if n_rows == 0:
            raise DataError(f"{path}: file has no rows")
        return

    opener = gzip.open if fmt == "jsonl.gz" else open
    lines: list[int] = []
    rows: list = []
    lineno = 0
    pending = 0  # rows read since the last chunk was handed out (bad ones included)
    loads = json.loads
    try:
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw or raw.isspace():
                    continue
                n_rows += 1
                pending += 1
                try:
                    rec = loads(raw)
                except ValueError:  # JSONDecodeError and UnicodeDecodeError
                    _bad(report, strict, "malformed_json", path, lineno, None, _snippet(raw))
                    continue
                if type(rec) is not dict:
                    _bad(report, strict, "not_an_object", path, lineno, None, _snippet(raw))
                    continue
                lines.append(lineno)
                rows.append(rec if fields is None else tuple(rec.get(f) for f in fields))
                if len(lines) >= chunk_size:
                    report.count_read(path, pending)
                    pending = 0
                    yield lines, rows
                    lines, rows = [], []
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: truncated or corrupt gzip (stopped after line {lineno}): {e}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read (after line {lineno}): {e}") from None
    report.count_read(path, pending)
    if lines:
        yield lines, rows
    if n_rows == 0:
        raise DataError(f"{path}: file has no rows (empty or only blank lines)")


def _snippet(raw: bytes) -> str:
    return raw[:120].decode("utf-8", "replace").strip()


def _bad(report: LoadReport, strict: bool, reason: str, path, line, field_, value) -> None:
    if strict:
        where = f"{path}, line {line}" + (f", field {field_!r}" if field_ else "")
        raise DataError(f"{where}: {reason} ({REASONS.get(reason, '')}); value {value!r}")
    report.skip(reason, path, line, field_, value)


def _progress(progress: bool, desc: str, unit: str = " rows"):
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, unit_scale=True, disable=not progress, file=sys.stderr, mininterval=1.0)


def read_reviews(path: str | os.PathLike, chunk_size: int = 200_000, report: LoadReport | None = None,
                 strict: bool = False, progress: bool = False) -> pd.DataFrame:
    """Read the four fields the sequences need from an Amazon Reviews 2023 review file, streamed in chunks.

    Returns one row per valid review, in file order, with columns `user_id` and `parent_asin` (categorical, to keep
    memory small), `timestamp` (int64, Unix ms), `rating` (float32, 1-5) and `line` (the row's line in the file).
    Rows with a missing or mistyped field, or a rating outside 1-5, are skipped and counted in `report`.
    """
    path = Path(path)
    report = report if report is not None else LoadReport()
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    u_parts, i_parts, t_parts, r_parts, l_parts = [], [], [], [], []
    bar = _progress(progress, f"reading {path.name}")
    for lines, rows in iter_records(path, chunk_size, SEQ_FIELDS, SEQ_FIELDS, report, strict):
        uc, ic, tc, rc, lc = [], [], [], [], []
        for ln, (uid, pa, ts, r) in zip(lines, rows):
            bad = _check_review(uid, pa, ts, r)
            if bad is not None:
                _bad(report, strict, bad[0], path, ln, bad[1], bad[2])
                continue
            uc.append(users.setdefault(uid, len(users)))
            ic.append(items.setdefault(pa, len(items)))
            tc.append(int(ts))
            rc.append(r)
            lc.append(ln)
        u_parts.append(np.asarray(uc, dtype=np.int32))
        i_parts.append(np.asarray(ic, dtype=np.int32))
        t_parts.append(np.asarray(tc, dtype=np.int64))
        r_parts.append(np.asarray(rc, dtype=np.float32))
        l_parts.append(np.asarray(lc, dtype=np.int64))
        bar.update(len(lines))
    bar.close()
    cat = lambda parts, names: pd.Categorical.from_codes(
        np.concatenate(parts) if parts else np.zeros(0, np.int32), categories=pd.Index(list(names), dtype=object))
    return pd.DataFrame({
        "user_id": cat(u_parts, users), "parent_asin": cat(i_parts, items),
        "timestamp": np.concatenate(t_parts) if t_parts else np.zeros(0, np.int64),
        "rating": np.concatenate(r_parts) if r_parts else np.zeros(0, np.float32),
        "line": np.concatenate(l_parts) if l_parts else np.zeros(0, np.int64),
    })


def _check_review(uid, pa, ts, r):
    """None for a valid review, else (reason, field, value) for the first bad field."""
    for name, v in (("user_id", uid), ("parent_asin", pa)):
        if v is None:
            return "missing_field", name, v
        if type(v) is not str:
            return "bad_type", name, v
        if not v.strip():
            return "bad_value", name, v
    if ts is None:
        return "missing_field", "timestamp", ts
    t = type(ts)
    if t is float:
        if not math.isfinite(ts) or not ts.is_integer():
            return "bad_type", "timestamp", ts
    elif t is not int:
        return "bad_type", "timestamp", ts
    if ts <= 0:
        return "bad_value", "timestamp", ts
    if r is None:
        return "missing_field", "rating", r
    t = type(r)
    if t is not float and t is not int:
        return "bad_type", "rating", r
    if not 1.0 <= r <= 5.0:  # NaN fails both comparisons
        return "rating_out_of_range", "rating", r
    return None


def _to_float(v):
    """Numbers as float; anything else (None, 'None', '$12.99 - $20') as NaN. Used for optional meta numbers."""
    if type(v) is float or type(v) is int:
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip().lstrip("$").replace(",", ""))
        except ValueError:
            return math.nan
    return math.nan


def read_meta(path: str | os.PathLike, chunk_size: int = 200_000, report: LoadReport | None = None,
              strict: bool = False, known: set | None = None, keep: set | None = None,
              columns: Sequence[str] | None = META_FIELDS, progress: bool = False) -> pd.DataFrame:
    """Read an Amazon Reviews 2023 item-metadata file, streamed in chunks, indexed by `parent_asin`.

    Args:
        known: parent_asins that appear in the reviews; other rows are skipped as `unknown_item`.
        keep: parent_asins to return (e.g. those that survived k-core); known rows outside it are dropped quietly.
        columns: fields to keep (`parent_asin` is the index); None keeps every field present.
    A row needs a non-empty string `parent_asin` and a string (or absent) `title`; a repeated parent_asin is skipped as
    `duplicate_item`. `price`, `average_rating` and `rating_number` become floats (NaN when not a number).
    """
    path = Path(path)
    report = report if report is not None else LoadReport()
    fields = None if columns is None else tuple(dict.fromkeys(("parent_asin", "title", *columns)))
    seen: set = set()
    out: list[dict] = []
    bar = _progress(progress, f"reading {path.name}")
    for lines, rows in iter_records(path, chunk_size, fields, ("parent_asin",), report, strict):
        for ln, row in zip(lines, rows):
            rec = row if fields is None else dict(zip(fields, row))
            pa, title = rec.get("parent_asin"), rec.get("title")
            if pa is None:
                _bad(report, strict, "missing_field", path, ln, "parent_asin", pa)
                continue
            if type(pa) is not str or not pa.strip():
                _bad(report, strict, "bad_type" if type(pa) is not str else "bad_value", path, ln, "parent_asin", pa)
                continue
            if title is not None and type(title) is not str:
                _bad(report, strict, "bad_type", path, ln, "title", title)
                continue
            if known is not None and pa not in known:
                _bad(report, strict, "unknown_item", path, ln, "parent_asin", pa)
                continue
            if pa in seen:
                _bad(report, strict, "duplicate_item", path, ln, "parent_asin", pa)
                continue
            seen.add(pa)
            if keep is not None and pa not in keep:
                continue
            rec["title"] = title or ""
            out.append(rec)
        bar.update(len(lines))
    bar.close()
    cols = list(META_FIELDS) if columns is None else list(dict.fromkeys(("parent_asin", *columns)))
    df = pd.DataFrame.from_records(out) if out else pd.DataFrame(columns=cols)
    for c in cols:
        if c not in df.columns:
            df[c] = None
    for c in ("price", "average_rating", "rating_number"):
        if c in df.columns:
            df[c] = np.array([_to_float(v) for v in df[c]], dtype=np.float64)
    return df.set_index("parent_asin")



# ---------------------------------------------------------------------------------------------------------------------
# Pre-processing and splits
# ---------------------------------------------------------------------------------------------------------------------

def k_core(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Iterative k-core: a boolean mask of the interactions to keep so that every remaining user and item has at least
    `k` of them, and the number of passes it took. Users and items are integer codes (0..n-1)."""
    keep = np.ones(len(users), dtype=bool)
    if k <= 1 or len(users) == 0:
        return keep, 0
    nu, ni = int(users.max()) + 1, int(items.max()) + 1
    passes = 0
    while True:
        passes += 1
        uc = np.bincount(users[keep], minlength=nu)
        ic = np.bincount(items[keep], minlength=ni)
        bad = keep & ((uc[users] < k) | (ic[items] < k))
        if not bad.any():
            return keep, passes
        keep &= ~bad


def preprocess_reviews(reviews: pd.DataFrame, k: int = 5, report: LoadReport | None = None,
                       file: str = "reviews") -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Amazon-2023-benchmark pre-processing of `read_reviews` output.

    1. exact duplicate rows (same user, item, timestamp, rating) are skipped and counted as `duplicate_row`;
    2. repeated user-item pairs are de-duplicated keeping the earliest (ties: the earlier line);
    3. iterative k-core on users and items;
    4. contiguous ids: users 0..U-1 and items 1..N (0 = padding), both in sorted-string order;
    5. chronological order per user, ties broken by the order in the file (stable).

    Returns `(interactions, user_ids, item_ids)`: interactions with int32 `user`, int32 `item`, int64 `timestamp`,
    float32 `rating`, sorted by user then time; `user_ids[u]` is the user_id of user u; `item_ids[i]` the parent_asin
    of item i (`item_ids[0] == ""`).
    """
    report = report if report is not None else LoadReport()
    u = reviews["user_id"].cat.codes.to_numpy().astype(np.int64)
    i = reviews["parent_asin"].cat.codes.to_numpy().astype(np.int64)
    ts = reviews["timestamp"].to_numpy()
    r = reviews["rating"].to_numpy()
    ln = reviews["line"].to_numpy()
    pre = report.preprocessing
    pre["interactions_read"] = int(len(u))
    # 1: exact duplicates (same user, item, timestamp, rating): keep the first line of each group
    order = np.lexsort((ln, r, ts, i, u))
    u, i, ts, r, ln = u[order], i[order], ts[order], r[order], ln[order]
    exact = np.zeros(len(u), dtype=bool)
    exact[1:] = (u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (ts[1:] == ts[:-1]) & (r[1:] == r[:-1])
    group_start = np.maximum.accumulate(np.where(~exact, np.arange(len(u)), 0)) if len(u) else exact.astype(int)
    dup = np.flatnonzero(exact)
    dup = dup[np.argsort(ln[dup], kind="stable")]  # examples in file order
    for j in dup[: report.max_examples]:
        report.skip("duplicate_row", file, int(ln[j]), None, f"same as line {int(ln[group_start[j]])}")
    report.skip_many("duplicate_row", file, max(0, len(dup) - report.max_examples))
    u, i, ts, r, ln = u[~exact], i[~exact], ts[~exact], r[~exact], ln[~exact]
    pre["duplicate_rows"] = int(exact.sum())
    # 2: repeated user-item pairs: keep the earliest (ties: the earlier line)
    order = np.lexsort((ln, ts, i, u))
    u, i, ts, r, ln = u[order], i[order], ts[order], r[order], ln[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    pre["repeated_user_item"] = int((~first).sum())
    u, i, ts, r, ln = u[first], i[first], ts[first], r[first], ln[first]
    # 3: k-core
    keep, passes = k_core(u, i, k)
    pre.update(k_core=int(k), k_core_passes=int(passes),
               users_before_k_core=int(len(np.unique(u))), items_before_k_core=int(len(np.unique(i))),
               interactions_before_k_core=int(len(u)), k_core_removed_interactions=int((~keep).sum()))
    u, i, ts, r, ln = u[keep], i[keep], ts[keep], r[keep], ln[keep]
    if len(u) == 0:
        raise DataError(f"{file}: no interactions left after de-duplication and {k}-core "
                        f"({pre['interactions_before_k_core']} before k-core)")
    # 4: contiguous ids in sorted-string order
    ucats = np.asarray(reviews["user_id"].cat.categories, dtype=object)
    icats = np.asarray(reviews["parent_asin"].cat.categories, dtype=object)
    uu, u_new = np.unique(u, return_inverse=True)
    iu, i_new = np.unique(i, return_inverse=True)
    u_rank, i_rank = _rank(ucats[uu]), _rank(icats[iu])
    u_new, i_new = u_rank[u_new], i_rank[i_new] + 1
    user_ids = np.empty(len(uu), dtype=object)
    user_ids[u_rank] = ucats[uu]
    item_ids = np.empty(len(iu) + 1, dtype=object)
    item_ids[0] = ""
    item_ids[i_rank + 1] = icats[iu]
    pre.update(users=int(len(uu)), items=int(len(iu)), interactions=int(len(u_new)))
    # 5: chronological per user, ties by line
    order = np.lexsort((ln, ts, u_new))
    inter = pd.DataFrame({"user": u_new[order].astype(np.int32), "item": i_new[order].astype(np.int32),
                          "timestamp": ts[order].astype(np.int64), "rating": r[order].astype(np.float32)})
    return inter, user_ids, item_ids


def _rank(values: np.ndarray) -> np.ndarray:
    """Position of each value in sorted order (values distinct)."""
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    return rank


def sequences_from_interactions(inter: pd.DataFrame, num_users: int | None = None
                                ) -> tuple[list[list[int]], list[np.ndarray]]:
    """Per-user chronological item lists and their timestamps from an interactions table sorted by (user, time)."""
    u = inter["user"].to_numpy()
    n = int(num_users if num_users is not None else (u.max() + 1 if len(u) else 0))
    bounds = np.searchsorted(u, np.arange(n + 1))
    items = inter["item"].to_numpy()
    ts = inter["timestamp"].to_numpy()
    seqs = [items[bounds[j]:bounds[j + 1]].tolist() for j in range(n)]
    times = [ts[bounds[j]:bounds[j + 1]] for j in range(n)]
    return seqs, times


def rec_data_timestamp_split(sequences: list[list[int]], timestamps: list, num_items: int, max_len: int,
                             valid_from_ms: int, test_from_ms: int, item_titles: list | None = None,
                             item_ids: list | None = None, user_ids: list | None = None) -> RecData:
    """The absolute timestamp split of the Amazon 2023 benchmark into `RecData`.

    Interactions before `valid_from_ms` are training (every position predicts the next). A user's first interaction
    in [valid_from_ms, test_from_ms) is their validation target, with everything before it as history; their first
    interaction at or after `test_from_ms` is their test target, with everything before it (validation-period items
    included) as history. `seen` is the whole history. Targets with an empty history are dropped (nothing to predict
    from). Every user keeps a training row (all-IGNORE labels when fewer than two training interactions), so
    `valid_users`/`test_users` index the training rows. Per user the validation target precedes the test target, and no
    target is ever a training input or label (those are all earlier than `valid_from_ms`).
    """
    if valid_from_ms > test_from_ms:
        raise ValueError(f"valid_from_ms ({valid_from_ms}) must not be after test_from_ms ({test_from_ms})")
    train, vh, vt, vu, th, tt, tu = [], [], [], [], [], [], []
    for u, (s, t) in enumerate(zip(sequences, timestamps)):
        t = np.asarray(t)
        n_tr = int(np.searchsorted(t, valid_from_ms, side="left"))  # interactions before valid_from
        n_te = int(np.searchsorted(t, test_from_ms, side="left"))  # interactions before test_from
        train.append(list(s[:n_tr]))
        if n_tr < n_te and n_tr > 0:
            vh.append(list(s[:n_tr])), vt.append(s[n_tr]), vu.append(u)
        if n_te < len(s) and n_te > 0:
            th.append(list(s[:n_te])), tt.append(s[n_te]), tu.append(u)
    window = [s[-(max_len + 1):] for s in train]  # inputs + one more for the labels
    counts = torch.zeros(num_items + 1, dtype=torch.long)  # (N+1,)
    flat = [x for s in train for x in s]
    if flat:
        counts += torch.bincount(torch.as_tensor(flat, dtype=torch.long), minlength=num_items + 1)
    seen_v = max([len(h) for h in vh], default=1)
    seen_t = max([len(h) for h in th], default=1)
    long_ = lambda x: torch.as_tensor(x, dtype=torch.long)
    return RecData(
        num_items=num_items, max_len=max_len,
        train_inputs=left_pad([w[:-1] for w in window], max_len),  # (U, T)
        train_labels=left_pad([w[1:] for w in window], max_len, value=IGNORE),  # (U, T)
        valid_history=left_pad(vh, max_len), valid_target=long_(vt), valid_users=long_(vu),  # (Uv, T), (Uv,), (Uv,)
        valid_seen=left_pad(vh, seen_v),  # (Uv, S)
        test_history=left_pad(th, max_len), test_target=long_(tt), test_users=long_(tu),  # (Ut, T), (Ut,), (Ut,)
        test_seen=left_pad(th, seen_t),  # (Ut, S)
        item_counts=counts,
        item_titles=list(item_titles if item_titles is not None else [""] * (num_items + 1)),
        item_ids=list(item_ids if item_ids is not None else [str(i) for i in range(num_items + 1)]),
        user_ids=list(user_ids if user_ids is not None else [str(u) for u in range(len(sequences))]),
    )


def dataset_stats(interactions: pd.DataFrame, num_users: int | None = None, num_items: int | None = None) -> dict:
    """Users, items, interactions, density, sequence-length quantiles, rating mean and time span of an interactions
    table (`user`, `item`, and optionally `rating` and `timestamp` columns)."""
    u = interactions["user"].to_numpy()
    i = interactions["item"].to_numpy()
    n_u = int(num_users if num_users is not None else len(np.unique(u)))
    n_i = int(num_items if num_items is not None else len(np.unique(i)))
    lens = np.bincount(u)[np.unique(u)] if len(u) else np.zeros(1, int)
    pop = np.bincount(i)[np.unique(i)] if len(i) else np.zeros(1, int)
    q = np.quantile(lens, [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0])
    out = {
        "users": n_u, "items": n_i, "interactions": int(len(u)),
        "density": float(len(u) / max(n_u * n_i, 1)),
        "mean_seq_len": float(lens.mean()),
        "seq_len": {k: float(v) for k, v in zip(["min", "p25", "median", "p75", "p90", "p99", "max"], q)},
        "item_pop": {"min": int(pop.min()), "median": float(np.median(pop)), "max": int(pop.max()),
                     "top1pct_share": float(np.sort(pop)[::-1][: max(1, len(pop) // 100)].sum() / max(pop.sum(), 1)),
                     "gini": _gini(pop)},
    }
    if "rating" in interactions:
        out["rating_mean"] = float(interactions["rating"].mean())
    if "timestamp" in interactions and len(u):
        ts = interactions["timestamp"]
        out["first_ms"], out["last_ms"] = int(ts.min()), int(ts.max())
        out["first_date"] = str(pd.to_datetime(out["first_ms"], unit="ms").date())
        out["last_date"] = str(pd.to_datetime(out["last_ms"], unit="ms").date())
    return out


def _gini(x: np.ndarray) -> float:
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def split_stats(rd: RecData) -> dict:
    """Sizes of a `RecData`'s splits."""
    labels = rd.train_labels
    return {"train_users": rd.num_users, "train_rows_with_labels": int((labels != IGNORE).any(1).sum()),
            "train_targets": int((labels != IGNORE).sum()), "valid_rows": int(len(rd.valid_target)),
            "test_rows": int(len(rd.test_target)), "num_items": rd.num_items, "max_len": rd.max_len}


def sequential_structure(rd: RecData, k: int = 10, split: str = "valid", batch: int = 1024) -> dict:
    """Is there sequential signal a model can learn? Full-ranking HR@k / NDCG@k of three count baselines built from the
    TRAIN split only (chapter 01): popularity, a first-order Markov chain (next item | last item), and the same chain
    reversed (previous item | last item). Seen items are masked; ties count against the target. Forward Markov beating
    popularity says the last item predicts the next; beating its reverse says the order matters. `chance` is k / N."""
    from scipy import sparse

    n = rd.num_items + 1
    x = rd.train_inputs.reshape(-1).numpy()  # (U*T,) last item ...
    y = rd.train_labels.reshape(-1).numpy()  # (U*T,) ... and the item that followed it
    ok = (x != PAD) & (y != IGNORE) & (y != PAD)
    fwd = sparse.csr_matrix((np.ones(int(ok.sum())), (x[ok], y[ok])), shape=(n, n))  # (N+1, N+1) a -> b counts
    rev = fwd.T.tocsr()
    pop = rd.item_counts.numpy().astype(np.float64)
    pop_tb = pop / (pop.max() + 1.0) * 1e-3  # popularity as a tie-breaker (< one transition count)
    hist, target, seen = rd.split(split)
    last = hist[:, -1].numpy()  # (R,) the most recent history item
    target = target.numpy()  # (R,)
    seen = seen.numpy()  # (R, S)
    res = {name: [] for name in ("popularity", "markov", "markov_reversed")}
    for s in range(0, len(target), batch):
        sl = slice(s, s + batch)
        b = len(target[sl])
        base = np.broadcast_to(pop_tb, (b, n))  # (b, N+1)
        for name, scores in (("popularity", base.copy()),
                             ("markov", fwd[last[sl]].toarray() + base),
                             ("markov_reversed", rev[last[sl]].toarray() + base)):
            res[name].append(_ranks(scores, target[sl], seen[sl]))
    out = {"rows": int(len(target)), "chance_hr": float(k / max(rd.num_items, 1)),
           "train_transitions": int(ok.sum())}
    for name, parts in res.items():
        r = np.concatenate(parts) if parts else np.zeros(0)
        out[f"hr@{k}_{name}"] = float((r < k).mean()) if len(r) else 0.0
        out[f"ndcg@{k}_{name}"] = float(np.where(r < k, 1 / np.log2(r + 2), 0).mean()) if len(r) else 0.0
    # how concentrated are next items: share of train transitions whose next item is the last item's most frequent one
    if fwd.nnz:
        top = fwd.max(axis=1).toarray().ravel().sum()
        out["top_successor_share"] = float(top / fwd.sum())
    return out


def _ranks(scores: np.ndarray, target: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """0-based pessimistic rank of each target among all items, with PAD and seen items (except the target) masked."""
    s = scores.astype(np.float64, copy=True)
    rows = np.arange(len(target))
    t = s[rows, target].copy()
    s[rows[:, None], seen] = -np.inf
    s[:, PAD] = -np.inf
    s[rows, target] = t
    return (s > t[:, None]).sum(1) + (s == t[:, None]).sum(1) - 1



# ---------------------------------------------------------------------------------------------------------------------
# Seeded synthetic generator (Amazon Reviews 2023 format)
# ---------------------------------------------------------------------------------------------------------------------

GENERATOR_VERSION = 1  # bump when the generator's output changes, so cached raw files are regenerated
T_START_MS = 1546300800000  # 2019-01-01 00:00 UTC: first synthetic timestamp
T_END_MS = 1696032000000  # 2023-09-30 00:00 UTC: last synthetic timestamp (the Amazon 2023 crawl ends in 2023)
DAY_MS = 86_400_000
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
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2023]))
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
    succ_cum = np.cumsum(0.5 ** np.arange(S))
    succ_cum /= succ_cum[-1]

    def in_cluster(c, u):
        return order[np.minimum(np.searchsorted(cum, c + u, side="right"), I - 1)]

    transition = 0.5 * np.eye(K) + 0.5 * rng.dirichlet(np.full(K, 0.2), size=K)
    trans_cum = np.cumsum(transition, axis=1)
    taste = rng.dirichlet(np.full(K, 0.3), size=U)
    taste_cum = np.cumsum(taste, axis=1)
    mu = math.log(max(cfg.mean_seq_len - 2.5, 1.0)) - 0.32
    l_max = int(min(max(8 * cfg.mean_seq_len, 10), I // 2))
    lengths = np.minimum(3 + np.floor(rng.lognormal(mu, 0.8, U)).astype(np.int64), l_max)

    users, items, steps = [], [], []
    block = max(1, min(U, 20_000_000 // max(I, 1)))  # a (block, I) bool "seen" matrix of at most ~20 MB
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
                for attempt in range(12):  # resample already-seen items: 6 tries in the cluster, then anywhere
                    bad = np.flatnonzero(seen[ua, pick])
                    if not bad.size:
                        break
                    pick[bad] = (in_cluster(c[bad], rng.random(bad.size)) if attempt < 6
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
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2024]))
    K, I, U = int(cfg.n_clusters), int(cfg.n_items), int(cfg.n_users)
    user = inter["user"].to_numpy()
    item = inter["item"].to_numpy()
    n = len(user)
    first = np.r_[True, user[1:] != user[:-1]]

    # timestamps: per-user start and activity rate; gaps exponential, ~2% zero gaps (same-time ties)
    start = T_START_MS + rng.random(U) * (T_END_MS - T_START_MS) * 0.93
    gap_scale = rng.lognormal(math.log(25 * DAY_MS), 0.9, U)
    gaps = rng.exponential(1.0, n) * gap_scale[user]
    gaps[rng.random(n) < 0.02] = 0.0
    gaps[first] = 0.0
    csum = np.cumsum(gaps)
    offs = csum - csum[np.flatnonzero(first)][np.cumsum(first) - 1]  # per-user cumulative gap
    span = np.zeros(U)
    np.maximum.at(span, user, offs)
    room = (T_END_MS - start) * rng.uniform(0.5, 1.0, U)  # users who would run past the end are squeezed to
    scale = np.where(span > room, room / np.maximum(span, 1.0), 1.0)  # end at a random point before it
    ts = np.floor(start[user] + offs * scale[user]).astype(np.int64)

    # ratings: affinity of the user to the item's cluster + item quality + noise, rounded to 1..5
    quality = rng.normal(0.0, 0.5, I)
    aff = np.log(world.user_taste[user, world.item_cluster[item]] * K + 0.05)
    rating = np.clip(np.rint(4.5 + 0.3 * aff + quality[item] + rng.normal(0.0, 0.9, n)), 1, 5)

    # ids: parent_asin per item; ~25% of items have 2-3 variant asins
    n_var = np.where(rng.random(I) < 0.25, rng.integers(2, 4, I), 1)
    ids = _unique_ids(I + int(n_var[n_var > 1].sum()), 8, rng)
    parent = np.char.add("B0", ids[:I])
    var_start = np.zeros(I, dtype=np.int64)
    var_start[n_var > 1] = I + np.cumsum(np.r_[0, n_var[n_var > 1][:-1]])
    variants = np.char.add("B0", ids)
    user_ids = np.char.add(np.char.add("A", _unique_ids(U, 11, rng)),
                           _base36(rng.integers(0, 36 ** 8, U), 8))
    pick = (rng.random(n) * n_var[item]).astype(np.int64)
    asin = np.where(n_var[item] > 1, variants[var_start[item] + pick], parent[item])

    # repeated user-item reviews (later in time, fresh rating) and exact duplicate rows
    rep = np.sort(rng.choice(n, size=int(round(cfg.repeat_frac * n)), replace=False))
    rep_ts = ts[rep] + rng.integers(DAY_MS, 120 * DAY_MS, rep.size)
    rep_rating = rng.integers(1, 6, rep.size).astype(np.float64)
    all_user = np.r_[user, user[rep]]
    all_item = np.r_[item, item[rep]]
    all_asin = np.r_[asin, asin[rep]]
    all_ts = np.r_[ts, rep_ts]
    all_rating = np.r_[rating, rep_rating]
    m = len(all_user)
    helpful = rng.geometric(0.55, m) - 1
    verified = rng.random(m) < 0.88
    txt_pick = rng.integers(0, 12, m)
    dup = np.sort(rng.choice(m, size=int(round(cfg.duplicate_frac * m)), replace=False))
    rows = np.r_[np.arange(m), dup]  # duplicates come right after their originals (stable sort, same timestamp)
    rows = rows[np.argsort(all_ts[rows], kind="stable")]

    # item metadata: titles from per-cluster vocabularies, authors ("store"), prices
    genres = [(_GENRES[c % len(_GENRES)] + ("" if c < len(_GENRES) else f" {c // len(_GENRES) + 1}"))
              for c in range(K)]
    vocab_adj = [rng.choice(_ADJ, 8, replace=False) for _ in range(K)]
    vocab_noun = [rng.choice(_NOUN, 10, replace=False) for _ in range(K)]
    authors = [[f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" for _ in range(5)] for _ in range(K)]
    title_pat = rng.integers(0, 4, I)
    wa, wn, wn2, wau = (rng.integers(0, 8, I), rng.integers(0, 10, I), rng.integers(0, 10, I),
                        rng.integers(0, 5, I))
    titles = []
    for j in range(I):
        c = world.item_cluster[j]
        a, nn, n2 = vocab_adj[c][wa[j]], vocab_noun[c][wn[j]], vocab_noun[c][wn2[j]]
        titles.append([f"The {a} {nn}", f"{nn} of the {a} {n2}", f"The {a} {nn}: A {genres[c]} Novel",
                       f"{a} {nn}: {genres[c]} Essentials"][title_pat[j]])
    store = [authors[world.item_cluster[j]][wau[j]] for j in range(I)]
    price = np.round(rng.lognormal(math.log(14.0), 0.5, I), 2)
    has_price = rng.random(I) > 0.1
    pages = rng.integers(90, 700, I)
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
                               "files": {k: _fingerprint(v) for k, v in out.items() if k != "params"},
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


def _fingerprint(path: Path) -> dict:
    st = Path(path).stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


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



# ---------------------------------------------------------------------------------------------------------------------
# The entry point: generate or read, pre-process, cache, split
# ---------------------------------------------------------------------------------------------------------------------

PIPELINE_VERSION = 1  # bump when pre-processing changes, so caches are rebuilt
SPLIT_ONLY_FIELDS = ("split", "valid_from_ms", "test_from_ms", "max_len", "chunk_size")  # do not touch the cache


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


def cache_key(cfg: DataConfig, seed: int, files: Sequence[Path | None]) -> dict:
    """What the processed cache depends on: the pre-processing parameters (every DataConfig field except those in
    `SPLIT_ONLY_FIELDS`), the seed (synthetic data only), and the raw files' names, sizes and modification times."""
    params = {k: v for k, v in vars(cfg).items() if k not in SPLIT_ONLY_FIELDS}
    return {"pipeline": PIPELINE_VERSION, "params_hash": config_hash(params),
            "seed": int(seed) if cfg.source == "synthetic" else None,
            "files": {p.name: _fingerprint(p) for p in files if p is not None}}


def prepare_data(cfg: DataConfig, paths: "Paths", seed: int = 0, progress: bool = True) -> Processed:
    """Generate (synthetic, when missing), read, pre-process and cache a data set; load it from the cache when
    nothing it depends on changed (chapter 01). See `load_rec_data` for the split."""
    t0 = time.perf_counter()
    raw = raw_dir_of(cfg, paths)
    generated = False
    if cfg.source == "synthetic":
        generated = ensure_synthetic(cfg, raw, seed, progress)
    elif cfg.source != "amazon":
        raise ValueError(f"DataConfig.source must be 'synthetic' or 'amazon', not {cfg.source!r}")
    rev_path, meta_path = raw_files(cfg.category, raw)
    key = cache_key(cfg, seed, [rev_path, meta_path])
    cdir = Path(paths.processed) / cfg.category
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
    inter, user_ids, item_ids = preprocess_reviews(reviews, cfg.k_core, report, file=rev_path.name)
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


def to_rec_data(proc: Processed, cfg: DataConfig) -> RecData:
    """Split a `Processed` data set into `RecData` (`cfg.split`: 'leave_last_out' or 'timestamp')."""
    seqs, times = sequences_from_interactions(proc.interactions, proc.num_users)
    titles = proc.items["title"].tolist()
    ids = proc.items["parent_asin"].tolist()
    if cfg.split == "leave_last_out":
        keep = [u for u, s in enumerate(seqs) if len(s) >= 3]
        return rec_data_from_sequences([seqs[u] for u in keep], proc.num_items, cfg.max_len, titles, ids,
                                       [proc.user_ids[u] for u in keep])
    if cfg.split == "timestamp":
        return rec_data_timestamp_split(seqs, times, proc.num_items, cfg.max_len, cfg.valid_from_ms,
                                        cfg.test_from_ms, titles, ids, list(proc.user_ids))
    raise ValueError(f"DataConfig.split must be 'leave_last_out' or 'timestamp', not {cfg.split!r}")


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

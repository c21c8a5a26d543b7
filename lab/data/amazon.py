"""Amazon Reviews 2023 raw files: where they are, how they are read, and what reading them skipped (chapter 01).

`raw_files` finds a category's review and metadata files (`<Category>.jsonl.gz` / `.jsonl` / `.parquet` and
`meta_<Category>.*`, also in the Hugging Face sub-folders); `read_reviews` and `read_meta` stream them in chunks
(`iter_records`), keeping only the fields the book needs. Row-level problems (malformed JSON, a missing or mistyped
field, a rating outside 1-5) are skipped and counted in a `LoadReport`; file-level problems (file not found, empty
file, truncated gzip, a missing required parquet column) raise `DataError`.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..console import progress_bar

__all__ = ["REVIEW_FIELDS", "SEQ_FIELDS", "META_FIELDS", "SUFFIXES", "REASONS", "DataError", "LoadReport", "raw_format",
           "find_raw_file", "EXPECTED_RAW", "raw_categories", "raw_files", "check_file", "iter_records", "bad_row",
           "read_reviews", "check_review", "read_meta", "fingerprint"]


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


def check_file(path: Path) -> None:
    """DataError naming `path` when it is missing, not a file, or empty (every reader and `lab.data.convert`)."""
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
    check_file(path)
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
                    bad_row(report, strict, "malformed_json", path, lineno, None, _snippet(raw))
                    continue
                if type(rec) is not dict:
                    bad_row(report, strict, "not_an_object", path, lineno, None, _snippet(raw))
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


def bad_row(report: LoadReport, strict: bool, reason: str, path, line, field_, value) -> None:
    """One bad input row: with `strict` a DataError naming file, line, field and value; else a counted skip in
    `report` (the one rule of every reader and converter)."""
    if strict:
        where = f"{path}, line {line}" + (f", field {field_!r}" if field_ else "")
        raise DataError(f"{where}: {reason} ({REASONS.get(reason, '')}); value {value!r}")
    report.skip(reason, path, line, field_, value)


def _progress(progress: bool, desc: str, unit: str = " rows"):
    return progress_bar(enabled=progress, desc=desc, unit=unit, unit_scale=True, file=sys.stderr, mininterval=1.0)


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
            bad = check_review(uid, pa, ts, r)
            if bad is not None:
                bad_row(report, strict, bad[0], path, ln, bad[1], bad[2])
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


def check_review(uid, pa, ts, r):
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
                bad_row(report, strict, "missing_field", path, ln, "parent_asin", pa)
                continue
            if type(pa) is not str or not pa.strip():
                bad_row(report, strict, "bad_type" if type(pa) is not str else "bad_value", path, ln, "parent_asin", pa)
                continue
            if title is not None and type(title) is not str:
                bad_row(report, strict, "bad_type", path, ln, "title", title)
                continue
            if known is not None and pa not in known:
                bad_row(report, strict, "unknown_item", path, ln, "parent_asin", pa)
                continue
            if pa in seen:
                bad_row(report, strict, "duplicate_item", path, ln, "parent_asin", pa)
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


def fingerprint(path: str | os.PathLike) -> dict:
    """A file's size and modification time: what the caches compare to see whether a raw file changed."""
    st = Path(path).stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}

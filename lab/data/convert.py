"""Other data sets in the Amazon Reviews 2023 format (issue 16, item 5): `python -m lab data convert`.

`convert(fmt, src, out_dir, category)` streams one interaction file, line by line, and writes what the book's reader
(`lab.data.amazon.raw_files`, `read_reviews`, `read_meta`) reads from a raw folder: `<out_dir>/<Category>.jsonl.gz`
(one review per interaction, every field of the real format: `user_id`, `parent_asin` = `asin` = the item token,
`timestamp` in Unix ms, `rating` 1-5, empty `title`/`text`), `<out_dir>/meta_<Category>.jsonl.gz` (one row per item:
`parent_asin`, an empty `title`, `main_category` = the category) and `<out_dir>/<Category>.convert.json` (the source,
the format and the `LoadReport` of the conversion). Point the book at it with `LAB_RAW_DIR=<out_dir>
LAB_CATEGORY=<Category>`. Input formats:

* `recbole`: a RecBole atomic `.inter` file, tab-separated, header `name:type` per column (`user_id:token
  item_id:token rating:float timestamp:float`); `user_id`, `item_id` and `timestamp` (seconds) are required, `rating`
  is optional (5.0 when absent). A RecBole `.item` file of the same stem beside it (`ml-100k.item` next to
  `ml-100k.inter`) gives the items' titles and categories (`read_recbole_items`: `movie_title` + `release_year` as
  "Toy Story (1995)", `class` / `genre` as categories); without one, titles are empty.
* `seq`: one user per line, `user item item ...` separated by white space, items in order (the S3-Rec / ICLRec
  `*.txt` files). There is no time: the k-th item of a line gets timestamp `SEQ_T0_MS + k * SEQ_STEP_MS` (1 s apart,
  from 2001-09-09), rating `SEQ_RATING` (5.0). Only the order is real, so use the leave-last-out split, not the
  timestamp split.
* `csv`: comma-separated with a header; the user, item, timestamp and (optional) rating columns are found by name
  (`COLUMN_ALIASES`, case-insensitive, a RecBole `:type` suffix ignored: `user`, `user_id`, `userId`, `item`, `item_id`,
  `movieId`, `timestamp`, `time`, ...) or named with `columns={"user": ..., "item": ..., ...}` (`--user-col` etc.).
  Timestamps in seconds by default (`time_unit="ms"` for milliseconds).

Bad input is treated as the reader treats it, with its helpers: a file-level problem (not found, empty, no header, a
required column missing from the header, no valid row) raises `DataError` naming the file, the line and the field; a
bad row (an empty user or item, a non-numeric timestamp or rating, too few fields, a rating outside 1-5) is skipped
and counted in the `LoadReport` (file, line, field and value of the first few), or raises `DataError` with
`strict=True`. Exact duplicates and repeated user-item pairs are written as they are: the book's pre-processing
removes and counts them, as it does for Amazon's own files.
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import zlib
from pathlib import Path
from typing import Iterator

from ..config import check_category
from ..io import write_json, write_jsonl_gz
from .amazon import DataError, LoadReport, bad_row, check_file, check_review

__all__ = ["FORMATS", "SEQ_T0_MS", "SEQ_STEP_MS", "SEQ_RATING", "DEFAULT_RATING", "COLUMN_ALIASES", "REQUIRED",
           "REVIEW_LINE", "default_category", "find_columns", "ITEM_COLUMNS", "item_title", "read_recbole_items",
           "convert"]

FORMATS = ("recbole", "seq", "csv")  # what `convert` reads
SEQ_T0_MS = 1_000_000_000_000  # seq format: the first item's timestamp (2001-09-09, Unix ms) ...
SEQ_STEP_MS = 1_000  # ... and the gap between a user's consecutive items (1 s)
SEQ_RATING = 5.0  # seq format: the rating every interaction gets (the format has none)
DEFAULT_RATING = 5.0  # recbole / csv without a rating column
COLUMN_ALIASES = {
    "user": ("user", "user_id", "userid", "uid", "reviewerid", "customer_id"),
    "item": ("item", "item_id", "itemid", "iid", "parent_asin", "asin", "movieid", "product_id", "productid"),
    "timestamp": ("timestamp", "time", "ts", "unixreviewtime", "datetime"),
    "rating": ("rating", "score", "overall", "stars"),
}  # header names recognised per column (lower case, RecBole ':type' suffix stripped), first match wins
REQUIRED = ("user", "item", "timestamp")
REVIEW_LINE = ('{"rating": %s, "title": "", "text": "", "images": [], "asin": %s, "parent_asin": %s, '
               '"user_id": %s, "timestamp": %d, "helpful_vote": 0, "verified_purchase": true}')


def default_category(src: str | os.PathLike) -> str:
    """A category name from the input file's name: `ml-1m.inter` -> `ml_1m` (letters, digits and '_' only)."""
    stem = Path(src).name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "Converted"
    return name if not re.fullmatch(r"seed\d+", name) else f"data_{name}"


def _open(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # a BOM (spreadsheet CSVs) is dropped


def _header_name(name: str) -> str:
    """A header cell as the aliases spell it: lower case, the RecBole `:type` suffix and white space stripped."""
    return name.strip().split(":")[0].strip().lower()


def _alias_column(names: list[str], aliases) -> int | None:
    """The index in `names` (normalised by `_header_name`) of the first of `aliases` present, or None."""
    return next((names.index(a) for a in aliases if a in names), None)


def find_columns(header: list[str], path, columns: dict | None = None) -> dict[str, int]:
    """{'user', 'item', 'timestamp'[, 'rating']: column index} from a header row; names in `columns` override the
    aliases. DataError naming the file, line 1 and the field when a required column is missing."""
    names = [_header_name(h) for h in header]
    columns = {k: v for k, v in (columns or {}).items() if v}
    out = {}
    for key in (*REQUIRED, "rating"):
        if key in columns:
            want = _header_name(columns[key])
            if want not in names:
                raise DataError(f"{path}, line 1, field {columns[key]!r}: no such column for {key} (header has "
                                f"{header})")
            out[key] = names.index(want)
            continue
        hit = _alias_column(names, COLUMN_ALIASES[key])
        if hit is not None:
            out[key] = hit
        elif key in REQUIRED:
            raise DataError(f"{path}, line 1, field {key!r}: missing column (header has {header}; recognised names "
                            f"{list(COLUMN_ALIASES[key])}, or name it with --{key.replace('timestamp', 'time')}-col)")
    return out


def _number(text: str):
    """float of a numeric string, else the string itself (what the reader's checks then call bad_type)."""
    try:
        return float(text)
    except ValueError:
        return text


def _review(user: str, item: str, ts, rating, scale: int):
    """(user, item, timestamp ms, rating) parsed from strings, or (reason, field, value) for the first bad field,
    checked by the reader's own `check_review`."""
    t = _number(ts) if isinstance(ts, str) else ts
    if type(t) is float and math.isfinite(t):
        t = round(t * scale)
    r = _number(rating) if isinstance(rating, str) else rating
    bad = check_review(user, item, t, r)
    if bad is not None:
        field = {"parent_asin": "item", "user_id": "user"}.get(bad[1], bad[1])
        value = {"timestamp": ts, "rating": rating}.get(bad[1], bad[2])
        return None, (bad[0], field, value)
    return (user.strip(), item.strip(), int(t), float(r)), None


def _table_rows(path: Path, fmt: str, columns: dict | None, delimiter: str | None,
                time_unit: str) -> Iterator[tuple[int, tuple | None, tuple | None]]:
    """(line, (user, item, ts_ms, rating) or None, (reason, field, value) or None) per data row of a recbole/csv
    file, streamed."""
    scale = {"s": 1000, "ms": 1}[time_unit]
    delim = delimiter or ("\t" if fmt == "recbole" else ",")
    with _open(path) as fh:
        rd = csv.reader(fh, delimiter=delim)
        try:
            header = next(rd, None)
        except csv.Error as e:
            raise DataError(f"{path}, line 1: unreadable header ({e})") from None
        if header is None or not any(h.strip() for h in header):
            raise DataError(f"{path}, line 1: no header row (expected column names, e.g. "
                            f"{'user_id:token<TAB>item_id:token<TAB>timestamp:float' if fmt == 'recbole' else 'user,item,timestamp'})")
        col = find_columns(header, path, columns)
        order = [(k, col[k]) for k in ("user", "item", "timestamp", "rating") if k in col]
        while True:
            try:
                row = next(rd)
            except StopIteration:
                break
            except csv.Error as e:
                yield rd.line_num, None, ("bad_value", None, str(e))  # e.g. a NUL byte
                continue
            line = rd.line_num
            if not row or all(not c.strip() for c in row):
                continue
            missing = next((k for k, j in order if j >= len(row)), None)
            if missing is not None:
                yield line, None, ("missing_field", missing, delim.join(row))
                continue
            rating = row[col["rating"]] if "rating" in col else DEFAULT_RATING
            rec, bad = _review(row[col["user"]], row[col["item"]], row[col["timestamp"]], rating, scale)
            yield line, rec, bad


ITEM_COLUMNS = {
    "item": ("item_id", "item", "movieid", "parent_asin"),
    "title": ("movie_title", "title", "item_name", "name"),
    "year": ("release_year", "year"),
    "genres": ("class", "genre", "genres", "categories"),
}  # RecBole `.item` header names per role (lower case, ':type' stripped), first match wins


def _item_file_beside(src: Path) -> Path | None:
    """The RecBole `.item` file of the same stem as the `.inter` file `src`, or None."""
    cand = src.with_name(src.name.split(".")[0] + ".item")
    return cand if cand.is_file() else None


def item_title(title: str, year: str) -> str:
    """The book's title of an item: "Toy Story (1995)" from RecBole's `movie_title` and `release_year` (issue 25)."""
    title, year = title.strip(), year.strip()
    return f"{title} ({year})" if year else title


def read_recbole_items(path: Path, report: LoadReport, strict: bool = False) -> dict[str, dict]:
    """{item token: {"title", "categories"}} from a RecBole `.item` file (tab-separated, `name:type` header).

    Titles join `movie_title` and `release_year` (`item_title`); categories are the white-space separated tokens of
    `class` (MovieLens' genres, "Children's" kept whole). A row without an item id, or a repeated one, is skipped and
    counted in `report` (`missing_field`, `duplicate_item`; `strict` raises); a file without an item column raises
    DataError naming file, line 1 and the field."""
    check_file(path)
    out: dict[str, dict] = {}
    with _open(path) as fh:
        rd = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rd, None) or []
        names = [_header_name(h) for h in header]
        col = {k: _alias_column(names, al) for k, al in ITEM_COLUMNS.items()}
        if col["item"] is None:
            raise DataError(f"{path}, line 1, field 'item_id': missing column (header has {header})")

        def cell(row, key):
            j = col[key]
            return row[j] if j is not None and j < len(row) else ""
        for row in rd:
            line = rd.line_num
            if not row or all(not c.strip() for c in row):
                continue
            report.count_read(path, 1)
            item = cell(row, "item").strip()
            if not item:
                bad_row(report, strict, "missing_field", path, line, "item_id", "\t".join(row))
                continue
            if item in out:
                bad_row(report, strict, "duplicate_item", path, line, "item_id", item)
                continue
            out[item] = {"title": item_title(cell(row, "title"), cell(row, "year")),
                         "categories": cell(row, "genres").split()}
    return out


def _seq_rows(path: Path) -> Iterator[tuple[int, tuple | None, tuple | None]]:
    """The same per interaction of a `user item item ...` file (timestamps SEQ_T0_MS + k * SEQ_STEP_MS)."""
    with _open(path) as fh:
        for line, text in enumerate(fh, 1):
            tok = text.split()
            if not tok:
                continue
            if len(tok) == 1:
                yield line, None, ("missing_field", "item", text.strip())
                continue
            user = tok[0]
            for k, item in enumerate(tok[1:]):
                yield line, (user, item, SEQ_T0_MS + k * SEQ_STEP_MS, SEQ_RATING), None


def convert(fmt: str, src: str | os.PathLike, out_dir: str | os.PathLike, category: str | None = None,
            report: LoadReport | None = None, strict: bool = False, columns: dict | None = None,
            delimiter: str | None = None, time_unit: str = "s") -> dict:
    """Write `src` (a `fmt` file: 'recbole', 'seq' or 'csv') as Amazon Reviews 2023 files in `out_dir` (issue 16).

    Args:
        category: the file stem (`<Category>.jsonl.gz`); None: from the input's name (`default_category`).
        report: where skipped rows are counted (a new `LoadReport` when None).
        strict: raise `DataError` on the first bad row instead of skipping it.
        columns: recbole/csv column names per role, {'user', 'item', 'timestamp', 'rating'} (None: found by name).
        delimiter: recbole/csv field separator (None: tab for recbole, ',' for csv).
        time_unit: recbole/csv timestamp unit, 's' (RecBole's) or 'ms'.

    Returns {"reviews", "meta", "report": paths, "category", "format", "interactions", "users", "items",
    "rows_read", "rows_skipped", "skipped"}. Files are written atomically (`lab.io`); nothing is written on error.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; choose one of {FORMATS}")
    if time_unit not in ("s", "ms"):
        raise ValueError(f"time_unit must be 's' or 'ms', not {time_unit!r}")
    src, out_dir = Path(src), Path(out_dir)
    category = check_category(category or default_category(src))
    check_file(src)
    report = report if report is not None else LoadReport()
    rows = _seq_rows(src) if fmt == "seq" else _table_rows(src, fmt, columns, delimiter, time_unit)
    users: set = set()
    items: dict = {}  # parent_asin -> None, in first-seen order
    state = {"line": 0, "kept": 0}  # the last line read and the rows written
    dumps = json.dumps

    def review_lines():
        try:
            yield from kept_lines()
        except UnicodeDecodeError as e:
            raise DataError(f"{src}: not UTF-8 text (after line {state['line']}): {e}") from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(f"{src}: truncated or corrupt gzip (after line {state['line']}): {e}") from None
        if state["kept"] == 0:
            raise DataError(f"{src}: no valid rows ({report.rows_read} read, skipped: {report.skipped or 'none'}); "
                            f"is it a {fmt} file?")

    def kept_lines():
        last = None
        for line, rec, bad in rows:
            state["line"] = line
            if fmt != "seq" or line != last:  # a seq line is one row of the report; its items are interactions
                report.count_read(src, 1)
                last = line
            if bad is not None:
                bad_row(report, strict, bad[0], src, line, bad[1], bad[2])
                continue
            user, item, ts, rating = rec
            users.add(user)
            items.setdefault(item, None)
            state["kept"] += 1
            q = dumps(item)
            yield REVIEW_LINE % (repr(rating), q, q, dumps(user), ts)

    item_path = _item_file_beside(src) if fmt == "recbole" else None
    known = read_recbole_items(item_path, report, strict) if item_path is not None else {}

    def meta_lines():
        for item in items:
            info = known.get(item, {})
            yield dumps({"parent_asin": item, "title": info.get("title", ""), "main_category": category,
                         "categories": info.get("categories", [])})

    out = {"reviews": out_dir / f"{category}.jsonl.gz", "meta": out_dir / f"meta_{category}.jsonl.gz",
           "report": out_dir / f"{category}.convert.json"}
    write_jsonl_gz(out["reviews"], review_lines())
    write_jsonl_gz(out["meta"], meta_lines())
    summary = {"category": category, "format": fmt, "source": str(src),
               "item_file": str(item_path) if item_path is not None else None,
               "items_with_title": sum(1 for i in items if known.get(i, {}).get("title")),
               "interactions": state["kept"],
               "users": len(users), "items": len(items), "rows_read": report.rows_read,
               "rows_skipped": report.rows_skipped, "skipped": dict(report.skipped)}
    write_json(out["report"], {**summary, "load_report": report.to_dict(),
                               "seq_timestamps": {"t0_ms": SEQ_T0_MS, "step_ms": SEQ_STEP_MS,
                                                  "rating": SEQ_RATING} if fmt == "seq" else None})
    return {**{k: str(v) for k, v in out.items()}, **summary}

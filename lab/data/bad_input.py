"""Deliberately damaged copies of a category's raw files, to show what the reader skips and counts and which damage
stops it (chapter 01, "Bad input")."""
from __future__ import annotations

import gzip
import itertools
import json
import os
from pathlib import Path

from .amazon import DataError, read_reviews

__all__ = ["corrupt_copy", "file_level_errors"]


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.name.endswith(".gz") else open(path)


def corrupt_copy(reviews: str | os.PathLike, folder: str | os.PathLike, n_lines: int = 300) -> tuple[Path, Path]:
    """Write `Corrupt.jsonl` (the first `n_lines` review rows with one row of each row-level problem: malformed JSON,
    a mistyped rating, a missing timestamp, a rating out of range, a NaN rating, valid JSON that is not an object,
    an exact duplicate) and `meta_Corrupt.jsonl` (a known item, an item no review mentions, a broken line, the known
    item again) into `folder` (chapter 01); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _open_text(Path(reviews)) as f:
        lines = [ln.rstrip("\n") for ln in itertools.islice(f, n_lines)]
    rec = json.loads(lines[5])
    bad = list(lines)
    bad[3] = lines[3][: len(lines[3]) // 2]  # truncated line: malformed JSON
    bad[10] = json.dumps({**json.loads(lines[10]), "rating": "abc"})  # mistyped rating
    bad[20] = json.dumps({k: v for k, v in json.loads(lines[20]).items() if k != "timestamp"})  # missing timestamp
    bad[30] = json.dumps({**json.loads(lines[30]), "rating": 7.0})  # rating out of range
    bad[40] = json.dumps({**json.loads(lines[40]), "rating": float("nan")})  # NaN rating (JSON `NaN`)
    bad[50] = "[1, 2, 3]"  # valid JSON, not an object
    bad.insert(61, bad[60])  # an exact duplicate row
    (folder / "Corrupt.jsonl").write_text("\n".join(bad) + "\n")
    meta_lines = [json.dumps({"parent_asin": rec["parent_asin"], "title": "A known item"}),
                  json.dumps({"parent_asin": "B0UNKNOWN01", "title": "No review mentions me"}),
                  '{"parent_asin": "B0BROKEN", "title": ',
                  json.dumps({"parent_asin": rec["parent_asin"], "title": "The same item again"})]
    (folder / "meta_Corrupt.jsonl").write_text("\n".join(meta_lines) + "\n")
    return folder / "Corrupt.jsonl", folder / "meta_Corrupt.jsonl"


def file_level_errors(reviews: str | os.PathLike, corrupt: str | os.PathLike, folder: str | os.PathLike,
                chunk_size: int = 200_000) -> dict[str, str]:
    """The `DataError` message of each file-level problem (chapter 01): a truncated gzip and an empty file written
    into `folder` from `reviews`, a file that does not exist, and the `corrupt` copy read with `strict=True`.
    {file name: message}."""
    folder, reviews = Path(folder), Path(reviews)
    raw = reviews.read_bytes() if reviews.name.endswith(".gz") else gzip.compress(reviews.read_bytes(), mtime=0)
    (folder / "Truncated.jsonl.gz").write_bytes(raw[: len(raw) // 2])
    (folder / "Empty.jsonl").write_bytes(b"")
    errors = {}
    for name in ("Truncated.jsonl.gz", "Empty.jsonl", "Missing.jsonl"):
        try:
            read_reviews(folder / name, chunk_size=chunk_size)
        except DataError as e:
            errors[name] = str(e)
    try:
        read_reviews(corrupt, strict=True)
    except DataError as e:
        errors[f"{Path(corrupt).name} (strict=True)"] = str(e)
    return errors

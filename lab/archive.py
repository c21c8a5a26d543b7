"""A run's summaries kept in the repository, so that what was measured outlives the machine (issue 25).

`artefacts/` is git-ignored and lives as long as its machine: on 2026-12-07 a new machine started with none of the
eight runs measured before it (three seeds of `ml100k`, two of the default profile, ...), so chapter 07 could no longer
pool them and the LLM teacher's chapter 02 had no from-scratch teacher to compare with. A seed of chapters 01-05 is
an hour or more on the 2-core CPU; what later readers of a run need of it is a few small files:

- `results.json` and `provenance.json`: every chapter's records, the commit and minutes (`rerun --headlines`);
- `teacher_eval.parquet`: the teacher's per-user test metrics (chapter 02 of a companion profile on the same data);
- `importance.parquet`, `distill_per_user.parquet`, `02_architectures.parquet`: chapter 07's inputs;
- `compression_sweep.parquet`, `compression_sweep_per_user.parquet`: the sweep pooled over seeds (chapter 05).

`python -m lab archive save --profile P --seeds S...` copies those a run has into `archive/<run>/` (committed: per-user
metrics and layer scores, no ratings, so MovieLens' terms are kept); `python -m lab archive restore` copies them back
into an artefacts folder where a file is missing, never over one. Models, caches and data are not kept: a chapter that
needs the teacher (03-06) still says which command trains it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .book import ARCHIVE, paths, run_name
from .io import atomic_path

__all__ = ["ARCHIVE", "KEPT", "MAX_BYTES", "archived", "save", "restore"]

KEPT = ("results.json", "provenance.json", "teacher_eval.parquet", "importance.parquet", "distill_per_user.parquet",
        "02_architectures.parquet", "compression_sweep.parquet", "compression_sweep_per_user.parquet")
MAX_BYTES = 5_000_000  # a file above this is not a summary: save refuses it rather than bloat the repository


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def archived(profile: str, seed: int, archive: str | Path | None = None) -> Path:
    """The archive folder of a run (it may not exist)."""
    return Path(archive or ARCHIVE) / run_name(profile, seed)


def save(profile: str, seeds, artefacts=None, archive: str | Path | None = None) -> list[dict]:
    """Copy each seed's kept files (`KEPT`) from its artefacts folder into the archive, replacing what was archived
    before. One row per seed and file: run, file, bytes, action ("saved" or "absent"). ValueError naming the file when
    one is larger than `MAX_BYTES`, before anything is copied."""
    plan = []
    for seed in seeds:
        root = paths(profile, artefacts, seed, create=False).root
        for name in KEPT:
            src = root / name
            size = src.stat().st_size if src.is_file() else None  # None: the run has no such file
            if size is not None and size > MAX_BYTES:
                raise ValueError(f"{src}: {size:,} bytes, more than the archive's {MAX_BYTES:,}")
            plan.append((seed, name, src, size))
    rows = []
    for seed, name, src, size in plan:
        if size is not None:
            _copy(src, archived(profile, seed, archive) / name)
        rows.append({"run": run_name(profile, seed), "file": name, "bytes": size or 0,
                     "action": "absent" if size is None else "saved"})
    return rows


def restore(profile: str, seeds, artefacts=None, archive: str | Path | None = None) -> list[dict]:
    """Copy each seed's archived files into its artefacts folder where that folder lacks them; a file the folder has
    is kept (it is the newer measurement). One row per archived file: run, file, action ("restored" or "kept")."""
    rows = []
    for seed in seeds:
        src_dir = archived(profile, seed, archive)
        if not src_dir.is_dir():
            continue
        root = paths(profile, artefacts, seed, create=False).root
        for name in KEPT:
            src, dst = src_dir / name, root / name
            if not src.is_file():
                continue
            had = dst.is_file()
            if not had:
                _copy(src, dst)
            rows.append({"run": run_name(profile, seed), "file": name, "action": "kept" if had else "restored"})
    return rows

"""Data pipeline at scale (issue 16, item 4): `python -m lab bench data --scales 1 10`.

For each scale s, the profile's synthetic data set with s times its users and items (same clusters, sequence length
and world) goes through the book's own pipeline, one stage at a time:

1. `generate`: `lab.data.generate_synthetic` writes the raw Amazon-format files (what chapter 01 does when they are
   missing, through `ensure_synthetic`);
2. `read`: `lab.data.read_reviews` + `read_meta` stream them (the reader alone);
3. `preprocess`: `lab.data.prepare_data` reads, de-duplicates, k-cores, attaches titles and writes the processed
   cache (what a chapter's first `load_rec_data` does), then `to_rec_data` splits it;
4. `evaluate`: loads the cache, splits, and ranks the whole catalogue for every test user with the popularity
   baseline (`lab.recommenders.popularity_scorer`) through the book's evaluator `lab.metrics.evaluate`, which scores
   `batch_size` users at a time (a (batch, N+1) score matrix, never users x items).

Each stage runs in a fresh Python process (`isolate=True`, the CLI's way) so that its peak resident memory is its own:
`resource.getrusage(RUSAGE_SELF).ru_maxrss` at the end of the stage (the process's peak RSS, imports included;
`rss_start_mb` is the RSS before the stage's work began, after the imports). Seconds are the stage's own
(`time.perf_counter`), without the interpreter start. With `isolate=False` (tests) every stage runs in this process
and the peaks are not per stage. The last line the CLI prints is the JSON object.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from ..config import depth_world
from ..profiles import get_config
from ..data import (LoadReport, generate_synthetic, is_depth_world, prepare_data, raw_files, read_meta, read_reviews,
                    to_rec_data)

__all__ = ["STAGES", "EVAL_BATCH", "scaled_data", "run_stage", "run"]

STAGES = ("generate", "read", "preprocess", "evaluate")
EVAL_BATCH = 512  # users scored at a time by the evaluator (lab.metrics.evaluate's default)


def scaled_data(profile: str, scale: float, seed: int = 0):
    """The profile's DataConfig with `scale` times its users and items (the depth world's knobs re-derived for the new
    catalogue size), read from the generated files (`source='amazon'`), so no stage regenerates them."""
    data = get_config(profile, seed).data
    if data.source != "synthetic":
        raise ValueError("bench data scales the synthetic data set; unset LAB_RAW_DIR")
    data = dataclasses.replace(data, n_users=max(1, round(data.n_users * scale)),
                               n_items=max(1, round(data.n_items * scale)))
    return depth_world(data) if is_depth_world(data) else data


def _rss_mb() -> float:
    """This process's peak resident set size so far, MB (`ru_maxrss`: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_stage(stage: str, profile: str, scale: float, folder: str | os.PathLike, seed: int = 0) -> dict:
    """One stage at one scale, its files under `folder` (`raw/`, `processed/`); returns its counts, seconds, and the
    process's peak RSS at its start and end."""
    folder = Path(folder)
    data = scaled_data(profile, scale, seed)
    raw = folder / "raw"
    paths = SimpleNamespace(processed=folder / "processed")
    amazon = dataclasses.replace(data, source="amazon", raw_dir=str(raw))
    start = _rss_mb()
    t0 = time.perf_counter()
    if stage == "generate":
        files = generate_synthetic(data, raw, seed)
        out = {"review_bytes": files["reviews"].stat().st_size, "meta_bytes": files["meta"].stat().st_size}
    elif stage == "read":
        rev, meta = raw_files(data.category, raw)
        report = LoadReport()
        reviews = read_reviews(rev, data.chunk_size, report)
        items = read_meta(meta, data.chunk_size, report)
        out = {"rows_read": report.rows_read, "reviews": len(reviews), "meta_items": len(items)}
    elif stage == "preprocess":
        proc = prepare_data(amazon, paths, seed, progress=False)
        rd = to_rec_data(proc, amazon)
        out = {"interactions": int(proc.stats["interactions"]), "users": proc.num_users, "items": proc.num_items,
               "test_rows": int(len(rd.test_target)), "cache": proc.stats["cache"]}
    elif stage == "evaluate":
        from ..recommenders import popularity_scorer
        from ..evaluation import score_split

        proc = prepare_data(amazon, paths, seed, progress=False)
        t_load = time.perf_counter() - t0
        rd = to_rec_data(proc, amazon)
        t1 = time.perf_counter()
        summary, per_user = score_split(popularity_scorer(rd), rd, "test", batch_size=EVAL_BATCH)
        out = {"users_ranked": len(per_user), "items_ranked": rd.num_items, "batch_size": EVAL_BATCH,
               "score_batch_mb": round(min(EVAL_BATCH, len(per_user)) * (rd.num_items + 1) * 8 / 2 ** 20, 1),
               "load_s": round(t_load, 3), "rank_s": round(time.perf_counter() - t1, 3),
               "cache": proc.stats["cache"], "hr@10": summary["hr@10"], "ndcg@10": summary["ndcg@10"]}
    else:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    return {"stage": stage, "scale": scale, "seconds": round(time.perf_counter() - t0, 3),
            "rss_start_mb": round(start, 1), "peak_rss_mb": round(_rss_mb(), 1), **out}


def _stage_in_subprocess(stage: str, profile: str, scale: float, folder: Path, seed: int) -> dict:
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "lab.bench.data", "--stage", stage, "--profile", profile, "--scale", repr(scale),
           "--folder", str(folder), "--seed", str(seed)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"bench data: stage {stage} at scale {scale} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(profile: str = "default", scales=(1, 10), seed: int = 0, folder: str | os.PathLike | None = None,
        isolate: bool = True, verbose: bool = True) -> dict:
    """`python -m lab bench data`: every stage at every scale (files under `folder`, a temporary folder when None);
    prints a line per stage and returns {"bench", "profile", "rss": how peaks are measured, "scales": {scale: {stage:
    result}}}."""
    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="lab-bench-data-")
        folder = tmp.name
    out = {"bench": "data", "profile": profile, "seed": seed, "isolated": isolate,
           "rss": "resource.getrusage(RUSAGE_SELF).ru_maxrss per stage process" if isolate else
                  "resource.getrusage(RUSAGE_SELF).ru_maxrss of this one process (not per stage)",
           "scales": {}}
    try:
        for s in scales:
            base = get_config(profile, seed).data
            sub = Path(folder) / f"x{s:g}"
            res = {}
            for stage in STAGES:
                r = (_stage_in_subprocess(stage, profile, s, sub, seed) if isolate
                     else run_stage(stage, profile, s, sub, seed))
                res[stage] = r
                if verbose:
                    extra = {k: v for k, v in r.items() if k not in ("stage", "scale", "seconds", "rss_start_mb",
                                                                     "peak_rss_mb")}
                    print(f"[bench data] x{s:g} ({round(base.n_users * s)} users, {round(base.n_items * s)} items) "
                          f"{stage:<10} {r['seconds']:8.2f} s  peak RSS {r['peak_rss_mb']:7.1f} MB "
                          f"(start {r['rss_start_mb']:.0f})  {extra}", flush=True)
            out["scales"][f"{s:g}"] = res
    finally:
        if tmp is not None:
            tmp.cleanup()
    return out


if __name__ == "__main__":  # one stage in a fresh process (`run(isolate=True)`); prints its JSON
    ap = argparse.ArgumentParser(prog="python -m lab.bench.data")
    ap.add_argument("--stage", choices=STAGES, required=True)
    ap.add_argument("--profile", default="default")
    ap.add_argument("--scale", type=float, required=True)
    ap.add_argument("--folder", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(json.dumps(run_stage(a.stage, a.profile, a.scale, a.folder, a.seed)))

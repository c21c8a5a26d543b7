"""Batch reruns over seeds (issue 15): `python -m lab rerun --profile P --seeds 0 1 2 [--only NN ...] [-p NAME=VALUE]`.

For each seed the book's chapters run in order through `lab.notebooks.run_chapter`, except a chapter whose inputs
did not change since its last successful run. A chapter's fingerprint hashes its source, the parameters it is given
(profile, seed, artefact root and the `-p` values its parameters cell names), the sources of `lab` (uncommitted edits
included), and the fingerprint of the chapter before it, so a change to one chapter or to a parameter it reads reruns
it and every later chapter. Once a chapter of a pass has run, every later chapter of that pass runs too (its inputs
were rewritten). The state (`artefacts/<run>/rerun.json`: fingerprint and status per chapter) is written before and
after each chapter, so a rerun killed mid-chapter, or a chapter that failed, is run again and the finished ones are
skipped. `artefacts/<run>/provenance.json` records the git commit, config hash, package versions, device, threads and
the wall time of each chapter; every write is atomic (`lab.io`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from . import REPO_ROOT, get_config, paths
from .io import read_json, write_json
from .notebooks import NOTEBOOKS, chapters, parameter_names, run_chapter, select_chapters

__all__ = ["LAB_DIR", "PACKAGES", "STATE", "PROVENANCE", "POOLING", "lab_sources_hash", "fingerprints", "git_commit",
           "provenance", "rerun_seed", "rerun"]

LAB_DIR = Path(__file__).resolve().parent
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "numpy", "pandas", "scipy", "papermill", "jupytext")
STATE = "rerun.json"  # per run: {chapter: {"fingerprint": ..., "status": "running" | "done" | "failed"}}
PROVENANCE = "provenance.json"
POOLING = ("07",)  # chapters that read every seed's artefacts (07_hypotheses): run after all seeds' other chapters


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()


def lab_sources_hash(root: Path = LAB_DIR) -> str:
    """One hash of every `lab/**/*.py` (path and content), so uncommitted edits to the package count."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def fingerprints(profile: str, seed: int, artefacts: str | None, extra: dict | None = None,
                 folder: Path = NOTEBOOKS, lab_hash: str | None = None, pooled_salt: str = "") -> dict[str, str]:
    """{chapter stem: fingerprint} for every chapter of `folder`, each chained to the one before it; a chapter that
    pools seeds (POOLING) also hashes `pooled_salt` (the state of every seed's runs)."""
    lab_hash = lab_hash or lab_sources_hash()
    out, prev = {}, ""
    for ch in chapters(folder):
        if ch.stem.startswith(POOLING):
            prev = _sha(prev + pooled_salt)
        names = parameter_names(ch)
        params = {"PROFILE": profile, "SEED": int(seed), "ARTEFACTS": str(artefacts or "")}
        params.update({k: v for k, v in (extra or {}).items() if k in names})
        prev = out[ch.stem] = _sha(json.dumps([ch.read_text(), params, lab_hash, prev], sort_keys=True, default=str))
    return out


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD's commit, with "+dirty" when `lab/` or `notebooks/` has uncommitted changes; "" outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lab", "notebooks"], cwd=repo,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def provenance(profile: str, seed: int, extra: dict | None = None) -> dict:
    """Where and with what a run was made: git commit, lab's source hash, config hash, packages, device, threads."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from .io import jsonable

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    c = get_config(profile, seed)
    cfg = jsonable(dataclasses.asdict(c) if dataclasses.is_dataclass(c) else c)
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})"
    return {"profile": profile, "seed": int(seed), "git_commit": git_commit(), "lab_sources": lab_sources_hash(),
            "config_hash": _sha(json.dumps([cfg, extra or {}], sort_keys=True, default=str)),
            "parameters": extra or {}, "packages": {p: ver(p) for p in PACKAGES}, "python": platform.python_version(),
            "device": dev, "threads": int(os.environ.get("LAB_THREADS") or torch.get_num_threads()),
            "host": platform.node(), "chapters": {}}


def rerun_seed(profile: str, seed: int, artefacts: str | None = None, only: list[str] | None = None,
               extra: dict | None = None, folder: Path = NOTEBOOKS, out_dir=None, runner=None,
               pooled_salt: str = "") -> dict:
    """Run one seed's chapters, skipping those whose fingerprint matches their last successful run.

    Returns {chapter: "skipped" | seconds}. A failing chapter is marked "failed" in the state and re-raised
    (`ChapterFailed`); the next rerun runs it again.
    """
    P = paths(profile, artefacts, seed)
    fps = fingerprints(profile, seed, artefacts, extra, folder, pooled_salt=pooled_salt)
    state = read_json(P.file(STATE), default={})
    prov = provenance(profile, seed, extra)
    prov["chapters"] = read_json(P.file(PROVENANCE), default={}).get("chapters", {})
    out, dirty = {}, False
    for ch in select_chapters(only, folder):
        last = state.get(ch.stem, {})
        if not dirty and last.get("status") == "done" and last.get("fingerprint") == fps[ch.stem]:
            out[ch.stem] = "skipped"
            print(f"[rerun:{profile}:seed{seed}] {ch.stem} unchanged, skipped", flush=True)
            continue
        dirty = True
        state[ch.stem] = {"fingerprint": fps[ch.stem], "status": "running", "started": time.time()}
        write_json(P.file(STATE), state)
        t0 = time.perf_counter()
        print(f"[rerun:{profile}:seed{seed}] {ch.stem} ...", flush=True)
        try:
            (runner or run_chapter)(ch, profile=profile, seed=seed, artefacts=artefacts, out_dir=out_dir, extra=extra)
        except BaseException:
            state[ch.stem]["status"] = "failed"
            write_json(P.file(STATE), state)
            raise
        out[ch.stem] = time.perf_counter() - t0
        state[ch.stem].update(status="done", seconds=out[ch.stem])
        prov["chapters"][ch.stem] = {"wall_s": out[ch.stem], "fingerprint": fps[ch.stem], "finished": time.time()}
        write_json(P.file(STATE), state)
        write_json(P.file(PROVENANCE), prov)
    if not P.file(PROVENANCE).exists():
        write_json(P.file(PROVENANCE), prov)
    return out


def rerun(profile: str, seeds: list[int], artefacts: str | None = None, only: list[str] | None = None,
          extra: dict | None = None, folder: Path = NOTEBOOKS, out_dirs: dict | None = None) -> dict:
    """`rerun_seed` for every seed in turn, the chapters that pool seeds (POOLING) last, once every seed's other
    chapters are done; they rerun when any chapter of any seed ran since. Returns {seed: {chapter: "skipped" |
    seconds}}."""
    selected = [ch.stem for ch in select_chapters(only, folder)]
    first = [c for c in selected if not c.startswith(POOLING)]
    last = [c for c in selected if c.startswith(POOLING)]
    out = {int(s): rerun_seed(profile, s, artefacts, first, extra, folder, (out_dirs or {}).get(int(s)))
           if first else {} for s in seeds}
    if last:
        states = [read_json(paths(profile, artefacts, s, create=False).file(STATE), default={}) for s in seeds]
        salt = _sha(json.dumps([{c: (v.get("fingerprint"), v.get("started")) for c, v in st.items()
                                 if not c.startswith(POOLING)} for st in states], sort_keys=True))
        for s in seeds:
            out[int(s)].update(rerun_seed(profile, s, artefacts, last, extra, folder, (out_dirs or {}).get(int(s)),
                                          pooled_salt=salt))
    return out

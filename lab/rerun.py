"""Batch reruns over seeds (issue 15): `python -m lab rerun --profile P --seeds 0 1 2 [--only NN ...] [-p NAME=VALUE]`.

For each seed the book's chapters run in order through `lab.notebooks.run_chapter`, except a chapter whose inputs
did not change since its last successful run. A chapter's fingerprint hashes its source, the parameters it is given
(profile, seed, artefact root and the `-p` values its parameters cell names), the sources of `lab` (uncommitted edits
included), and the fingerprint of the chapter before it, so a change to one chapter or to a parameter it reads reruns
it and every later chapter. Once a chapter of a pass has run, every later chapter of that pass runs too (its inputs
were rewritten). The state (`artefacts/<run>/rerun.json`: fingerprint and status per chapter) is written before and
after each chapter, so a rerun killed mid-chapter, or a chapter that failed, is run again and the finished ones are
skipped. `artefacts/<run>/provenance.json` records the git commit, config hash, package versions, device, threads and
the wall time of each chapter (`record_chapter`; `python -m lab book` records there too); every write is atomic
(`lab.io`).

`headlines` reads it back: each chapter's headline numbers of a profile's seeds side by side, with the commit, the date
and the minutes per chapter (issue 25), printed as markdown by `python -m lab rerun --profile P --seeds 0 1 2
--headlines`, which runs nothing.
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

__all__ = ["LAB_DIR", "PACKAGES", "STATE", "PROVENANCE", "POOLING", "HEADLINES", "lab_sources_hash", "fingerprints",
           "git_commit", "cpu_description", "provenance", "record_chapter", "rerun_seed", "rerun", "headlines",
           "headlines_markdown"]

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
    cpu = cpu_description()
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.machine()})"
    return {"profile": profile, "seed": int(seed), "git_commit": git_commit(), "lab_sources": lab_sources_hash(),
            "config_hash": _sha(json.dumps([cfg, extra or {}], sort_keys=True, default=str)),
            "parameters": extra or {}, "packages": {p: ver(p) for p in PACKAGES}, "python": platform.python_version(),
            "device": dev, "cpu": cpu, "threads": int(os.environ.get("LAB_THREADS") or torch.get_num_threads()),
            "host": platform.node(), "chapters": {}}


def cpu_description(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU as a chapter's minutes depend on it: its model name, the widest vector instructions torch's kernels use
    (`torch.backends.cpu.get_cpu_capability()`), "+AMX" where the CPU has the AMX tile unit, and the cores, e.g.
    "AMD EPYC, AVX2, 2 cores". Two machines of this workplace both called "2-core" took 276-323 s and about 9 min for
    the same epoch of the `ml100k-llm` teacher (AMX and AVX512 against AVX2 only; 2026-12-06 and 07)."""
    import torch

    path = Path(cpuinfo)
    text = path.read_text() if path.is_file() else ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)  # the last processor's fields
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("model name") or platform.processor() or platform.machine()
    amx = "+AMX" if "amx_tile" in fields.get("flags", "").split() else ""
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}{amx}, {os.cpu_count()} cores"


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
        write_json(P.file(STATE), state)
        record_chapter(profile, seed, artefacts, ch.stem, out[ch.stem], extra, fps[ch.stem], prov)
    if not P.file(PROVENANCE).exists():
        write_json(P.file(PROVENANCE), prov)
    return out


def record_chapter(profile: str, seed: int, artefacts: str | None, chapter: str, seconds: float,
                   extra: dict | None = None, fingerprint: str | None = None, prov: dict | None = None) -> dict:
    """Record that `chapter` of the run finished in `seconds` (wall) in its `provenance.json`, with this process's
    commit, packages and threads, the earlier chapters' times kept; returns the provenance written. `prov`: one made
    already for this pass (`provenance`)."""
    P = paths(profile, artefacts, seed)
    if prov is None:
        prov = provenance(profile, seed, extra)
        prov["chapters"] = read_json(P.file(PROVENANCE), default={}).get("chapters", {})
    prov["chapters"][chapter] = {"wall_s": float(seconds), "fingerprint": fingerprint, "finished": time.time(),
                                 "git_commit": prov["git_commit"], "threads": prov["threads"],
                                 "cpu": prov.get("cpu")}
    write_json(P.file(PROVENANCE), prov)
    return prov


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


def _at(r: dict, chapter: str, *keys):
    """The value recorded under `chapter` and the nested `keys`, or None when the run did not record it."""
    v = r.get(chapter, {})
    for k in keys:
        v = v.get(str(k)) if isinstance(v, dict) else None
    return v


def _num(x, fmt: str = "{:.4f}") -> str | None:
    return None if x is None or x != x else fmt.format(x)


def _pair(a, b, fmt: str = "{:.4f}") -> str | None:
    """Two recorded numbers as "a / b", or None when the run did not record the first."""
    return None if a is None else f"{_num(a, fmt)} / {_num(b, fmt)}"


def _ci(c, fmt: str = "{:+.4f}") -> str | None:
    """A 95% CI as "low to high": a paired comparison's record (`lab.evaluation.paired_comparison`) or a pair."""
    if isinstance(c, dict):
        c = None if c.get("ci_low") is None else (c["ci_low"], c["ci_high"])
    return None if not c else f"{fmt.format(c[0])} to {fmt.format(c[1])}"


def _quarter_depth(r: dict) -> float | None:
    """The model from scratch at L/4 layers, the size of chapter 05's students (chapter 02's depth curve)."""
    n = _at(r, "02_teacher", "n_layers")
    return _at(r, "02_teacher", "depth_ndcg10", n // 4) if n else None


def _best_row(r: dict) -> str | None:
    """Chapter 06's best row on test NDCG@10."""
    rows = _at(r, "06_baselines", "test_ndcg10") or {}
    name = max(rows, key=rows.get, default=None)
    return None if name is None else f"{name} {rows[name]:.4f}"


def _decided(r: dict) -> str | None:
    """Chapter 07's decisive claims: "supported / contradicted" (each a list, "—" when none)."""
    v = _at(r, "07_hypotheses", "claim_verdict")
    if not v:
        return None
    pick = [", ".join(sorted(c for c, x in v.items() if x == want)) or "—" for want in ("supported", "contradicted")]
    return " / ".join(pick)


# (chapter, what, cell): each chapter's headline numbers as one run records them (`headlines`, issue 25), a CI on a
# row of its own so that three seeds fit a page; a cell is None when the run did not record it (a chapter not run)
HEADLINES = (
    ("01", "users / items / interactions", lambda r: None if _at(r, "01_data", "n_users") is None else
     "{:,} / {:,} / {:,}".format(*(_at(r, "01_data", k) for k in ("n_users", "n_items", "n_interactions")))),
    ("01", "Markov / popularity, test NDCG@10",
     lambda r: _pair(_at(r, "01_data", "markov_ndcg10"), _at(r, "01_data", "popularity_ndcg10"))),
    ("02", "teacher, test NDCG@10", lambda r: _num(_at(r, "02_teacher", "teacher_ndcg10_test"))),
    ("02", "its epochs, stopped by", lambda r: None if _at(r, "02_teacher", "epochs") is None else
     f"{_at(r, '02_teacher', 'epochs')}, {_at(r, '02_teacher', 'stopped_by')}"),
    ("02", "L/4 / 2 layers from scratch",
     lambda r: _pair(_quarter_depth(r), _at(r, "02_teacher", "small_ndcg10_test"))),
    ("02", "teacher − 2 layers, per user", lambda r: _num(_at(r, "02_teacher", "depth_compare", "diff"), "{:+.4f}")),
    ("02", "its 95% CI", lambda r: _ci(_at(r, "02_teacher", "depth_compare"))),
    ("03", "Fisher in the lower half", lambda r: _num(_at(r, "03_fisher", "lower_half_share"), "{:.1%}")),
    ("03", "its 95% CI", lambda r: _ci(_at(r, "03_fisher", "lower_half_share_ci"), "{:.1%}")),
    ("03", "Spearman, Fisher vs ablation", lambda r: _num(_at(r, "03_fisher", "spearman_fisher_vs_ablation"),
                                                           "{:.2f}")),
    ("04", "zero-shot L/4: fisher_topk / random",
     lambda r: _pair(_at(r, "04_selection", "fisher_ndcg_quarter"), _at(r, "04_selection", "random_mean_quarter"))),
    ("04", "best rule on validation", lambda r: _at(r, "04_selection", "best_rule_quarter")),
    ("04", "its test NDCG@10", lambda r: _num(_at(r, "04_selection", "best_rule_test_quarter"))),
    ("05", "the method's retention", lambda r: _num(_at(r, "05_distillation", "method_retention"), "{:.1%}")),
    ("05", "its 95% CI", lambda r: _ci(_at(r, "05_distillation", "method_retention_ci"), "{:.1%}")),
    ("05", "its speed-up, batch 256", lambda r: _num(_at(r, "05_distillation", "method_speedup"), "{:.2f}x")),
    ("05", "L/4 from scratch: retention", lambda r: _num(_at(r, "05_distillation", "scratch_full_retention"),
                                                         "{:.1%}")),
    ("05", "method − L/4 from scratch, per user",
     lambda r: _num(_at(r, "05_distillation", "method_vs_scratch_full", "diff"), "{:+.4f}")),
    ("05", "the difference's 95% CI", lambda r: _ci(_at(r, "05_distillation", "method_vs_scratch_full"))),
    ("06", "best row, test NDCG@10", _best_row),
    ("07", "claims supported / contradicted", _decided),
)


def headlines(profile: str, seeds, artefacts: str | None = None):
    """Each chapter's headline numbers (`HEADLINES`) of the profile's `seeds`, one column per seed, then the minutes
    of each chapter, the commit and the day it finished (`provenance.json`; "—" where the run did not record it, e.g.
    a chapter run before `python -m lab book` recorded its time) (issue 25). A frame indexed by (chapter, what)."""
    import pandas as pd

    from .book import results

    cols = {}
    for seed in seeds:
        r = results(profile, artefacts, seed)
        prov = read_json(paths(profile, artefacts, seed, create=False).file(PROVENANCE), default={})
        done = prov.get("chapters", {})
        cells = {(nn, what): cell(r) for nn, what, cell in HEADLINES}
        for stem in sorted(done):
            cells[(stem[:2], "minutes")] = f"{done[stem]['wall_s'] / 60:.1f}"
        stamps = [c for c in done.values() if c.get("finished")]
        last = max(stamps, key=lambda c: c["finished"]) if stamps else {}
        commits = sorted({c.get("git_commit") or prov.get("git_commit", "") for c in stamps} - {""})
        short = [c[:7] + ("+dirty" if c.endswith("+dirty") else "") for c in commits]
        cells[("run", "commit")] = ", ".join(short) or None
        cells[("run", "CPU")] = "; ".join(dict.fromkeys(c["cpu"] for c in stamps if c.get("cpu"))) or None
        cells[("run", "finished")] = (time.strftime("%Y-%m-%d", time.gmtime(last["finished"])) if last else None)
        cols[f"seed {seed}"] = cells
    frame = pd.DataFrame(cols)
    frame.index.names = ["chapter", "what"]
    frame = frame.dropna(how="all").sort_index(level=0, sort_remaining=False)
    return frame.fillna("—")


def headlines_markdown(frame) -> str:
    """`headlines` as a markdown table (docs/movielens.md, docs/measurements.md)."""
    head = ["chapter", "what", *frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([nn, what, *map(str, row)]) + " |" for (nn, what), row in frame.iterrows()]
    return "\n".join(lines)

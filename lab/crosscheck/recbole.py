"""Cross-check against RecBole 1.2.1 (issue 14): its SASRec-CE and Pop on the book's split, beside the book's own
2-layer SASRec-CE (chapter 02's `small_scratch`) and popularity. Run by hand, never in CI:

    .venv/bin/python -m lab.crosscheck.recbole [--profile default] [--seed S] [--artefacts DIR] [--epochs N]

**What it does.** The profile's processed data is loaded exactly as the chapters load it (`lab.data.load_rec_data`),
and every kept user's whole chronological sequence is written as a RecBole atomic file
(`artefacts/<run>/crosscheck/recbole/book/book.inter`: `user_id:token` = the book's user row, `item_id:token` = the
book's item index, `timestamp:float` = the interaction's time in ms), in the book's order. RecBole's leave-one-out
split (`eval_args: {split: {LS: valid_and_test}, order: TO, group_by: user, mode: full}`) then gives the book's split:
per user the last item is the test target, the one before it the validation target, and the test history is the last
`max_len` items before the test target. This is checked twice: against an emulation of RecBole's split
(`recbole_split`, in the unit tests too) before RecBole runs, and against the split RecBole itself reports after it
ran; users that differ are listed with the reason. RecBole sorts by a float32 copy of the timestamp (ms times round
to ~2 min there), but its sort is stable and the file is in the book's order, so rounded or tied times keep the book's
order. One difference is structural and cannot occur under the book's 5-core: RecBole splits a sequential model's
*augmented* rows (one per target, n-1 for n items), so a user with exactly 3 items gets no validation target there.

RecBole runs in its own virtual environment, `.venv-recbole/` (`ensure_venv`, built on demand from the pins in
`recbole-requirements.txt`: RecBole 1.2.1 needs numpy<2 and pandas<3, which the book's environment cannot share), as
a subprocess (`recbole_runner.py`, which never imports `lab`) that writes its test metrics as JSON. SASRec: 2 layers,
the book's width, heads, MLP width, dropout, init std and history length (`cfg.model`, `cfg.data.max_len`),
`loss_type: CE` over the full catalogue, `train_neg_sample_args: None`; the book's budget (`cfg.train`: epochs —
`--epochs` overrides RecBole's only —, peak learning rate, AdamW weight decay, gradient clipping, early stopping on
validation NDCG@10 with the book's patience) and `train_batch_size` = the book's users per step x `max_len`, about the
book's targets per step. Metrics: NDCG@10, Hit@10, MRR@10, full ranking. Pop: RecBole's `Pop` on the same split, with
`train_batch_size: 1`: RecBole 1.2.1's `Pop.calculate_loss` adds 1 to `item_cnt[item]` by indexed assignment, which
counts an item once per batch however often the batch holds it (RUCAIBox/RecBole issues #2198 and #1844, open), so at
the usual batch sizes its counts are far too flat (measured once on the smoke data at batch 4096: every count 1 or 2,
test NDCG@10 0.026, about random, against 0.117 with exact counts). One interaction per batch makes them exact; the
runner returns them and they are checked against the book's `item_counts` (`compare_counts`).

**Why the numbers differ (printed with them).**

1. *History masking.* The book's evaluator (`lab.metrics.evaluate`) removes a user's earlier items from the ranking
   (the data is de-duplicated, so a target is never an earlier item). RecBole's full-ranking evaluation of a
   *sequential* model masks nothing (`FullSortEvalDataLoader` returns no history for sequential models), so the
   model's past items compete with the target and can only push it down. The column "book unmasked" scores the book's
   model the RecBole way (`lab.metrics.evaluate(..., mask_history=False)`): it is the like-for-like number for
   RecBole's SASRec. RecBole's `Pop` is a general (non-sequential) model, whose evaluation *does* mask the user's
   training and validation items (the book's `seen`), so for popularity the masked column is the like-for-like one.
2. *MRR.* RecBole's MRR@10 is truncated (0 when the target ranks below 10); the book's `mrr` is the untruncated mean
   reciprocal rank. The table shows the book's MRR@10 computed from the same ranks (`rank_metrics`), and the JSON
   keeps the book's untruncated `mrr` as well.
3. *Ties.* The book counts a tie against the target; RecBole takes `torch.topk`'s order. Only popularity has ties
   (equal counts), so its numbers differ slightly even with the same counts; the book's popularity with ties in the
   target's favour (`optimistic_metrics`) bounds it from above, and the printout says whether RecBole's lies between.
4. *Models and training.* RecBole's SASRec is Kang & McAuley's post-LN Transformer (learned absolute positions,
   LayerNorm on the input, GELU MLP) with a CE loss at the last position of every training prefix (RecBole's data
   augmentation: one sample per target, each with its own history of up to `max_len` items); the book's model is
   Llama decoder layers (pre-RMSNorm, RoPE, SwiGLU) trained with CE at every position of each user's last
   `max_len + 1` training items (the same targets for users with at most `max_len + 1` training items; a longer
   user's earlier targets are trained on by RecBole only). The book warms up and decays the learning rate (cosine);
   RecBole keeps it constant. Both score items by a dot product with the item embeddings. RecBole's epoch is about
   ten times the book's in compute (one forward pass per training prefix instead of one per user).

The like-for-like comparisons are therefore "book unmasked" against RecBole for SASRec (same split, same metrics,
independent model code and trainer), and "book" against RecBole for popularity (same counts, checked; only the tie
order can differ). `main` returns every number and writes it to `artefacts/<run>/crosscheck/crosscheck.json`, with
the git commit the book's code ran at.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from transformers.utils import logging as hf_logging

from .. import REPO_ROOT, ModelConfig, get_config, setup
from ..recommenders import popularity_scorer
from ..profiles import PROFILES
from ..constants import PAD
from ..data import RecData, load_rec_data, prepare_data, sequences_from_interactions
from ..evaluation import score_split
from ..io import write_json
from ..metrics import metrics_from_ranks
from ..models import build_model
from ..train import train_or_load

__all__ = ["HERE", "VENV", "REQUIREMENTS", "RUNNER", "DATASET", "FIELDS", "K", "METRICS", "SMALL_LAYERS", "MODELS",
           "book_sequences", "inter_frame", "write_atomic", "recbole_split", "book_split", "compare_splits",
           "compare_counts", "rank_metrics", "book_metrics", "optimistic_metrics", "book_sasrec", "requirements_hash",
           "ensure_venv", "recbole_spec", "run_recbole", "git_state", "table", "main", "report", "parse_args"]

HERE = Path(__file__).resolve().parent
VENV = REPO_ROOT / ".venv-recbole"  # git-ignored
REQUIREMENTS = HERE / "recbole-requirements.txt"
RUNNER = HERE / "recbole_runner.py"
DATASET = "book"  # RecBole's dataset name: <data_path>/book/book.inter
FIELDS = ("user_id:token", "item_id:token", "timestamp:float")
K = 10
METRICS = ("ndcg@10", "hit@10", "mrr@10")  # RecBole's names; the book's hr@10 is hit@10
SMALL_LAYERS = 2  # chapter 02's SMALL_LAYERS: the 2-layer SASRec-CE model `small_scratch`
MODELS = {"sasrec": "SASRec-2L", "popularity": "popularity"}


# -- the atomic file -----------------------------------------------------------------------------------------------
def book_sequences(interactions: pd.DataFrame, user_ids: Sequence, data: RecData) -> tuple[list, list]:
    """The whole chronological item sequence and timestamps of every user of `data`, in `data`'s row order.

    Args:
        interactions, user_ids: a processed data set (`lab.data.Processed`: `interactions` sorted by user then time,
            `user_ids[u]` the id of user u), the one `data` was split from.
        data: its `RecData`; the split dropped users with too few items, so its rows are matched by user id.
    """
    seqs, times = sequences_from_interactions(interactions, len(user_ids))
    where = {str(uid): u for u, uid in enumerate(user_ids)}
    rows = [where[str(uid)] for uid in data.user_ids]
    return [seqs[u] for u in rows], [np.asarray(times[u]) for u in rows]


def inter_frame(seqs: Sequence[Sequence[int]], times: Sequence[Sequence]) -> pd.DataFrame:
    """RecBole's `.inter` table of the book's sequences: `user_id:token` = the row (user) index, `item_id:token` = the
    item index, `timestamp:float` = the time, one row per interaction, in the book's order (user, then time)."""
    if len(seqs) != len(times) or any(len(s) != len(t) for s, t in zip(seqs, times)):
        raise ValueError("every sequence needs one timestamp per item")
    lens = [len(s) for s in seqs]
    return pd.DataFrame({
        FIELDS[0]: np.repeat(np.arange(len(seqs)), lens).astype(str),
        FIELDS[1]: np.fromiter((x for s in seqs for x in s), dtype=np.int64, count=sum(lens)).astype(str),
        FIELDS[2]: np.concatenate([np.asarray(t, dtype=np.int64) for t in times]) if seqs else np.zeros(0, np.int64),
    })


def write_atomic(frame: pd.DataFrame, folder: str | os.PathLike, name: str = DATASET) -> Path:
    """Write `frame` as `<folder>/<name>.inter` (tab-separated, RecBole's header `field:type`); return the path."""
    path = Path(folder) / f"{name}.inter"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="\t", index=False, lineterminator="\n")
    return path


def recbole_split(frame: pd.DataFrame, max_len: int, sequential: bool = True) -> dict:
    """The split RecBole 1.2.1 derives from an `.inter` table with `order: TO`, `split: {LS: valid_and_test}`,
    `group_by: user` (an emulation of `Dataset.build` for the unit tests and the check before RecBole runs).

    RecBole casts the timestamp to float32, sorts stably by it, groups the rows by user in that order and gives the
    last row of each user to test and the one before to validation, each only if the user keeps a training row
    (`min(2, n - 1)` rows leave). A sequential model's rows are the augmented ones (one per item after the first,
    with the up to `max_len` items before it as history), so a user with n items has n - 1 rows.

    Returns {"valid": {user: item}, "test": {user: item}} and, when `sequential`, "test_history": {user: [items]}.
    """
    key = frame[FIELDS[2]].to_numpy(dtype=np.float64).astype(np.float32)
    ordered = frame.iloc[np.argsort(key, kind="stable")]
    out = {"valid": {}, "test": {}, **({"test_history": {}} if sequential else {})}
    for user, items in ordered.groupby(FIELDS[0], sort=False)[FIELDS[1]]:
        items = list(items)
        rows = list(range(1, len(items))) if sequential else list(range(len(items)))  # index of each row's target
        leave = min(2, len(rows) - 1)
        if leave >= 1:
            out["test"][user] = items[rows[-1]]
            if sequential:
                out["test_history"][user] = items[max(0, rows[-1] - max_len):rows[-1]]
        if leave >= 2:
            out["valid"][user] = items[rows[-2]]
    return out


def book_split(data: RecData) -> dict:
    """The book's split in `recbole_split`'s form and tokens: validation and test target per user row, and the test
    history (the non-padding items of `test_history`)."""
    hist = [[str(int(x)) for x in row if int(x) != PAD] for row in data.test_history.tolist()]
    return {"valid": {str(int(u)): str(int(t)) for u, t in zip(data.valid_users, data.valid_target)},
            "test": {str(int(u)): str(int(t)) for u, t in zip(data.test_users, data.test_target)},
            "test_history": {str(int(u)): h for u, h in zip(data.test_users, hist)}}


def compare_splits(book: dict, other: dict, lengths: dict | None = None) -> list[dict]:
    """Every user whose validation target, test target or test history differs between two splits (`book_split`,
    `recbole_split` or RecBole's own), with a reason; [] when they agree. Parts missing from `other` are skipped.

    Args:
        lengths: {user: number of items}, to name the one structural reason (a user with 3 items has no validation
            row in RecBole's sequential split).
    """
    diffs = []
    for part in ("valid", "test", "test_history"):
        if part not in other:
            continue
        a, b = book[part], other[part]
        for user in sorted(set(a) | set(b), key=lambda u: (len(u), u)):
            if a.get(user) == b.get(user):
                continue
            n = (lengths or {}).get(user)
            if user not in b and part == "valid" and n is not None and n < 4:
                why = f"{n} items: RecBole's sequential split leaves a validation row only with at least 4"
            elif user not in a or user not in b:
                why = f"only {'RecBole' if user in b else 'the book'} has a {part} row for this user"
            else:
                why = "different items: the two orders of the user's interactions differ (tied timestamps?)"
            diffs.append({"user": user, "part": part, "book": a.get(user), "recbole": b.get(user), "reason": why})
    return diffs


def compare_counts(item_counts: torch.Tensor, counts: dict) -> list[int]:
    """The items (book indices) whose training count differs between the book's `item_counts` (N+1,) and RecBole
    Pop's {item token: count}; [] when they agree."""
    return [i for i in range(1, len(item_counts)) if int(item_counts[i]) != int(counts.get(str(i), 0))]


# -- the book's numbers --------------------------------------------------------------------------------------------
def rank_metrics(ranks, k: int = K) -> dict:
    """Mean NDCG@k, Hit@k, MRR@k (truncated, as RecBole's) and the book's untruncated MRR of 0-based ranks."""
    r = np.asarray(ranks, dtype=np.float64)
    per_user = metrics_from_ranks(r, ks=(k,))
    return {f"ndcg@{k}": float(per_user[f"ndcg@{k}"].mean()), f"hit@{k}": float(per_user[f"hr@{k}"].mean()),
            f"mrr@{k}": float(np.where(r < k, per_user["mrr"], 0.0).mean()), "mrr": float(per_user["mrr"].mean())}


def book_metrics(score_fn: Callable[[torch.Tensor], torch.Tensor], data: RecData, split: str = "test",
                 mask_history: bool = True, k: int = K) -> dict:
    """`rank_metrics` of a scorer on a split of `data` by the book's evaluator (`lab.evaluation.score_split`: full
    ranking, ties against the target), with the user's earlier items masked (the book's way) or not (RecBole's way for
    sequential models)."""
    _, per_user = score_split(score_fn, data, split, ks=(k,), mask_history=mask_history)
    return rank_metrics(per_user["rank"], k)


@torch.no_grad()
def optimistic_metrics(score_fn: Callable[[torch.Tensor], torch.Tensor], data: RecData, split: str = "test",
                       mask_history: bool = True, k: int = K, batch_size: int = 512) -> dict:
    """`book_metrics` with ties counted in the target's favour (rank = items scoring strictly higher): with the book's
    pessimistic ties, the two bound any tie-breaking order, such as the `torch.topk` order RecBole ranks by. Only
    count scores (popularity) have ties; the book's metrics (`lab.metrics`) keep counting them against the target."""
    history, target, seen = data.split(split)
    ranks = []
    for i in range(0, len(target), batch_size):
        s = score_fn(history[i:i + batch_size]).detach().double().clone()  # (B, N+1)
        t = target[i:i + batch_size].to(s.device)
        t_score = s.gather(1, t[:, None])  # (B, 1)
        s[:, PAD] = -torch.inf
        if mask_history:
            s.scatter_(1, seen[i:i + batch_size].to(s.device), -torch.inf)
        s[:, PAD] = -torch.inf
        s.scatter_(1, t[:, None], t_score)
        ranks.append((s > t_score).sum(1).cpu())  # (B,)
    return rank_metrics(torch.cat(ranks).numpy(), k)


def book_sasrec(cfg, data: RecData, stats: dict, root: Path, seed: int):
    """Chapter 02's 2-layer SASRec-CE model (`small_scratch`): loaded when chapter 02 trained it with this
    configuration, else trained the same way (`lab.train.train_or_load`, same seed, key and folder)."""
    small_cfg = ModelConfig(**{**cfg.model.__dict__, "num_layers": SMALL_LAYERS})
    torch.manual_seed(seed)
    small = build_model(small_cfg, data.num_items, data.max_len, item_titles=data.item_titles)
    return train_or_load(small, data, cfg.train, root / "small_scratch", seed=seed, progress=False,
                         key={"model": small_cfg.__dict__, "data": stats.get("config_hash")})


# -- RecBole -------------------------------------------------------------------------------------------------------
def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    """A short hash of the pins (the requirement lines, comments and blank lines left out)."""
    pins = [ln.strip() for ln in Path(requirements).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]


def ensure_venv(venv: Path = VENV, requirements: Path = REQUIREMENTS, python: str = sys.executable) -> Path:
    """The RecBole venv's python, building `venv` first when it is missing or was built from other pins.

    `python -m venv`, then `pip install --no-deps -r recbole-requirements.txt` (every package pinned there; torch
    2.13.0 is the CPU wheel pip finds on this machine's disk), then an import check. A stamp file holds the pins'
    hash, so editing the requirements rebuilds it.
    """
    py, stamp = Path(venv) / "bin" / "python", Path(venv) / ".installed"
    want = requirements_hash(requirements)
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return py
    print(f"building {venv} from {requirements.name} (a few minutes) ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "-r", str(requirements)], check=True)
    subprocess.run([str(py), "-c", "import recbole, torch, numpy, pandas; from recbole.config import Config; "
                    "from recbole.data import create_dataset; from recbole.utils import get_model, get_trainer; "
                    "get_model('SASRec'); get_model('Pop'); print('recbole', recbole.__version__, 'torch', "
                    "torch.__version__, 'numpy', numpy.__version__, 'pandas', pandas.__version__)"], check=True)
    stamp.write_text(want + "\n")
    print(f"built {venv} in {time.perf_counter() - t0:.0f} s", flush=True)
    return py


def recbole_spec(cfg, data_path: Path, out: Path, seed: int, epochs: int | None = None, threads: int = 1) -> dict:
    """The runner's settings: RecBole config keys shared by both models, and per model (SASRec, Pop)."""
    t, m = cfg.train, cfg.model
    common = {
        "data_path": str(data_path), "dataset": DATASET, "checkpoint_dir": str(out / "saved"),
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Hit", "MRR"], "topk": [K], "valid_metric": f"NDCG@{K}", "metric_decimal_place": 6,
        "train_neg_sample_args": None, "use_gpu": False, "gpu_id": "", "seed": int(seed), "reproducibility": True,
        "show_progress": False, "state": "INFO", "eval_batch_size": 4096, "MAX_ITEM_LIST_LENGTH": int(cfg.data.max_len),
    }
    sasrec = {
        "n_layers": SMALL_LAYERS, "n_heads": m.num_heads, "hidden_size": m.hidden_size,
        "inner_size": m.intermediate_size, "hidden_dropout_prob": m.dropout, "attn_dropout_prob": m.dropout,
        "initializer_range": m.init_std, "loss_type": "CE",
        "epochs": int(epochs if epochs is not None else t.epochs), "stopping_step": t.patience,
        "learning_rate": t.lr, "learner": "adamw", "weight_decay": t.weight_decay,
        "clip_grad_norm": {"max_norm": t.grad_clip}, "train_batch_size": t.batch_size * cfg.data.max_len,
    }
    pop = {"epochs": 1, "train_batch_size": 1}  # RecBole's Pop counts an item once per batch: see the docstring
    return {"common": common, "models": {"SASRec": sasrec, "Pop": pop}, "threads": int(threads),
            "out": str(out / "recbole_result.json")}


def run_recbole(python: Path, spec: dict, folder: Path) -> dict:
    """Run `recbole_runner.py` with the RecBole venv's python in `folder` (RecBole writes log/ and log_tensorboard/
    to its working directory; its output goes to `folder/recbole.log`); return its JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "spec.json"
    write_json(spec_path, spec)
    Path(spec["out"]).unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"]),
           "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    log = folder / "recbole.log"
    with open(log, "w") as f:  # -P: the runner's folder (lab/crosscheck, which holds recbole.py) not on sys.path
        proc = subprocess.run([str(python), "-P", str(RUNNER), str(spec_path)], cwd=folder, env=env, stdout=f,
                              stderr=subprocess.STDOUT)
    lines = log.read_text().splitlines()
    if proc.returncode != 0:
        raise RuntimeError(f"RecBole failed (exit {proc.returncode}); the end of {log}:\n" + "\n".join(lines[-30:]))
    for line in lines:
        if line.startswith("[recbole_runner]"):
            print(line)
    return json.loads(Path(spec["out"]).read_text())


def git_state() -> dict:
    """The commit the book's code ran at, and whether the work tree had changes (provenance of the numbers)."""
    def git(*args):
        r = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


# -- the cross-check -----------------------------------------------------------------------------------------------
def table(numbers: dict) -> pd.DataFrame:
    """metric x {book, book unmasked, RecBole} for each model, from `main`'s numbers."""
    rows = []
    for model, label in MODELS.items():
        for metric in METRICS:
            rows.append({"model": label, "metric": metric,
                         "book": numbers["book"][model][metric],
                         "book unmasked": numbers["book_unmasked"][model][metric],
                         "RecBole": numbers["recbole"][model][metric]})
    return pd.DataFrame(rows).set_index(["model", "metric"])


def main(profile: str = "default", seed: int = 0, artefacts=None, epochs: int | None = None) -> dict:
    """Run the cross-check for a profile and seed; print the table and the explanations; return every number (also
    written to `artefacts/<run>/crosscheck/crosscheck.json`)."""
    t_all = time.perf_counter()
    seconds = {}
    P = setup(seed, profile, artefacts, chapter=None)
    hf_logging.disable_progress_bar()  # save_pretrained's progress bars
    cfg = get_config(profile, seed)
    if cfg.data.split != "leave_last_out":
        raise ValueError(f"the RecBole cross-check uses the leave-last-out split; this run's is {cfg.data.split!r}")
    out = P.root / "crosscheck"
    t0 = time.perf_counter()
    data, _, stats = load_rec_data(cfg.data, P, seed=seed, progress=False)
    proc = prepare_data(cfg.data, P, seed, progress=False)  # the cache `data` was split from: whole sequences
    seqs, times = book_sequences(proc.interactions, proc.user_ids, data)
    frame = inter_frame(seqs, times)
    inter_path = write_atomic(frame, out / "recbole" / DATASET)
    seconds["data"] = time.perf_counter() - t0
    book = book_split(data)
    lengths = {str(u): len(s) for u, s in enumerate(seqs)}
    emulated = compare_splits(book, recbole_split(frame, data.max_len), lengths)
    print(f"{profile} (seed {seed}): {data.num_users} users, {data.num_items} items, {len(frame)} interactions "
          f"-> {inter_path}; RecBole's split (emulated) differs for {len(emulated)} users")

    t0 = time.perf_counter()
    small, _, info = book_sasrec(cfg, data, stats, P.root, seed)
    seconds["book_model"] = time.perf_counter() - t0
    print(f"book SASRec-2L: {'loaded from' if info['loaded'] else 'trained into'} {P.root / 'small_scratch'} "
          f"({info['epochs']} epochs, {info['train_seconds']:.0f} s of training)")
    t0 = time.perf_counter()
    scorers = {"sasrec": small.recommend_scores,
               "popularity": popularity_scorer(data).recommend_scores}  # (B, T) -> (B, N+1)
    numbers = {"book": {n: book_metrics(f, data) for n, f in scorers.items()},
               "book_unmasked": {n: book_metrics(f, data, mask_history=False) for n, f in scorers.items()}}
    numbers["book_ties_in_favour"] = {"popularity": optimistic_metrics(scorers["popularity"], data)}
    seconds["book_eval"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    python = ensure_venv()
    seconds["venv"] = time.perf_counter() - t0
    spec = recbole_spec(cfg, out / "recbole", out, seed, epochs, torch.get_num_threads())
    t0 = time.perf_counter()
    rb = run_recbole(python, spec, out)
    seconds["recbole"] = time.perf_counter() - t0
    sas, pop = rb["models"]["SASRec"], rb["models"]["Pop"]
    numbers["recbole"] = {"sasrec": {k: sas["test"][k] for k in METRICS},
                          "popularity": {k: pop["test"][k] for k in METRICS}}
    actual = {name: compare_splits(book, r["split"], lengths) for name, r in rb["models"].items()}
    counts = compare_counts(data.item_counts, pop.get("item_counts", {}))
    seconds["total"] = time.perf_counter() - t_all

    result = {
        "profile": profile, "seed": seed, "users": data.num_users, "items": data.num_items,
        "interactions": len(frame), "max_len": data.max_len, **numbers,
        "split_check": {"emulated": len(emulated), **{f"recbole_{n.lower()}": len(d) for n, d in actual.items()},
                        "pop_counts_differ": len(counts), "pop_counts_total": sum(pop.get("item_counts", {}).values()),
                        "book_counts_total": int(data.item_counts.sum()),
                        "differences": {"emulated": emulated[:20], **{n: d[:20] for n, d in actual.items()}}},
        "book_train": {"epochs": info["epochs"], "train_seconds": info["train_seconds"], "loaded": info["loaded"],
                       "best_valid_ndcg@10": info.get("best_valid_ndcg@10"),
                       "train_targets": int((data.train_labels >= 1).sum())},
        "recbole_train": {n: {k: r[k] for k in ("epochs", "best_epoch", "train_seconds", "data_seconds",
                                                   "train_samples", "parameters", "best_valid")}
                          for n, r in rb["models"].items()},
        "recbole_budget": {k: spec["models"]["SASRec"][k] for k in ("epochs", "stopping_step", "learning_rate",
                                                                   "train_batch_size", "learner", "weight_decay")},
        "book_parameters": int(sum(p.numel() for p in small.parameters())),
        "versions": rb["versions"], "git": git_state(), "threads": torch.get_num_threads(), "seconds": seconds,
        "load_average": list(os.getloadavg()),
    }
    write_json(out / "crosscheck.json", result)
    report(result)
    return result


def report(r: dict) -> None:
    """Print the table and what explains its differences."""
    print()
    print(f"Test split, full ranking over {r['items']} items, {r['users']} users (profile {r['profile']}, "
          f"seed {r['seed']}):")
    with pd.option_context("display.float_format", "{:.4f}".format):
        print(table(r).to_string())
    sc = r["split_check"]
    print(f"Split: RecBole's own split differs from the book's for {sc.get('recbole_sasrec')} users (SASRec) and "
          f"{sc.get('recbole_pop')} (Pop); the emulation for {sc['emulated']}. Pop's training counts differ from the "
          f"book's for {sc['pop_counts_differ']} items ({sc['pop_counts_total']} vs {sc['book_counts_total']} "
          f"interactions).")
    for name, diffs in sc["differences"].items():
        for d in diffs[:5]:
            print(f"  {name}: user {d['user']} {d['part']}: book {d['book']} vs RecBole {d['recbole']}: "
                  f"{d['reason']}")
    b, u, rb = r["book"]["sasrec"], r["book_unmasked"]["sasrec"], r["recbole"]["sasrec"]
    bp, rp, op = r["book"]["popularity"], r["recbole"]["popularity"], r["book_ties_in_favour"]["popularity"]
    print(f"Masking: RecBole does not mask a user's earlier items for a sequential model; unmasked, the book's "
          f"SASRec-2L NDCG@10 goes from {b['ndcg@10']:.4f} to {u['ndcg@10']:.4f} "
          f"({u['ndcg@10'] - b['ndcg@10']:+.4f}): RecBole's {rb['ndcg@10']:.4f} compares with the unmasked "
          f"{u['ndcg@10']:.4f} ({rb['ndcg@10'] - u['ndcg@10']:+.4f}, {rb['ndcg@10'] / max(u['ndcg@10'], 1e-12):.1%}).")
    print(f"Pop is a general model in RecBole, evaluated with the user's items masked: RecBole's NDCG@10 "
          f"{rp['ndcg@10']:.4f} compares with the book's masked {bp['ndcg@10']:.4f} "
          f"({rp['ndcg@10'] - bp['ndcg@10']:+.4f}). Equal counts tie: the book counts a tie against the target, "
          f"RecBole takes topk's order; with ties in the target's favour the book's popularity has NDCG@10 "
          f"{op['ndcg@10']:.4f}, Hit@10 {op['hit@10']:.4f}, MRR@10 {op['mrr@10']:.4f}: RecBole's lies "
          f"{'between' if all(bp[m] - 1e-6 <= rp[m] <= op[m] + 1e-6 for m in METRICS) else 'NOT between'} the two "
          f"for all three metrics.")
    print(f"MRR: RecBole's is MRR@10 (0 below rank 10); the book's MRR@10 from the same ranks is in the table, its "
          f"untruncated mrr is {b['mrr']:.4f} (masked), {u['mrr']:.4f} (unmasked).")
    tr, bt = r["recbole_train"]["SASRec"], r["book_train"]
    still = " (still improving: the budget, not convergence, stopped it)" if tr["best_epoch"] >= tr["epochs"] else ""
    print(f"Training: RecBole SASRec {tr['epochs']} epochs, best on validation {tr['best_epoch']}{still}, "
          f"{tr['train_seconds']:.0f} s, {tr['train_samples']} training targets per epoch (every prefix of every "
          f"training sequence, one forward pass each), {tr['parameters']:,} parameters; book SASRec-2L "
          f"{bt['epochs']} epochs, {bt['train_seconds']:.0f} s, {bt['train_targets']} training targets per epoch "
          f"(every position of each user's last {r['max_len'] + 1} training items, one pass per user), "
          f"{r['book_parameters']:,} parameters. The models differ (post-LN Transformer with learned positions vs "
          f"Llama layers; constant vs warm-up + cosine learning rate): see lab/crosscheck/recbole.py.")
    s = r["seconds"]
    print("Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in s.items()) + f"; {r['threads']} torch thread(s); "
          f"load average {', '.join(f'{x:.2f}' for x in r['load_average'])}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m lab.crosscheck.recbole", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default", choices=PROFILES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--artefacts", default=None, help="artefact root (default: ./artefacts)")
    ap.add_argument("--epochs", type=int, default=None, help="RecBole's epochs (default: the profile's cfg.train)")
    return ap.parse_args(argv)


if __name__ == "__main__":
    a = parse_args()
    print(json.dumps(main(a.profile, a.seed, a.artefacts, a.epochs), default=str))

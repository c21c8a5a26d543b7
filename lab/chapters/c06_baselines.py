"""Chapter 06's glue: the leaderboard of every alternative to the method (its rows read from chapter 05 or trained
here, their CIs, retention and paired tests against the method with Holm's correction, a verdict per row) and what
the chapter records of it. The recommenders live in `lab.recommenders`, the compression methods in
`lab.compression`, the statistics in `lab.evaluation`."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..constants import METRICS
from ..distill.trainer import method_student as distill_method_student
from ..evaluation import bootstrap_ci, compare_runs, holm_family, paired_ratio_ci
from ..hypotheses import VARIANT_ORDER

__all__ = ["method_student", "chapter05_rows", "verdict", "leaderboard", "read_tables", "board_rows",
           "rows_above_teacher", "valid_curve", "leaderboard_record"]


def method_student(results: pd.DataFrame, rule: str = "fisher_topk") -> str:
    """Chapter 05's student of the book's method: `rule`'s full fine-tuned student distilled with the method's
    variant, "kd+fisher" (else the first of `lab.hypotheses.VARIANT_ORDER` chapter 05 trained for it), named by that
    rule, never by a score — the student chapter 05 and C1 test (`lab.distill.trainer.method_student`); `results` is
    `distill_results.parquet` (chapter 06)."""
    return distill_method_student(results, rule, fallback=VARIANT_ORDER)


def chapter05_rows(results: pd.DataFrame, method: str, baselines=("tinybert",)) -> list[str]:
    """The students of chapter 05 that chapter 06 reads instead of training again: the method, one full fine-tuned
    student per other layer set (each rule, each random draw) — trained with the method's variant where chapter 05
    trained that set with it, else with the variant chapter 05 gave it —, then the adapter students (LoRA, QLoRA),
    then the baseline distillations (`baselines`: lab.distill.config.BASELINE_VARIANTS, TinyBERT's)."""
    r = results.set_index("name")
    variant = r.loc[method, "variant"]
    full = results[(results["adapter"] == "full") & ~results["variant"].isin(baselines)]
    out = []
    for _, g in full.groupby(["rule", "draw"], sort=False):
        same = g[g["variant"] == variant]
        out.append(str((same if len(same) else g).iloc[0]["name"]))
    return (out + [str(n) for n in results.loc[results["adapter"] != "full", "name"]]
            + [str(n) for n in results.loc[results["variant"].isin(baselines), "name"]])


def verdict(test: dict, margin: float) -> str:
    """A row's verdict from its paired test against the method (`lab.evaluation.holm_family` row, diff = method − row):
    "method better" / "method worse" when the difference is clear (CI excludes 0 and Holm-adjusted p < alpha),
    "on par" when its CI lies within ±`margin`, else "inconclusive" (chapter 06)."""
    if test["clear"]:
        return "method better" if test["diff"] > 0 else "method worse"
    if -margin <= test["ci_low"] and test["ci_high"] <= margin:
        return "on par"
    return "inconclusive"


def leaderboard(rows: pd.DataFrame, per_user: pd.DataFrame, method: str, teacher: str = "teacher",
                metrics=METRICS, alpha: float = 0.05, margin: float = 0.01, n_boot: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """Chapter 06's table: every row with its test metrics and CIs, its retention of the teacher with a paired CI,
    and the paired test of `method` against it, Holm-corrected over the family, with a verdict (`verdict`).

    Args:
        rows: one row per method: `name`, `status` ("ok", or why it has no numbers) and whatever else the chapter
            knows of it (family, source, params, speed, memory ...), kept as they are.
        per_user: tidy per-user test metrics (name, user, metrics...) of every row whose status is "ok", the teacher
            included, on the teacher's test users.
        method: the row every other is tested against.
        alpha, margin: the thresholds of `verdict`, set before the run.

    Returns:
        `rows` with, per metric m: `test_m` and its percentile bootstrap CI over users (`test_m_low`, `test_m_high`),
        `ret_m` = mean(row) / mean(teacher) with a paired bootstrap CI (`ret_m_low`, `ret_m_high`; users resampled
        jointly, in ascending user order); on `metrics[0]`: `diff` = method − row with its CI (`diff_low`,
        `diff_high`), `wilcoxon_p`, `holm_p` (over every row but the method's and those not measured), `clear` and
        `verdict` ("the method" for its own row, "not measured: <status>" where status is not "ok").
    """

    head = metrics[0]
    out = rows.set_index("name", drop=False)
    ok = [n for n in out.index if out.loc[n, "status"] == "ok"]
    wide = {m: per_user.pivot(index="user", columns="name", values=m).sort_index() for m in metrics}
    users = wide[head][teacher].dropna().index
    for n in ok:
        for m in metrics:
            v, t = wide[m].reindex(users)[n].to_numpy(), wide[m].loc[users, teacher].to_numpy()
            if np.isnan(v).any():
                raise ValueError(f"{n}: no {m} for {int(np.isnan(v).sum())} of the teacher's test users")
            out.loc[n, [f"test_{m}", f"test_{m}_low", f"test_{m}_high"]] = bootstrap_ci(v, n_boot, seed=seed)
            out.loc[n, [f"ret_{m}", f"ret_{m}_low", f"ret_{m}_high"]] = paired_ratio_ci(v, t, n_boot, seed=seed)
    family = [n for n in ok if n != method]
    tests = holm_family([{"name": n, **compare_runs(per_user, [method], [n], head, n_boot=n_boot, seed=seed)}
                         for n in family], alpha=alpha)
    cols = {"diff": "diff", "ci_low": "diff_low", "ci_high": "diff_high", "wilcoxon_p": "wilcoxon_p",
            "holm_p": "holm_p", "clear": "clear"}
    out["verdict"] = [("the method" if n == method else "not measured: " + str(out.loc[n, "status"]))
                      for n in out.index]
    out.loc[method, list(cols.values())] = [0.0, 0.0, 0.0, 1.0, 1.0, False]
    for t in tests:
        out.loc[t["name"], list(cols.values())] = [t[c] for c in cols]
        out.loc[t["name"], "verdict"] = verdict(t, margin)
    out["clear"] = out["clear"].astype("boolean")
    return out.reset_index(drop=True)


def read_tables(paths, tables: dict) -> dict[str, pd.DataFrame]:
    """{file: frame} of earlier chapters' tables in the run's artefact folder (chapter 06 reads chapter 05's);
    `tables` maps each file name to the chapter that writes it, named with its command when the file is missing.

    Args:
        paths: the run's `lab.Paths` (`file`, `command`).
    """
    out = {}
    for name, chapter in tables.items():
        f = paths.file(name)
        if not f.is_file():
            raise FileNotFoundError(f"no {name} at {f}: chapter {chapter} writes it; run `{paths.command(chapter)}` "
                                    "first")
        out[name] = pd.read_parquet(f)
    return out


def board_rows(specs: list[dict], speed: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The leaderboard's descriptive columns, one row per spec (chapter 06).

    Args:
        specs: dicts with name, family, source, detail, and optionally status (default "ok") and timed_as (the timed
            model whose speed and memory the row shares, e.g. a student of the same shape; default its own name).
        speed: `lab.bench.compare_speed`'s frame of the timed models.
        params: name -> parameters the row's model stores (`stored_parameters`, a pruned model's nonzero count).

    Returns:
        name, family, source, detail, status, timed_as, params, and from `speed` at batch 1 and at the largest batch:
        speedup_b1, speedup, latency_b1_ms, latency_ms (medians), weights_mb, peak_mb (weights + activation peak at
        the largest batch).
    """
    bmax = int(speed["batch"].max())
    sp = speed.set_index(["model", "batch"])
    rows = []
    for s in specs:
        r = {"status": "ok", **s}
        r["timed_as"] = r.get("timed_as") or r["name"]
        t = r["timed_as"]
        timed = r["status"] == "ok" and (t, bmax) in sp.index
        for col, b, src in (("speedup_b1", 1, "speedup"), ("speedup", bmax, "speedup"),
                            ("latency_b1_ms", 1, "median_ms"), ("latency_ms", bmax, "median_ms"),
                            ("weights_mb", bmax, "weights_mb"), ("peak_mb", bmax, "peak_mb")):
            r[col] = float(sp.loc[(t, b), src]) if timed and src in sp.columns else float("nan")
        r["params"] = params.get(r["name"], np.nan) if r["status"] == "ok" else np.nan
        rows.append(r)
    cols = ["name", "family", "source", "detail", "status", "timed_as", "params", "speedup_b1", "speedup",
            "latency_b1_ms", "latency_ms", "weights_mb", "peak_mb"]
    return pd.DataFrame(rows)[cols]


def rows_above_teacher(board: pd.DataFrame, metric: str = "ndcg@10") -> list[str]:
    """The measured rows of `leaderboard` whose paired retention CI lies above 1: better than the teacher on test
    (chapter 06)."""
    return list(board.loc[(board["status"] == "ok") & (board[f"ret_{metric}_low"] > 1), "name"])


def valid_curve(table: pd.DataFrame, metric: str = "valid_ndcg@10") -> dict[str, float]:
    """`choose_on_valid`'s table as {str(knob value): validation metric} (chapter 06)."""
    return {str(v): float(x) for v, x in zip(table["value"], table[metric])}


def leaderboard_record(board: pd.DataFrame, method: str, *, k: int, read_from_05: list, knn: tuple, ease: tuple,
                       grus: dict, gru_lr: float, prune: dict, bmax: int, alpha: float, margin: float) -> dict:
    """The key results chapter 06 records: the leaderboard per row, and the knobs chosen on validation (chapter 06).

    Args:
        board: `leaderboard`'s frame; every per-row value is recorded as {row name: value}.
        method: the row every other is tested against; k: the layer budget; read_from_05: chapter 05's students the
            board reads (`chapter05_rows`).
        knn, ease: `choose_on_valid`'s (chosen value, table) for ItemKNN's neighbours and EASE's λ.
        grus: {learning rate: `train_or_load`'s (model, history, info)} of GRU4Rec; gru_lr: the one chosen.
        prune: `prune_to`'s counts; bmax: the largest timed batch; alpha, margin: the verdicts' thresholds.
    """
    b = board.set_index("name")
    (knn_k, knn_valid), (ease_l, ease_valid) = knn, ease
    return {
        "k": k,
        "method": method,
        "rows": list(board["name"]),
        "read_from_05": list(read_from_05),
        "knn_neighbours": int(knn_k),
        "ease_lambda": float(ease_l),
        "ease_lambda_at_edge": bool(ease_valid["at_edge"].any()) if "at_edge" in ease_valid else None,
        "knn_valid": valid_curve(knn_valid),
        "ease_valid": valid_curve(ease_valid),
        "test_ndcg10": b["test_ndcg@10"].astype(float).to_dict(),
        "test_ndcg10_ci": {n: [float(lo), float(hi)] for n, lo, hi in zip(b.index, b["test_ndcg@10_low"],
                                                                           b["test_ndcg@10_high"])},
        "retention": b["ret_ndcg@10"].astype(float).to_dict(),
        "retention_ci": {n: [float(lo), float(hi)] for n, lo, hi in zip(b.index, b["ret_ndcg@10_low"],
                                                                         b["ret_ndcg@10_high"])},
        "speedup": b["speedup"].astype(float).to_dict(),
        "speedup_b1": b["speedup_b1"].astype(float).to_dict(),
        "params": b["params"].astype(float).to_dict(),
        "peak_mb": b["peak_mb"].astype(float).to_dict(),
        "diff": b["diff"].astype(float).to_dict(),
        "holm_p": b["holm_p"].astype(float).to_dict(),
        "verdict": b["verdict"].to_dict(),
        "status": b["status"].to_dict(),
        "alpha": alpha,
        "margin": margin,
        "prune": {name: float(v) for name, v in prune.items()},
        "gru4rec_epochs": int(grus[gru_lr][2]["epochs"]),
        "gru4rec_lr": float(gru_lr),
        "gru4rec_valid": {str(lr): float(info["best_valid_ndcg@10"]) for lr, (_, _, info) in grus.items()},
        "bmax": int(bmax),
        "above_teacher": rows_above_teacher(board),
    }

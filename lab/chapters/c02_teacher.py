"""Chapter 02's glue: the sentences it prints about the teacher (what it is, how it compares with popularity and the
small model, the teachers side by side) and what it records (`teacher_record`). Building and training the teacher
live in `lab.models` and `lab.train`, scoring in `lab.evaluation`, the side-by-side comparison in
`lab.bench.teachers`, the depth curve in `lab.bench.depth`, the architectures in `lab.bench.arch`."""
from __future__ import annotations

import pandas as pd

__all__ = ["teacher_line", "headline", "headline_sentences", "comparison_sentences", "comparison_record",
           "teacher_record"]


def teacher_line(teacher, model_cfg, info: dict, n_params: int, n_layer_params: int, shown_path: str) -> str:
    """What the teacher is: its layers, parameters (the share in the decoder layers), the pretrained backbone and
    what was trained of it, and whether it was loaded or trained, with the time it took (chapter 02)."""
    return (f"teacher: {teacher.num_layers} x {type(teacher.layers[0]).__name__}, {n_params:,} parameters "
            f"({n_layer_params / n_params:.0%} in the decoder layers)"
            + (f", pretrained {model_cfg.backbone}, {info['trainable_params']:,} trained ({model_cfg.tuning})"
               if model_cfg.backbone and "trainable_params" in info else "") + "; "
            f"{'loaded from ' + shown_path if info['loaded'] else 'trained'} — "
            f"training took {info['train_seconds']:.0f} s over {info['epochs']} epochs"
            + {"patience": ", stopped when validation stopped improving",
               "epochs": ", stopped at its epoch cap while validation still improved",
               "budget": " — STOPPED BY THE WALL-CLOCK GUARD before validation stopped improving"}.get(
                info.get("stopped_by"), ""))


def headline(table: pd.DataFrame, teacher: str, small: str) -> dict:
    """Test NDCG@10 of the teacher, the small model and popularity from `lab.evaluation.score_table`'s table (rows
    named `teacher`, `small`, "popularity"), the teacher's HR@10 and MRR, and the teacher over popularity
    (chapter 02)."""
    test = table[table.split == "test"].set_index("model")
    t, p, s = (float(test.loc[m, "ndcg@10"]) for m in (teacher, "popularity", small))
    return {"teacher_ndcg10_test": t, "teacher_hr10_test": float(test.loc[teacher, "hr@10"]),
            "teacher_mrr_test": float(test.loc[teacher, "mrr"]), "popularity_ndcg10_test": p,
            "small_ndcg10_test": s, "teacher_over_popularity": t / max(p, 1e-12)}


def headline_sentences(h: dict, small_layers: int, info: dict, device, threads: int, batch_size: int) -> str:
    """The teacher against popularity and the small model on test NDCG@10, and how it was trained (chapter 02)."""
    t, p, s = h["teacher_ndcg10_test"], h["popularity_ndcg10_test"], h["small_ndcg10_test"]
    return (f"Test NDCG@10 (full ranking): teacher {t:.4f}, small {s:.4f}, popularity {p:.4f}.\n"
            f"The teacher is {h['teacher_over_popularity']:.1f}x popularity ({t - p:+.4f} absolute) and "
            f"{'above' if t > s else 'not above'} the {small_layers}-layer model trained from scratch "
            f"({t - s:+.4f}).\n"
            f"Training the teacher took {info['train_seconds']:.0f} s on {info.get('device', device)} ({threads} "
            f"threads) for {info['epochs']} epochs at batch {info.get('batch_size', batch_size)}, with "
            f"{'deterministic' if info.get('deterministic', True) else 'non-deterministic (CUDA, faster)'} kernels.")


def comparison_sentences(table: pd.DataFrame, metric: str = "NDCG@10") -> str:
    """One printed finding per comparison of `lab.bench.teachers.compare_all` on all and on rare targets
    (chapter 02)."""
    out = []
    for r in table[table["subset"] != "rest"].itertuples():
        word = "above" if r.ci_low > 0 else "below" if r.ci_high < 0 else "no clear difference from"
        out.append(f"{r.model} − {r.vs} on {r.subset} targets ({r.n_users} users): {r.diff:+.4f} {metric} "
                   f"(95% CI {r.ci_low:+.4f} to {r.ci_high:+.4f}, Wilcoxon p {r.wilcoxon_p:.2g}): {word} {r.vs}")
    return "\n".join(out)


def comparison_record(table: pd.DataFrame, rare: pd.DataFrame, ease_lambda: float,
                      ease_grid: pd.DataFrame | None = None) -> dict:
    """What chapter 02 records of the comparison: rare_targets (count), ease_lambda (and ease_lambda_at_edge: still at
    an end of the grid `choose_on_valid` grew), teacher_comparisons (one dict per row of
    `lab.bench.teachers.compare_all`)."""
    edge = bool(ease_grid["at_edge"].any()) if ease_grid is not None and "at_edge" in ease_grid else None
    return {"rare_targets": int(rare["rare"].sum()), "ease_lambda": float(ease_lambda), "ease_lambda_at_edge": edge,
            "teacher_comparisons": table.to_dict("records")}


def teacher_record(teacher, model_cfg, info: dict, n_params: int, h: dict, *, comparison: dict, curve,
                   arch=None) -> dict:
    """The key results chapter 02 records (chapter 02).

    Args:
        teacher, model_cfg, info: the teacher, its `ModelConfig` and `train_or_load`'s info (time, epochs, ...).
        n_params: its parameter count; h: `headline` (test metrics of the teacher, the small model, popularity).
        comparison: `comparison_record`; curve: the depth curve (`lab.bench.depth.depth_curve`, its `record()`);
        arch: the architectures compared for H4 (`lab.bench.arch.compare_architectures`), None when not run.
    """
    return {
        "n_layers": teacher.num_layers, "n_params": n_params,
        "arch": model_cfg.arch, "backbone": model_cfg.backbone,  # backbone: the pretrained LLM, None from scratch
        "trainable_params": info.get("trainable_params"),
        "train_seconds": info["train_seconds"], "epochs": info["epochs"],
        "stopped_by": info.get("stopped_by"), "stopped_by_budget": bool(info.get("stopped_by_budget", False)),
        **h, **comparison, **curve.record(), **(arch.record() if arch else {}),
    }

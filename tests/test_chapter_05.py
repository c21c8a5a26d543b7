"""Chapter 05 (distillation) in the smoke profile: recorded values, saved students and the tidy artefacts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import lab
from lab.data import load_rec_data
from lab.models import SeqRecModel
from lab.train import evaluate_model


def test_chapter_05(smoke_book):
    r = smoke_book.run("05")["05_distillation"]
    teacher_layers = smoke_book.run("02")["02_teacher"]["n_layers"]
    assert r["k"] == max(1, teacher_layers // 4)
    names = list(r["retention"])
    assert r["n_students"] == len(names) >= 8  # 2 rules x 3 variants + LoRA + QLoRA
    rets = np.array([r["retention"][n] for n in names])
    assert np.isfinite(rets).all() and (rets > 0.3).all(), r["retention"]  # every student kept real quality
    lo, hi = r["best_retention_ci"]
    assert lo <= r["best_retention"] <= hi and hi - lo < 1.0
    assert r["max_retention"] >= r["best_retention"]
    assert r["scratch_small_retention"] > 0.3  # chapter 02's shallow model, as context for retention
    assert "kd vs ce" in r["variant_comparisons"]
    for c in r["variant_comparisons"].values():  # paired tests of the loss variants on the same layer sets
        assert c["ci_low"] <= c["diff"] <= c["ci_high"] and 0 <= c["wilcoxon_p"] <= 1
        assert c["clear"] == (c["ci_low"] > 0 or c["ci_high"] < 0)
    assert r["best_speedup"] > 1.5  # k = L/4 layers, merged, timed at batch 256
    assert r["goal_met"] == bool(r["best_retention"] >= 0.95 and r["best_speedup"] >= 3.0)
    assert all(0.0 <= v <= 1.0 for v in r["tpme"].values())
    assert all(v > 0 for v in r["train_seconds"].values())
    for name, first in r["same_as"].items():  # a rule that picked already-trained layers shares that student's row
        assert first in names and r["retention"][name] == r["retention"][first]

    lora = next(n for n in names if n.endswith(":lora"))
    qlora = next(n for n in names if n.endswith(":qlora"))
    tp, mem = r["trainable_params"], r["peak_mem_mb"]
    assert tp[lora] == tp[qlora] < 0.5 * tp[r["best_setting"]]
    assert mem[qlora] < mem[lora]  # the 4-bit base holds fewer bytes

    P = lab.paths("smoke", smoke_book.artefacts)
    res = pd.read_parquet(P.file("distill_results.parquet"))
    assert set(res["name"]) == set(names)
    np.testing.assert_allclose(res.set_index("name").loc[names, "ret_ndcg@10"], rets, rtol=1e-9)
    pu = pd.read_parquet(P.file("distill_per_user.parquet"))
    assert {"name", "user", "ndcg@10", "hr@10", "mrr"} <= set(pu.columns)
    counts = pu.groupby("name")["user"].nunique()
    assert set(counts.index) == set(names) | {"teacher"} and counts.nunique() == 1

    # the saved QLoRA student is a plain full-precision model that scores what the chapter reported
    cfg = lab.get_config("smoke", 0)
    data, _, _ = load_rec_data(cfg.data, P, seed=0, progress=False)
    student = SeqRecModel.from_pretrained(P.root / "students" / qlora).eval()
    assert student.num_layers == r["k"] and not any("lora" in n for n, _ in student.named_parameters())
    assert all(p.dtype == torch.float32 for p in student.parameters())
    metrics, _ = evaluate_model(student, data, "test")
    row = res.set_index("name").loc[qlora]
    assert metrics["ndcg@10"] == pytest.approx(row["test_ndcg@10"], abs=1e-6)

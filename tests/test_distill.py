"""Unit tests of lab.distill on tiny models: loss terms, gradient flow, adapters, merging, QLoRA, resume, weights."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lab.config import ModelConfig, TrainConfig
from lab.distill import (DistillConfig, DistillGrid, DistillLoss, apply_adapter, build_teacher_cache, distill,
                         freeze_teacher, layer_mapping, layer_weights, merge_student,
                         plan_layers, retention, tpme)
from lab.fisher.tables import importance_vector
from lab.models import build_model, build_student
from lab.evaluation import score_split

from toys import N_ITEMS, T, tiny_model

TRAIN = TrainConfig(epochs=3, batch_size=32, lr=5e-3, patience=5, eval_batch_size=64, max_minutes=5.0)


@pytest.fixture(scope="module")
def teacher():
    return freeze_teacher(tiny_model(dropout=0.1))


def batch(data, n=16):
    """(histories, labels, training-row numbers) of the first n training rows."""
    return data.train_inputs[:n], data.train_labels[:n], torch.arange(n)


def make_loss(teacher, student, cfg, data=None, cached=False):
    t_layers, w = plan_layers(teacher, student, cfg, importance=np.arange(1, teacher.num_layers + 1))
    cache = build_teacher_cache(teacher, data.train_inputs, t_layers, cfg.positions) if cached else None
    return DistillLoss(teacher, cfg, t_layers, w, cache)


@pytest.mark.parametrize("distance", ["mse", "cosine", "slmrec"])
@pytest.mark.parametrize("positions", ["all", "last"])
@pytest.mark.parametrize("cached", [False, True])
def test_terms_vanish_when_student_is_teacher(teacher, data, distance, positions, cached):
    student = build_student(teacher, list(range(teacher.num_layers))).eval()  # identity mapping, same weights
    cfg = DistillConfig(distance=distance, positions=positions, weighting="uniform")
    loss = make_loss(teacher, student, cfg, data, cached)
    x, y, rows = batch(data)
    out = loss.terms(student, x, y, rows=rows)
    assert out["kd"].abs().item() < 1e-6
    assert out["layer"].abs().item() < 1e-5
    assert all(out[f"layer_{i}"].abs().item() < 1e-5 for i in range(teacher.num_layers))
    assert out["ce"].item() > 0  # the label term is the only one left


def test_cache_gives_the_live_terms(teacher, data):
    student = build_student(teacher, [0, 3]).eval()
    cfg = DistillConfig(distance="slmrec", weighting="depth")
    x, y, rows = batch(data)
    live = make_loss(teacher, student, cfg, data, cached=False).terms(student, x, y)
    cached = make_loss(teacher, student, cfg, data, cached=True).terms(student, x, y, rows=rows)
    for k in ("ce", "kd", "layer"):
        assert torch.allclose(live[k], cached[k], atol=1e-5), k
    assert live["kd"].item() > 0 and live["layer"].item() > 0


def test_kd_gradient_reaches_only_the_student(teacher, data):
    student = build_student(teacher, [1, 2]).train()
    cfg = DistillConfig(alpha=0.0, beta=1.0, gamma=0.0, weighting="none")
    loss = make_loss(teacher, student, cfg, data, cached=False)
    x, y, rows = batch(data)
    out = loss.terms(student, x, y)
    assert out["kd"].item() > 0 and out["loss"].requires_grad
    out["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert not teacher.training
    grads = [p.grad for p in student.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_lora_trains_only_adapters_and_merges_exactly(teacher, data):
    torch.manual_seed(0)
    student = build_student(teacher, [0, 3])
    cfg = DistillConfig(adapter="lora", lora_r=4, weighting="uniform")
    model = apply_adapter(student, cfg)
    before = {n: p.detach().clone() for n, p in model.model.named_parameters()}
    trainable = [n for n, p in model.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)  # item table, norms and base weights frozen
    loss = make_loss(teacher, student, cfg, data)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y, rows = batch(data)
    for _ in range(2):
        opt.zero_grad()
        loss(model, x, y, rows).backward()
        opt.step()
    changed = {n for n, p in model.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(trainable)
    assert any("lora_B" in n for n in changed)
    h = data.test_history[:20]
    unmerged = model.recommend_scores(h)
    merged = merge_student(model, cfg)
    assert type(merged).__name__ == "SeqRecModel" and not any("lora" in n for n, _ in merged.named_parameters())
    assert torch.allclose(merged.recommend_scores(h), unmerged, atol=1e-5)


def test_lora_with_trainable_item_table(teacher, data):
    student = build_student(teacher, [0, 3])
    cfg = DistillConfig(adapter="lora", lora_r=2, lora_train_embeddings=True)
    model = apply_adapter(student, cfg)
    names = [n for n, p in model.model.named_parameters() if p.requires_grad]
    assert any("item_emb" in n for n in names)
    loss = make_loss(teacher, student, cfg, data)
    x, y, rows = batch(data)
    loss(model, x, y, rows).backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    h = data.test_history[:8]
    unmerged = model.recommend_scores(h)
    assert torch.allclose(merge_student(model, cfg).recommend_scores(h), unmerged, atol=1e-5)


@pytest.mark.parametrize("avx512_bf16", [False, True], ids=["plain-cpu", "avx512bf16-cpu"])
@pytest.mark.parametrize("width", [32, 64])
def test_qlora_trains_validates_and_merges_on_every_cpu(width, avx512_bf16, data, tmp_path, monkeypatch):
    """Both branches of bitsandbytes' CPU path, whatever this CPU has: Linear4bit reads the capability when built, so
    patching it makes every 4-bit layer behave as on a CPU with (or without) AVX512-BF16. After a training step and
    validation forwards (eval, no grad: the repacking trigger), the merged float student scores what the 4-bit model
    scores, and the 4-bit model scores like the float student within NF4 rounding."""
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: avx512_bf16)
    torch.manual_seed(0)
    mc = ModelConfig(num_layers=4, hidden_size=width, num_heads=2, intermediate_size=2 * width, item_dim=width)
    teacher = freeze_teacher(build_model(mc, N_ITEMS, T))
    student = build_student(teacher, [1, 3]).eval()
    h = data.test_history[:20]
    float_scores = student.recommend_scores(h)[:, 1:]  # items only (column 0 is the padding index)
    cfg = DistillConfig(adapter="qlora", lora_r=4, weighting="depth")
    model = apply_adapter(student, cfg, tmp_path / "base")
    import bitsandbytes as bnb
    from peft.utils.integrations import dequantize_bnb_weight

    ref = student.state_dict()
    nf4 = [(n, m) for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(nf4) == 2 * 7  # the base really is 4-bit NF4: 7 projections a layer
    for n, m in nf4:  # NF4 of a Gaussian-like weight is off by ~0.09 relative L2; a wrong kernel by 0.37 or more
        w = ref[n[n.index("backbone."):].replace(".base_layer", "") + ".weight"]
        err = (dequantize_bnb_weight(m.weight, state=m.weight.quant_state).float() - w).norm() / w.norm()
        assert err < 0.15, (n, err)
    loss = make_loss(teacher, student, cfg, data)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y, rows = batch(data)
    opt.zero_grad()
    loss(model, x, y, rows).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        score_split(model, data, "valid")  # validation forwards, as fit runs them after every epoch
        four_bit = model.recommend_scores(h)[:, 1:]
    merged = merge_student(model, cfg, tmp_path / "base")
    s = merged.recommend_scores(h)[:, 1:]
    assert next(merged.parameters()).dtype == torch.float32 and torch.isfinite(s).all()
    assert torch.allclose(s, four_bit, atol=1e-4), (s - four_bit).abs().max()  # dequantised base + delta
    assert not (tmp_path / "base").exists()
    # NF4 rounding plus one small step moves scores, but not as far as a scrambled layout would (0.24 measured)
    rel = (four_bit - float_scores).norm() / float_scores.norm()
    assert rel < 0.2, rel


def test_check_4bit_catches_a_block_size_the_cpu_kernel_gets_wrong(tmp_path, monkeypatch):
    """bitsandbytes' CPU kernel dequantises 64-blocks of a 32-wide layer wrongly on some CPUs (seen with AVX512-BF16)
    and rightly on others (an AVX2-only AMD EPYC, 2026-12-07); load_4bit picks 32-blocks there either way.
    check_4bit, comparing with a plain-torch dequantisation, names a layer exactly when the kernel got it wrong on
    this machine; a kernel made to get one layer wrong checks the raising branch on every machine."""
    import peft.utils.integrations as integrations

    from lab.distill.adapters import check_4bit, load_4bit, reference_dequantize, requantize

    mc = ModelConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, item_dim=32)
    torch.manual_seed(0)
    model = build_model(mc, N_ITEMS, T)
    model.save_pretrained(tmp_path)
    q = load_4bit(tmp_path)
    layers = dict((n, m) for n, m in q.named_modules() if type(m).__name__ == "Linear4bit")
    assert layers["backbone.layers.0.self_attn.q_proj"].weight.blocksize == 32  # input width 32
    assert layers["backbone.layers.0.mlp.down_proj"].weight.blocksize == 64  # input width 64
    assert max(check_4bit(q).values()) < 1e-6
    w = model.backbone.layers[1].self_attn.o_proj.weight
    o_proj = layers["backbone.layers.1.self_attn.o_proj"]
    requantize(o_proj, w, 64)
    got = integrations.dequantize_bnb_weight(o_proj.weight, state=o_proj.weight.quant_state).float()
    want = reference_dequantize(o_proj.weight)
    kernel_wrong = float((got - want).abs().max() / want.abs().max()) > 1e-5  # check_4bit's own bound
    wrong_here = r"layers\.1\.self_attn\.o_proj \(in_features=32.*NF4 block 64\)"
    if kernel_wrong:  # this CPU's branch of the kernel: the check must say so
        with pytest.raises(ValueError, match=wrong_here):
            check_4bit(q)
    else:
        assert check_4bit(q)["backbone.layers.1.self_attn.o_proj"] < 1e-5
    real = integrations.dequantize_bnb_weight
    monkeypatch.setattr(integrations, "dequantize_bnb_weight",
                        lambda weight, state: real(weight, state).flip(-1) if weight is o_proj.weight
                        else real(weight, state))
    with pytest.raises(ValueError, match=wrong_here):
        check_4bit(q)


def test_qlora_rejects_a_width_the_cpu_cannot_quantise(teacher, tmp_path):
    student = build_student(teacher, [1, 3])  # width 16: no NF4 block size the CPU kernel handles divides it
    with pytest.raises(ValueError, match=r"q_proj: input width 16 .* multiple of 32"):
        apply_adapter(student, DistillConfig(adapter="qlora", lora_r=4), tmp_path / "base")


def test_resume_matches_uninterrupted_run(teacher, data, tmp_path):
    cfg = DistillConfig(epochs=3, patience=5, weighting="fisher")
    imp = np.array([0.1, 0.4, 0.2, 0.3])

    def run(out, stop=None):
        torch.manual_seed(1)
        return distill(teacher, build_student(teacher, [1, 3]), data, cfg, TRAIN, out, importance=imp, seed=0,
                       progress=False, stop_after_epochs=stop)

    full, h_full, info = run(tmp_path / "a")
    _, _, part = run(tmp_path / "b", stop=1)
    assert not part["finished"] and (tmp_path / "b" / "ckpt" / "last.pt").exists()
    resumed, h_res, info_r = run(tmp_path / "b")
    assert info["finished"] and info_r["finished"] and len(h_res) == len(h_full) == 3
    np.testing.assert_allclose(h_res["valid_ndcg@10"], h_full["valid_ndcg@10"], atol=1e-6)
    m_full, _ = score_split(full, data, "test")
    m_res, _ = score_split(resumed, data, "test")
    assert m_full == pytest.approx(m_res, abs=1e-6)
    again, _, info_l = run(tmp_path / "a")  # a finished run loads
    assert info_l["loaded"] and torch.allclose(again.recommend_scores(data.test_history[:4]),
                                               full.recommend_scores(data.test_history[:4]), atol=1e-6)


def test_fisher_weights_are_normalised_importance_of_mapped_layers():
    imp = pd.DataFrame({"layer_idx": [0, 1, 2, 3, 0, 1, 2, 3], "signal": ["fisher_empirical"] * 4 + ["other"] * 4,
                        "norm": "per_param", "value": [0.5, 2.0, 1.0, 4.0, 9, 9, 9, 9]})
    v = importance_vector(imp, num_layers=4)
    np.testing.assert_allclose(v, [0.5, 2.0, 1.0, 4.0])
    w = layer_weights("fisher", [1, 3], v)
    np.testing.assert_allclose(w.numpy(), [2.0 / 6.0, 4.0 / 6.0], rtol=1e-6)
    for kind in ("uniform", "depth", "fisher"):
        assert layer_weights(kind, [0, 2, 3], v).sum().item() == pytest.approx(1.0)
    assert layer_weights("depth", [0, 2, 3], v)[-1] > layer_weights("depth", [0, 2, 3], v)[0]
    assert layer_weights("none", [0, 2], v).sum() == 0


def test_mappings_variants_and_cost():
    assert layer_mapping(2, 8, "source", [2, 5]) == [2, 5]
    assert layer_mapping(4, 24, "last_of_block") == [5, 11, 17, 23]
    assert layer_mapping(6, 24, "uniform") == [0, 5, 9, 14, 18, 23]
    c = DistillConfig()
    assert (c.with_variant("ce").variant, c.with_variant("kd").variant) == ("ce", "kd")
    assert c.with_variant("kd+fisher").weighting == "fisher" and c.with_variant("ce+depth").beta == 0
    assert not c.with_variant("ce").uses_teacher
    assert DistillConfig.for_profile("smoke").epochs <= 2
    with pytest.raises(ValueError):
        DistillConfig(distance="l1")
    df = pd.DataFrame({"total_seconds": [10.0, 20.0, 30.0], "trainable_params": [5, 5, 5],
                       "peak_mem_mb": [100.0, 300.0, 200.0]})
    np.testing.assert_allclose(tpme(df), [0.0, 0.45 * 0.5 + 0.45, 0.45 + 0.45 * 0.5])


def test_retention_is_paired_ratio():
    t = pd.DataFrame({"user": [0, 1, 2, 3], "ndcg@10": [1.0, 0.5, 0.0, 0.5], "hr@10": 1.0, "mrr": 0.5})
    s = pd.DataFrame({"name": "s", "user": [3, 2, 1, 0], "ndcg@10": [0.25, 0.0, 0.5, 0.75], "hr@10": 1.0,
                      "mrr": 0.25})
    r = retention(s, t, n_boot=200).set_index("metric")
    assert r.loc["ndcg@10", "retention"] == pytest.approx(1.5 / 2.0)
    assert r.loc["mrr", "retention"] == pytest.approx(0.5)
    assert r.loc["ndcg@10", "ci_low"] <= 0.75 <= r.loc["ndcg@10", "ci_high"]


def test_grid_expands_variants():
    from lab.distill import DistillGrid

    g = DistillGrid.for_profile("smoke")
    assert g.variant_names() == ["ce", "kd", "kd+fisher"]
    d = DistillGrid.for_profile("default")
    assert d.variant_names() == ["ce", "kd", "kd+uniform", "kd+depth", "kd+fisher"]
    from lab.selection import RULES

    assert set(d.rules) == set(RULES) and d.n_random >= 5  # every rule of chapter 04 (issue 14), random x 5


# -- chapter 05's record -------------------------------------------------------------------------------------------
def results_frame() -> pd.DataFrame:
    """Four students as `results_table` gives them: two variants of fisher_topk, a uniform one that shares the
    fisher_topk:kd layers (same_as), and a LoRA student."""
    return pd.DataFrame({
        "name": ["fisher_topk:ce", "fisher_topk:kd", "uniform:kd", "fisher_topk:kd:lora"],
        "rule": ["fisher_topk", "fisher_topk", "uniform", "fisher_topk"],
        "variant": ["ce", "kd", "kd", "kd"], "adapter": ["full", "full", "full", "lora"],
        "mapping": ["none", "none", "none", "none"], "teacher_layers": ["", "", "", ""],
        "same_as": ["", "", "fisher_topk:kd", ""],
        "valid_ndcg@10": [0.30, 0.32, 0.32, 0.31],
        "ret_ndcg@10": [0.94, 0.97, 0.97, 0.96], "ret_ndcg@10_low": [0.90, 0.955, 0.955, 0.93],
        "ret_ndcg@10_high": [0.98, 0.99, 0.99, 0.99],
        "speedup": [3.5, 3.5, 3.5, 3.4], "speedup_b1": [2.5, 2.5, 2.5, 2.4],
        "total_seconds": [10.0, 12.0, 12.0, 8.0], "tpme": [0.5, 1.0, 1.0, 0.0],
        "trainable_params": [100, 100, 100, 20], "peak_mem_mb": [5.0, 6.0, 6.0, 4.0],
    })


def test_meets_goal_on_a_row_and_on_a_frame():
    from lab.chapters.c05_distillation import meets_goal

    r = results_frame().set_index("name")
    best = r.loc["fisher_topk:kd"]
    assert bool(meets_goal(best, 0.95, 3.0)) and bool(meets_goal(best, 0.95, 3.0, ci=True))
    assert not bool(meets_goal(best, 0.95, 3.6))  # too slow
    assert meets_goal(r, 0.95, 3.0).tolist() == [False, True, True, True]
    assert meets_goal(r, 0.95, 3.0, ci=True).tolist() == [False, True, True, False]
    assert meets_goal(r).tolist() == [True, True, True, True]  # C1's goal (lab.constants): 92% at 3.2x


def test_the_method_student_is_named_by_the_rule_not_by_a_score():
    """Issue 24: C1 tests the method's own student (fisher_topk, "kd+fisher"), even when another variant of it scores
    better on validation; without that variant, the first of the stated order (lab.hypotheses.VARIANT_ORDER)."""
    from lab.chapters.c05_distillation import method_name
    from lab.distill import method_student

    f = pd.concat([results_frame(), pd.DataFrame({
        "name": ["fisher_topk:kd+fisher", "uniform:kd+fisher", "fisher_topk:kd+fisher:lora"],
        "rule": ["fisher_topk", "uniform", "fisher_topk"], "variant": ["kd+fisher"] * 3,
        "adapter": ["full", "full", "lora"], "valid_ndcg@10": [0.10, 0.50, 0.60]})], ignore_index=True)
    assert method_name(f) == "fisher_topk:kd+fisher"  # the worst on validation: chosen by the rule
    assert method_name(results_frame()) == "fisher_topk:kd"  # no kd+fisher: "kd" comes first in VARIANT_ORDER
    assert method_student(results_frame(), fallback=("ce", "kd")) == "fisher_topk:ce"
    with pytest.raises(ValueError, match="no 'top' student"):
        method_student(results_frame(), rule="top", fallback=("kd",))


def test_distillation_record_from_the_students_table():
    from lab.chapters.c05_distillation import distillation_record

    grid = DistillGrid(main_rules=("fisher_topk",), variants=("ce", "kd"), adapters=("lora",))
    comparisons = pd.DataFrame([{"a": "kd", "b": "ce", "diff": 0.01, "ci_low": 0.0, "ci_high": 0.02,
                                 "wilcoxon_p": 0.04, "holm_p": 0.04, "clear": True, "ci_clear": True,
                                 "a_runs": ["fisher_topk:kd"], "b_runs": ["fisher_topk:ce"]}])
    ratios = pd.DataFrame({"fisher_topk:kd:lora": [1.02, 0.98]}, index=pd.Index([1, 256], name="batch"))
    cache = {"cache_mb": 1.5, "steps_per_epoch": 4}
    rec = distillation_record(results_frame(), grid, DistillConfig(mapping="source"), k=2, comparisons=comparisons,
                              ratios=ratios, scratch=pd.Series({"retention": 0.9}), cache=cache, goal=(0.95, 3.0),
                              alpha=0.05, chapter_seconds=60.0, controls={"scratch_full_retention": 0.8},
                              teacher_info={"epochs": 7, "stopped_by": "patience", "stopped_by_budget": False})
    names = ["fisher_topk:ce", "fisher_topk:kd", "uniform:kd", "fisher_topk:kd:lora"]
    assert rec == {
        "k": 2, "n_students": 4, "main_rules": ["fisher_topk"], "mapping": "source",
        "mappings": dict.fromkeys(names, "none"), "teacher_layers": dict.fromkeys(names, ""),
        "best_variant": "kd", "best_setting": "fisher_topk:kd",  # uniform:kd ties on validation but shares its layers
        "valid_ndcg": dict(zip(names, [0.30, 0.32, 0.32, 0.31])),
        "layerwise_choice": {"top_w": None, "rival": None},
        "retention": dict(zip(names, [0.94, 0.97, 0.97, 0.96])),
        "retention_ci": dict(zip(names, [[0.90, 0.98], [0.955, 0.99], [0.955, 0.99], [0.93, 0.99]])),
        # the method: fisher_topk with kd+fisher, absent here, so "kd" (the first of VARIANT_ORDER it has)
        "method_name": "fisher_topk:kd", "method_rule": "fisher_topk", "method_variant": "kd",
        "method_retention": 0.97, "method_retention_ci": [0.955, 0.99], "method_speedup": 3.5,
        "method_speedup_b1": 2.5,
        "best_retention": 0.97, "best_retention_ci": [0.955, 0.99], "max_retention": 0.97,
        "scratch_small_retention": 0.9, "alpha": 0.05,
        "variant_comparisons": {"kd vs ce": {"diff": 0.01, "ci_low": 0.0, "ci_high": 0.02, "wilcoxon_p": 0.04,
                                             "holm_p": 0.04, "clear": True, "ci_clear": True,
                                             "a_runs": ["fisher_topk:kd"], "b_runs": ["fisher_topk:ce"]}},
        "best_speedup": 3.5, "best_speedup_b1": 2.5,
        "adapter_speed_ratio": {"fisher_topk:kd:lora": {"1": 1.02, "256": 0.98}},
        "goal": [0.95, 3.0], "goal_met": True, "goal_met_ci": True, "best_goal_met": True, "best_goal_met_ci": True,
        "teacher_epochs": 7, "teacher_stopped_by": "patience", "teacher_stopped_by_budget": False,
        "scratch_full_retention": 0.8,  # the controls, as given
        "train_seconds": dict(zip(names, [10.0, 12.0, 12.0, 8.0])), "train_seconds_total": 30.0,  # same_as not twice
        "same_as": {"uniform:kd": "fisher_topk:kd"},
        "tpme": dict(zip(names, [0.5, 1.0, 1.0, 0.0])),
        "trainable_params": dict(zip(names, [100, 100, 100, 20])),
        "peak_mem_mb": dict(zip(names, [5.0, 6.0, 6.0, 4.0])),
        "cache": {"cache_mb": 1.5, "steps_per_epoch": 4.0}, "chapter_seconds": 60.0,
        "rule_comparisons": {},  # no rule_tests given
    }
    assert all(type(v) is int for v in rec["trainable_params"].values())
    assert all(type(v) is float for v in rec["cache"].values())
    bare = distillation_record(results_frame(), grid, DistillConfig(), k=2, comparisons=pd.DataFrame(),
                               ratios=pd.DataFrame(index=[1, 256]), scratch=None, cache={}, goal=(0.99, 3.0),
                               alpha=0.05, chapter_seconds=1.0)
    assert np.isnan(bare["scratch_small_retention"]) and bare["variant_comparisons"] == {}
    assert bare["adapter_speed_ratio"] == {} and (bare["goal_met"], bare["goal_met_ci"]) == (False, False)
    # the goal is decided for the method's student; the best one on validation is a separate row
    ce = distillation_record(results_frame(), grid, DistillConfig(), k=2, comparisons=pd.DataFrame(),
                             ratios=pd.DataFrame(index=[1, 256]), scratch=None, cache={}, goal=(0.95, 3.0),
                             alpha=0.05, chapter_seconds=1.0, method="fisher_topk:ce")
    assert (ce["method_retention"], ce["goal_met"], ce["best_goal_met"]) == (0.94, False, True)


def test_control_summary_from_planted_per_user_values():
    """Chapter 05's controls: retention and paired differences recomputed from planted per-user NDCG@10 by plain
    numpy (mean ratios, mean differences)."""
    from lab.chapters.c05_distillation import EXTENDED, control_summary

    rng = np.random.default_rng(1)
    users = np.arange(200)
    t = rng.uniform(0.2, 0.6, 200)
    vals = {"fisher_topk:kd+fisher": 0.9 * t, "uniform:kd": 0.95 * t, "scratch_full": 0.8 * t, EXTENDED: 1.1 * t}
    pu = pd.concat([pd.DataFrame({"name": n, "user": users, "ndcg@10": v, "hr@10": v, "mrr": v})
                    for n, v in vals.items()], ignore_index=True)
    teacher = pd.DataFrame({"user": users, "ndcg@10": t, "hr@10": t, "mrr": t})
    info = {"epochs": 3, "best_valid_ndcg@10": 0.3, "stopped_by": "epochs"}
    s = control_summary(pu, teacher, {"scratch_full": (None, info), EXTENDED: (None, info)},
                        "fisher_topk:kd+fisher", "uniform:kd")
    assert s["scratch_full_name"] == "scratch_full" and s["scratch_full_retention"] == pytest.approx(0.8)
    lo, hi = s["scratch_full_retention_ci"]
    assert lo == pytest.approx(0.8) and hi == pytest.approx(0.8)  # an exact ratio for every user: no spread
    assert s["method_vs_scratch_full"]["diff"] == pytest.approx(float((0.1 * t).mean()))
    assert s["best_vs_scratch_full"]["diff"] == pytest.approx(float((0.15 * t).mean()))
    assert s["extended_vs_teacher"]["diff"] == pytest.approx(float((0.1 * t).mean()))
    assert s["method_retention_vs_extended_teacher"] == pytest.approx(0.9 / 1.1)
    assert s["best_retention_vs_extended_teacher"] == pytest.approx(0.95 / 1.1)
    assert set(s["retention_vs_extended_teacher"]) == {"fisher_topk:kd+fisher", "uniform:kd"}
    alone = control_summary(pu[pu["name"] != EXTENDED], teacher, {"scratch_full": (None, info)},
                            "fisher_topk:kd+fisher", "uniform:kd")
    assert "extended_teacher_epochs" not in alone and "retention_vs_extended_teacher" not in alone


def test_rule_comparisons_pair_the_fisher_student_with_every_other_rule():
    """Chapter 05 (issue 13): fisher_topk's student against each other rule's with the same variant and full
    fine-tuning; random draws averaged per user; Holm over the family; other variants and adapters left out."""
    from by_hand import holm_by_hand
    from lab.distill import rule_comparisons

    rng = np.random.default_rng(0)
    users = np.arange(80)
    runs = [("fisher_topk:kd", "fisher_topk", "kd", "full", 0.30), ("uniform:kd", "uniform", "kd", "full", 0.25),
            ("random#0:kd", "random", "kd", "full", 0.20), ("random#1:kd", "random", "kd", "full", 0.40),
            ("uniform:ce", "uniform", "ce", "full", 0.0), ("fisher_topk:kd:lora", "fisher_topk", "kd", "lora", 0.0)]
    results = pd.DataFrame([dict(name=n, rule=r, variant=v, adapter=a) for n, r, v, a, _ in runs])
    pu = pd.concat([pd.DataFrame({"name": n, "user": users, "ndcg@10": m + 0.05 * rng.standard_normal(80)})
                    for n, _, _, _, m in runs], ignore_index=True)
    t = rule_comparisons(results, pu, "kd", alpha=0.05).set_index("b")
    assert list(t.index) == ["uniform", "random"] and (t["a_runs"].map(tuple) == ("fisher_topk:kd",)).all()
    wide = pu.pivot(index="user", columns="name", values="ndcg@10")
    d = wide["fisher_topk:kd"] - wide[["random#0:kd", "random#1:kd"]].mean(axis=1)
    assert t.loc["random", "diff"] == pytest.approx(d.mean()) and abs(d.mean()) < 0.03  # 0.30 vs (0.20 + 0.40) / 2
    assert t.loc["uniform", "diff"] == pytest.approx(0.05, abs=0.03) and t.loc["uniform", "clear"]
    assert list(t["holm_p"]) == pytest.approx(holm_by_hand(list(t["wilcoxon_p"])))
    assert rule_comparisons(results, pu, "kd", reference="top").empty


# -- TinyBERT-style distillation (issue 14) -------------------------------------------------------------------------
def test_tinybert_terms_vanish_for_the_teacher_and_the_cache_gives_the_live_ones(teacher, data):
    """TinyBERT's variant: no hard labels, T = 1, MSE hidden states, attention maps and embeddings; a student equal
    to the teacher has every teacher term 0 (attention rows from eager attention, probabilities summing to 1);
    a cut student's terms are the same live and cached; sdpa is back on both models afterwards."""
    from lab.distill.losses import AttentionTap, eager_attention

    cfg = DistillConfig().with_variant("tinybert")
    assert cfg.variant == "tinybert" and cfg.alpha == 0 and cfg.temperature == 1 and cfg.distance == "mse"
    same = build_student(teacher, list(range(teacher.num_layers))).eval()
    x, y, rows = batch(data)
    with eager_attention(same):
        out = make_loss(teacher, same, cfg, data, cached=False).terms(same, x, y)
    for k in ("kd", "layer", "attention", "embedding"):
        assert out[k].abs().item() < 1e-6, k
    assert out["loss"].abs().item() < 1e-5  # alpha 0: CE is not in the loss
    cut = build_student(teacher, [0, 3]).eval()
    with eager_attention(cut), eager_attention(teacher), AttentionTap(teacher.layers, [1]) as tap:
        live = make_loss(teacher, cut, cfg, data, cached=False).terms(cut, x, y)
        teacher(x, score="none")
        assert torch.allclose(tap.out[1].sum(-1), torch.ones(()), atol=1e-5)  # probabilities
    t_layers, w = plan_layers(teacher, cut, cfg)
    cache = build_teacher_cache(teacher, data.train_inputs, t_layers, cfg.positions, attention=t_layers)
    assert cache.attention[t_layers[0]].shape == (len(data.train_inputs), 1, 2, data.train_inputs.shape[1])
    with eager_attention(cut):
        cached = DistillLoss(teacher, cfg, t_layers, w, cache).terms(cut, x, y, rows=rows)
    for k in ("kd", "layer", "attention", "embedding", "loss"):
        assert torch.allclose(live[k], cached[k], atol=1e-5), k
    assert live["attention"].item() > 0 and live["layer"].item() > 0
    assert teacher.backbone.config._attn_implementation == cut.backbone.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="eager"):
        DistillLoss(teacher, cfg, t_layers, w, cache).terms(cut, x, y, rows=rows)  # sdpa returns no probabilities


def test_tinybert_trains_and_saves_a_fast_student(teacher, data, tmp_path):
    """A TinyBERT run trains without hard labels, records its attention term, and saves a student with sdpa attention,
    so it is timed like every other student; loading it back gives the same scores."""
    cfg = DistillConfig(epochs=2, patience=5).with_variant("tinybert")
    model, hist, info = distill(teacher, build_student(teacher, [1, 3]), data, cfg, TRAIN, tmp_path, seed=0,
                                progress=False)
    assert info["variant"] == "tinybert" and info["terms"]["attention"] > 0 and info["terms"]["ce"] == 0  # no labels
    assert model.backbone.config._attn_implementation == "sdpa"
    again, _, info2 = distill(teacher, build_student(teacher, [1, 3]), data, cfg, TRAIN, tmp_path, seed=0,
                              progress=False)
    assert info2["loaded"] and again.backbone.config._attn_implementation == "sdpa"
    assert torch.allclose(again.recommend_scores(data.test_history[:4]), model.recommend_scores(data.test_history[:4]))


def test_grid_trains_tinybert_after_the_choices():
    """TinyBERT rows are baselines: never chosen as the best variant or the best setting."""
    from lab.distill.trainer import best_student, valid_means

    f = pd.DataFrame({"name": ["u:kd", "u:tinybert"], "rule": ["uniform"] * 2, "variant": ["kd", "tinybert"],
                      "adapter": ["full"] * 2, "same_as": ["", ""], "valid_ndcg@10": [0.1, 0.5]})
    assert list(valid_means(f, ["uniform"]).index) == ["kd"] and best_student(f) == "u:kd"
    assert DistillGrid.for_profile("default").tinybert_rules == ("uniform",)

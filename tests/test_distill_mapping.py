"""Chapter 05's distillation plan: which teacher layer teaches which student layer (the default mapping must give
the layer-wise term something to teach), choices made on validation only, and one Holm correction over the family of
variant tests."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from lab.distill import DistillConfig, DistillGrid, DistillLoss, freeze_teacher, layer_mapping, plan_layers
from lab.distill.trainer import (best_student, layerwise_choices, mapped_teacher_layers, valid_means,
                                 variant_comparisons)
from lab.evaluation import holm_family
from lab.models import build_student

from toys import tiny_model

L = 8


@pytest.fixture(scope="module")
def teacher():
    return freeze_teacher(tiny_model(L, layer_std=0.3))


def test_last_of_block_values():
    assert layer_mapping(2, 8, "last_of_block") == [3, 7]
    assert layer_mapping(6, 24, "last_of_block") == [3, 7, 11, 15, 19, 23]
    assert layer_mapping(3, 8, "last_of_block") == [1, 4, 7]  # floor((i+1)·8/3) − 1
    assert layer_mapping(8, 8, "last_of_block") == list(range(8))  # k = L: the identity
    assert layer_mapping(2, 8) == [3, 7]  # the function's default
    assert layer_mapping(2, 8, "source", [0, 1]) == [0, 1]  # still selectable


def test_last_of_block_is_the_default_of_the_layerwise_variants():
    cfg = DistillConfig()
    assert cfg.mapping == "last_of_block"
    for v in ("kd+uniform", "kd+depth", "kd+fisher", "ce+uniform"):
        assert cfg.with_variant(v).mapping == "last_of_block"
    assert DistillConfig(mapping="source").with_variant("kd+fisher").mapping == "source"
    with pytest.raises(ValueError):
        DistillConfig(mapping="first_of_block")


@pytest.mark.parametrize("distance", ["cosine", "mse"])
def test_layer_term_at_step_0_teaches_only_under_last_of_block(teacher, data, distance):
    """A bottom-k student built from the teacher *is* teacher layers 0..k-1: under "source" its layer-wise term
    starts at exactly 0; under the default it is matched to the ends of the blocks and starts > 0."""
    student = build_student(teacher, [0, 1]).eval()
    x, y, rows = data.train_inputs[:16], data.train_labels[:16], torch.arange(16)
    base = DistillConfig(distance=distance).with_variant("kd+uniform")
    out = {}
    for mapping in ("last_of_block", "source"):
        cfg = dataclasses.replace(base, mapping=mapping)
        t_layers, w = plan_layers(teacher, student, cfg)
        assert t_layers == ([3, 7] if mapping == "last_of_block" else [0, 1])
        out[mapping] = DistillLoss(teacher, cfg, t_layers, w).terms(student, x, y, rows)
    exact = {"mse": 0.0, "cosine": 1e-6}[distance]  # 1 − cos(h, h) is 0 up to float32 rounding
    assert abs(out["source"]["layer"].item()) <= exact
    assert out["last_of_block"]["layer"].item() > 1e-2
    assert all(out["last_of_block"][f"layer_{i}"].item() > 1e-2 for i in range(2))


def test_cache_layers_follow_the_mapping():
    sets = [("bottom", "bottom", 0, [0, 1]), ("top", "top", 0, [6, 7]), ("mixed", "fisher_topk", 0, [0, 5])]
    assert mapped_teacher_layers(sets, L, DistillConfig()) == [3, 7]
    assert mapped_teacher_layers(sets, L, DistillConfig(mapping="source")) == [0, 1, 5, 6, 7]


# -- choices on validation, one correction for the family -------------------------------------------------------------
def runs_frame():
    """Six students of two rules; test NDCG@10 disagrees with validation on purpose."""
    return pd.DataFrame({
        "name": ["a:ce", "a:kd", "a:kd+fisher", "b:ce", "b:kd", "b:kd+fisher", "c:kd", "a:kd:lora"],
        "rule": ["a", "a", "a", "b", "b", "b", "c", "a"],
        "variant": ["ce", "kd", "kd+fisher", "ce", "kd", "kd+fisher", "kd", "kd"],
        "adapter": ["full"] * 7 + ["lora"],
        "same_as": ["", "", "", "", "", "", "", ""],
        "valid_ndcg@10": [0.10, 0.30, 0.20, 0.10, 0.28, 0.22, 0.50, 0.90],
        "test_ndcg@10": [0.90, 0.10, 0.80, 0.90, 0.10, 0.80, 0.00, 0.00]})


def test_choices_are_validation_argmaxes():
    f = runs_frame()
    m = valid_means(f, ["a", "b"])
    assert m.to_dict() == pytest.approx({"ce": 0.10, "kd": 0.29, "kd+fisher": 0.21})
    assert m.idxmax() == "kd"  # test NDCG@10 would pick ce
    assert best_student(f) == "c:kd"  # the adapter row (0.90) is not a candidate
    f.loc[f["name"] == "c:kd", "same_as"] = "a:kd"
    assert best_student(f) == "a:kd"  # nor is a row that shares another run
    grid_means = pd.Series({"ce": 0.1, "kd": 0.2, "kd+uniform": 0.25, "kd+depth": 0.3, "kd+fisher": 0.22})
    assert layerwise_choices(grid_means) == {"top_w": "kd+depth", "rival": "kd+depth"}
    assert layerwise_choices(pd.Series({"kd": 0.2, "kd+fisher": 0.3})) == {"top_w": "kd+fisher", "rival": None}


def test_holm_family_needs_the_ci_and_the_adjusted_p():
    rows = [{"wilcoxon_p": 0.01, "ci_low": 0.1, "ci_high": 0.2},  # holm 0.03: clear
            {"wilcoxon_p": 0.04, "ci_low": 0.1, "ci_high": 0.2},  # CI excludes 0 but holm 0.06: not clear
            {"wilcoxon_p": 0.03, "ci_low": -0.1, "ci_high": 0.2}]  # CI includes 0
    out = holm_family(rows, alpha=0.05)
    assert [o["holm_p"] for o in out] == pytest.approx([0.03, 0.06, 0.06])
    assert [o["ci_clear"] for o in out] == [True, True, False]
    assert [o["clear"] for o in out] == [True, False, False]
    assert holm_family([]) == []


def test_variant_comparisons_family():
    rng = np.random.default_rng(0)
    users = np.arange(300)
    base = rng.random(300)
    shifts = {"ce": 0.0, "kd": 0.05, "kd+uniform": 0.05, "kd+fisher": 0.05}
    pu = pd.concat([pd.DataFrame({"name": f"{s}:{v}", "user": users, "ndcg@10": base + d + rng.normal(0, 0.01, 300)})
                    for v, d in shifts.items() for s in ("a", "b")])
    names = {v: [f"a:{v}", f"b:{v}"] for v in shifts}
    means = pd.Series({"ce": 0.1, "kd": 0.2, "kd+uniform": 0.3, "kd+fisher": 0.25})  # validation: uniform first
    c = variant_comparisons(pu, names, means, alpha=0.05).set_index(["a", "b"])
    assert list(c.index) == [("kd", "ce"), ("kd+uniform", "kd"), ("kd+fisher", "kd+uniform")]
    assert c.loc[("kd", "ce"), "clear"] and c.loc[("kd", "ce"), "diff"] == pytest.approx(0.05, abs=0.005)
    assert not c.loc[("kd+uniform", "kd"), "clear"] and not c.loc[("kd+fisher", "kd+uniform"), "clear"]
    assert (c["holm_p"] >= c["wilcoxon_p"]).all()
    assert c.loc[("kd", "ce"), "a_runs"] == ["a:kd", "b:kd"]


def test_grid_overrides_and_layer_sets(capsys):
    g = DistillGrid.for_profile("default").with_overrides(rules=["fisher_topk", "random", "top"], weightings=["depth"],
                                                          n_random=1, adapters=[])  # []: no adapter runs
    assert g.rules == ("fisher_topk", "random", "top") and g.adapters == () and g.n_random == 1
    assert g.variant_names() == ["ce", "kd", "kd+depth"]
    same = DistillGrid.for_profile("smoke").with_overrides(None, None, None, None, None, None)  # None: the profile's
    assert same == DistillGrid.for_profile("smoke") and same.adapters == ("lora", "qlora")
    assert DistillGrid.for_profile("default").with_overrides(n_random=0).n_random == 0  # 0 is a value, not "default"
    sel = pd.DataFrame({"rule": ["fisher_topk", "random", "random", "fisher_topk"], "k": [2, 2, 2, 3],
                        "draw": [0, 1, 0, 0], "layers": ["0,5", "2,3", "1,4", "0,1,5"]})
    assert g.layer_sets(sel, 2) == [("fisher_topk", "fisher_topk", 0, [0, 5]), ("random#0", "random", 0, [1, 4])]
    assert "no 'top' selection" in capsys.readouterr().out

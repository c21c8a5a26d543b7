"""Chapter 05's grid runner (`lab.distill.run_grid`) on a tiny teacher: every variant on the main rules, the variant
chosen on validation for the others, an adapter on the best full student, a tidy frame back, and the one
"load a finished run with the same key" step (`lab.train.load_finished`) that teacher and students share."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lab.config import TrainConfig
from lab.distill import DistillConfig, DistillGrid, best_student, choose_variant, freeze_teacher, run_grid, valid_means
from lab.train import load_finished, train_or_load

from toys import tiny_model

TRAIN = TrainConfig(epochs=1, batch_size=32, lr=5e-3, patience=1, eval_batch_size=64, max_minutes=5.0)


@pytest.fixture(scope="module")
def teacher():
    return freeze_teacher(tiny_model())


@pytest.fixture(scope="module")
def grid_run(teacher, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    grid = DistillGrid(rules=("fisher_topk", "uniform", "top"), main_rules=("fisher_topk", "uniform"),
                       variants=("ce", "kd"), weightings=(), adapters=("lora",))
    layer_sets = [("fisher_topk", "fisher_topk", 0, [0, 3]), ("uniform", "uniform", 0, [0, 3]),
                  ("top", "top", 0, [2, 3])]
    cfg = DistillConfig(epochs=1, patience=1, lora_r=2)
    args = (teacher, data, layer_sets, grid, cfg, TRAIN, root)
    runs, per_user = run_grid(*args, importance=np.arange(1.0, 5.0), seed=0, key={"teacher": "t"}, verbose=False)
    again, per_user_again = run_grid(*args, importance=np.arange(1.0, 5.0), seed=0, key={"teacher": "t"},
                                     verbose=False)
    return grid, runs, per_user, again, per_user_again


def test_grid_trains_variants_then_the_choice_then_the_adapter(grid_run):
    grid, runs, per_user, _, _ = grid_run
    variant = choose_variant(runs, grid)
    assert variant == valid_means(runs, grid.main_rules).idxmax()  # chosen on validation over the main rules
    best = best_student(runs)
    assert list(runs["name"]) == ["fisher_topk:ce", "fisher_topk:kd", "uniform:ce", "uniform:kd", f"top:{variant}",
                                  f"{best}:lora", "uniform:tinybert"]  # TinyBERT's baseline last, after every choice
    assert runs.set_index("name").loc[f"{best}:lora", "adapter"] == "lora"
    assert runs.set_index("name").loc[f"{best}:lora", "layers"] == runs.set_index("name").loc[best, "layers"]
    # uniform keeps the same layers as fisher_topk: the same students, not trained twice
    assert runs.set_index("name").loc["uniform:kd", "same_as"] == "fisher_topk:kd"
    assert set(per_user["name"]) == set(runs["name"]) and {"user", "ndcg@10"} <= set(per_user)
    assert isinstance(runs, pd.DataFrame) and runs["valid_ndcg@10"].notna().all()


def test_a_second_grid_loads_every_finished_student(grid_run):
    _, runs, per_user, again, per_user_again = grid_run
    trained = again[again["same_as"] == ""]
    assert trained["loaded"].all()  # `distill` found each finished run with the same key (`load_finished`)
    cols = ["name", "variant", "adapter", "valid_ndcg@10", "test_ndcg@10"]
    pd.testing.assert_frame_equal(again[cols], runs[cols])
    pd.testing.assert_frame_equal(per_user_again, per_user)


def test_load_finished_needs_the_same_key(data, tmp_path):
    torch.manual_seed(0)
    model = tiny_model()
    out = tmp_path / "teacher"
    assert load_finished(out, {"a": 1}) is None  # nothing there yet
    trained, hist, info = train_or_load(model, data, TRAIN, out, seed=0, key={"a": 1}, progress=False)
    assert not info["loaded"]
    key = {"train": info["key"]["train"], "seed": 0, "a": 1}
    back, hist_back, info_back = load_finished(out, key)
    assert info_back["loaded"] and not back.training
    pd.testing.assert_frame_equal(hist_back, hist)
    x = data.test_history[:4]
    assert torch.allclose(back.recommend_scores(x), trained.recommend_scores(x), atol=1e-6)
    assert load_finished(out, {**key, "a": 2}) is None  # another key: train again
    assert train_or_load(tiny_model(), data, TRAIN, out, seed=0, key={"a": 1})[2]["loaded"]

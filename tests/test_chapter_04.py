"""Chapter 04 in the smoke profile: every rule gives a real student, the oracle beats chance, students are faster."""
import math

import pandas as pd

from lab.selection import parse_layers

CORE_RULES = {"fisher_topk", "fisher_topk_ends", "uniform", "top", "bottom", "random", "block_influence",
              "angular_block", "oracle"}


def test_chapter_04(smoke_book):
    r = smoke_book.run("04")["04_selection"]
    assert r["L"] == 8 and r["k_values"] == [1, 2, 4] and r["k_quarter"] == 2
    assert 0.0 < r["teacher_ndcg"] < 1.0
    assert CORE_RULES <= set(r["ndcg_quarter"])
    assert all(0.0 <= v <= 1.0 for v in r["ndcg_quarter"].values())
    assert r["random_draws"] >= 10 and r["random_std_quarter"] >= 0
    # the greedy oracle picks by validation NDCG@10, so on validation it must beat the average random draw
    assert r["oracle_valid_quarter"] >= r["random_valid_mean_quarter"]
    assert 0.0 <= r["fisher_beats_random_share_quarter"] <= 1.0
    # a real 2-of-8-layer student: fewer parameters and measurably faster (ideal 4x; loose for a shared CPU)
    assert r["ideal_quarter"] == 4.0 and r["params_ratio_quarter"] < 0.5
    assert r["speedup_p10_quarter_b256"] > 1.5 and r["speedup_quarter_b256"] > 1.0
    assert all(math.isnan(v) or -1.0 <= v <= 1.0 for v in r["spearman"].values())

    root = smoke_book.artefacts / "smoke"
    sel = pd.read_parquet(root / "selections.parquet")
    assert {"rule", "k", "draw", "layers", "valid_ndcg@10", "test_ndcg@10", "test_hr@10", "test_mrr"} <= set(sel)
    for rule, k, layers in sel[["rule", "k", "layers"]].itertuples(index=False):
        ls = parse_layers(layers)
        assert len(ls) == k and ls == sorted(set(ls)) and 0 <= ls[0] and ls[-1] < 8, (rule, k, layers)
    assert (sel[sel.rule == "random"].groupby("k").size() >= 10).all()
    speed = pd.read_parquet(root / "speed.parquet")
    assert {"model", "n_layers", "batch", "median_ms", "p10_ms", "p90_ms", "throughput", "speedup", "ideal",
            "params", "peak_mb"} <= set(speed)
    assert set(speed["batch"]) == {1, 64, 256} and set(speed["n_layers"]) == {8, 1, 2, 4}

"""Chapter 03's planted layer roles (`lab.fisher.probes`): a linear probe finds a variable planted linearly in a fake
hidden state and not one that is absent; undefined rows are left out and counted; `planted_targets` on a small depth
world's processed data (other item ids, windows of `max_len`) agrees with `planted_variables` on the generated
histories; the per-layer states are the residual stream named by layer_idx; the summary, gains and record follow the
accuracy table; the chapter's call records None outside the depth world."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from toys import tiny_config

from lab import data as D
from lab import fisher as lf
from lab.chapters import c03_fisher as C3
from lab import viz
from lab.config import DataConfig
from lab.models import build_model

DEPTH_KNOBS = dict(markov_strength=1.0, successor_strength=0.1, induction_strength=0.5, pointer_strength=0.4,
                   pointer_hops=2, max_lag=2, switch_strength=1.0, n_switch_items=2)
MAX_LEN = 6  # shorter than most histories: the window the model reads, not the whole history


# ------------------------------------------------------------------ probes on fake hidden states
def fake_states(n: int = 600, hidden: int = 8, seed: int = 0):
    """(n, 4, hidden) states (layer_idx -1..2) and targets: `planted` (4 classes) is written linearly into
    layer_idx 1 and 2 (a class embedding plus noise) and nowhere before; `absent` (3 skewed classes) is in no
    state; `partial` is `planted` with 30% of the rows undefined (-1)."""
    rng = np.random.default_rng(seed)
    planted = rng.integers(0, 4, n)
    absent = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    partial = np.where(rng.random(n) < 0.3, -1, planted)
    states = rng.normal(size=(n, 4, hidden))
    code = rng.normal(size=(4, hidden)) * 3.0  # (C, H) class embeddings
    states[:, 2:] += code[planted][:, None, :]  # layer_idx 1 and 2
    targets = pd.DataFrame({"row": np.arange(n), "planted": planted, "absent": absent, "partial": partial})
    return torch.from_numpy(states), targets


def test_probe_recovers_a_planted_variable_and_not_an_absent_one():
    states, targets = fake_states()
    res = lf.probe_states(states, targets, ("planted", "absent", "partial"), seed=0)
    acc, base = res.accuracy, res.baseline
    assert list(acc.index) == [-1, 0, 1, 2] and acc.index.name == "layer_idx"
    assert (acc.loc[[1, 2], "planted"] > 0.95).all()  # decodable where it is written
    assert (acc.loc[[-1, 0], "planted"] < base.loc["planted", "majority"] + 0.1).all()  # not before
    # the absent variable stays at its majority baseline in every layer (up to noise)
    assert base.loc["absent", "majority"] > 0.5
    assert (acc["absent"] - base.loc["absent", "majority"]).abs().max() < 0.08
    summary = lf.probe_summary(acc, base["majority"], within=0.02)
    assert summary.loc["planted", "decodable_at"] == 1 and summary.loc["partial", "decodable_at"] == 1
    assert pd.isna(summary.loc["absent", "decodable_at"])
    # the majority baseline is the fitting half's most frequent value scored on the other half
    fit = np.zeros(len(targets), dtype=bool)
    fit[np.random.default_rng(0).permutation(len(targets))[: len(targets) // 2]] = True
    a = targets["absent"].to_numpy()
    assert base.loc["absent", "majority"] == pytest.approx(np.mean(a[~fit] == np.bincount(a[fit]).argmax()))


def test_undefined_rows_are_left_out_and_counted():
    states, targets = fake_states(n=400)
    res = lf.probe_states(states, targets, ("planted", "partial"), seed=3)
    b = res.baseline
    undefined = int((targets["partial"] == -1).sum())
    assert b.loc["partial", "n_undefined"] == undefined > 0 and b.loc["planted", "n_undefined"] == 0
    assert b.loc["partial", "n_train"] + b.loc["partial", "n_test"] == len(targets) - undefined
    assert b.loc["planted", "n_train"] + b.loc["planted", "n_test"] == len(targets) == res.n_users
    assert b.loc["partial", "n_classes"] == 4  # -1 is not a class
    # the same split for every variable: a defined row sits in the same half for both
    fit = np.zeros(len(targets), dtype=bool)
    fit[np.random.default_rng(3).permutation(len(targets))[: len(targets) // 2]] = True
    assert b.loc["partial", "n_train"] == int(fit[targets["partial"].to_numpy() != -1].sum())
    # a variable undefined everywhere is not probed (NaN), and counted
    targets["never"] = -1
    res = lf.probe_states(states, targets, ("never",))
    assert res.accuracy["never"].isna().all() and res.baseline.loc["never", "n_undefined"] == len(targets)


def test_probe_fit_is_deterministic_and_separates_a_linear_rule():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    p1, p2 = lf.fit_probe(x, y, 2, 1e-4, 100), lf.fit_probe(x, y, 2, 1e-4, 100)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert (lf.probe_predict(p1, x) == y).double().mean() > 0.97
    # weight decay shrinks the weights
    assert lf.fit_probe(x, y, 2, 1.0, 100)[2].norm() < p1[2].norm()


# ------------------------------------------------------------------ the depth world's targets
@pytest.fixture(scope="module")
def depth_data():
    """A small depth world, its generated histories, and processed data with a permuted catalogue (processed id p
    is generated item perm[p - 1], parent_asin "G<generated>") in windows of MAX_LEN."""
    cfg = DataConfig(n_users=120, n_items=40, n_clusters=4, mean_seq_len=10.0, n_successors=2, chunk_size=1000,
                     **DEPTH_KNOBS)
    inter, world = D.simulate_synthetic(cfg, seed=0)
    world = dataclasses.replace(world, item_ids=np.array([f"G{g:03d}" for g in range(world.n_items)]))
    seqs = [g.tolist() for _, g in inter.groupby("user")["item"]]
    perm = np.random.default_rng(1).permutation(world.n_items)
    proc = {int(g): p + 1 for p, g in enumerate(perm)}  # generated -> processed
    item_ids = ["PAD"] + [world.item_ids[g] for g in perm]
    rd = D.rec_data_from_sequences([[proc[g] for g in s] for s in seqs], world.n_items, MAX_LEN, item_ids=item_ids)
    kept = [s for s in seqs if len(s) >= 3]  # the training rows: users with at least 3 items
    return world, rd, kept, cfg


def test_planted_targets_agree_with_planted_variables_on_the_windows(depth_data):
    world, rd, kept, _ = depth_data
    got = lf.planted_targets(world, rd, "valid")
    assert list(got["row"]) == list(range(len(rd.valid_target)))
    users = rd.valid_users.numpy()
    assert (got["user"].to_numpy() == users).all()
    windows = [kept[u][:-2][-MAX_LEN:] for u in users]  # the validation history the model reads, generated ids
    expect = D.planted_variables(world, windows)
    pd.testing.assert_frame_equal(got.drop(columns=["row", "user"]), expect)
    assert (got["induction_cluster"] == -1).any() and (got["induction_cluster"] >= 0).any()
    # the window matters: on the whole histories some variables differ
    whole = D.planted_variables(world, [kept[u][:-2] for u in users])
    assert (whole["length"] > MAX_LEN).any() and not whole["length"].equals(expect["length"])
    # test split and a seeded subsample pick the same rows of the same computation
    sub = lf.planted_targets(world, rd, "test", n_users=30, seed=4)
    full = lf.planted_targets(world, rd, "test")
    assert len(sub) == 30
    pd.testing.assert_frame_equal(sub.reset_index(drop=True), full.iloc[sub["row"]].reset_index(drop=True))


def test_planted_targets_refuse_another_world(depth_data):
    world, rd, _, _ = depth_data
    other = dataclasses.replace(world, item_ids=np.array([f"X{g}" for g in range(world.n_items)]))
    with pytest.raises(ValueError, match="not items of this synthetic world"):
        lf.planted_targets(other, rd)


def test_layer_probes_on_a_model_name_the_residual_stream(depth_data):
    from lab.importance import layer_pass

    world, rd, _, _ = depth_data
    torch.manual_seed(0)
    model = build_model(tiny_config(num_layers=3), rd.num_items, MAX_LEN)
    hist = rd.valid_history
    states = lf.last_states(model, hist, batch_size=16)  # (S, L+1, H)
    assert states.shape == (len(hist), 4, 16)
    # [:, 0] the embeddings (layer_idx -1), then each layer's output before the final norm: the hooks of chapter 03
    torch.testing.assert_close(states[:, 0].float(), model.embed(hist)[:, -1].detach())
    torch.testing.assert_close(states.float(), layer_pass(model, hist).last)
    targets = lf.planted_targets(world, rd, "valid", n_users=50, seed=0)
    res = lf.layer_probes(model, rd, targets, max_iter=20, seed=0)
    assert list(res.accuracy.index) == [-1, 0, 1, 2] and list(res.accuracy.columns) == list(lf.VARIABLES)
    assert res.n_users == 50 and res.seconds > 0
    again = lf.probe_states(states[torch.tensor(targets["row"].to_numpy())], targets, max_iter=20, seed=0)
    pd.testing.assert_frame_equal(res.accuracy, again.accuracy)


def test_run_probes_only_in_the_synthetic_depth_world(depth_data, tmp_path):
    world, rd, _, cfg = depth_data
    model = build_model(tiny_config(num_layers=2), rd.num_items, MAX_LEN)
    assert not D.is_depth_world(DataConfig())
    assert lf.run_probes(model, rd, DataConfig(), 0) is None  # the shallow world
    assert lf.run_probes(model, rd, dataclasses.replace(cfg, source="amazon"), 0) is None  # real data
    P = SimpleNamespace(file=lambda name: tmp_path / name)
    (tmp_path / lf.PROBE_FILE).write_text("stale")
    lf.save_probes(P, None)  # no probes: an earlier run's table does not survive
    assert not (tmp_path / lf.PROBE_FILE).exists()
    rec = C3.probe_record(None, np.arange(2.0), within=0.05)
    assert rec["probe_within"] == 0.05 and rec["probe_accuracy"] is None and rec["probe_fisher_spearman"] is None
    assert "not measured" in C3.probe_conclusion(rec)


# ------------------------------------------------------------------ summary, gains, record, table, figure
def hand_result() -> lf.ProbeResult:
    acc = pd.DataFrame({"a": [0.2, 0.5, 0.9, 0.91], "b": [0.6, 0.6, 0.61, 0.6], "c": [0.3, 0.3, 0.4, 0.75]},
                       index=pd.Index([-1, 0, 1, 2], name="layer_idx"))
    base = pd.DataFrame({"majority": [0.2, 0.6, 0.3], "n_train": [10, 10, 8], "n_test": [10, 10, 9],
                         "n_undefined": [0, 0, 3], "n_classes": [5, 2, 4]},
                        index=pd.Index(["a", "b", "c"], name="variable"))
    return lf.ProbeResult(acc, base, 20, seconds=1.5)


def test_summary_gains_and_record_follow_the_table(tmp_path):
    res = hand_result()
    s = lf.probe_summary(res.accuracy, res.baseline["majority"], within=0.02)
    assert s.loc["a", "decodable_at"] == 1  # 0.90 is within 0.02 of the best 0.91 (layer 2)
    assert s.loc["a", "best_layer"] == 2 and s.loc["a", "best"] == pytest.approx(0.91)
    assert pd.isna(s.loc["b", "decodable_at"])  # best 0.61 beats the majority 0.6 by less than 0.02
    assert s.loc["c", "decodable_at"] == 2
    gains = lf.probe_gains(res.accuracy)
    assert list(gains.index) == [0, 1, 2]
    np.testing.assert_allclose(gains["a"], [0.3, 0.4, 0.01])
    np.testing.assert_allclose(gains["total"], [0.3, 0.51, 0.35])
    fisher = np.array([3.0, 1.0, 2.0])
    rec = C3.probe_record(res, fisher, within=0.02, n_boot=50, seed=0)
    assert rec["probe_accuracy"]["a"] == {-1: 0.2, 0: 0.5, 1: 0.9, 2: 0.91}
    assert rec["probe_majority"] == {"a": 0.2, "b": 0.6, "c": 0.3}
    assert rec["probe_counts"]["c"] == {"train": 8, "test": 9, "undefined": 3}
    assert rec["probe_decodable_at"] == {"a": 1, "b": None, "c": 2}
    assert rec["probe_gain_total"] == pytest.approx({0: 0.3, 1: 0.51, 2: 0.35})
    assert rec["probe_fisher_spearman"] == pytest.approx(spearmanr(fisher, [0.3, 0.51, 0.35]).statistic)
    assert rec["probe_users"] == 20 and rec["probe_seconds"] == 1.5 and rec["probe_within"] == 0.02
    text = C3.probe_conclusion(rec)
    assert "`a`: decodable from layer 1" in text and "`b`: never decodable" in text and "3 users without it" in text
    # the saved table reads back to the same result
    P = SimpleNamespace(file=lambda name: tmp_path / name)
    lf.save_probes(P, res)
    back = lf.load_probes(P)
    assert list(pd.read_parquet(tmp_path / lf.PROBE_FILE).columns) == lf.PROBE_COLUMNS
    pd.testing.assert_frame_equal(back.accuracy, res.accuracy, check_names=False)
    pd.testing.assert_frame_equal(back.baseline, res.baseline, check_names=False)
    assert back.n_users == 20
    fig = viz.probe_accuracy(res.accuracy, res.baseline["majority"])
    assert len(fig.axes[0].lines) == 2 * 3  # a line and a dashed baseline per variable


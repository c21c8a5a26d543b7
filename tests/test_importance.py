"""Non-Fisher importance signals: an identity layer scores zero on every representation signal and its removal
changes nothing; the block distance generalises the per-layer one; the simple signals match hand computations."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from lab import importance as li
from lab.profiles import get_config
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.models import build_model


@pytest.fixture(scope="module")
def case():
    cfg = dataclasses.replace(get_config("smoke").model, num_layers=4, hidden_size=16, num_heads=2,
                              intermediate_size=24, item_dim=16)
    torch.manual_seed(0)
    m = build_model(cfg, 20, 8).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
        m.layers[2].self_attn.o_proj.weight.zero_()  # layer 2 becomes the identity
        m.layers[2].mlp.down_proj.weight.zero_()
    data = rec_data_from_sequences(toy_markov_sequences(40, 20, 10), 20, 8)
    return m, data


def test_identity_layer_scores_zero(case):
    m, data = case
    lp = li.layer_pass(m, data)
    assert lp.bi_sum.shape == (len(data.valid_history), 4) and lp.last.shape == (len(data.valid_history), 5, 16)
    bi, lo, hi = li.block_influence(m, lp=lp, n_boot=50)
    assert abs(bi[2]) < 1e-6 and np.all(np.delete(bi, 2) > 1e-3)
    assert np.all(lo <= bi + 1e-12) and np.all(bi <= hi + 1e-12)
    ang = li.angular_block_distance(m, data, 1, lp=lp)
    assert ang.shape == (4,) and ang[2] < 1e-3 and np.all(np.delete(ang, 2) > 1e-3)
    h = lp.last.double().numpy()  # (S, L+1, H): the angle between the inputs of layers l and l+1, by hand
    a, b = h[:, :-1], h[:, 1:]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    np.testing.assert_allclose(ang, (np.arccos(np.clip(cos, -1, 1)) / np.pi).mean(0), atol=1e-9)
    # identity layer is invisible across blocks too: the block 1..2 turns as much as layer 1 alone
    ang2 = li.angular_block_distance(m, data, 2, lp=lp)
    assert ang2.shape == (3,) and ang2[1] == pytest.approx(ang[1], abs=1e-5)
    with pytest.raises(ValueError):
        li.angular_block_distance(m, data, 5, lp=lp)


def test_ablating_identity_layer_changes_nothing(case):
    m, data = case
    ab = li.ablation_drop(m, data, n_boot=50)
    assert list(ab.layer_idx) == [0, 1, 2, 3]
    assert ab.loc[2, "value"] == 0.0 and ab.loc[2, "without"] == ab.loc[2, "teacher"]
    assert ab["n_users"].iloc[0] == len(data.valid_target)
    sub = li.subsample_valid(data, 10, seed=1)
    assert len(sub.valid_target) == 10 and sub.valid_seen.shape[0] == 10 and sub.train_inputs is data.train_inputs


def test_grad_norm_and_magnitude(case):
    m, data = case
    x, y = data.train_inputs[:16], data.train_labels[:16]
    gn = li.grad_norm(m, x, y, batch_size=5)  # several batches, weighted into the full-data mean loss
    m.zero_grad()
    m(x, labels=y, score="none").loss.backward()
    want = [float(torch.sqrt(sum((p.grad ** 2).sum() for p in layer.parameters()))) for layer in m.layers]
    m.zero_grad(set_to_none=True)
    assert np.allclose(gn, want, rtol=1e-4)
    mag = li.weight_magnitude(m)
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    want0 = torch.cat([p.detach().abs().flatten() for n, p in m.layers[0].named_parameters()
                       if n.split(".")[-2] in names and n.endswith("weight")]).mean()
    assert mag[0] == pytest.approx(float(want0))


def test_magnitude_reads_linear_weights_only(case):
    m, _ = case
    m = copy.deepcopy(m)
    before = li.weight_magnitude(m)
    with torch.no_grad():
        m.layers[1].input_layernorm.weight.mul_(50.0)  # RMSNorm gains are not weights of a linear map
        m.layers[1].post_attention_layernorm.weight.mul_(50.0)
    np.testing.assert_array_equal(li.weight_magnitude(m), before)
    with torch.no_grad():
        m.layers[1].mlp.up_proj.weight.mul_(3.0)  # a linear projection's weights are
    after = li.weight_magnitude(m)
    assert after[1] > before[1] and np.array_equal(np.delete(after, 1), np.delete(before, 1))


def test_importance_signals_table(case):
    m, data = case
    t = li.importance_signals(m, data, n_users=20, n_boot=20, grad_samples=16)
    assert set(t.signal) == {"block_influence", "angular", "grad_norm", "magnitude", "ablation_drop"}
    assert set(t.norm) == {"raw"} and (t.groupby("signal").size() == 4).all()
    assert t.loc[t.signal == "magnitude", "ci_low"].isna().all()
    assert t.loc[t.signal == "block_influence", "ci_low"].notna().all()

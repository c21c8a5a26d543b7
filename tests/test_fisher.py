"""Fisher estimators: every fast method equals the per-sample loop; zero Fisher where gradients must vanish; the MC
true Fisher matches the closed form of softmax regression; the squared batch gradient is not the Fisher."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import lab
from lab import fisher as lf
from lab.chapters import c03_fisher as C3
from lab.profiles import get_config
from lab.constants import IGNORE, PAD
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.evaluation import bootstrap_ci
from lab.models import build_model

TOL64 = 1e-10


def tiny(arch="llama", item_dim=32, layers=2, dtype=torch.float64, seed=0, text=False):
    cfg = dataclasses.replace(get_config("smoke").model, arch=arch, num_layers=layers, hidden_size=16, num_heads=2,
                              intermediate_size=24, item_dim=item_dim, use_text=text, text_dim=8)
    torch.manual_seed(seed)
    titles = [""] + [f"item {i} colour{i % 3} size{i % 4}" for i in range(1, 21)]
    m = build_model(cfg, 20, 8, item_titles=titles).to(dtype)
    for p in m.parameters():  # larger, less symmetric weights than the 0.02 init
        with torch.no_grad():
            p.add_(0.2 * torch.randn_like(p))
    data = rec_data_from_sequences(toy_markov_sequences(12, 20, 10, seed=seed), 20, 8)
    x, y = data.train_inputs[:5].clone(), data.train_labels[:5].clone()
    for i, k in enumerate([0, 3, 5, 1, 6]):  # histories of different lengths (more left padding)
        x[i, :k], y[i, :k] = PAD, IGNORE
    return m, x, y


@pytest.mark.parametrize("arch,item_dim,text", [("llama", 16, False), ("qwen2", 12, False), ("mistral", 16, True)])
def test_fast_methods_equal_loop(arch, item_dim, text):
    """qwen2: q/k/v biases and in/out projections (item_dim != hidden); mistral: frozen title features + text_proj."""
    m, x, y = tiny(arch, item_dim, text=text)
    assert ("text_proj.weight" in dict(m.named_parameters())) == text
    ref = lf.fisher_loop(m, x, y)
    assert ref.per_sample.min() >= 0 and ref.per_layer().sum() > 0
    for est in (lf.fisher_hooks(m, x, {"e": y}, chunk_size=3)["e"],
                lf.fisher_hooks(m, x, {"e": y}, chunk_size=2, ghost=True)["e"],
                lf.fisher_vmap(m, x, y, chunk_size=3)):
        d = lf.compare(est, ref)
        assert d["max"] < TOL64, (est.method, d)
    # the true Fisher: same label draws, same numbers; draws only where a label exists
    ys = lf.draw_labels(m, x, y, 2, seed=3)
    assert ys.shape == (2, *y.shape) and torch.equal(ys == IGNORE, (y == IGNORE).expand_as(ys))
    assert lf.compare(lf.fisher_hooks(m, x, {"t": ys}, 4)["t"], lf.fisher_loop(m, x, ys))["max"] < TOL64
    # every parameter except the unused token table is covered, each exactly once
    names = {n for n, _ in lf.fisher_params(m)}
    assert set(ref.diag) == names and not any(n.startswith("backbone.embed_tokens") for n in names)
    assert int(ref.numel.sum()) == sum(p.numel() for _, p in lf.fisher_params(m))


def test_hooks_label_sets_share_one_forward_exactly():
    """Several label sets (and draws) from one forward per chunk give bit for bit what each set gives alone: the
    reused buffers (logits, probabilities, per-sample gradients) and the cached RMSNorm inputs carry nothing over,
    across chunks of different trimmed widths too."""
    m, x, y = tiny()
    ys = lf.draw_labels(m, x, y, 2, seed=1)
    both = lf.fisher_hooks(m, x, {"e": y, "t": ys}, chunk_size=2)
    for name, labels in (("e", y), ("t", ys)):
        alone = lf.fisher_hooks(m, x, {name: labels}, chunk_size=2)[name]
        assert np.array_equal(both[name].per_sample, alone.per_sample)
        assert all(torch.equal(both[name].diag[n], alone.diag[n]) for n in alone.diag)
    assert lf.compare(both["t"], lf.fisher_loop(m, x, ys))["max"] < TOL64


def test_padding_is_trimmed_exactly():
    """Dropping all-padding columns (and sorting users by length) changes nothing: the trimmed per-user loop equals
    the model's own full-width per-user gradients."""
    m, x, y = tiny()
    ref = lf.fisher_loop(m, x, y)
    i = 2  # five pads of eight positions
    m.zero_grad()
    with lf.eval_mode(m):
        lf.sample_nll(m(x[i:i + 1], score="all").logits, y[i:i + 1]).sum().backward()
    full = sum(float((p.grad ** 2).sum()) for n, p in lf.fisher_params(m))
    m.zero_grad(set_to_none=True)
    assert full == pytest.approx(ref.per_sample[i].sum(), rel=1e-10)


def test_float32_hooks_close_to_loop():
    m, x, y = tiny(dtype=torch.float32)
    d = lf.compare(lf.fisher_hooks(m, x, {"e": y})["e"], lf.fisher_loop(m, x, y))
    assert d["layers"] < 1e-5 and d["diag"] < 1e-4


def test_identity_layer_has_zero_fisher_except_its_output_projections():
    """With o_proj and down_proj of layer 1 zeroed the layer is the identity: every OTHER weight of that layer gets
    exactly zero gradient (its path to the output runs through the zeroed matrices), while o_proj and down_proj
    themselves still get gradient (their inputs and output gradients are non-zero)."""
    m, x, y = tiny(layers=3)
    with torch.no_grad():
        m.layers[1].self_attn.o_proj.weight.zero_()
        m.layers[1].mlp.down_proj.weight.zero_()
    for est in (lf.fisher_loop(m, x, y), lf.fisher_hooks(m, x, {"e": y})["e"]):
        g = dict(zip(est.keys, est.per_sample.mean(0)))
        for grp in ("q", "k", "v", "gate", "up", "input_norm", "post_norm"):
            assert g[(1, grp)] == 0.0, (est.method, grp)
            assert g[(0, grp)] > 0 and g[(2, grp)] > 0
        assert g[(1, "o")] > 0 and g[(1, "down")] > 0
        assert all(float(est.diag[f"backbone.layers.1.self_attn.{p}_proj.weight"].abs().max()) == 0 for p in "qkv")


class SoftmaxRegression(nn.Module):
    """logits = W x + b on inputs (B, 1, d): the Fisher has a closed form."""

    def __init__(self, d, k):
        super().__init__()
        self.lin = nn.Linear(d, k)

    def forward(self, x):
        return self.lin(x)  # (B, 1, K)


def _softmax_case(n=40, d=3, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = SoftmaxRegression(d, k).double()
    with torch.no_grad():
        m.lin.weight.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
        m.lin.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64))
    x = torch.randn(n, 1, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n, 1), generator=g)
    p = torch.softmax(m(x)[:, 0], -1).detach()  # (n, K)
    return m, x, y, p


def test_softmax_regression_closed_form():
    m, x, y, p = _softmax_case()
    xs = x[:, 0]  # (n, d)
    resid = torch.nn.functional.one_hot(y[:, 0], p.shape[1]) - p  # (n, K)
    emp_w = (resid[:, :, None] ** 2 * xs[:, None, :] ** 2).mean(0)  # (K, d)
    true_w = (p * (1 - p))[:, :, None].mul(xs[:, None, :] ** 2).mean(0)  # E_y[(1[y=k]-p_k)^2] = p_k (1 - p_k)
    true_b = (p * (1 - p)).mean(0)
    for est in (lf.fisher_loop(m, x, y), lf.fisher_hooks(m, x, {"e": y})["e"], lf.fisher_vmap(m, x, y, 8)):
        assert torch.allclose(est.diag["lin.weight"], emp_w, rtol=1e-10, atol=1e-14), est.method
        assert torch.allclose(est.diag["lin.bias"], (resid ** 2).mean(0), rtol=1e-10, atol=1e-14)
    # Monte Carlo true Fisher: its mean over many draws matches the closed form
    mc = lf.estimate_fisher(m, x, y, "fisher_true", "hooks", n_draws=400, seed=1)
    for got, want in ((mc.diag["lin.weight"], true_w), (mc.diag["lin.bias"], true_b)):
        assert float((got - want).norm() / want.norm()) < 0.05
    assert float((mc.diag["lin.weight"] - emp_w).norm() / emp_w.norm()) > 0.05  # not just the empirical one


def test_wrong_estimator_differs_where_gradients_cancel():
    """Two users whose gradients are exact opposites: the squared mean gradient is 0, the Fisher is not."""
    m = SoftmaxRegression(1, 2).double()
    with torch.no_grad():
        m.lin.weight.zero_()
        m.lin.bias.zero_()
    x = torch.ones(2, 1, 1, dtype=torch.float64)
    y = torch.tensor([[0], [1]])
    emp = lf.estimate_fisher(m, x, y, "fisher_empirical", "loop")
    wrong = lf.batchgrad_squared(m, x, y, batch_size=2)
    assert torch.allclose(emp.diag["lin.weight"], torch.full((2, 1), 0.25, dtype=torch.float64))
    assert float(wrong.diag["lin.weight"].abs().max()) == 0.0
    assert wrong.estimator == "batchgrad_squared"


def test_groups_norms_and_tables(tmp_path):
    m, x, y = tiny(layers=3)
    est = lf.fisher_hooks(m, x, {"fisher_empirical": y})["fisher_empirical"]
    L = 3
    assert lf.param_key("backbone.layers.2.mlp.gate_proj.weight", L) == (2, "gate")
    assert lf.param_key("backbone.layers.0.post_attention_layernorm.weight", L) == (0, "post_norm")
    assert lf.param_key("item_emb.weight", L) == (-1, "embedding")
    assert lf.param_key("backbone.norm.weight", L) == (L, "final_norm")
    tot, pp, mx = (est.layer_values(n) for n in ("total", "per_param", "max"))
    assert np.allclose(pp, tot / est.layer_numel()) and mx.max() == 1.0 and np.allclose(mx, tot / tot.max())
    g = lf.group_frame(est, "all", 0, n_boot=50)
    assert list(g.columns) == lf.GROUP_COLUMNS and set(g.norm) == set(lf.NORMS)
    t = g[(g.norm == "total") & (g.layer_idx.between(0, L - 1))].groupby("layer_idx")["value"].sum()
    assert np.allclose(t.to_numpy(), tot)
    assert (g.ci_low <= g.value + 1e-15).all() and (g.value <= g.ci_high + 1e-15).all()
    mx_rows = g[g.norm == "max"].groupby("group")["value"].max()
    assert np.allclose(mx_rows.to_numpy(), 1.0)
    # the importance contract round-trips
    imp = pd.concat([lf.fisher_importance_rows(est, n_boot=50),
                     lf.importance_rows("magnitude", np.arange(L, dtype=float))], ignore_index=True)
    P = lab.Paths(root=tmp_path / "a", figures=tmp_path / "f")
    lf.save_tables(P, imp, g)
    back = lab.load_importance(P)
    assert list(back.columns) == lf.IMPORTANCE_COLUMNS and back["layer_idx"].dtype.kind == "i"
    assert np.allclose(lf.importance_vector(back, "fisher_empirical", "per_param"), pp)
    assert np.allclose(lf.importance_vector(back, "magnitude"), np.arange(L))
    assert back.loc[back.signal == "magnitude", "ci_low"].isna().all()
    with pytest.raises(ValueError):
        lf.save_tables(P, imp.assign(signal="made_up"))


def test_subsets_and_stability():
    counts = torch.tensor([0, 100, 50, 30, 10, 5, 3, 1, 1])
    b = lf.item_buckets(counts)
    assert b[0] == "pad" and b[1] == "head" and b[-1] == "tail"
    share = {k: counts.numpy()[b == k].sum() / counts.sum().item() for k in ("head", "torso", "tail")}
    assert share["head"] >= share["tail"]
    y = torch.tensor([[1, 8, IGNORE], [2, 1, 7]])
    assert torch.equal(lf.mask_labels(y, b == "head"), torch.tensor([[1, IGNORE, IGNORE], [IGNORE, 1, IGNORE]]))
    ub = lf.user_buckets(np.array([5, 5, 5, 5, 9, 9]))
    assert sorted(pd.Series(ub).value_counts().tolist()) == [2, 2, 2]
    rng = np.random.default_rng(0)
    per_layer = np.arange(1, 7)[None, :] + 0.01 * rng.random((40, 6))
    tau, taus = lf.kendall_halves(per_layer, 5)
    assert tau == pytest.approx(1.0) and len(taus) == 5
    v, lo, hi = bootstrap_ci(per_layer, 200)
    assert np.all(lo <= v) and np.all(v <= hi)


# -- chapter 03's record -------------------------------------------------------------------------------------------
def test_fisher_record_derives_the_chapter_03_numbers_from_its_tables():
    keys = [(0, "q_proj"), (1, "q_proj"), (2, "q_proj"), (3, "q_proj")]  # one group per layer, one parameter each
    emp = lf.FisherEstimate("fisher_empirical", "hooks", keys, np.ones(4),
                            np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 1.0, 2.0, 1.0]]), n_layers=4)  # 2 users
    vec = {"fisher_empirical": np.array([4.0, 2.0, 2.5, 1.0]), "fisher_true": np.array([8.0, 4.0, 5.0, 2.0]),
           "batchgrad_squared": np.array([1.0, 0.5, 0.25, 0.125]), "ablation_drop": np.array([0.1, 0.0, 0.3, 0.2])}
    agree = pd.DataFrame({"signal": ["fisher_empirical", "grad_norm", "magnitude"],
                          "spearman_vs_ablation": [0.2, 0.8, -0.4], "ci_low": [-0.5, 0.1, -0.9],
                          "ci_high": [0.9, 1.0, 0.3]})
    check = pd.DataFrame({"method": ["hooks", "vmap"], "rel_diff_max": [1e-16, 3e-16]})
    rec = C3.fisher_record(emp, vec, agree, np.array([1.0, 2.0, 3.0, 4.0]), check_table=check, wrong_batch_size=16,
                           lower_half=(0.7, 0.6, 0.8), taus=(0.5, float("nan")), thresholds=(0.6, 0.3),
                           exact_tol=1e-10, users_per_s={"loop": 10.0, "hooks": 40.0}, fisher_seconds=1.5,
                           runtime_s=9.0)
    tau_seeds = rec.pop("kendall_tau_seeds")
    assert np.isnan(tau_seeds)
    assert rec == {
        "n_layers": 4, "n_samples": 2,
        "top_layers_fisher": [0, 2, 1],
        "lower_half_share": 0.7, "lower_half_share_ci": [0.6, 0.8],
        "kendall_tau_halves": 0.5,
        "spearman_fisher_vs_ablation": 0.2, "spearman_fisher_vs_ablation_ci": [-0.5, 0.9],
        "spearman_true_vs_empirical": pytest.approx(1.0),  # the same order
        "spearman_wrong_vs_empirical": pytest.approx(0.8),  # layers 1 and 2 swapped: 1 - 6 * 2 / (4 * 15)
        "wrong_scale_median": pytest.approx(0.1875),  # ratios 0.25, 0.25, 0.1, 0.125: median (0.125 + 0.25) / 2
        "wrong_inv_batch": 0.0625,
        "stability_label": "moderately stable", "stability_thresholds": {"stable": 0.6, "moderate": 0.3},
        "best_signal_vs_ablation": "grad_norm",
        "spearman_fisher_vs_stream_norm": pytest.approx(-0.8),
        "top3_overlap_fisher_ablation": 2,  # Fisher's top three 0, 2, 1; the ablation's 2, 3, 0
        "top2_share_fisher": pytest.approx(6 / 9),  # layer totals 4, 2, 2, 1 (mean over the two users)
        "fast_vs_loop_max_rel_diff": 3e-16, "fast_vs_loop_by_method": {"hooks": 1e-16, "vmap": 3e-16},
        "exact_tol": 1e-10,
        "users_per_s": {"loop": 10.0, "hooks": 40.0}, "fisher_seconds": 1.5, "runtime_s": 9.0,
    }
    assert isinstance(rec["spearman_wrong_vs_empirical"], float) and isinstance(rec["wrong_scale_median"], float)
    # the planted layer roles (`lab.chapters.c03_fisher.probe_record`) are merged in; outside the depth world as None
    probes = C3.probe_record(None, vec["fisher_empirical"], within=0.02)
    with_probes = C3.fisher_record(emp, vec, agree, np.array([1.0, 2.0, 3.0, 4.0]), check_table=check,
                                   wrong_batch_size=16, lower_half=(0.7, 0.6, 0.8), taus=(0.5, float("nan")),
                                   thresholds=(0.6, 0.3), exact_tol=1e-10, users_per_s={"loop": 10.0, "hooks": 40.0},
                                   fisher_seconds=1.5, runtime_s=9.0, probes=probes)
    assert {k: with_probes[k] for k in probes} == probes and with_probes["probe_fisher_spearman"] is None
    assert set(with_probes) == set(rec) | {"kendall_tau_seeds"} | set(probes)


def test_stability_label_and_best_signal():
    assert [C3.stability_label(t, 0.6, 0.3) for t in (0.6, 0.59, 0.3, 0.29)] == [
        "stable", "moderately stable", "moderately stable", "unstable"]
    agree = pd.DataFrame({"signal": ["a", "b"], "spearman_vs_ablation": [0.1, 0.4]})
    assert C3.best_signal(agree)["signal"] == "b"


def test_depth_bands_and_their_fisher_shares():
    """Chapter 03's depth bands count round(0.3 L) layers at each end, as H1's top-bottom gap does; a band's share of
    the layer Fisher is its layers' sum over the total, its ablation drop the mean over its layers."""
    from lab.fisher import band_table, depth_bands
    from lab.hypotheses import top_bottom_gap

    b30 = depth_bands(30)
    assert (b30[:9] == "lower").all() and (b30[9:21] == "middle").all() and (b30[21:] == "upper").all()
    assert list(depth_bands(4)) == ["lower", "middle", "middle", "upper"] and list(depth_bands(2)) == ["lower", "upper"]
    v = np.arange(30, dtype=float)
    assert top_bottom_gap(v) == pytest.approx(v[b30 == "upper"].mean() - v[b30 == "lower"].mean())
    rng = np.random.default_rng(0)
    rows = rng.random((50, 10)) * np.linspace(1, 3, 10)  # (S, L): Fisher growing with depth
    drop = np.linspace(-0.01, 0.05, 10)
    t = band_table(rows, drop, n_boot=200, seed=0)
    m = rows.mean(0)
    assert list(t.index) == ["lower", "middle", "upper"] and list(t["layers"]) == ["0-2", "3-6", "7-9"]
    assert t.loc["upper", "fisher_share"] == pytest.approx(m[7:].sum() / m.sum())
    assert t["fisher_share"].sum() == pytest.approx(1.0)
    assert t.loc["middle", "mean_ablation_drop"] == pytest.approx(drop[3:7].mean())
    assert (t["share_low"] <= t["fisher_share"]).all() and (t["fisher_share"] <= t["share_high"]).all()
    text = C3.band_sentence(t)
    assert "per layer the upper band holds the most Fisher" in text and "hurts most in the upper band" in text


def test_gpt_neox_fisher_by_loop_and_vmap():
    """GPT-NeoX (H4's non-Llama block): its token table `embed_in` is skipped, its final LayerNorm is the head side,
    the vmap Fisher equals the loop; the hook estimator, which covers Linear and RMSNorm only, refuses its LayerNorms."""
    m, x, y = tiny("gpt_neox", 16)
    ref = lf.fisher_loop(m, x, y)
    assert lf.compare(lf.fisher_vmap(m, x, y, chunk_size=3), ref)["max"] < TOL64
    names = {n for n, _ in lf.fisher_params(m)}
    assert not any(n.startswith("backbone.embed_in") for n in names)
    assert lf.param_key("backbone.final_layer_norm.weight", m.num_layers) == (m.num_layers, "final_norm")
    assert lf.param_key("backbone.layers.1.attention.query_key_value.weight", m.num_layers) == (1, "qkv")
    with pytest.raises(NotImplementedError, match="layernorm"):
        lf.fisher_hooks(m, x, {"e": y}, chunk_size=3)


def test_vmap_is_checked_against_the_loop_through_its_own_attention():
    """Issue 25: where attention saturates (q and k scaled 30x here), HF's sdpa and vmap's eager attention round
    differently in float64 in the groups that hold almost no Fisher (8e-7 on the 8-epoch ml100k-llm teacher), while
    vmap equals the loop through the same attention. `compare` floors each scale at 1e-12 of the largest (floor=0:
    none), chapter 03's table compares each method with the loop through its attention, and its check names every
    method over `exact_tol`."""
    from lab.chapters import c03_fisher as C3

    m, x, y = tiny("llama", 32)
    with torch.no_grad():
        for layer in m.backbone.layers:
            layer.self_attn.q_proj.weight *= 30
            layer.self_attn.k_proj.weight *= 30
    assert (lf.method_attention(m, "vmap"), lf.method_attention(m, "hooks"), lf.method_attention(m, "loop")) == (
        "fisher_vmap", None, None)
    sdpa = lf.fisher_loop(m, x, y)
    eager = lf.fisher_loop(m, x, y, attn=lf.method_attention(m, "vmap"))
    assert m.backbone.config._attn_implementation == "sdpa"  # restored after the loop through vmap's attention
    raw = lf.compare(eager, sdpa, floor=0.0)
    assert raw["diag"] > 1e-8 and raw["layers"] < TOL64  # two kernels, the same maths: apart in tiny tensors only
    assert lf.compare(eager, sdpa)["max"] < TOL64  # below 1e-12 of the largest Fisher the scale is floored
    tiny_groups = sdpa.per_sample.mean(0) < 1e-12 * sdpa.per_sample.mean(0).max()
    assert tiny_groups.sum() == 2  # layer 0's q and k: the saturated ones
    assert lf.compare(lf.fisher_vmap(m, x, y, chunk_size=3), eager, floor=0.0)["max"] < TOL64
    check = lf.exactness_table(m, x, y, methods=("hooks", "vmap"), chunk_size=3)
    assert list(check["loop_attention"]) == ["model's own", "fisher_vmap", "model's own"]
    assert (check["rel_diff_max"] < TOL64).all()
    text = C3.exactness_sentence(check, TOL64, len(x), {"loop": 1.0})
    assert "hooks" in text and "vmap" in text and "< 1e-10" in text
    bad = check.assign(rel_diff_max=[3e-16, 3.6e-8, 1e-14])
    with pytest.raises(ValueError, match=r"^.*: vmap 3.6e-08 >= 1e-10$"):
        C3.exactness_sentence(bad, TOL64, len(x), {})
"""Issue 10, items 3 and 4: metrics refuse non-finite scores, and the padding item is never a class (CE, KD, the true
Fisher's label draws, scores)."""
from __future__ import annotations


import pytest
import torch

from lab import fisher as lf
from lab.config import ModelConfig
from lab.constants import IGNORE, PAD
from lab.data import rec_data_from_sequences, toy_markov_sequences
from lab.distill import DistillConfig, DistillLoss, kd_loss
from lab.metrics import evaluate, target_ranks
from lab.models import build_model, build_student

N_ITEMS, T = 20, 8


@pytest.fixture(scope="module")
def data():
    return rec_data_from_sequences(toy_markov_sequences(16, N_ITEMS, 10, seed=0), N_ITEMS, T)


def tiny(seed=0, text=False, dtype=torch.float32):
    cfg = ModelConfig(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=24, item_dim=12, dropout=0.0,
                      use_text=text, text_dim=8)
    torch.manual_seed(seed)
    titles = [""] + [f"item {i} colour{i % 3}" for i in range(1, N_ITEMS + 1)]
    m = build_model(cfg, N_ITEMS, T, item_titles=titles).to(dtype).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so the softmax is far from uniform
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
        m.item_emb.weight[PAD].zero_()
    return m


def huge_pad_row(m, x, size=50.0):
    """Fit the PAD row of the item table so that PAD's raw (unmasked) score is about `size` at every real position."""
    with torch.no_grad():
        z = m.out_proj(m(x, score="none").last_hidden_state[x != PAD])  # (M, D)
        m.item_emb.weight[PAD] = torch.linalg.lstsq(z, torch.full((len(z), 1), size, dtype=z.dtype)).solution[:, 0]
        assert float((z @ m.item_table()[PAD]).median()) > size / 2  # far above every real item's score


# -- item 3: metrics refuse non-finite scores ---------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_target_score_raises(bad):
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6],
                           [0.0, 0.1, 0.2, 0.3, 0.4]])
    scores[1, 2] = bad
    with pytest.raises(ValueError, match="batch 0, user row 1"):
        target_ranks(scores, torch.tensor([1, 2]), mask_history=False)


@pytest.mark.parametrize("mask_history", [False, True])
def test_nan_competitor_raises_even_when_seen(mask_history):
    scores = torch.tensor([[0.0, 0.9, float("nan"), 0.7, 0.6]])  # item 2 is NaN (and seen)
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(scores, torch.tensor([4]), torch.tensor([[0, 2]]), mask_history=mask_history)


def test_pad_column_and_minus_inf_competitors_are_fine():
    scores = torch.tensor([[float("nan"), 0.9, -float("inf"), 0.5, 0.5]])  # PAD is never ranked
    assert target_ranks(scores, torch.tensor([3]), mask_history=False).item() == 2  # item 1 above, the tie counts
    assert target_ranks(scores, torch.tensor([1]), mask_history=False).item() == 0


def test_evaluate_names_batch_row_and_user():
    g = torch.Generator().manual_seed(0)
    history = torch.randint(1, 11, (30, 4), generator=g)
    target = torch.randint(1, 11, (30,), generator=g)

    def fn(h):  # (B, N+1); the row whose history starts with 99 gets a NaN
        s = torch.randn(h.shape[0], 11, generator=g)
        s[h[:, 0] == 99, 5] = float("nan")
        return s

    history[17, 0] = 99
    with pytest.raises(ValueError, match=r"batch 2, user row 17 \(user id 117\)"):
        evaluate(fn, history, target, batch_size=7, users=torch.arange(100, 130))


# -- item 4: PAD is never a class ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [False, True])
def test_scores_give_pad_minus_inf(text, data):
    m = tiny(text=text)
    x = data.train_inputs[:6]
    assert torch.all(m.recommend_scores(x)[:, PAD] == -torch.inf)
    logits = m(x, score="all").logits  # (B, T, N+1)
    assert torch.all(logits[..., PAD] == -torch.inf) and torch.isfinite(logits[..., PAD + 1:]).all()


@pytest.mark.parametrize("text", [False, True])
def test_ce_sends_no_gradient_to_the_pad_row(text, data):
    m = tiny(text=text).train()
    x, y = data.train_inputs[:8], data.train_labels[:8]
    assert (x == PAD).any()  # left padding: the input side is exercised too
    huge_pad_row(m, x)
    loss = m(x, labels=y, score="none").loss
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.all(m.item_emb.weight.grad[PAD] == 0)
    assert m.item_emb.weight.grad[PAD + 1:].abs().sum() > 0


def test_ce_loss_does_not_depend_on_the_pad_row(data):
    m = tiny()
    x, y = data.train_inputs[:8], data.train_labels[:8]
    before = m(x, labels=y, score="none").loss
    huge_pad_row(m, x)
    assert torch.allclose(m(x, labels=y, score="none").loss, before, atol=1e-6)


def test_kd_loss_ignores_pad_logits():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 11, generator=g, requires_grad=True), torch.randn(5, 11, generator=g)
    ref = kd_loss(s, t, 2.0)
    for s0, t0 in ((50.0, 0.0), (0.0, 80.0), (-torch.inf, -torch.inf), (torch.inf, -torch.inf)):
        s2, t2 = s.detach().clone(), t.clone()
        s2[:, PAD], t2[:, PAD] = s0, t0
        s2.requires_grad_()
        got = kd_loss(s2, t2, 2.0)
        assert torch.isfinite(got) and torch.allclose(got, ref, atol=1e-6), (s0, t0)
        got.backward()
        assert torch.all(s2.grad[:, PAD] == 0) and torch.isfinite(s2.grad).all()


def test_distill_loss_sends_no_gradient_to_the_pad_row(data):
    teacher = tiny(seed=1).requires_grad_(False)
    student = build_student(teacher, [1]).train().requires_grad_(True)
    x, y = data.train_inputs[:8], data.train_labels[:8]
    huge_pad_row(student, x)
    cfg = DistillConfig(alpha=1.0, beta=1.0, gamma=0.0, weighting="none", positions="all")
    out = DistillLoss(teacher, cfg, [1], torch.zeros(1)).terms(student, x, y)
    assert torch.isfinite(out["loss"]) and out["kd"] > 0
    out["loss"].backward()
    assert torch.all(student.item_emb.weight.grad[PAD] == 0)


def test_true_fisher_never_draws_pad(data):
    m = tiny(dtype=torch.float64)
    x, y = data.train_inputs[:6], data.train_labels[:6]
    huge_pad_row(m, x)
    ys = lf.draw_labels(m, x, y, 20, seed=0)  # (D, S, T)
    assert torch.equal(ys == IGNORE, (y == IGNORE).expand_as(ys))
    assert not (ys == PAD).any()


def test_fisher_methods_agree_and_leave_the_pad_row_at_zero(data):
    m = tiny(dtype=torch.float64, text=True)
    x, y = data.train_inputs[:5], data.train_labels[:5]
    huge_pad_row(m, x)
    ys = lf.draw_labels(m, x, y, 2, seed=1)
    ref = lf.fisher_loop(m, x, ys)
    for est in (lf.fisher_hooks(m, x, {"t": ys}, chunk_size=3)["t"], lf.fisher_vmap(m, x, ys, chunk_size=3)):
        assert lf.compare(est, ref)["max"] < 1e-10, est.method
    for est in (ref, lf.fisher_hooks(m, x, {"t": ys})["t"]):
        assert torch.all(est.diag["item_emb.weight"][PAD] == 0), est.method
        assert torch.isfinite(torch.as_tensor(est.per_sample)).all()

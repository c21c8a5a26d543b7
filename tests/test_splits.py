"""The one split builder (`lab.data.build_rec_data`): both rules give exactly the tensors of the two builders it
replaced (kept below, verbatim, as references), and its edge cases."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import lab
from lab import data as D
from lab.constants import IGNORE
from lab.data import RecData, left_pad


# ------------------------------------------------------------------ the builders before issue 11 ---------------------

def old_leave_last_out(sequences, num_items, max_len, item_titles=None, item_ids=None, user_ids=None) -> RecData:
    seqs = [list(s) for s in sequences if len(s) >= 3]
    users = [u for u, s in enumerate(sequences) if len(s) >= 3]
    train_part = [s[:-2] for s in seqs]
    window = [s[-(max_len + 1):] for s in train_part]
    train_inputs = left_pad([w[:-1] for w in window], max_len)
    train_labels = left_pad([w[1:] for w in window], max_len, value=IGNORE)
    counts = torch.zeros(num_items + 1, dtype=torch.long)
    for s in train_part:
        counts += torch.bincount(torch.as_tensor(s, dtype=torch.long), minlength=num_items + 1)
    valid_hist = [s[:-2] for s in seqs]
    test_hist = [s[:-1] for s in seqs]
    seen_len = max(len(s) for s in test_hist)
    uidx = torch.as_tensor(users, dtype=torch.long)
    return RecData(
        num_items=num_items, max_len=max_len,
        train_inputs=train_inputs, train_labels=train_labels,
        valid_history=left_pad(valid_hist, max_len), valid_target=torch.as_tensor([s[-2] for s in seqs]),
        valid_users=uidx, valid_seen=left_pad(valid_hist, seen_len),
        test_history=left_pad(test_hist, max_len), test_target=torch.as_tensor([s[-1] for s in seqs]),
        test_users=uidx.clone(), test_seen=left_pad(test_hist, seen_len),
        item_counts=counts,
        item_titles=list(item_titles or [""] * (num_items + 1)),
        item_ids=list(item_ids or [str(i) for i in range(num_items + 1)]),
        user_ids=list(user_ids or [str(u) for u in users]),
    )


def old_timestamp(sequences, timestamps, num_items, max_len, valid_from_ms, test_from_ms, item_titles=None,
                  item_ids=None, user_ids=None) -> RecData:
    train, vh, vt, vu, th, tt, tu = [], [], [], [], [], [], []
    for u, (s, t) in enumerate(zip(sequences, timestamps)):
        t = np.asarray(t)
        n_tr = int(np.searchsorted(t, valid_from_ms, side="left"))
        n_te = int(np.searchsorted(t, test_from_ms, side="left"))
        train.append(list(s[:n_tr]))
        if n_tr < n_te and n_tr > 0:
            vh.append(list(s[:n_tr])), vt.append(s[n_tr]), vu.append(u)
        if n_te < len(s) and n_te > 0:
            th.append(list(s[:n_te])), tt.append(s[n_te]), tu.append(u)
    window = [s[-(max_len + 1):] for s in train]
    counts = torch.zeros(num_items + 1, dtype=torch.long)
    flat = [x for s in train for x in s]
    if flat:
        counts += torch.bincount(torch.as_tensor(flat, dtype=torch.long), minlength=num_items + 1)
    seen_v = max([len(h) for h in vh], default=1)
    seen_t = max([len(h) for h in th], default=1)
    long_ = lambda x: torch.as_tensor(x, dtype=torch.long)
    return RecData(
        num_items=num_items, max_len=max_len,
        train_inputs=left_pad([w[:-1] for w in window], max_len),
        train_labels=left_pad([w[1:] for w in window], max_len, value=IGNORE),
        valid_history=left_pad(vh, max_len), valid_target=long_(vt), valid_users=long_(vu),
        valid_seen=left_pad(vh, seen_v),
        test_history=left_pad(th, max_len), test_target=long_(tt), test_users=long_(tu),
        test_seen=left_pad(th, seen_t),
        item_counts=counts,
        item_titles=list(item_titles if item_titles is not None else [""] * (num_items + 1)),
        item_ids=list(item_ids if item_ids is not None else [str(i) for i in range(num_items + 1)]),
        user_ids=list(user_ids if user_ids is not None else [str(u) for u in range(len(sequences))]),
    )


def assert_same(a: RecData, b: RecData) -> None:
    for name, x in vars(a).items():
        y = getattr(b, name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), name
        else:
            assert x == y, name


def random_world(seed: int, n_users: int = 60, n_items: int = 40, min_len: int = 0):
    """Sequences without repeats and sorted timestamps (ties included) around the cut-offs 100 and 200."""
    rng = np.random.default_rng(seed)
    seqs, times = [], []
    for _ in range(n_users):
        n = int(rng.integers(min_len, 15))
        seqs.append((rng.permutation(n_items)[:n] + 1).tolist())
        times.append(np.sort(rng.integers(0, 300, n)).astype(np.int64))
    return seqs, times, n_items


# ------------------------------------------------------------------ same tensors as before ---------------------------

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_len", [1, 4, 20])
def test_leave_last_out_equals_the_old_builder(seed, max_len):
    seqs, _, n = random_world(seed, min_len=3)
    titles = [f"t{i}" for i in range(n + 1)]
    users = [f"u{u}" for u in range(len(seqs))]
    assert_same(D.build_rec_data(seqs, n, max_len), old_leave_last_out(seqs, n, max_len))
    assert_same(D.build_rec_data(seqs, n, max_len, "leave_last_out", item_titles=titles, user_ids=users),
                old_leave_last_out(seqs, n, max_len, item_titles=titles, user_ids=users))
    assert_same(D.rec_data_from_sequences(seqs, n, max_len), old_leave_last_out(seqs, n, max_len))


def test_leave_last_out_equals_the_old_builder_on_toy_data():
    seqs = D.toy_markov_sequences(80, 30, 12, seed=1)
    assert_same(D.rec_data_from_sequences(seqs, 30, 8), old_leave_last_out(seqs, 30, 8))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cuts", [(100, 200), (0, 0), (150, 150), (301, 301), (0, 301)])
@pytest.mark.parametrize("max_len", [1, 5])
def test_timestamp_equals_the_old_builder(seed, cuts, max_len):
    seqs, times, n = random_world(seed)
    new = D.build_rec_data(seqs, n, max_len, "timestamp", times, *cuts)
    assert_same(new, old_timestamp(seqs, times, n, max_len, *cuts))


def test_to_rec_data_equals_the_old_builders(tmp_path):
    cfg = lab.get_config("smoke", 0).data
    proc = D.prepare_data(cfg, lab.Paths(root=tmp_path / "art", figures=tmp_path / "fig"), 0, progress=False)
    seqs, times = D.sequences_from_interactions(proc.interactions, proc.num_users)
    titles, ids = proc.items["title"].tolist(), proc.items["parent_asin"].tolist()
    keep = [u for u, s in enumerate(seqs) if len(s) >= 3]
    old = old_leave_last_out([seqs[u] for u in keep], proc.num_items, cfg.max_len, titles, ids,
                             [proc.user_ids[u] for u in keep])
    assert_same(D.to_rec_data(proc, cfg), old)
    c = dataclasses.replace(cfg, split="timestamp")
    old = old_timestamp(seqs, times, proc.num_items, cfg.max_len, cfg.valid_from_ms, cfg.test_from_ms, titles, ids,
                        list(proc.user_ids))
    assert_same(D.to_rec_data(proc, c), old)


# ------------------------------------------------------------------ the rule's edges ---------------------------------

def test_leave_last_out_drops_short_users_with_their_ids():
    seqs = [[1, 2, 3], [4, 5], [6, 7, 8, 9], []]
    rd = D.build_rec_data(seqs, 9, 3, user_ids=["a", "b", "c", "d"])
    assert rd.num_users == 2 and rd.user_ids == ["a", "c"]
    assert rd.valid_users.tolist() == rd.test_users.tolist() == [0, 1]  # rows of the training tensors
    assert rd.valid_target.tolist() == [2, 8] and rd.test_target.tolist() == [3, 9]
    assert rd.valid_seen.shape[1] == rd.test_seen.shape[1] == 3  # one width: the longest test history
    assert rd.item_counts.tolist() == [0, 1, 0, 0, 0, 0, 1, 1, 0, 0]
    empty = D.build_rec_data([[1, 2]], 2, 3)
    assert empty.num_users == 0 and len(empty.valid_target) == 0 and empty.valid_target.dtype == torch.long


def test_timestamp_rule_cuts():
    seqs = [[1, 2, 3, 4], [5, 6]]
    times = [[10, 110, 120, 210], [150, 250]]
    rd = D.build_rec_data(seqs, 6, 3, "timestamp", times, 100, 200)
    assert rd.valid_users.tolist() == [0] and rd.valid_target.tolist() == [2]  # first item in [100, 200)
    assert rd.test_users.tolist() == [0, 1] and rd.test_target.tolist() == [4, 6]  # first item from 200 on
    assert rd.test_history[0].tolist() == [1, 2, 3]  # validation-period items are test history
    assert (rd.valid_seen.shape[1], rd.test_seen.shape[1]) == (1, 3)  # each split its own width
    assert rd.train_inputs.tolist() == [[0, 0, 0], [0, 0, 0]] and (rd.train_labels == IGNORE).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="leave_last_out"):
        D.build_rec_data([[1, 2, 3]], 3, 2, "random")
    with pytest.raises(ValueError, match="needs timestamps"):
        D.build_rec_data([[1, 2, 3]], 3, 2, "timestamp")
    with pytest.raises(ValueError, match="must not be after"):
        D.build_rec_data([[1, 2, 3]], 3, 2, "timestamp", [[1, 2, 3]], 5, 4)
    with pytest.raises(ValueError, match="timestamp arrays"):
        D.build_rec_data([[1, 2, 3]], 3, 2, "timestamp", [], 1, 2)


def test_training_windows_cover_every_transition_once():
    """`train_windows=0`: every transition of a long training part is one label, in windows newest first, the users'
    own rows first (issue 25)."""
    from lab.constants import IGNORE
    from lab.data.splits import training_windows

    last, earlier = training_windows([list(range(1, 12)), [1, 2], [1, 2, 3, 4]], 3, 0)
    assert last == [[8, 9, 10, 11], [1, 2], [1, 2, 3, 4]]
    assert earlier == [(0, [5, 6, 7, 8]), (0, [2, 3, 4, 5]), (0, [1, 2])]
    assert training_windows([list(range(1, 12))], 3, 2)[1] == [(0, [5, 6, 7, 8])]
    seqs = [list(range(1, 14)), [3, 4, 5, 6]]  # training parts 1..11 and 3, 4
    rd = D.build_rec_data(seqs, num_items=13, max_len=3, train_windows=0)
    assert rd.num_users == 2 and rd.window_users.tolist() == [0, 0, 0]
    pairs = sorted((int(x), int(y)) for x, y in zip(rd.train_inputs.flatten(), rd.train_labels.flatten())
                   if y != IGNORE)
    assert pairs == sorted([(i, i + 1) for i in range(1, 11)] + [(3, 4)])
    one = D.build_rec_data(seqs, num_items=13, max_len=3)
    assert one.window_users is None and one.train_inputs.shape[0] == 2 and one.num_users == 2
    assert torch.equal(rd.train_inputs[:2], one.train_inputs)  # the users' own rows are unchanged

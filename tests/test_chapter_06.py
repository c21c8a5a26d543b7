"""Chapter 06 (baselines) in the smoke profile: the leaderboard's recorded values checked against independent
computations on the saved artefacts (per-user metrics, the timing run, chapter 05's tables, the processed data and the
saved models)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import lab
from by_hand import holm_by_hand
from lab.data import load_rec_data
from lab.models import SeqRecModel, count_parameters

RECOMMENDERS = ["popularity", "markov", "itemknn", "ease", "gru4rec", "sasrec_ce", "teacher"]
SCRATCH, SCRATCH_FULL = "scratch (students' budget)", "scratch (teacher's recipe)"
COMPRESSION = [SCRATCH, SCRATCH_FULL, "prune", "prune+kd", "int8", "nf4"]


def ndcg10_by_hand(scores: np.ndarray, target: np.ndarray, seen: np.ndarray) -> float:
    """Mean NDCG@10 of full-catalogue rankings: PAD and the seen items other than the target out, ties pessimistic."""
    out = []
    for s, t, sn in zip(scores.astype(np.float64), target, seen):
        s = s.copy()
        score = s[t]
        s[[x for x in sn if x not in (0, t)]] = -np.inf
        s[0] = -np.inf
        rank = int((s > score).sum() + (s == score).sum() - 1)
        out.append(1 / np.log2(rank + 2) if rank < 10 else 0.0)
    return float(np.mean(out))


@pytest.fixture(scope="module")
def ch06(smoke_book):
    r = smoke_book.run("06")["06_baselines"]
    P = lab.paths("smoke", smoke_book.artefacts)
    board = pd.read_parquet(P.file("leaderboard.parquet")).set_index("name")
    pu = pd.read_parquet(P.file("baselines_per_user.parquet"))
    return r, P, board, pu


def test_leaderboard_is_complete(ch06):
    r, P, board, _ = ch06
    res05 = pd.read_parquet(P.file("distill_results.parquet"))
    assert list(board.index) == r["rows"] and board.index.is_unique
    assert set(RECOMMENDERS + COMPRESSION + [r["method"]]) <= set(board.index)
    assert set(res05["rule"]) <= {res05.set_index("name").loc[n, "rule"] for n in r["read_from_05"]}  # every rule
    assert board.loc[r["method"], "family"] == "method"
    # the method is chapter 05's student of the method (fisher_topk, kd+fisher), the one C1 tests
    assert r["method"] == "fisher_topk:kd+fisher" == lab.results("smoke", P.artefacts)["05_distillation"]["method_name"]
    assert (board.loc[SCRATCH_FULL, "source"], board.loc[SCRATCH, "source"]) == ("02", "06")
    assert r["k"] == res05["k"].iloc[0] == lab.results("smoke", P.artefacts)["02_teacher"]["n_layers"] // 4
    ok = board[board["status"] == "ok"]
    assert ok.notna().all().all(), ok.columns[ok.isna().any()].tolist()  # every column filled where measured
    for name, row in board[board["status"] != "ok"].iterrows():  # a row that could not run says why
        assert row["verdict"].startswith("not measured") and name in ("int8", "nf4")


def test_retention_and_cis_from_the_per_user_frame(ch06):
    r, _, board, pu = ch06
    wide = pu.pivot(index="user", columns="name", values="ndcg@10").sort_index()
    measured = [n for n in board.index if board.loc[n, "status"] == "ok"]
    assert set(wide.columns) == set(measured) and not wide.isna().any().any()  # every row on the same test users
    ret = wide[measured].mean() / wide["teacher"].mean()
    np.testing.assert_allclose([r["retention"][n] for n in measured], ret.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose([r["test_ndcg10"][n] for n in measured], wide[measured].mean().to_numpy(), rtol=1e-12)
    # the CIs against independent computations: about mean ± 1.96 standard errors (the plain standard error of a mean;
    # the delta method's for the ratio of means, sd(s - R t) / (sqrt(n) mean(t)))
    m = r["method"]
    s, t = wide[m].to_numpy(), wide["teacher"].to_numpy()
    n, R = len(s), s.mean() / t.mean()
    for ci, centre, se in ((r["test_ndcg10_ci"][m], s.mean(), s.std(ddof=1) / np.sqrt(n)),
                           (r["retention_ci"][m], R, np.std(s - R * t, ddof=1) / (np.sqrt(n) * t.mean()))):
        assert ci[0] < centre < ci[1]
        assert ci[1] - ci[0] == pytest.approx(2 * 1.96 * se, rel=0.25)
    assert r["retention_ci"]["teacher"] == [1.0, 1.0]  # the teacher against itself: every resample gives 1


def test_rows_read_from_chapter05_are_its_numbers(ch06):
    r, P, board, _ = ch06
    res05 = pd.read_parquet(P.file("distill_results.parquet")).set_index("name")
    for n in r["read_from_05"]:
        assert r["test_ndcg10"][n] == pytest.approx(res05.loc[n, "test_ndcg@10"], abs=1e-12)
        assert board.loc[n, "source"] == "05" and board.loc[n, "timed_as"] == r["method"]
    teacher02 = lab.results("smoke", P.artefacts)["02_teacher"]
    assert r["test_ndcg10"]["teacher"] == pytest.approx(teacher02["teacher_ndcg10_test"], abs=1e-12)
    assert r["test_ndcg10"]["sasrec_ce"] == pytest.approx(teacher02["small_ndcg10_test"], abs=1e-12)  # re-scored


def test_paired_tests_holm_and_verdicts(ch06):
    r, _, board, pu = ch06
    wide = pu.pivot(index="user", columns="name", values="ndcg@10")
    m = r["method"]
    family = [n for n in board.index if n != m and board.loc[n, "status"] == "ok"]
    pvals = []
    for n in family:
        d = wide[m] - wide[n]
        assert r["diff"][n] == pytest.approx(float(d.mean()), abs=1e-12)
        pvals.append(float(sps.wilcoxon(d).pvalue) if (d != 0).any() else 1.0)
        assert board.loc[n, "wilcoxon_p"] == pytest.approx(pvals[-1], rel=1e-9)
    for n, h in zip(family, holm_by_hand(pvals)):
        assert r["holm_p"][n] == pytest.approx(h, rel=1e-9)
        row = board.loc[n]
        clear = h < r["alpha"] and (row["diff_low"] > 0 or row["diff_high"] < 0)
        want = ("method better" if row["diff"] > 0 else "method worse") if clear else \
            "on par" if -r["margin"] <= row["diff_low"] and row["diff_high"] <= r["margin"] else "inconclusive"
        assert r["verdict"][n] == want, n
    assert r["verdict"][m] == "the method"


def test_ease_rescored_from_the_processed_data(ch06):
    r, P, _, _ = ch06
    cfg = lab.get_config("smoke", 0)
    data, _, _ = load_rec_data(cfg.data, P, seed=0, progress=False)
    n = data.num_items + 1
    x = np.zeros((data.num_users, n))  # who had what in the training windows (inputs and labels)
    for u, (a, b) in enumerate(zip(data.train_inputs.tolist(), data.train_labels.tolist())):
        x[u, [i for i in a + b if i > 0]] = 1.0
    assert max(r["ease_valid"], key=r["ease_valid"].get) == str(r["ease_lambda"])  # chosen on validation
    p = np.linalg.inv(x.T @ x + r["ease_lambda"] * np.eye(n))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    h = np.zeros((len(data.test_target), n))
    for row, items in enumerate(data.test_history.tolist()):
        h[row, [i for i in items if i > 0]] = 1.0
    scores = h @ b.astype(np.float32).astype(np.float64)
    got = ndcg10_by_hand(scores, data.test_target.numpy(), data.test_seen.numpy())
    assert got == pytest.approx(r["test_ndcg10"]["ease"], abs=1e-9)  # float32 table as the scorer holds it


def test_saved_models_score_what_was_recorded(ch06):
    r, P, _, _ = ch06
    from lab.compression import decoder_linear_weights, nonzero_parameters
    from lab.recommenders import GRU4Rec
    from lab.evaluation import score_split

    data, _, _ = load_rec_data(lab.get_config("smoke", 0).data, P, seed=0, progress=False)
    gru = GRU4Rec.from_pretrained(P.root / "gru4rec" / f"lr{r['gru4rec_lr']:g}").eval()
    assert max(r["gru4rec_valid"], key=r["gru4rec_valid"].get) == str(r["gru4rec_lr"])
    assert score_split(gru, data, "test")[0]["ndcg@10"] == pytest.approx(r["test_ndcg10"]["gru4rec"], abs=1e-6)
    # the distilled pruned teacher: its pruned weights still 0, the student's size
    pruned = SeqRecModel.from_pretrained(P.root / "pruned").eval()
    student = SeqRecModel.from_pretrained(P.root / "students" / r["method"])
    zeros = sum(int((w == 0).sum()) for _, w in decoder_linear_weights(pruned))
    assert zeros == r["prune"]["removed"]
    assert count_parameters(pruned) - zeros == count_parameters(student) == r["params"]["prune+kd"]
    assert nonzero_parameters(pruned) == nonzero_parameters(student)
    assert score_split(pruned, data, "test")[0]["ndcg@10"] == pytest.approx(r["test_ndcg10"]["prune+kd"], abs=1e-6)
    # the two k-layer models from scratch: chapter 02's on the teacher's recipe (the one chapter 05's control loads),
    # and this chapter's on the students' budget
    r05 = lab.results("smoke", P.artefacts)["05_distillation"]
    full = SeqRecModel.from_pretrained(P.root / "depth_bench" / f"L{r['k']}").eval()
    got = score_split(full, data, "test")[0]["ndcg@10"]
    assert got == pytest.approx(r["test_ndcg10"]["scratch (teacher's recipe)"], abs=1e-6)
    assert got == pytest.approx(r05["scratch_full_test_ndcg10"], abs=1e-6)
    budget = SeqRecModel.from_pretrained(P.root / "scratch").eval()
    assert budget.num_layers == full.num_layers == r["k"]
    assert score_split(budget, data, "test")[0]["ndcg@10"] == pytest.approx(
        r["test_ndcg10"]["scratch (students' budget)"], abs=1e-6)


def test_speed_comes_from_the_one_timing_run(ch06):
    r, P, board, _ = ch06
    speed = pd.read_parquet(P.file("baselines_speed.parquet")).set_index(["model", "batch"])
    bmax = r["bmax"]
    for n in board.index[board["status"] == "ok"]:
        twin = board.loc[n, "timed_as"]
        assert r["speedup"][n] == pytest.approx(float(speed.loc[(twin, bmax), "speedup"]), rel=1e-12)
        assert r["speedup_b1"][n] == pytest.approx(float(speed.loc[(twin, 1), "speedup"]), rel=1e-12)
        tput = speed.loc[(twin, bmax), "throughput"] / speed.loc[("teacher", bmax), "throughput"]
        assert r["speedup"][n] == pytest.approx(float(tput), rel=1e-12)
    assert r["speedup"]["teacher"] == 1.0

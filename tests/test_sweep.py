"""The compression sweep (issue 27): its tests on planted per-user data, and the sweep itself in the smoke sizes for
two budgets, checked against a hand-built cell (the saved student loaded and scored again, the zero-shot student
built from the teacher's layers and scored)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from lab.bench import sweep as S


def planted(n_users=300, gain_at=(4,), seeds=(0, 1, 2)):
    """Per-user NDCG@10 of a sweep: at every k, rules fisher_topk/uniform and 3 random draws share one user effect
    plus noise; fisher_topk gains +0.05 at the ks in `gain_at`; scratch sits 0.02 lower."""
    rng = np.random.default_rng(0)
    rows, users = [], []
    for seed in seeds:
        rows.append({"seed": seed, "k": 8, "rule": "teacher", "draw": 0, "distilled_valid_ndcg@10": 0.3,
                     "distilled_test_ndcg@10": 0.3})
        for k in (1, 2, 4):
            base = rng.uniform(0.1, 0.4, n_users)
            for rule, draws in (("fisher_topk", 1), ("uniform", 1), ("random", 3), (S.SCRATCH, 1)):
                for d in range(draws):
                    v = base + rng.normal(0, 0.05, n_users) + (0.05 if rule == "fisher_topk" and k in gain_at else 0) \
                        - (0.02 if rule == S.SCRATCH else 0)
                    rows.append({"seed": seed, "k": k, "rule": rule, "draw": d, "distilled_valid_ndcg@10": v.mean(),
                                 "distilled_test_ndcg@10": v.mean()})
                    users.append(pd.DataFrame({"seed": seed, "k": k, "rule": rule, "draw": d, "stage": "distilled",
                                               "user": np.arange(n_users), "ndcg@10": v}))
    return pd.DataFrame(rows), pd.concat(users, ignore_index=True)


def test_default_budgets():
    assert S.default_ks(24) == (1, 2, 3, 4, 6, 8, 12) and S.default_ks(8) == (1, 2, 3, 4)


def test_sweep_tests_find_the_planted_budget():
    """fisher_topk beats random only at k = 4 (planted): the per-seed rows agree with a hand computation (mean over
    users of fisher minus the random draws' mean, Wilcoxon p, Holm within the k), the pooled row is the t-test across
    seeds, and the headline is k = 4."""
    table, pu = planted()
    t = S.sweep_tests(table, pu, n_boot=200)
    one = t[(t["seed"] == 0) & (t["k"] == 4)].set_index("comparison")
    sel = pu[(pu["seed"] == 0) & (pu["k"] == 4)]
    wide = sel.groupby(["rule", "user"])["ndcg@10"].mean().unstack(0)  # random: the mean over its draws
    d = wide["fisher_topk"] - wide["random"]
    assert one.loc["fisher_topk - random", "diff"] == pytest.approx(d.mean())
    ps = {c: st.wilcoxon(wide[a] - wide[b]).pvalue for c, a, b in
          (("fisher_topk - random", "fisher_topk", "random"), ("uniform - random", "uniform", "random"),
           ("fisher_topk - uniform", "fisher_topk", "uniform"))}
    ps["best - scratch"] = st.wilcoxon(wide["fisher_topk"] - wide[S.SCRATCH]).pvalue
    assert set(one.index) == set(ps) and one.loc["best - scratch", "a"] == "fisher_topk"
    order = sorted(ps, key=ps.get)
    holm = np.minimum(1, np.maximum.accumulate([ps[c] * (len(ps) - i) for i, c in enumerate(order)]))
    assert [one.loc[c, "p_holm"] for c in order] == pytest.approx(list(holm))
    pooled = t[(t["seed"] == -1) & (t["k"] == 4)].set_index("comparison").loc["fisher_topk - random"]
    per_seed = t[(t["seed"] >= 0) & (t["k"] == 4) & (t["comparison"] == "fisher_topk - random")]["diff"]
    assert pooled["p"] == pytest.approx(st.ttest_1samp(per_seed, 0).pvalue)
    h = S.headline(t)
    assert h["k"] == 4 and h["comparison"] == "fisher_topk - random" and h["ci_low"] > 0
    none = S.headline(S.sweep_tests(*planted(gain_at=()), n_boot=200))
    assert none["k"] is None


def test_summary_retention_is_of_the_same_seed_teacher():
    table, _ = planted(seeds=(0,))
    s = S.sweep_summary(table).set_index(["k", "rule"])
    row = table[(table["k"] == 2) & (table["rule"] == "uniform")].iloc[0]
    assert s.loc[(2, "uniform"), "distilled_retention"] == pytest.approx(row["distilled_test_ndcg@10"] / 0.3)


def test_sweep_in_smoke_sizes(smoke_book, tmp_path):
    """The sweep on the smoke run (chapters 02-05) for k = 1, 2: one row per rule, draw and k plus scratch and teacher;
    a distilled cell equals its saved student loaded and scored again, a zero-shot cell its layers built from the
    teacher and scored; the per-user rows average to the table; a second call loads every student (resumable)."""
    import lab
    from lab.evaluation import score_split
    from lab.models import SeqRecModel, build_student
    from lab.selection import parse_layers

    smoke_book.run("05")
    cfg = S.SweepConfig(ks=(1, 2), rules=("fisher_topk", "bottom"), n_random=2, repeats=2)
    table, pu = S.run_sweep("smoke", 0, cfg, smoke_book.artefacts, progress=False)
    assert len(table) == 1 + 2 * (2 + 2 + 1)  # teacher; per k: 2 rules, 2 random draws, scratch
    P = lab.paths("smoke", smoke_book.artefacts, 0)
    row = table[(table["k"] == 2) & (table["rule"] == "bottom")].iloc[0]
    assert row["student"] in (f"k2_bottom#0:{row['variant']}", f"k2_fisher_topk#0:{row['variant']}")  # shared sets
    student = SeqRecModel.from_pretrained(P.root / "sweep" / "students" / row["student"]).eval()
    assert float(score_split(student, _data(P), "test")[0]["ndcg@10"]) == pytest.approx(row["distilled_test_ndcg@10"])
    teacher = lab.load_teacher(P)
    zs = build_student(teacher, parse_layers(row["layers"])).eval()
    assert float(score_split(zs, _data(P), "valid")[0]["hr@10"]) == pytest.approx(row["zero_shot_valid_hr@10"])
    got = pu[(pu["k"] == 2) & (pu["rule"] == "bottom") & (pu["stage"] == "distilled")]["ndcg@10"].mean()
    assert got == pytest.approx(row["distilled_test_ndcg@10"])
    assert table["speedup_b256"].notna().all() and (table.loc[table["rule"] == "teacher", "speedup_b1"] == 1).all()
    again, _ = S.run_sweep("smoke", 0, cfg, smoke_book.artefacts, progress=False)
    pd.testing.assert_frame_equal(again.drop(columns=["speedup_b1", "speedup_b256", "load_avg"]),
                                  table.drop(columns=["speedup_b1", "speedup_b256", "load_avg"]))


def _data(P):
    from lab.data import load_rec_data
    from lab.profiles import get_config

    return load_rec_data(get_config("smoke", 0).data, P, seed=0, progress=False)[0]


def test_compression_curves_draw_every_rule():
    """One line per rule at full strength (distilled) and one faint (zero-shot), the scratch line, the teacher; the
    lines' points are the summary's (retention against speed-up); the book's layout checks pass."""
    from lab.viz.core import layout_problems
    from lab.viz.distill import compression_curves

    table, _ = planted(seeds=(0,))
    table["speedup_b256"] = 8 / table["k"]
    table["zero_shot_test_ndcg@10"] = table["distilled_test_ndcg@10"] * 0.7
    s = S.sweep_summary(table)
    fig = compression_curves(s)
    lines = {l.get_label(): l for l in fig.axes[0].get_lines()}
    assert {"fisher_topk", "uniform", "random", "from scratch (teacher's recipe)", "teacher"} <= set(lines)
    f = s[s["rule"] == "fisher_topk"].sort_values("speedup_b256")
    assert list(lines["fisher_topk"].get_ydata()) == pytest.approx(list(f["distilled_retention"]))
    assert layout_problems(fig) == []


def test_a_later_call_keeps_the_other_budgets(tmp_path):
    """A sweep call over k = 2 after one over k = 1, 2, 4 keeps k = 1 and 4 from the saved table (same variant) and
    replaces k = 2 and the teacher's row; rows of another variant leave the table with a warning."""
    import lab
    from lab.io import write_parquet

    table, pu = planted(seeds=(0,))
    table["variant"] = "kd+fisher"
    P = lab.paths("default", tmp_path, 0)
    write_parquet(P.file(S.TABLE), table)
    write_parquet(P.file(S.PER_USER), pu)
    new = table[table["k"].isin([2, 8])].assign(**{"distilled_test_ndcg@10": 0.5})
    new_users = pu[pu["k"] == 2].assign(**{"ndcg@10": 0.5})
    t, u = S.keep_other_budgets(P, new, new_users)
    assert sorted(t["k"].unique()) == [1, 2, 4, 8] and len(t) == len(table)
    assert (t.loc[t["k"].isin([2, 8]), "distilled_test_ndcg@10"] == 0.5).all()
    assert u.groupby("k").size().to_dict() == pu.groupby("k").size().to_dict()
    assert (u.loc[u["k"] == 2, "ndcg@10"] == 0.5).all()
    with pytest.warns(UserWarning, match=r"budgets \[1, 4\] were distilled with variant 'kd\+fisher', not 'ce'"):
        t, u = S.keep_other_budgets(P, new.assign(variant="ce"), new_users)
    assert sorted(t["k"].unique()) == [2, 8] and set(u["k"]) == {2}


def test_report_and_figure_from_saved_tables(tmp_path, monkeypatch):
    """`python -m lab sweep compression --report` trains nothing: it reads the seeds' saved tables, prints the same
    headline as `sweep_tests` + `headline` on them, and saves the curve in the first seed's figure folder; with no
    table it fails naming the command that makes one."""
    import lab
    from lab.__main__ import main
    from lab.chapters.c05_distillation import SWEEP_FIGURE
    from lab.io import write_parquet

    monkeypatch.setenv("LAB_FIGURES", str(tmp_path / "figures"))
    table, pu = planted(seeds=(0, 1))
    table["speedup_b256"] = 8 / table["k"]
    for seed in (0, 1):
        P = lab.paths("default", tmp_path, seed)
        write_parquet(P.file(S.TABLE), table[table["seed"] == seed])
        write_parquet(P.file(S.PER_USER), pu[pu["seed"] == seed])
    out = S.run("default", (0, 1), tmp_path, train=False)
    assert out["seeds"] == [0, 1] and out["headline"] == S.headline(S.sweep_tests(table, pu))
    assert main(["sweep", "compression", "--profile", "default", "--seeds", "0", "1", "--artefacts", str(tmp_path),
                 "--report"]) == 0
    png = tmp_path / "figures" / lab.run_name("default", 0) / f"{SWEEP_FIGURE}.png"
    assert png.is_file() and png.stat().st_size > 10_000
    with pytest.raises(FileNotFoundError, match="python -m lab sweep compression --profile default --seeds 5"):
        S.run("default", (5,), tmp_path, train=False)


def test_mechanism_coverage_on_planted_probes():
    """Probe accuracies that build up the pointer at layers 1-2 and the induction variable at layer 5 (of 8): a set
    keeping layers 1, 2 and 5 covers both fully, one keeping 0 and 7 covers nothing; coverage ranks quality when
    quality was planted to follow it."""
    acc = pd.DataFrame({"pointer": [0.1, 0.1, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9],
                        "induction": [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.8, 0.8, 0.7]}, index=range(-1, 8))
    full = S.mechanism_coverage([1, 2, 5], acc)
    assert full == pytest.approx({"pointer": 1.0, "induction": 1.0, "mean": 1.0})
    half = S.mechanism_coverage([1, 5], acc)
    assert half["pointer"] == pytest.approx(0.5) and half["mean"] == pytest.approx(0.75)
    assert S.mechanism_coverage([0, 7], acc)["mean"] == 0.0  # layer 7's drop is no build-up
    table = pd.DataFrame([{"seed": 0, "k": 8, "rule": "teacher", "draw": 0, "layers": "", "distilled_test_ndcg@10": 1.0},
                          *({"seed": 0, "k": 2, "rule": "random", "draw": d, "layers": ls,
                             "distilled_test_ndcg@10": q}
                            for d, (ls, q) in enumerate([("1,5", 0.8), ("0,7", 0.5), ("2,5", 0.8), ("1,2", 0.6),
                                                        ("3,4", 0.5)]))])
    cov = S.coverage_table(table, {0: acc})
    assert S.coverage_predicts(cov)["by_k"][2][0] == pytest.approx(1.0)

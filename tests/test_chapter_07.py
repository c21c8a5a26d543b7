"""Chapter 07 in smoke on 2 seeds: seed 0 through `smoke_book`, seed 1's chapters 01-05 into the same artefact root
(~3-4 min on the 2-core CPU), then chapter 07. Its recorded verdict table is checked against an independent
recomputation from the records (`lab.collect`) and the saved artefacts, and a changed recorded input in a copy changes
the verdict."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import lab
from lab import hypotheses as H
from lab.notebooks import run_chapter, select_chapters


@pytest.fixture(scope="module")
def ch07(smoke_book):
    smoke_book.run("05")
    smoke_book.run_seed(1, ["01", "02", "03", "04", "05"])
    run_chapter(select_chapters(["07"])[0], profile="smoke", seed=0, artefacts=str(smoke_book.artefacts),
                out_dir=smoke_book.runs)
    return lab.results("smoke", smoke_book.artefacts)["07_hypotheses"], smoke_book.artefacts


def t_ci(x):
    x = np.asarray(x, float)
    res = st.ttest_1samp(x, 0.0)
    lo, hi = res.confidence_interval(0.95)
    return float(x.mean()), float(lo), float(hi), float(res.pvalue)


def test_every_claim_has_a_verdict(ch07):
    r, _ = ch07
    assert r["seeds"] == [0, 1] and not r["missing"]
    assert set(r["verdict"]) == {c.id for c in H.CRITERIA}
    assert set(r["verdict"].values()) <= set(H.VERDICTS)
    assert set(r["claim_verdict"]) == set(H.CLAIMS)


def test_c1_recomputed_from_collect(ch07):
    """C1 from chapter 05's records of both seeds, read through lab.collect."""
    r, art = ch07
    frame = lab.collect("smoke", [0, 1], art)
    rec = frame[frame["chapter"] == "05_distillation"].set_index(["key", "seed"])["value"]
    ret = [rec[("best_retention", s)] for s in (0, 1)]
    speed = np.mean([rec[("best_speedup", s)] for s in (0, 1)])
    m, lo, hi, p = t_ci(ret)
    assert r["estimate"]["C1"] == pytest.approx(m) and r["ci"]["C1"] == pytest.approx([lo, hi])
    expect = "supported" if lo >= 0.92 and speed >= 3.2 else \
        "contradicted" if hi < 0.92 or speed < 3.2 else "inconclusive"
    assert r["verdict"]["C1"] == expect


def test_h1_h2a_recomputed_from_artefacts(ch07):
    """H1 (ablation and Fisher share, top 30% minus bottom 30%) and H2a (Spearman on Fisher's z) from each seed's
    importance.parquet, by hand."""
    r, art = ch07
    gaps_a, gaps_f, zs = [], [], []
    for seed in (0, 1):
        imp = pd.read_parquet(lab.paths("smoke", art, seed).file("importance.parquet"))
        ab = imp[imp.signal == "ablation_drop"].sort_values("layer_idx")["value"].to_numpy()
        fi = imp[(imp.signal == "fisher_empirical") & (imp.norm == "total")].sort_values("layer_idx")["value"]
        fi = fi.to_numpy() / fi.sum()
        k = round(0.3 * len(ab))
        gaps_a.append(ab[-k:].mean() - ab[:k].mean())
        gaps_f.append(fi[-k:].mean() - fi[:k].mean())
        zs.append(np.arctanh(st.spearmanr(fi, ab).statistic))
    pa, pf = t_ci(gaps_a)[3], t_ci(gaps_f)[3]
    holm = np.minimum(1, np.maximum.accumulate(np.sort([pa, pf]) * [2, 1]))
    for key, gaps in (("H1a", gaps_a), ("H1b", gaps_f)):
        m, lo, hi, p = t_ci(gaps)
        assert r["estimate"][key] == pytest.approx(m) and r["ci"][key] == pytest.approx([lo, hi])
        assert r["p"][key] == pytest.approx(p)
        assert r["p_adj"][key] == pytest.approx(holm[list(np.sort([pa, pf])).index(p)])
        assert r["verdict"][key] == ("supported" if lo > 0 else "contradicted" if hi < 0 else "inconclusive")
    m, lo, hi, _ = t_ci(zs)
    assert r["ci"]["H2a"] == pytest.approx([math.tanh(lo), math.tanh(hi)])
    assert r["verdict"]["H2a"] == ("supported" if math.tanh(lo) >= 0.5 else
                                   "contradicted" if math.tanh(hi) < 0.5 else "inconclusive")


def test_h4_and_the_claims_recomputed(ch07):
    """H4's rows from each seed's 02_architectures.parquet by hand (llama minus rival, t across seeds, Holm over the
    three), and each claim's verdict from its rows by the claim rules."""
    r, art = ch07
    effects = {a: [] for a in H.H4_RIVALS}
    for seed in (0, 1):
        pu = pd.read_parquet(lab.paths("smoke", art, seed).file("02_architectures.parquet"))
        for a in H.H4_RIVALS:
            effects[a].append(float((pu["llama"] - pu[a]).mean()))
    ps = []
    for a in H.H4_RIVALS:
        x = np.asarray(effects[a])
        assert r["estimate"][f"H4-{a}"] == pytest.approx(x.mean(), abs=1e-12)
        if np.std(x) > 0:
            m, lo, hi, p = t_ci(x)
            assert r["ci"][f"H4-{a}"] == pytest.approx([lo, hi]) and r["p"][f"H4-{a}"] == pytest.approx(p)
        ps.append(r["p"][f"H4-{a}"])
    order = np.argsort(ps)
    adj = np.minimum(1, np.maximum.accumulate(np.asarray(ps)[order] * (len(ps) - np.arange(len(ps)))))
    assert [r["p_adj"][f"H4-{a}"] for a in np.asarray(H.H4_RIVALS)[order]] == pytest.approx(list(adj))
    for claim, ids in H.CLAIMS.items():
        rows = [r["verdict"][i] for i in ids]
        if H.CLAIM_RULE[claim] == "all":
            expect = ("not measured" if set(rows) == {"not measured"} else "contradicted" if "contradicted" in rows
                      else "supported" if set(rows) == {"supported"} else "inconclusive")
        else:
            s, c = "supported" in rows, "contradicted" in rows
            expect = ("not measured" if set(rows) == {"not measured"} else "supported" if s and not c
                      else "contradicted" if c and not s else "inconclusive")
        assert r["claim_verdict"][claim] == expect
    assert list(r["side_by_side"]) == ["smoke (seeds 0, 1)"]  # smoke has no companion profile
    assert r["side_by_side"]["smoke (seeds 0, 1)"] == r["claim_verdict"]


def test_a_changed_record_changes_the_verdict(ch07):
    """The decision reads the records: the same seeds with chapter 05's retention and speed-up set in copies move C1
    from supported (retention .99, 5x) to contradicted (retention .5, 5x), and leave every other verdict as it was.
    (The measured speed-up differs between CPUs, so the chapter's own C1 verdict is not assumed.)"""
    _, art = ch07
    inputs, missing = H.load_seeds("smoke", [0, 1], art)
    assert not missing
    before = H.verdict_table(H.per_seed(inputs)).set_index("id")["verdict"]

    def with_c1(retention):
        return [dict(s, results={**s["results"], "05_distillation": {
            **s["results"]["05_distillation"], "best_retention": retention + 0.01 * s["seed"],
            "best_speedup": 5.0}}) for s in inputs]

    good = H.verdict_table(H.per_seed(with_c1(0.98))).set_index("id")["verdict"]
    bad = H.verdict_table(H.per_seed(with_c1(0.5))).set_index("id")["verdict"]
    assert good["C1"] == "supported" and bad["C1"] == "contradicted"
    assert (good.drop("C1") == before.drop("C1")).all() and (bad.drop("C1") == before.drop("C1")).all()

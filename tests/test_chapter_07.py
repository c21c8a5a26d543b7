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


def t_ci(x, null=0.0):
    x = np.asarray(x, float)
    res = st.ttest_1samp(x, null)
    lo, hi = res.confidence_interval(0.95)
    return float(x.mean()), float(lo), float(hi), float(res.pvalue)


def test_every_claim_has_a_verdict(ch07):
    r, _ = ch07
    assert r["seeds"] == [0, 1] and not r["missing"]
    assert set(r["verdict"]) == {c.id for c in H.CRITERIA}
    assert set(r["verdict"].values()) <= set(H.VERDICTS)
    assert set(r["claim_verdict"]) == set(H.CLAIMS)


def test_c1_recomputed_from_collect(ch07):
    """C1 from chapter 05's records of the method's own student on both seeds, read through lab.collect: t-test
    against 0.92, the mean speed-up against 3.2."""
    r, art = ch07
    frame = lab.collect("smoke", [0, 1], art)
    rec = frame[frame["chapter"] == "05_distillation"].set_index(["key", "seed"])["value"]
    ret = [rec[("method_retention", s)] for s in (0, 1)]
    speed = np.mean([rec[("method_speedup", s)] for s in (0, 1)])
    m, lo, hi, p = t_ci(ret, 0.92)
    assert r["estimate"]["C1"] == pytest.approx(m) and r["ci"]["C1"] == pytest.approx([lo, hi])
    assert r["p"]["C1"] == pytest.approx(p)
    expect = "contradicted" if speed < 3.2 else "supported" if m > 0.92 and p < 0.05 else \
        "contradicted" if m < 0.92 and p < 0.05 else "inconclusive"
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
        q = r["p_adj"][key]  # H1 is an "any" claim: Holm-adjusted both ways
        assert r["verdict"][key] == ("supported" if m > 0 and q < 0.05 else "contradicted" if m < 0 and q < 0.05
                                     else "inconclusive")
    m, lo, hi, p = t_ci(zs, math.atanh(0.5))
    assert r["ci"]["H2a"] == pytest.approx([math.tanh(lo), math.tanh(hi)]) and r["p"]["H2a"] == pytest.approx(p)
    p_h2b = r["p"]["H2b"]
    q = p if p_h2b is None else min(1.0, 2 * p) if p <= p_h2b else max(min(1.0, 2 * p_h2b), p)  # Holm over H2's rows
    assert r["p_adj"]["H2a"] == pytest.approx(q)
    assert r["verdict"]["H2a"] == ("supported" if math.tanh(m) > 0.5 and p < 0.05 else  # "all": raw p supports
                                   "contradicted" if math.tanh(m) < 0.5 and q < 0.05 else "inconclusive")


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
            **s["results"]["05_distillation"], "method_retention": retention + 0.001 * s["seed"],
            "method_speedup": 5.0}}) for s in inputs]

    good = H.verdict_table(H.per_seed(with_c1(0.98))).set_index("id")["verdict"]
    bad = H.verdict_table(H.per_seed(with_c1(0.5))).set_index("id")["verdict"]
    assert good["C1"] == "supported" and bad["C1"] == "contradicted"
    assert (good.drop("C1") == before.drop("C1")).all() and (bad.drop("C1") == before.drop("C1")).all()


def test_simulated_error_rates_are_recorded(ch07):
    """Chapter 07 records a simulated error rate (issue 24) for every claim and every row that a fresh
    `lab.hypotheses.null_rates` on the same seeds' rows produces, from at least 1,000 simulated studies."""
    r, art = ch07
    assert {k.split("/", 1)[1] for k in r["null_rate"] if k.startswith("claim/")} == set(H.CLAIMS)
    inputs, _ = H.load_seeds("smoke", [0, 1], art)
    again = H.null_rates(H.per_seed(inputs), n_sim=200, seed=0)
    first = {f"{x.kind}/{x.id}": x.rate for x in again.itertuples()}
    assert set(first) == set(r["null_rate"]) and r["null_sims"] >= 1000

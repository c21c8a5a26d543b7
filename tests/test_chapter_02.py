"""Chapter 02 (teacher) in the smoke profile: the recorded numbers are recomputed here from the saved artefacts — the
saved teacher and small model are loaded and scored with a ranking written independently of `lab.metrics`, and
popularity is rebuilt from the processed interactions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import lab
from lab.data import load_rec_data
from lab.io import read_json
from lab.models import SeqRecModel


def _ranks(scores: np.ndarray, target: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """0-based rank of each target, PAD and the user's earlier items masked, ties counted against the target."""
    out = np.empty(len(target), dtype=np.int64)
    for i, (s, t, h) in enumerate(zip(scores.astype(np.float64), target, seen)):
        s = s.copy()
        ts = s[t]
        s[h[h > 0]] = -np.inf
        s[0] = -np.inf
        s[t] = ts
        out[i] = (s > ts).sum() + (s == ts).sum() - 1
    return out


def _metrics(ranks: np.ndarray) -> dict:
    return {"ndcg@10": float(np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0).mean()),
            "hr@10": float((ranks < 10).mean()), "mrr": float((1 / (ranks + 1.0)).mean())}


def _model_metrics(model: SeqRecModel, data, split: str) -> dict:
    hist, target, seen = data.split(split)
    with torch.no_grad():
        scores = torch.cat([model.recommend_scores(hist[i:i + 256]) for i in range(0, len(hist), 256)])
    return _metrics(_ranks(scores.numpy(), target.numpy(), seen.numpy()))


@pytest.fixture(scope="module")
def chapter(smoke_book):
    r = smoke_book.run("02")["02_teacher"]
    P = lab.paths("smoke", smoke_book.artefacts)
    cfg = lab.get_config("smoke", 0)
    data, _, _ = load_rec_data(cfg.data, P, seed=0, progress=False)
    return r, P, cfg, data


def test_saved_teacher_is_the_one_recorded(chapter):
    r, P, cfg, _ = chapter
    teacher = lab.load_teacher(P)
    assert r["n_layers"] == teacher.num_layers == cfg.model.num_layers
    assert r["n_params"] == sum(p.numel() for p in teacher.parameters())
    assert r["arch"] == cfg.model.arch == teacher.config.backbone_config.model_type
    info = read_json(P.teacher / "train_info.json")
    history = pd.read_csv(P.teacher / "history.csv")
    assert r["epochs"] == info["epochs"] == len(history)
    assert r["train_seconds"] == pytest.approx(info["train_seconds"])


def test_teacher_metrics_recomputed_from_the_saved_model(chapter):
    r, P, _, data = chapter
    teacher = lab.load_teacher(P)
    test = _model_metrics(teacher, data, "test")
    assert r["teacher_ndcg10_test"] == pytest.approx(test["ndcg@10"], abs=1e-6)
    assert r["teacher_hr10_test"] == pytest.approx(test["hr@10"], abs=1e-6)
    assert r["teacher_mrr_test"] == pytest.approx(test["mrr"], abs=1e-6)
    # training kept the weights of its best validation epoch
    history = pd.read_csv(P.teacher / "history.csv")
    assert _model_metrics(teacher, data, "valid")["ndcg@10"] == pytest.approx(history["valid_ndcg@10"].max(), abs=1e-6)
    small = SeqRecModel.from_pretrained(P.root / "small_scratch").eval()
    assert r["small_ndcg10_test"] == pytest.approx(_model_metrics(small, data, "test")["ndcg@10"], abs=1e-6)
    # the per-user table later chapters pair against agrees with the recorded means
    pu = pd.read_parquet(P.file("teacher_eval.parquet"))
    means = pu.groupby("model")["ndcg@10"].mean()
    assert means[f"teacher ({r['n_layers']} layers)"] == pytest.approx(r["teacher_ndcg10_test"], abs=1e-12)
    assert means["popularity"] == pytest.approx(r["popularity_ndcg10_test"], abs=1e-12)


def test_popularity_recomputed_from_training_counts(chapter):
    r, P, cfg, _ = chapter
    inter = pd.read_parquet(P.processed / cfg.data.category / "interactions.parquet")  # sorted by user, then time
    seqs = [g.tolist() for _, g in inter.groupby("user", sort=True)["item"] if len(g) >= 3]
    counts = np.zeros(int(inter["item"].max()) + 1)
    for s in seqs:
        np.add.at(counts, s[:-2], 1)  # training part: all but the validation and test items
    target = np.array([s[-1] for s in seqs])
    seen = [np.array(s[:-1]) for s in seqs]
    pop = _metrics(_ranks(np.tile(counts, (len(seqs), 1)), target, seen))
    assert r["popularity_ndcg10_test"] == pytest.approx(pop["ndcg@10"], abs=1e-12)
    assert r["teacher_over_popularity"] == pytest.approx(r["teacher_ndcg10_test"] / pop["ndcg@10"], rel=1e-9)
    # the chapter's finding: the trained teacher ranks better than popularity (smoke depth world seed 0: 1.27x)
    assert r["teacher_ndcg10_test"] > pop["ndcg@10"]


def test_depth_curve_recomputed_from_the_saved_models(chapter, smoke_book):
    r, P, cfg, data = chapter
    ndcg, gap, refs, cmp = r["depth_ndcg10"], r["depth_gap_closed"], r["depth_references"], r["depth_compare"]
    # the teacher and the small model are the chapter's own; every other depth was trained from scratch and saved
    assert ndcg[str(r["n_layers"])] == pytest.approx(r["teacher_ndcg10_test"], abs=1e-9)
    assert ndcg["2"] == pytest.approx(r["small_ndcg10_test"], abs=1e-9)
    others = sorted(set(map(int, ndcg)) - {2, r["n_layers"]})
    assert others == [1]  # smoke: depths (1, 2) and the 8-layer teacher
    scratch = SeqRecModel.from_pretrained(P.root / "depth_bench" / "L1").eval()
    assert scratch.num_layers == 1
    assert ndcg["1"] == pytest.approx(_model_metrics(scratch, data, "test")["ndcg@10"], abs=1e-6)
    # the references are chapter 01's, and gap closed is read against them
    ch01 = smoke_book.run("01")["01_data"]
    for name in ("bayes", "markov", "popularity"):
        assert refs[name] == pytest.approx(ch01[f"{name}_ndcg10"], abs=1e-12)
    for L, v in ndcg.items():
        assert gap[L] == pytest.approx((v - refs["markov"]) / (refs["bayes"] - refs["markov"]), rel=1e-9)
    # the comparison: the deepest (the teacher) minus the 2-layer model, per user, from the saved per-user table
    pu = pd.read_parquet(P.file("02_depth_curve.parquet"))
    d = pu[f"L{r['n_layers']}"] - pu["L2"]
    assert (cmp["a"], cmp["b"], cmp["n_users"]) == (2, r["n_layers"], len(pu))
    assert cmp["diff"] == pytest.approx(d.mean(), abs=1e-12)
    assert cmp["ci_low"] <= cmp["diff"] <= cmp["ci_high"]
    # a teacher trained from scratch: no pretrained backbone, every parameter trained, no pretrained comparison
    assert r["backbone"] is None and r["trainable_params"] == r["n_params"] and r["depth_compare_pretrained"] is None
    assert r["depth_models"] == {"1": "from scratch", "2": "trained above", str(r["n_layers"]): "trained above"}


def test_architectures_recomputed_from_the_saved_models(chapter):
    """H4's input: one model per architecture at the profile's H4 depth, each saved, each re-scored here; the llama one
    is the depth curve's model of that depth; llama minus each rival from the saved per-user table."""
    from lab.bench.arch import ARCHS, arch_depth, arch_folder

    r, P, cfg, data = chapter
    depth = arch_depth("smoke")
    assert r["arch_depth"] == depth and set(r["arch_ndcg10"]) == set(ARCHS)
    pu = pd.read_parquet(P.file("02_architectures.parquet"))
    assert list(pu.columns) == ["user", *ARCHS]
    for arch in ARCHS:
        m = SeqRecModel.from_pretrained(P.root / "depth_bench" / arch_folder(arch, depth, cfg.model.arch)).eval()
        assert m.config.backbone_config.model_type == arch and m.num_layers == depth
        assert r["arch_params"][arch] == sum(p.numel() for p in m.parameters())
        assert r["arch_ndcg10"][arch] == pytest.approx(_model_metrics(m, data, "test")["ndcg@10"], abs=1e-6)
        assert pu[arch].mean() == pytest.approx(r["arch_ndcg10"][arch], abs=1e-9)
    # the same width and data for every architecture; GPT-NeoX's MLP has no gate: fewer parameters
    assert r["arch_params"]["gpt_neox"] < r["arch_params"]["llama"]
    for rival, c in r["arch_compare"].items():
        assert c["diff"] == pytest.approx((pu["llama"] - pu[rival]).mean(), abs=1e-12)
        assert c["ci_low"] <= c["diff"] <= c["ci_high"]
    rivals = sorted(r["arch_compare"], key=lambda a: r["arch_compare"][a]["wilcoxon_p"])
    p = np.array([r["arch_compare"][a]["wilcoxon_p"] for a in rivals])
    holm = np.minimum(1, np.maximum.accumulate(p * (len(p) - np.arange(len(p)))))  # Holm by hand, over the rivals
    assert [r["arch_compare"][a]["p_holm"] for a in rivals] == pytest.approx(list(holm))


def test_teacher_comparisons_recomputed_from_the_saved_models(chapter):
    """The teacher − small model row: the means and the mean paired difference from the two saved models, scored
    here; the rare targets counted from the processed training interactions (issue 25)."""
    r, P, _, data = chapter
    teacher, small = lab.load_teacher(P), SeqRecModel.from_pretrained(P.root / "small_scratch").eval()
    hist, target, seen = data.split("test")

    def per_user(model):
        with torch.no_grad():
            scores = torch.cat([model.recommend_scores(hist[i:i + 256]) for i in range(0, len(hist), 256)])
        ranks = _ranks(scores.numpy(), target.numpy(), seen.numpy())
        return np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0)

    d = per_user(teacher) - per_user(small)
    rows = {(c["vs"], c["subset"]): c for c in r["teacher_comparisons"]}
    row = rows[("small (2 layers)", "all")]
    assert row["diff"] == pytest.approx(d.mean(), abs=1e-6) and row["n_users"] == len(d)
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    seqs = _sequences(P, lab.get_config("smoke").data.category)
    train_counts = np.bincount(np.concatenate([s[:-2] for s in seqs]), minlength=data.num_items + 1)
    rare = train_counts[target.numpy()] < 10
    assert r["rare_targets"] == int(rare.sum())
    if 2 <= rare.sum():
        assert rows[("small (2 layers)", "rare")]["diff"] == pytest.approx(d[rare].mean(), abs=1e-6)
    assert any(vs.startswith("EASE") for vs, _ in rows)


def _sequences(P, category):
    """Each user's processed items in order, read from chapter 01's cached interactions (independent of RecData)."""
    inter = pd.read_parquet(P.processed / category / "interactions.parquet")
    return [g["item"].to_numpy() for _, g in inter.groupby("user", sort=True)]

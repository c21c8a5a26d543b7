"""The depth sweep (issue 12, item 4): does depth buy quality in the depth world? `python -m lab bench depth`.

For each seed (new data, new models) the profile's data is generated in the depth world (`lab.config.depth_world`:
the profile's sizes, the depth mechanisms on), and models of each depth L, with the profile teacher's width, heads,
MLP and training budget, are trained from scratch and scored on test with full ranking. Each is read against the
ceiling and the floor of the same data (`reference_metrics`): gap_closed = (NDCG@10 - Markov) / (Bayes - Markov).

Reported per depth: mean NDCG@10 and gap_closed with a 95% t-interval over seeds (users are nested in seeds, so the
seed is the unit of the interval, reference.md). L = a vs L = b (default 2 vs 8): the per-user NDCG@10 difference,
per seed and pooled over seeds (`lab.evaluation.paired_comparison`), and the seed-level mean difference
with its 95% t-interval. Everything lives under `artefacts/<run>/depth_bench/` (its own raw files, cache and models;
finished models are loaded back, `lab.train.train_or_load`). The last line printed by the CLI is the JSON object.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import data as D
from ..recommenders import markov_scorer, popularity_scorer
from ..book import Paths, paths
from ..profiles import get_config, get_profile
from ..data import RecData, SyntheticWorld
from ..evaluation import across_seeds, paired_comparison, score_split
from ..models import build_model, scratch_config
from ..train import train_or_load

__all__ = ["EPOCHS_ONLY", "REFERENCES", "profile_depths", "reference_metrics", "knob_tag", "world_config",
           "bench_paths", "gap_closed", "world_of", "run_seed", "score_depth", "depth_model", "scratch_control",
           "train_depths", "DepthCurve", "paired_columns", "model_label", "depth_curve", "compare_depths", "run"]

EPOCHS_ONLY = 10_000.0  # max_minutes of the sweep's models: no wall-clock cap, the epochs are the budget
REFERENCES = ("bayes", "last_item_bayes", "markov", "popularity")  # the ceiling, its last-item version, the floors


def profile_depths(profile: str) -> tuple:
    """The depths a profile's sweep trains (its block's `depths`, `lab.profiles`)."""
    return tuple(get_profile(profile).depths)


def reference_metrics(rd: RecData, world: SyntheticWorld | None, split: str = "test", k: int = 10,
                      batch_size: int = 256) -> tuple[dict, pd.DataFrame]:
    """NDCG@k of the reference predictors on a split (chapter 01): `bayes` and `last_item_bayes`
    (`lab.data.synthetic.reference_scorers`: the depth world's exact law given each user's complete processed history,
    and the best law given the last item only; left out when `world` is None) and the count baselines `markov` and
    `popularity` (`lab.recommenders`, training split), all ranked by `lab.evaluation.score_split` (full catalogue,
    seen items masked, ties against the target) in float64. Returns ({name: mean NDCG@k}, per-user frame: user, then
    one column per predictor)."""
    scorers = {**(D.reference_scorers(world, rd.item_ids) if world is not None else {}),
               "markov": markov_scorer(rd), "popularity": popularity_scorer(rd)}
    means, frame = {}, pd.DataFrame({"user": rd.users(split).numpy()})
    for name in (r for r in REFERENCES if r in scorers):  # the complete history (`seen`) is the history
        m, pu = score_split(scorers[name], rd, split, ks=(k,), batch_size=batch_size, history="complete")
        means[name] = float(m[f"ndcg@{k}"])
        frame[name] = pu[f"ndcg@{k}"].to_numpy()
    return means, frame


def knob_tag(knobs: dict | None) -> str:
    """The folder name of a sweep with data knobs set (`--set`): "depth_bench" alone without, else
    "depth_bench-<name>=<value>,..." in name order, so each setting of the knobs keeps its own data and models."""
    if not knobs:
        return "depth_bench"
    return "depth_bench-" + ",".join(f"{k}={knobs[k]}" for k in sorted(knobs))


def world_config(profile: str, seed: int, knobs: dict | None = None):
    """The sweep's `BookConfig`: the profile in the depth world, with `knobs` (DataConfig fields) set on top.
    Raises naming the field for a knob `DataConfig` does not have."""
    cfg = get_config(profile, seed, world="depth")
    if knobs:
        fields = {f.name: f for f in dataclasses.fields(cfg.data)}
        unknown = sorted(set(knobs) - set(fields))
        if unknown:
            raise ValueError(f"unknown data knob(s) {unknown}; DataConfig has {sorted(fields)}")
        cast = {k: type(getattr(cfg.data, k))(v) for k, v in knobs.items()}
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **cast))
    return cfg


def bench_paths(profile: str, artefacts=None, seed: int = 0, knobs: dict | None = None) -> Paths:
    """`artefacts/<run>/depth_bench[-<knobs>]`: the sweep's own raw files, processed cache and models."""
    P = paths(profile, artefacts, seed)
    root = P.root / knob_tag(knobs)
    root.mkdir(parents=True, exist_ok=True)
    return Paths(root=root, figures=P.figures, profile=P.profile, seed=P.seed, artefacts=P.artefacts)


def gap_closed(ndcg: float, refs: dict) -> float:
    """(NDCG@10 - Markov) / (Bayes - Markov): the share of the gap between the last-item floor and the ceiling a model
    closes; NaN without a Bayes reference (real data, the shallow world)."""
    if refs.get("bayes") is None:
        return float("nan")
    return (ndcg - refs["markov"]) / (refs["bayes"] - refs["markov"])


def world_of(data_cfg, seed: int) -> SyntheticWorld | None:
    """The generator behind the data when it is known exactly (the synthetic depth world), else None."""
    return D.synthetic_world(data_cfg, seed) if data_cfg.source == "synthetic" and D.is_depth_world(data_cfg) else None


def run_seed(profile: str, seed: int, depths, artefacts=None, progress: bool = False,
             knobs: dict | None = None) -> dict:
    """One seed of the sweep: the depth-world data (with `knobs` set), its references and one model per depth. Returns
    {"refs": {name: NDCG@10}, "per_user": frame (user, references, L<depth> columns), "models": [rows]}."""
    cfg = world_config(profile, seed, knobs)
    P = bench_paths(profile, artefacts, seed, knobs)
    rd, _, stats = D.load_rec_data(cfg.data, P, seed, progress=progress)
    refs, frame = reference_metrics(rd, world_of(cfg.data, seed))
    rows = train_depths(cfg, rd, stats, depths, P.root, seed, refs, frame, progress)
    return {"refs": refs, "per_user": frame, "models": rows}


def score_depth(model, L: int, rd: RecData, refs: dict, frame: pd.DataFrame) -> dict:
    """Score `model` (L layers) on test: its per-user NDCG@10 becomes column `L<L>` of `frame`; returns
    {"L", "ndcg@10", "gap_closed"}."""
    means, pu = score_split(model, rd, "test")
    frame[f"L{L}"] = pu["ndcg@10"].to_numpy()
    return {"L": L, "ndcg@10": float(means["ndcg@10"]), "gap_closed": gap_closed(means["ndcg@10"], refs)}


def depth_model(cfg, rd: RecData, stats: dict, L: int, root, seed: int = 0, progress: bool = False):
    """Train (or load) the model of `L` layers from scratch with the teacher's recipe in `root/L<L>`: the profile
    teacher's width (`lab.models.scratch_config`), data, epochs, patience and learning rate, epochs never minutes.
    Returns `lab.train.train_or_load`'s (model, history, info). The one train-or-load of a depth: chapter 02's depth
    curve (`train_depths`), `python -m lab bench depth`, and chapters 05-06's control (`scratch_control`) share it."""
    # The budget is epochs, never minutes: a wall-clock cap makes the result depend on the machine's load (a 24-layer
    # model, or any model on a busy machine, would be cut short; seed 2's L = 8 once stopped after 2 of 12 epochs
    # while other jobs ran). Every depth gets the profile's epochs and early stopping.
    train_cfg = dataclasses.replace(cfg.train, max_minutes=EPOCHS_ONLY)
    mcfg = scratch_config(cfg.model, L)
    torch.manual_seed(seed)
    model = build_model(mcfg, rd.num_items, rd.max_len, item_titles=rd.item_titles)
    return train_or_load(model, rd, train_cfg, Path(root) / f"L{L}", seed=seed, progress=progress,
                         key={"model": dataclasses.asdict(mcfg), "data": stats.get("config_hash")})


def scratch_control(cfg, P: Paths, rd: RecData, stats: dict, k: int, seed: int = 0, device=None,
                    progress: bool = False):
    """The k-layer model from scratch with the teacher's full recipe (`depth_model` in `<run>/depth_bench`, the folder
    chapter 02's depth curve trains; the profiles' `depths` hold L/4, so chapter 02 trains it and chapters 05 and 06
    load it): the control that says whether distillation helps (issue 24). Returns (model in eval mode on `device`,
    info)."""
    model, _, info = depth_model(cfg, rd, stats, k, P.root / "depth_bench", seed, progress)
    return (model.to(device) if device is not None else model).eval(), info


def train_depths(cfg, rd: RecData, stats: dict, depths, root, seed: int, refs: dict, frame: pd.DataFrame,
                 progress: bool = False) -> list[dict]:
    """Train (or load) one model per depth from scratch, the profile teacher's width and budget, in `root/L<depth>`
    (`depth_model`), and add each one's per-user test NDCG@10 to `frame` as column `L<depth>`. Returns one row per
    depth."""
    rows = []
    for L in depths:
        model, _, info = depth_model(cfg, rd, stats, L, root, seed, progress)
        rows.append({"seed": seed, **score_depth(model, int(L), rd, refs, frame),
                     "train_seconds": float(info["train_seconds"]), "epochs": int(info["epochs"]),
                     "loaded": bool(info.get("loaded", False))})
        print(f"[bench depth] seed {seed} L={L}: test NDCG@10 {rows[-1]['ndcg@10']:.4f}, gap closed "
              f"{rows[-1]['gap_closed']:.3f} ({info['train_seconds']:.0f}s, {info['epochs']} epochs"
              f"{', loaded' if info.get('loaded') else ''})", flush=True)
    return rows


@dataclasses.dataclass
class DepthCurve:
    """Test quality against depth on one seed, the book's own data and teacher beside models of other depths trained
    from scratch (chapter 02)."""

    refs: dict  # {reference: test NDCG@10} (`reference_metrics`; no Bayes on real data or in the shallow world)
    table: pd.DataFrame  # one row per depth, indexed by num_layers: ndcg@10, gap_closed, model
    per_user: pd.DataFrame  # user, the references, one L<depth> column of per-user test NDCG@10 per depth
    compare: dict  # the deepest vs the 2-layer model (else the shallowest): paired test and bootstrap CI
    pretrained_compare: dict | None = None  # a pretrained teacher vs the deepest model from scratch (issue 13)

    def record(self) -> dict:
        """The values chapter 02 records: NDCG@10 and gap closed per depth, the references, the comparisons."""
        t = self.table
        return {"depth_ndcg10": t["ndcg@10"].astype(float).to_dict(),
                "depth_gap_closed": {k: (None if np.isnan(v) else float(v)) for k, v in t["gap_closed"].items()},
                "depth_models": t["model"].to_dict(),
                "depth_references": dict(self.refs), "depth_compare": dict(self.compare),
                "depth_compare_pretrained": dict(self.pretrained_compare) if self.pretrained_compare else None}

    def conclusion(self) -> str:
        """One sentence per finding, printed from the numbers."""
        t = self.table
        lines = ["Test NDCG@10 by depth: " + ", ".join(f"L={L} {v:.4f}" + ("" if m == "from scratch" else f" ({m})")
                                                        for L, v, m in zip(t.index, t["ndcg@10"], t["model"])) + "."]
        if "bayes" in self.refs:
            lines.append(f"Against the Bayes ceiling {self.refs['bayes']:.4f} and the Markov floor "
                         f"{self.refs['markov']:.4f}, the models close " + ", ".join(
                             f"{v:.0%} (L={L})" for L, v in t["gap_closed"].items()) + " of the gap.")
        lines.append(_difference_sentence(self.compare, "depth buys quality on this data.",
                                          "the deeper model is worse here."))
        if self.pretrained_compare:
            lines.append(_difference_sentence(self.pretrained_compare, "the pretrained layers buy quality here.",
                                              "the pretrained teacher is worse than training from scratch here."))
        return "\n".join(lines)


def _difference_sentence(c: dict, better: str, worse: str) -> str:
    """'<b> minus <a>: mean (CI, p, n): verdict' for a paired comparison of two columns of the depth curve."""
    name = {c["a"]: c.get("a_name", f"L={c['a']}"), c["b"]: c.get("b_name", f"L={c['b']}")}
    return (f"{name[c['b']]} minus {name[c['a']]}: {c['diff']:+.4f} NDCG@10 per user (95% bootstrap CI "
            f"{c['ci_low']:+.4f} to {c['ci_high']:+.4f}, Wilcoxon p {c['wilcoxon_p']:.2g}, {c['n_users']} users): "
            + (better if c["clear"] and c["diff"] > 0 else worse if c["clear"] else "no difference beyond noise."))


def paired_columns(frame: pd.DataFrame, a: int, b: int, names: dict | None = None) -> dict:
    """Column L<b> minus column L<a> of a depth curve's per-user frame: `lab.evaluation.paired_comparison` with the
    two depths (`names` labels the two models in sentences)."""
    out = {"a": a, "b": b, **paired_comparison(frame[f"L{b}"].to_numpy(), frame[f"L{a}"].to_numpy())}
    if names:
        out.update(a_name=names.get(a, f"L={a}"), b_name=names.get(b, f"L={b}"))
    return out


def model_label(model) -> str:
    """How the depth curve names a model the chapter trained: "pretrained <backbone>" for an LLM teacher, else
    "trained above"."""
    name = getattr(model.config, "pretrained", None)
    return f"pretrained {Path(name).name}" if name else "trained above"


def depth_curve(cfg, P: Paths, rd: RecData, stats: dict, depths, models: dict | None = None, seed: int = 0,
                progress: bool = False) -> DepthCurve:
    """Chapter 02's depth section: models of `depths` trained from scratch with the teacher's width and epochs
    (`train_depths`, in `<run>/depth_bench`, the folder `python -m lab bench depth` reads back), plus the chapter's
    own `models` ({num_layers: model}, e.g. the teacher), all scored on test against the references of the data
    (`reference_metrics`). The deepest is compared with the 2-layer model (the shallowest when none has 2 layers);
    a pretrained teacher (`model_label`) is also compared with the deepest model trained from scratch."""
    models = dict(models or {})
    refs, frame = reference_metrics(rd, world_of(cfg.data, seed))
    rows = [{**r, "model": "from scratch"} for r in train_depths(
        cfg, rd, stats, [L for L in depths if L not in models], P.root / "depth_bench", seed, refs, frame, progress)]
    rows += [{**score_depth(model, int(L), rd, refs, frame), "model": model_label(model)} for L, model in models.items()]
    table = pd.DataFrame(rows).rename(columns={"L": "num_layers"}).set_index("num_layers").sort_index()
    table = table[["ndcg@10", "gap_closed", "model"]]
    names = {int(L): f"L={L} ({m})" for L, m in table["model"].items() if m.startswith("pretrained")}
    a = 2 if 2 in table.index else int(table.index.min())
    compare = paired_columns(frame, a, int(table.index.max()), names)
    scratch = table.index[table["model"] == "from scratch"]
    pretrained_compare = (paired_columns(frame, int(scratch.max()), min(names), names)
                          if names and len(scratch) else None)
    return DepthCurve(refs=refs, table=table, per_user=frame, compare=compare, pretrained_compare=pretrained_compare)


def _interval(values) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of `lab.evaluation.across_seeds`; no interval (None) from one seed."""
    r = across_seeds(values)
    return (r["estimate"], None, None) if r["n_seeds"] < 2 else (r["estimate"], r["ci_low"], r["ci_high"])


def compare_depths(per_seed: list[dict], a: int, b: int) -> dict:
    """L=b minus L=a in per-user NDCG@10: per seed and pooled paired comparisons, and the seed-level mean with a
    t-CI."""
    diffs, pooled_a, pooled_b = [], [], []
    for s in per_seed:
        fa, fb = s["per_user"][f"L{a}"].to_numpy(), s["per_user"][f"L{b}"].to_numpy()
        diffs.append(paired_comparison(fb, fa))
        pooled_a.append(fa), pooled_b.append(fb)
    mean, low, high = _interval([d["diff"] for d in diffs])
    return {"a": a, "b": b, "diff": "L=b minus L=a, per-user test NDCG@10", "per_seed": diffs,
            "pooled": paired_comparison(np.concatenate(pooled_b), np.concatenate(pooled_a)),
            "seed_mean_diff": mean, "seed_ci": [low, high]}


def run(profile: str = "smoke", seeds=(0,), depths=None, artefacts=None, compare=(2, 8),
        progress: bool = False, knobs: dict | None = None) -> dict:
    """`python -m lab bench depth`: the sweep over `depths` (default: the profile's `depths`) and `seeds`; prints a table
    and returns the JSON-able summary. The comparison pair falls back to the shallowest and deepest depth run when
    `compare` is not among them. `knobs` ({DataConfig field: value}, `--set name=value`) changes the world for a
    tuning run; its data and models live in their own folder (`knob_tag`)."""
    depths = tuple(int(d) for d in (depths or profile_depths(profile)))
    a, b = (int(compare[0]), int(compare[1])) if set(compare) <= set(depths) else (min(depths), max(depths))
    t0 = time.perf_counter()
    data_cfg = world_config(profile, int(seeds[0]), knobs).data  # an unknown knob raises before anything is generated
    per_seed = [run_seed(profile, int(s), depths, artefacts, progress, knobs) for s in seeds]
    models = pd.DataFrame([r for s in per_seed for r in s["models"]])
    refs = pd.DataFrame([s["refs"] for s in per_seed], index=list(seeds))
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print("[bench depth] references (test NDCG@10) per seed:\n" + refs.to_string())
        print("[bench depth] models:\n" + models.to_string(index=False))
    per_depth = {}
    for L, g in models.groupby("L"):
        m, lo, hi = _interval(g["gap_closed"])
        n, nlo, nhi = _interval(g["ndcg@10"])
        per_depth[str(L)] = {"gap_closed": m, "gap_closed_ci": [lo, hi], "ndcg10": n, "ndcg10_ci": [nlo, nhi],
                             "train_seconds": float(g["train_seconds"].mean())}
    out = {"bench": "depth", "profile": profile, "seeds": [int(s) for s in seeds], "depths": list(depths),
           "knobs": {k: getattr(data_cfg, k) for k in (knobs or {})},  # as the world used them (typed)
           "references": {k: _interval(refs[k])[0] for k in REFERENCES},
           "references_per_seed": refs.reset_index(names="seed").to_dict(orient="records"),
           "per_depth": per_depth, "gap_closed": {k: v["gap_closed"] for k, v in per_depth.items()},
           "compare": compare_depths(per_seed, a, b) if a != b else None,
           "seconds": round(time.perf_counter() - t0, 1)}
    return out

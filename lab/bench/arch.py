"""H4's teachers (issue 15): the same recommender on other decoder architectures, trained the same way (chapter 02).

H4 says Llama is better for recommendation than other open architectures. The fair test holds everything but the
block fixed: one model per architecture (`ARCHS`: llama, two Llama-style families, and GPT-NeoX, whose block is not
Llama's: LayerNorm, a GELU MLP, attention and MLP in parallel) with the teacher's width, heads, MLP width, data, epochs
and recipe, trained from scratch at one depth (`arch_depth`), scored per user on test with the book's full-ranking
evaluator. The llama model is the depth curve's model of that depth (`lab.bench.depth.train_depths`, same folder, so it
is trained once); the others live beside it in `depth_bench/<arch>-L<depth>`.

The depth is the profile's H4 depth, not the teacher's: four 24-layer teachers per seed would cost the 2-core CPU
about 20 minutes a seed more; 8 layers already separates depths in the depth world (chapter 02's curve).
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import torch

from ..profiles import get_profile
from ..data import RecData
from ..models import build_model, count_parameters, scratch_config
from ..evaluation import holm, paired_comparison, score_split
from ..train import train_or_load
from .depth import EPOCHS_ONLY

__all__ = ["ARCHS", "arch_depth", "arch_folder", "ArchComparison", "compare_architectures"]

ARCHS = ("llama", "qwen2", "mistral", "gpt_neox")  # the architectures H4 compares; llama first (the claim's)


def arch_depth(profile: str) -> int | None:
    """The depth a profile's architecture comparison trains at (its block's `arch_depth`, `lab.profiles`; None: no
    comparison)."""
    return get_profile(profile).arch_depth


def arch_folder(arch: str, depth: int, teacher_arch: str) -> str:
    """Folder of one model under `depth_bench/`: the depth curve's `L<depth>` for the teacher's own architecture (the
    same model), `<arch>-L<depth>` for the others."""
    return f"L{depth}" if arch == teacher_arch else f"{arch}-L{depth}"


@dataclasses.dataclass
class ArchComparison:
    """Test quality of one model per architecture at one depth (chapter 02)."""

    depth: int
    table: pd.DataFrame  # one row per arch: ndcg@10, hr@10, mrr, params, train_seconds, epochs, loaded
    per_user: pd.DataFrame  # user, one column of per-user test NDCG@10 per arch (H4's input, 02_architectures.parquet)
    compare: pd.DataFrame  # one row per rival: llama minus rival, paired test, bootstrap CI, Holm over the rivals

    def record(self) -> dict:
        """The values chapter 02 records for H4."""
        return {"arch_depth": self.depth, "arch_ndcg10": self.table["ndcg@10"].astype(float).to_dict(),
                "arch_params": self.table["params"].astype(int).to_dict(),
                "arch_compare": {r.rival: {"diff": float(r.diff), "ci_low": float(r.ci_low),
                                           "ci_high": float(r.ci_high), "wilcoxon_p": float(r.wilcoxon_p),
                                           "p_holm": float(r.p_holm)}
                                 for r in self.compare.itertuples()}}

    def conclusion(self, alpha: float = 0.05) -> str:
        """One sentence per rival, printed from the numbers (one seed: chapter 07 pools the seeds)."""
        lines = [f"At {self.depth} layers, test NDCG@10 by architecture: "
                 + ", ".join(f"{a} {v:.4f}" for a, v in self.table["ndcg@10"].items()) + "."]
        for r in self.compare.itertuples():
            if (self.per_user["llama"] == self.per_user[r.rival]).all():
                lines.append(f"{r.rival} scores exactly as llama for every user: at these settings (no sliding window, "
                             f"as many key/value heads as heads) its block is Llama's, weight for weight.")
                continue
            sig = r.p_holm < alpha and (r.ci_low > 0 or r.ci_high < 0)
            lines.append(f"llama minus {r.rival}: {r.diff:+.4f} per user (95% bootstrap CI {r.ci_low:+.4f} to "
                         f"{r.ci_high:+.4f}, Holm-adjusted Wilcoxon p {r.p_holm:.2g}): "
                         + (("llama is better" if r.diff > 0 else f"{r.rival} is better") if sig
                            else "no difference beyond noise") + " on this seed.")
        return "\n".join(lines)


def compare_architectures(cfg, rd: RecData, stats: dict, root, depth: int, archs=ARCHS, seed: int = 0,
                          progress: bool = False) -> ArchComparison:
    """Chapter 02's H4 section: train (or load) one model per architecture in `archs` at `depth` under `root`
    (`<run>/depth_bench`) with the teacher's width and the depth curve's budget (epochs, never minutes), score each on
    test and compare llama with every other per user (paired bootstrap CI, Wilcoxon, Holm over the rivals)."""
    if "llama" not in archs:
        raise ValueError(f"H4 compares llama with the others; archs {tuple(archs)} has no llama")
    train_cfg = dataclasses.replace(cfg.train, max_minutes=EPOCHS_ONLY)  # as `train_depths`: same folder, same key
    rows, frame = [], None
    for arch in archs:
        mcfg = dataclasses.replace(scratch_config(cfg.model, depth), arch=arch)
        torch.manual_seed(seed)
        model = build_model(mcfg, rd.num_items, rd.max_len, item_titles=rd.item_titles)
        model, _, info = train_or_load(model, rd, train_cfg, root / arch_folder(arch, depth, cfg.model.arch),
                                       seed=seed, progress=progress,
                                       key={"model": dataclasses.asdict(mcfg), "data": stats.get("config_hash")})
        means, pu = score_split(model, rd, "test")
        frame = pd.DataFrame({"user": pu["user"].to_numpy()}) if frame is None else frame
        frame[arch] = pu["ndcg@10"].to_numpy()
        rows.append({"arch": arch, **{k: float(means[k]) for k in ("ndcg@10", "hr@10", "mrr")},
                     "params": count_parameters(model), "train_seconds": float(info["train_seconds"]),
                     "epochs": int(info["epochs"]), "loaded": bool(info.get("loaded", False))})
        print(f"[H4] {arch} L={depth}: test NDCG@10 {rows[-1]['ndcg@10']:.4f} ({info['train_seconds']:.0f}s, "
              f"{info['epochs']} epochs{', loaded' if info.get('loaded') else ''})", flush=True)
    compare = pd.DataFrame([{"rival": rival, **paired_comparison(frame["llama"].to_numpy(), frame[rival].to_numpy())}
                            for rival in archs if rival != "llama"])
    compare["p_holm"] = holm(compare["wilcoxon_p"].to_numpy()) if len(compare) else []
    return ArchComparison(depth=int(depth), table=pd.DataFrame(rows).set_index("arch"), per_user=frame,
                          compare=compare)

"""Layerwise Adapter: which transformer layers matter for recommendation?

The package behind the book's chapters. Data flows one way:
data -> models/train/metrics -> fisher -> selection -> distill -> stats; `bench`, `viz` and `notebooks` serve them.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import BookConfig, DataConfig, ModelConfig, TrainConfig, get_config
from .io import read_json, write_json

__all__ = [
    "BookConfig", "DataConfig", "ModelConfig", "TrainConfig", "get_config",
    "setup", "record", "results", "paths", "run_name", "device", "Paths", "REPO_ROOT",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

_CONTEXT: dict = {"chapter": None, "paths": None}


@dataclass
class Paths:
    """Where a profile's artefacts live. Later chapters read what earlier ones wrote here."""

    root: Path  # artefacts/<profile>
    figures: Path  # figures/<profile>

    @property
    def raw(self) -> Path:  # generated or downloaded raw files (Amazon Reviews 2023 format)
        return self.root / "raw"

    @property
    def processed(self) -> Path:  # cached pre-processed data set
        return self.root / "processed"

    @property
    def teacher(self) -> Path:  # the trained teacher (save_pretrained folder)
        return self.root / "teacher"

    @property
    def results(self) -> Path:  # JSON of every chapter's recorded results
        return self.root / "results.json"

    def file(self, name: str) -> Path:
        """A file directly in the artefact folder (e.g. 'fisher_layers.parquet')."""
        return self.root / name


def run_name(profile: str = "default", seed: int = 0) -> str:
    """The folder name of a run: the profile, plus `-seed<N>` for seeds other than 0, so that batch reruns over seeds
    keep their data, models, results and executed notebooks side by side instead of overwriting each other."""
    return profile if int(seed) == 0 else f"{profile}-seed{int(seed)}"


def paths(profile: str = "default", artefacts: str | os.PathLike | None = None, seed: int = 0) -> Paths:
    """The artefact and figure folders of a profile and seed.

    Args:
        profile: profile name.
        artefacts: artefact root; default `$LAB_ARTEFACTS` or `<repo>/artefacts`. The run (`run_name`) is a
            sub-folder: `default`, `default-seed1`, ...
        seed: the run's seed (0 keeps the plain profile folder).
    """
    base = Path(artefacts or os.environ.get("LAB_ARTEFACTS") or REPO_ROOT / "artefacts")
    figs = Path(os.environ.get("LAB_FIGURES") or REPO_ROOT / "figures")
    name = run_name(profile, seed)
    p = Paths(root=base / name, figures=figs / name)
    p.root.mkdir(parents=True, exist_ok=True)
    p.figures.mkdir(parents=True, exist_ok=True)
    return p


def device() -> torch.device:
    """CUDA when present, CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup(seed: int = 0, profile: str = "default", artefacts=None, chapter: str | None = None,
          deterministic: bool = True) -> Paths:
    """Seed everything, make CPU kernels deterministic, set the seaborn theme, and remember the chapter.

    Returns the profile's `Paths`. `$LAB_THREADS` sets torch's CPU threads (useful when several reruns share a
    machine: oversubscribed OpenMP threads spin and can slow a small model down tenfold).
    """
    if os.environ.get("LAB_THREADS"):
        torch.set_num_threads(int(os.environ["LAB_THREADS"]))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    try:
        import seaborn as sns

        sns.set_theme(context="notebook", style="whitegrid")
    except ImportError:  # pragma: no cover
        pass
    p = paths(profile, artefacts, seed)
    _CONTEXT.update(chapter=chapter, paths=p)
    return p


def record(name: str, value, chapter: str | None = None, paths_: Paths | None = None):
    """Record one key result of the current chapter into `<artefacts>/<profile>/results.json`.

    Tests and later chapters read these back (`lab.results()`). Returns `value`.
    """
    p = paths_ or _CONTEXT["paths"]
    ch = chapter or _CONTEXT["chapter"]
    if p is None or ch is None:
        raise RuntimeError("call lab.setup(seed, profile, chapter=...) before lab.record(...)")
    data = read_json(p.results, default={})
    data.setdefault(ch, {})[name] = _plain(value)
    write_json(p.results, data)
    return value


def results(profile: str = "default", artefacts=None, seed: int = 0) -> dict:
    """All recorded results of a profile and seed, as {chapter: {name: value}}."""
    return read_json(paths(profile, artefacts, seed).results, default={})


def _plain(v):
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v

"""The book's house rules: where a run's files live, how a chapter starts and what it keeps (chapters 01-05).

`setup` seeds a chapter and returns its `Paths`; `record` / `record_all` keep its key results in `results.json`;
`load_teacher` and `load_importance` read what chapters 02 and 03 made, or name the command that makes it; `resolve`
and `override` apply the one parameters-cell convention: `None` means "the profile's default".
"""
from __future__ import annotations

import dataclasses
import os
import random
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import DataConfig, real_data_from_env
from .io import read_json, write_json

__all__ = ["REPO_ROOT", "ARCHIVE", "Paths", "run_name", "paths", "TEACHER_CHAPTER", "require_teacher",
           "load_teacher", "trained_or_fresh_teacher", "IMPORTANCE_CHAPTER", "load_importance", "resolve", "override",
           "device", "setup", "record", "record_all", "shown_path", "results", "collect"]

REPO_ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = REPO_ROOT / "archive"  # committed summaries of runs, one folder per run (`lab.archive`, issue 25)

_CONTEXT: dict = {"chapter": None, "paths": None}


@dataclass
class Paths:
    """Where a profile's artefacts live. Later chapters read what earlier ones wrote here."""

    root: Path  # artefacts/<run>
    figures: Path  # figures/<run>
    profile: str = "default"  # the run's profile, seed and artefact root (`--artefacts`; "" = default), so that a
    seed: int = 0  #            message about a missing artefact can name the command that makes it (`command`)
    artefacts: str = ""

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

    def command(self, chapter: str) -> str:
        """The shell command that runs `chapter` (e.g. '02') for this run: same profile, seed, artefacts and data."""
        env = "".join(f"{k}={shlex.quote(os.environ[k])} " for k in ("LAB_RAW_DIR", "LAB_CATEGORY")
                      if os.environ.get(k))
        cmd = f"{env}python -m lab book --profile {self.profile}"
        cmd += f" --seed {self.seed}" if int(self.seed) else ""
        cmd += f" --artefacts {shlex.quote(self.artefacts)}" if self.artefacts else ""
        return f"{cmd} --only {chapter}"


def run_name(profile: str = "default", seed: int = 0, data: DataConfig | None = None) -> str:
    """The folder name of a run: the profile, then the category for the user's own Amazon files, then `-seed<N>` for
    seeds other than 0: `default`, `default-seed1`, `default-Video_Games`, `default-Video_Games-seed1`. Batch reruns
    over seeds and runs on other data keep their data, models, results, figures and executed notebooks side by side
    instead of overwriting each other.

    Args:
        data: the run's data configuration; default: what `get_config` takes from the environment (`$LAB_RAW_DIR`,
            `$LAB_CATEGORY`: real data), else synthetic.
    """
    if data is None:
        real = real_data_from_env()
        category = real[1] if real else None
    else:
        category = data.category if data.source == "amazon" else None  # generated or packaged data: the profile
        #                                                                  names it
    name = profile if category is None else f"{profile}-{category}"
    return name if int(seed) == 0 else f"{name}-seed{int(seed)}"


def paths(profile: str = "default", artefacts: str | os.PathLike | None = None, seed: int = 0,
          create: bool = True) -> Paths:
    """The artefact and figure folders of a profile and seed.

    Args:
        profile: profile name.
        artefacts: artefact root; default `$LAB_ARTEFACTS` or `<repo>/artefacts`. The run (`run_name`) is a
            sub-folder: `default`, `default-seed1`, ...
        seed: the run's seed (0 keeps the plain profile folder).
        create: make the folders (a chapter writing into them); False for a reader of another run, which must not
            leave empty folders behind (chapter 07 looking for the seeds and profiles that ran).
    """
    base = Path(artefacts or os.environ.get("LAB_ARTEFACTS") or REPO_ROOT / "artefacts")
    figs = Path(os.environ.get("LAB_FIGURES") or REPO_ROOT / "figures")
    name = run_name(profile, seed)
    p = Paths(root=base / name, figures=figs / name, profile=profile, seed=int(seed), artefacts=str(artefacts or ""))
    if create:
        p.root.mkdir(parents=True, exist_ok=True)
        p.figures.mkdir(parents=True, exist_ok=True)
    return p


TEACHER_CHAPTER = "02"  # the chapter that trains the teacher (02_teacher)


def require_teacher(paths_: Paths) -> Path:
    """The run's teacher folder; FileNotFoundError naming it and the command that trains it when it holds none."""
    if not (paths_.teacher / "config.json").is_file():
        raise FileNotFoundError(f"no trained teacher in {paths_.teacher}: chapter {TEACHER_CHAPTER} (02_teacher) "
                                f"trains it; run `{paths_.command(TEACHER_CHAPTER)}` first")
    return paths_.teacher


def load_teacher(paths_: Paths | None = None, device: torch.device | str | None = None,
                 folder: str | os.PathLike | None = None):
    """The teacher in eval mode (chapters 03-06; `python -m lab fisher | distill --teacher DIR`): from `folder`, a
    `save_pretrained` folder such as `python -m lab train --out DIR` writes, else from the run's chapter 02 folder
    `paths_.teacher`.

    Args:
        paths_: the run's `Paths` (default: the current chapter's, from `setup`).
        device: where to put it; None leaves it on the CPU.

    Raises FileNotFoundError naming the folder and the command that makes a teacher there when it holds none.
    """
    from .models import SeqRecModel

    if folder is None:
        folder = require_teacher(_current_paths(paths_, "load_teacher"))
    elif not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: no config.json there (a folder written by save_pretrained, e.g. by "
                                "`python -m lab train --out DIR`)")
    teacher = SeqRecModel.from_pretrained(folder)
    return (teacher.to(device) if device is not None else teacher).eval()


def trained_or_fresh_teacher(paths_: Paths, model_cfg, num_items: int, max_len: int):
    """(teacher in eval mode, where it came from): the run's trained teacher (`load_teacher`), or where chapter 02 has
    not trained one a teacher of `model_cfg`'s shape with random weights, for the benchmarks (`python -m lab bench
    fisher | compact`), whose speeds and exactness checks depend on the shape, not the weights. Seed torch first for
    a reproducible fresh one."""
    from .models import build_model

    try:
        return load_teacher(paths_), f"trained teacher ({paths_.teacher})"
    except FileNotFoundError:
        return (build_model(model_cfg, num_items, max_len).eval(),
                f"freshly built teacher of the profile's shape with random weights (no trained teacher at "
                f"{paths_.teacher})")


IMPORTANCE_CHAPTER = "03"  # the chapter that writes importance.parquet (03_fisher)


def load_importance(paths_: Paths | None = None, file: str | os.PathLike | None = None):
    """An importance table (layer_idx, signal, norm, value, ci_low, ci_high): `file`, a parquet of chapter 03's
    importance rows such as `python -m lab fisher --out DIR` writes (`DIR/fisher_layers.parquet`), else the run's
    chapter 03 `importance.parquet` (read by chapters 04 and 05; `python -m lab distill --importance FILE`).

    Args:
        paths_: the run's `Paths` (default: the current chapter's, from `setup`).

    Raises FileNotFoundError naming the file and the command that writes it when there is none, ValueError naming the
    columns it lacks (`lab.fisher.tables.read_importance`).
    """
    from .fisher.tables import read_importance

    if file is not None:
        if not Path(file).is_file():
            raise FileNotFoundError(f"{file}: no such file (`python -m lab fisher --out DIR` writes "
                                    "DIR/fisher_layers.parquet)")
        return read_importance(file)
    p = _current_paths(paths_, "load_importance")
    f = p.file("importance.parquet")
    if not f.is_file():
        raise FileNotFoundError(f"no importance table at {f}: chapter {IMPORTANCE_CHAPTER} (03_fisher) writes it; "
                                f"run `{p.command(IMPORTANCE_CHAPTER)}` first")
    return read_importance(f)


def _current_paths(paths_: Paths | None, what: str) -> Paths:
    p = paths_ or _CONTEXT["paths"]
    if p is None:
        raise RuntimeError(f"call lab.setup(seed, profile, chapter=...) before lab.{what}(), or pass the Paths")
    return p


# -- the parameters cell -------------------------------------------------------------------------------------------
def resolve(value, default):
    """`default` when a parameters-cell value is None ("use the profile's default"), else the value itself.

    The one convention of every chapter's parameters cell: `None` means the profile's default, so 0, "" and [] keep
    their plain meaning (no users, no adapters, ...). Papermill and `python -m lab book -p NAME=null` pass None.
    """
    return default if value is None else value


def override(cfg, **values):
    """A copy of the dataclass `cfg` with every field given a value that is not None (`resolve` for several fields
    at once): `override(FisherConfig.for_profile(PROFILE), n_samples=N_SAMPLES, n_boot=N_BOOT)`."""
    unknown = [k for k in values if k not in {f.name for f in dataclasses.fields(cfg)}]
    if unknown:
        raise TypeError(f"{type(cfg).__name__} has no field {', '.join(unknown)}")
    return dataclasses.replace(cfg, **{k: v for k, v in values.items() if v is not None})


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
    """Record one key result of the current chapter into `<artefacts>/<run>/results.json`, silently.

    Tests and later chapters read these back (`lab.results()`). Returns `value`.
    """
    _write_results({name: value}, chapter, paths_)
    return value


def record_all(values: dict, chapter: str | None = None, paths_: Paths | None = None) -> None:
    """Record several key results of the current chapter at once ({name: value}, one write) and say so in one line
    (how many, where, relative to the repository): a chapter's last cell shows that line, not the values, which
    the chapter has already shown where it measured them. Returns None, so nothing else is displayed."""
    where = _write_results(values, chapter, paths_)
    print(f"Recorded {len(values)} results of chapter {where[0]} in {where[1]} (read back with lab.results).")


def _write_results(values: dict, chapter: str | None, paths_: Paths | None) -> tuple[str, str]:
    """Merge `values` into the chapter's entry of results.json; return (chapter, the file as a reader may see it)."""
    p = paths_ or _CONTEXT["paths"]
    ch = chapter or _CONTEXT["chapter"]
    if p is None or ch is None:
        raise RuntimeError("call lab.setup(seed, profile, chapter=...) before lab.record(...)")
    data = read_json(p.results, default={})
    data.setdefault(ch, {}).update({str(k): _plain(v) for k, v in values.items()})
    write_json(p.results, data)
    return ch, shown_path(p.results)


def shown_path(path: str | os.PathLike) -> str:
    """`path` as a page may show it: relative to the repository when inside it, else its last three parts (a
    published page never carries the machine's absolute paths)."""
    path = Path(path).resolve()
    if path.is_relative_to(REPO_ROOT):
        return path.relative_to(REPO_ROOT).as_posix()
    return "/".join(("…", *path.parts[-3:]))


def results(profile: str = "default", artefacts=None, seed: int = 0) -> dict:
    """All recorded results of a profile and seed, as {chapter: {name: value}}."""
    return read_json(paths(profile, artefacts, seed, create=False).results, default={})


def _flat(prefix: str, v):
    """(key, value) pairs of a recorded value, nested dicts flattened with "/" (`collect`)."""
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _flat(f"{prefix}/{k}", x)
    else:
        yield prefix, v


def collect(profile: str = "default", seeds=(0,), artefacts=None, write: bool = True):
    """Every recorded value of a profile's seeds as one tidy frame (issue 15: batch reruns, chapter 07).

    Columns: seed, chapter, key (nested dicts flattened as "a/b"), value (float for numbers and booleans, NaN
    otherwise) and json (the value as JSON text, for lists and strings). Writes `artefacts/<profile>-results.parquet`
    (atomically) unless `write` is False; a seed without results contributes no rows.
    """
    import json

    import pandas as pd

    from .io import write_parquet

    rows = []
    for seed in seeds:
        for chapter, values in results(profile, artefacts, seed).items():
            for key, v in (kv for name, x in values.items() for kv in _flat(name, x)):
                num = float(v) if isinstance(v, (int, float, bool)) and v is not None else float("nan")
                rows.append({"seed": int(seed), "chapter": chapter, "key": key, "value": num,
                             "json": json.dumps(v, default=str)})
    frame = pd.DataFrame(rows, columns=["seed", "chapter", "key", "value", "json"])
    if write:
        base = Path(artefacts or os.environ.get("LAB_ARTEFACTS") or REPO_ROOT / "artefacts")
        write_parquet(base / f"{run_name(profile)}-results.parquet", frame)
    return frame


def _plain(v):
    """`v` as plain JSON types (tensors and arrays to lists, numpy scalars to Python ones, dict keys to str)."""
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

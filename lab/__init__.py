"""Layerwise Adapter: which transformer layers matter for recommendation?

The package behind the book's chapters, in layers: `LAYERS` below is the one statement of the order (CONTRIBUTING.md
points here; `tests/test_layout.py` checks every import against it).
`lab.book` holds the house rules every chapter uses (paths, setup, record, loading earlier chapters' artefacts, the
parameters-cell convention); they are re-exported here as `lab.setup`, `lab.record`, ...
"""
from __future__ import annotations

from .book import (collect, IMPORTANCE_CHAPTER, REPO_ROOT, TEACHER_CHAPTER, Paths, device, load_importance,
                   load_teacher, override, paths, record, record_all, require_teacher, resolve, results, run_name,
                   setup)
from .config import BookConfig, DataConfig, ModelConfig, TrainConfig
from .profiles import get_config

__all__ = [
    "BookConfig", "DataConfig", "ModelConfig", "TrainConfig", "get_config",
    "setup", "record", "record_all", "results", "paths", "run_name", "device", "Paths", "REPO_ROOT",
    "load_teacher", "load_importance", "require_teacher", "resolve", "override", "TEACHER_CHAPTER",
    "IMPORTANCE_CHAPTER", "collect",
]

# The package's layers, bottom first: a module imports only modules of earlier layers and of its own package, never one
# of its own layer or a later one (lazy imports inside functions count too). The first layer holds the leaves, which
# import nothing of ours. `tests/test_layout.py` checks every import against this list; a new module gets a place here.
LAYERS = (
    ("config", "io", "constants", "console"),  # leaves: import nothing of ours
    ("profiles",),  # everything that differs by profile, one block per profile
    ("data",),  # readers, preprocessing, splits, synthetic worlds, the cache
    ("backbones",),  # pretrained decoder stacks by name or path (issue 13); `models` builds the LLM teacher on them
    ("metrics", "models"),  # full-ranking metrics; the recommender models
    ("evaluation",),  # scoring a recommender on a split, and the statistics of every comparison
    ("train", "recommenders", "compression"),  # training; the recommenders that are not the book's transformer;
    #                                             compressing the teacher instead of distilling it
    ("fisher",),
    ("importance",),
    ("selection",),
    ("distill",),
    ("book",),  # house rules of a chapter (paths, setup, record, loading earlier chapters' artefacts); = `lab` root
    ("hypotheses",),  # the criteria that decide the authors' claims (issue 15) and their computation from results
    ("bench", "viz", "crosscheck"),  # serve the chapters, or check them by hand: may import every module above
    ("chapters",),  # each chapter's glue (grids, records, sentences, tables), one module per chapter
    ("notebooks",),  # the papermill harness that runs the chapters
    ("rerun", "site", "launch", "archive"),  # batch reruns over seeds (issue 15); `site`: a run's chapters as a
    #   website (issue 17); `launch`: train / fisher / distill on 1 process or N (issue 16); `archive`: a run's
    #   summaries kept in the repository (issue 25)
    ("__main__",),  # the command line: `python -m lab book|bench|train|fisher|distill|sync ...`
)

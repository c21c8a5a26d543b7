"""Layerwise Adapter: which transformer layers matter for recommendation?

The package behind the book's chapters, in layers (bottom first; `tests/test_layout.py` checks every import):
config, io, constants, stats (leaves) -> data -> backbones -> metrics, models -> train, baselines -> fisher -> importance ->
selection -> distill -> book -> hypotheses -> bench, viz, crosscheck (they serve or check the chapters) -> notebooks -> rerun ->
__main__.
`lab.book` holds the house rules every chapter uses (paths, setup, record, loading earlier chapters' artefacts, the
parameters-cell convention); they are re-exported here as `lab.setup`, `lab.record`, ...
"""
from __future__ import annotations

from .book import (_CONTEXT, collect, IMPORTANCE_CHAPTER, REPO_ROOT, TEACHER_CHAPTER, Paths, device, load_importance,
                   load_teacher, override, paths, record, record_all, require_teacher, resolve, results, run_name,
                   setup)
from .config import BookConfig, DataConfig, ModelConfig, TrainConfig, get_config

__all__ = [
    "BookConfig", "DataConfig", "ModelConfig", "TrainConfig", "get_config",
    "setup", "record", "record_all", "results", "paths", "run_name", "device", "Paths", "REPO_ROOT",
    "load_teacher", "load_importance", "require_teacher", "resolve", "override", "TEACHER_CHAPTER",
    "IMPORTANCE_CHAPTER", "collect",
]

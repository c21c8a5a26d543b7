"""Shared fixtures. `smoke_book` executes chapters (in order, each once per session) in the smoke profile into a
temporary artefact folder, so every chapter test reads the values that chapter recorded."""
from __future__ import annotations

import os

import pytest
import torch
from toys import toy_data

# Unit tests use tiny models: one torch thread is fastest for them, and two threads on a busy shared 2-core machine
# stall each other ~10x (measured). Chapters run in their own kernels and keep the machine's thread count.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    """64 toy Markov histories (`tests/toys.py`); a test module may define its own `data`."""
    return toy_data(64)


class SmokeBook:
    """Runs chapters on demand, prerequisites first; a chapter runs at most once per test session."""

    def __init__(self, root):
        self.artefacts = root / "artefacts"
        self.runs = root / "runs"
        self.done: dict[str, object] = {}

    def run(self, prefix: str) -> dict:
        """Run every chapter up to and including the one starting with `prefix`; return all recorded results."""
        import lab
        from lab.notebooks import chapters, run_chapter

        for ch in chapters():
            if ch.stem not in self.done:
                try:
                    run_chapter(ch, profile="smoke", seed=0, artefacts=str(self.artefacts), out_dir=self.runs)
                    self.done[ch.stem] = True
                except Exception as e:  # remembered, so dependants fail fast with the same cause
                    self.done[ch.stem] = e
            if isinstance(self.done[ch.stem], Exception):
                raise RuntimeError(f"chapter {ch.stem} failed: {self.done[ch.stem]}")
            if ch.stem.startswith(prefix):
                return lab.results("smoke", self.artefacts)
        raise LookupError(f"no chapter starts with {prefix!r}")

    def run_seed(self, seed: int, prefixes: list[str]) -> dict:
        """Run the chapters starting with `prefixes` for another seed into the same artefact root (chapter 07 pools
        seeds); once per seed and chapter per session. Returns that seed's recorded results."""
        import lab
        from lab.notebooks import run_chapter, select_chapters

        for ch in select_chapters(prefixes):
            if (seed, ch.stem) not in self.done:
                run_chapter(ch, profile="smoke", seed=seed, artefacts=str(self.artefacts),
                            out_dir=self.runs / f"seed{seed}")
                self.done[(seed, ch.stem)] = True
        return lab.results("smoke", self.artefacts, seed)


def pytest_collection_modifyitems(config, items):
    """Every chapter test (tests/test_chapter_*.py, or any test using `smoke_book`) is marked `notebook`, so that
    `pytest -m "not notebook"` is the fast unit suite."""
    for item in items:
        if item.path.name.startswith("test_chapter_") or "smoke_book" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.notebook)


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    os.environ["LAB_FIGURES"] = str(root / "figures")
    return SmokeBook(root)

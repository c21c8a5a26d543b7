"""lab.book: the house rules every chapter uses (paths, record, earlier chapters' artefacts, the parameters-cell
convention), re-exported by `lab`; and every configuration refuses a profile it does not know."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import lab
from lab import book
from lab.bench import BenchConfig
from lab.config import BookConfig
from lab.profiles import get_config
from lab.distill import DistillConfig, DistillGrid
from lab.fisher import IMPORTANCE_COLUMNS, FisherConfig, save_tables
from lab.selection import SelectionConfig


def test_lab_exports_what_it_names():
    # (An identity check of each re-export against `lab.book` was dropped: `from .book import x` makes it true by
    # construction. What can break is a name in `__all__` that the package no longer has, or a wrong REPO_ROOT.)
    missing = [name for name in lab.__all__ if not hasattr(lab, name)]
    assert not missing, missing
    assert (lab.REPO_ROOT / "notebooks").is_dir() and (lab.REPO_ROOT / "lab" / "__init__.py").is_file()


def test_resolve_none_is_the_only_default():
    assert lab.resolve(None, 7) == 7
    assert lab.resolve(0, 7) == 0 and lab.resolve([], [1]) == [] and lab.resolve("", "x") == ""  # plain values


def test_override_replaces_only_given_fields():
    base = FisherConfig.for_profile("smoke")
    got = lab.override(base, n_samples=None, n_boot=7, ablation_users=0)
    assert got.n_samples == base.n_samples and got.n_boot == 7 and got.ablation_users == 0
    assert base.n_boot != 7  # a copy: the profile's config is left as it was
    assert lab.override(base) == base
    with pytest.raises(TypeError, match="no field n_sample"):
        lab.override(base, n_sample=3)


def test_record_all_and_record_write_one_results_file(tmp_path, capsys):
    P = lab.paths("smoke", tmp_path)
    lab.record("a", 1, chapter="99_x", paths_=P)
    values = {"b": [1.5, 2], "c": {3: "x"}}
    assert lab.record_all(values, chapter="99_x", paths_=P) is None  # a chapter's last line displays nothing more
    assert lab.results("smoke", tmp_path) == {"99_x": {"a": 1, "b": [1.5, 2], "c": {"3": "x"}}}
    said = capsys.readouterr().out
    assert said == f"Recorded 2 results of chapter 99_x in …/{P.root.parent.name}/smoke/results.json " \
                   "(read back with lab.results).\n"  # one line, no absolute path


def test_record_needs_a_chapter(monkeypatch):
    monkeypatch.setattr(book, "_CONTEXT", {"chapter": None, "paths": None})  # no chapter set up yet
    with pytest.raises(RuntimeError, match="lab.setup"):
        lab.record_all({"a": 1})
    with pytest.raises(RuntimeError, match="lab.setup"):
        lab.load_importance()


def test_load_importance_names_the_command_that_writes_it(tmp_path):
    P = lab.paths("smoke", tmp_path, seed=2)
    with pytest.raises(FileNotFoundError) as e:
        lab.load_importance(P)
    msg = str(e.value)
    assert "importance.parquet" in msg and "chapter 03" in msg and "--only 03" in msg and "--seed 2" in msg
    table = pd.DataFrame({"layer_idx": [0, 1], "signal": "magnitude", "norm": "raw", "value": [0.5, 1.0],
                          "ci_low": float("nan"), "ci_high": float("nan"), "extra": 1})
    save_tables(P, table)
    back = lab.load_importance(P)
    assert list(back.columns) == IMPORTANCE_COLUMNS and back["value"].tolist() == [0.5, 1.0]


@pytest.mark.parametrize("make", [
    FisherConfig.for_profile, SelectionConfig.for_profile, DistillConfig.for_profile, DistillGrid.for_profile,
    BenchConfig.for_profile, get_config],
    ids=["FisherConfig", "SelectionConfig", "DistillConfig", "DistillGrid", "BenchConfig", "get_config"])
def test_configs_refuse_an_unknown_profile(make):
    for profile in ("smoke", "default", "full"):
        assert make(profile) is not None
    with pytest.raises(ValueError, match="unknown profile 'smok'"):
        make("smok")


def test_dead_fields_are_gone():
    assert "stability_seeds" not in {f.name for f in dataclasses.fields(FisherConfig)}  # chapter 03's STABILITY_SEEDS
    assert not hasattr(BookConfig, "to_dict")


def test_every_for_profile_reads_its_profile_block():
    """`shallow` is the default profile in another world: every config gets default's budgets, none silently full's;
    each class is built from its section of the block (`lab.profiles`)."""
    from lab.bench.compact import BenchConfig
    from lab.distill import DistillConfig, DistillGrid
    from lab.fisher import FisherConfig
    from lab.fisher.probes import ProbeConfig
    from lab.profiles import get_profile
    from lab.selection import SelectionConfig

    sections = {BenchConfig: "bench", DistillConfig: "distill", DistillGrid: "distill_grid", FisherConfig: "fisher",
                SelectionConfig: "selection", ProbeConfig: "probes"}
    for cls, section in sections.items():
        assert cls.for_profile("shallow") == cls.for_profile("default"), cls.__name__
        assert cls.for_profile("llm") != cls.for_profile("default"), cls.__name__  # sized for the 30-layer LLM
        if cls is not ProbeConfig:
            assert cls.for_profile("full") != cls.for_profile("default"), cls.__name__
        for name, value in getattr(get_profile("smoke"), section).items():
            assert getattr(cls.for_profile("smoke"), name) == value, (cls.__name__, name)
        with pytest.raises(ValueError, match="unknown profile"):
            cls.for_profile("nonsense")

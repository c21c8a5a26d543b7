"""Every profile in one block (lab.profiles, issue 23): the blocks build every config, a field a class lacks raises,
a throw-away profile written as one block in a file of its own runs chapter 01, and chapter 01 runs on a slice of
the real MovieLens-100K (issue 25)."""
from __future__ import annotations

import dataclasses
import zipfile

import numpy as np
import pandas as pd
import pytest

from lab.profiles import PROFILES, Profile, add_profiles, get_config, get_profile, profile_config

THROWAWAY = '''
import dataclasses
from lab.profiles import SMOKE

THROWAWAY = dataclasses.replace(SMOKE, name="throwaway", about="a test's profile: smoke with 300 users",
                                data=dataclasses.replace(SMOKE.data, n_users=300))
'''


def test_every_block_builds_every_config():
    from lab.bench.compact import BenchConfig
    from lab.distill import DistillConfig, DistillGrid
    from lab.fisher import FisherConfig
    from lab.fisher.probes import ProbeConfig
    from lab.selection import SelectionConfig

    for name, block in PROFILES.items():
        assert block.name == name and isinstance(block, Profile)
        cfg = get_config(name, seed=3)
        assert cfg.profile == name and cfg.seed == 3 and cfg.model.num_layers == block.model.num_layers
        for cls in (BenchConfig, DistillConfig, DistillGrid, FisherConfig, SelectionConfig, ProbeConfig):
            assert cls.for_profile(name) is not None
        assert all(0 < d for d in block.depths) and (block.arch_depth is None or block.arch_depth > 0)
    cfg = get_config("smoke")
    cfg.data.n_users = 1  # a chapter's copy: the block is untouched
    assert get_profile("smoke").data.n_users == 400 and get_config("smoke").data.n_users == 400


def test_a_field_the_class_lacks_raises_naming_it(monkeypatch):
    from lab.fisher import FisherConfig

    bad = dataclasses.replace(get_profile("smoke"), name="bad", fisher={"n_sample": 5})
    monkeypatch.setitem(PROFILES, "bad", bad)
    with pytest.raises(ValueError, match=r"'bad', section 'fisher': FisherConfig has no field\(s\) \['n_sample'\]"):
        FisherConfig.for_profile("bad")
    with pytest.raises(ValueError, match="section 'fishr' does not exist"):
        profile_config(FisherConfig, "smoke", "fishr")
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        get_config("nope")


def test_profile_files_add_blocks_and_refuse_clashes(tmp_path, monkeypatch):
    monkeypatch.setattr("lab.profiles.PROFILES", dict(PROFILES))
    import lab.profiles as LP

    path = tmp_path / "mine.py"
    path.write_text(THROWAWAY)
    assert add_profiles(path) == ["throwaway"]
    assert LP.get_config("throwaway").data.n_users == 300 and LP.get_config("throwaway").model.num_layers == 8
    clash = tmp_path / "clash.py"
    clash.write_text("import dataclasses\nfrom lab.profiles import SMOKE\n"
                     "X = dataclasses.replace(SMOKE, name='default')\n")
    with pytest.raises(ValueError, match="'default' is already defined"):
        add_profiles(clash)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no Profile block"):
        add_profiles(empty)


def test_a_throwaway_profile_in_one_block_runs_chapter_01(tmp_path, monkeypatch):
    """The block is the only thing written: chapter 01 runs on it in a papermill kernel and records its sizes, which
    match the generated raw file counted here by hand (the 5-core by pandas)."""
    import lab
    from lab.notebooks import NOTEBOOKS, run_chapter

    path = tmp_path / "mine.py"
    path.write_text(THROWAWAY)
    monkeypatch.setenv("LAB_PROFILES", str(path))
    monkeypatch.setenv("LAB_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setattr("lab.profiles.PROFILES", dict(PROFILES))
    add_profiles(path)
    run_chapter(NOTEBOOKS / "01_data.py", profile="throwaway", artefacts=str(tmp_path / "art"),
                out_dir=tmp_path / "runs")
    r = lab.results("throwaway", tmp_path / "art")["01_data"]
    reviews = pd.read_json(tmp_path / "art" / "throwaway" / "raw" / "Synthetic_Books.jsonl.gz", lines=True)
    pairs = reviews.drop_duplicates(["user_id", "parent_asin"])
    assert reviews["user_id"].nunique() == 300  # the block's size reached the kernel
    kept = five_core(pairs["user_id"].to_numpy(), pairs["parent_asin"].to_numpy())
    assert (r["n_users"], r["n_items"], r["n_interactions"]) == kept


def five_core(users, items, k=5):
    """(users, items, interactions) left by an iterative k-core, counted with pandas (independent of lab.data)."""
    df = pd.DataFrame({"u": users, "i": items})
    while True:
        keep = df["u"].map(df["u"].value_counts()).ge(k) & df["i"].map(df["i"].value_counts()).ge(k)
        if keep.all():
            return df["u"].nunique(), df["i"].nunique(), len(df)
        df = df[keep]


def test_chapter_01_runs_on_a_slice_of_movielens(tmp_path, monkeypatch):
    """Chapter 01 on the `ml100k` profile with the wheel cut to its first 120 users (a project-made zip of the real
    files): the recorded sizes match the slice's 5-core counted by hand, the tie check ran, no Bayes ceiling."""
    import lab
    from lab.data.movielens import MEMBER_DIR, wheel_path
    from lab.notebooks import NOTEBOOKS, run_chapter

    with zipfile.ZipFile(wheel_path()) as zf:
        inter = zf.read(MEMBER_DIR + "ml-100k.inter").decode().splitlines()
        item = zf.read(MEMBER_DIR + "ml-100k.item")
    rows = [ln.split("\t") for ln in inter[1:]]
    keep_users = {str(u) for u in range(1, 121)}
    sliced = [inter[0]] + [ln for ln, r in zip(inter[1:], rows) if r[0] in keep_users]
    wheel = tmp_path / "slice.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(MEMBER_DIR + "ml-100k.inter", "\n".join(sliced) + "\n")
        zf.writestr(MEMBER_DIR + "ml-100k.item", item)
    monkeypatch.setenv("LAB_MOVIELENS_WHEEL", str(wheel))
    monkeypatch.setenv("LAB_FIGURES", str(tmp_path / "figures"))
    run_chapter(NOTEBOOKS / "01_data.py", profile="ml100k", artefacts=str(tmp_path / "art"), out_dir=tmp_path / "runs")
    r = lab.results("ml100k", tmp_path / "art")["01_data"]
    mine = np.array([r for r in rows if r[0] in keep_users])
    assert r["rows_read"] >= len(mine) and r["rows_skipped"] == 0
    assert (r["n_users"], r["n_items"], r["n_interactions"]) == five_core(mine[:, 0], mine[:, 1])
    assert r["source"] == "movielens" and r["world"] is None and r["bayes_ndcg10"] is None
    assert r["tie_break"] == "shuffle" and r["tied_share"] > 0.5
    assert {t["order"] for t in r["tie_orders"]} == {"shuffle seed 1", "item"}

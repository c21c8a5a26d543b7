"""`python -m lab book` as a new user meets it: runs on other data keep their own folders, and a wrong first step
ends with one message naming what is missing and the command that makes it (issue 10, items 10 and 13)."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

import lab
from lab.__main__ import main
from lab.config import check_category
from lab.profiles import get_config
from lab.data import DataError, prepare_data, raw_files
from lab.notebooks import ChapterFailed, chapters, run_dir


@pytest.fixture
def synthetic_env(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_RAW_DIR", raising=False)
    monkeypatch.delenv("LAB_CATEGORY", raising=False)
    monkeypatch.setenv("LAB_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setattr("lab.notebooks.RUNS", tmp_path / "runs")
    return monkeypatch


def _folders(profile, seed, root):
    p = lab.paths(profile, root / "artefacts", seed)
    return {"artefacts": p.root, "figures": p.figures, "runs": run_dir(profile, seed)}


# --- item 10: a real-data run keeps its own folders -------------------------------------------------------------------

def test_real_data_runs_never_share_a_folder_with_synthetic_ones(synthetic_env, tmp_path):
    seen = {}
    for profile, seed in itertools.product(("smoke", "default", "full"), (0, 1, 2)):
        for category in (None, "Video_Games", "All_Beauty"):
            if category is None:
                synthetic_env.delenv("LAB_RAW_DIR", raising=False)
                synthetic_env.delenv("LAB_CATEGORY", raising=False)
            else:
                synthetic_env.setenv("LAB_RAW_DIR", str(tmp_path / "raw"))
                synthetic_env.setenv("LAB_CATEGORY", category)
            for kind, folder in _folders(profile, seed, tmp_path).items():
                assert folder not in seen, f"{(profile, seed, category)} shares {folder} with {seen[folder]}"
                seen[folder] = (profile, seed, category)
            if category:
                assert get_config(profile, seed).data.source == "amazon"
    synthetic_env.delenv("LAB_RAW_DIR")
    assert lab.run_name("default") == "default" and lab.run_name("default", 1) == "default-seed1"
    synthetic_env.setenv("LAB_RAW_DIR", str(tmp_path / "raw"))
    synthetic_env.setenv("LAB_CATEGORY", "Video_Games")
    assert lab.run_name("default") == "default-Video_Games"
    assert lab.run_name("default", 1) == "default-Video_Games-seed1"
    assert _folders("default", 1, tmp_path)["runs"] == tmp_path / "runs" / "default-Video_Games-seed1"
    # the recorded results of the two runs stay apart
    lab.record("x", "amazon", chapter="99_test", paths_=lab.paths("smoke", tmp_path / "artefacts"))
    assert lab.results("smoke", tmp_path / "artefacts")["99_test"]["x"] == "amazon"
    synthetic_env.delenv("LAB_RAW_DIR")
    assert lab.results("smoke", tmp_path / "artefacts") == {}


def test_run_name_follows_an_explicit_data_config():
    assert lab.run_name("smoke", 0, get_config("smoke").data) == "smoke"
    amazon = lab.DataConfig(source="amazon", category="Video_Games", raw_dir="/x")
    assert lab.run_name("smoke", 3, amazon) == "smoke-Video_Games-seed3"


@pytest.mark.parametrize("bad", ["Video Games", "../etc", "a/b", "Video-Games", "", "seed1", "Toys&Games", "é"])
def test_odd_categories_are_refused(bad, synthetic_env):
    with pytest.raises(ValueError, match="category"):
        check_category(bad)
    synthetic_env.setenv("LAB_RAW_DIR", "/somewhere")
    synthetic_env.setenv("LAB_CATEGORY", bad)
    with pytest.raises(ValueError, match="LAB_CATEGORY|category"):
        lab.run_name("smoke")


def test_raw_dir_without_category_says_which_variable_to_set(synthetic_env):
    synthetic_env.setenv("LAB_RAW_DIR", "/somewhere")
    with pytest.raises(ValueError, match="LAB_CATEGORY is not"):
        get_config("smoke")


# --- item 13 (a): a missing raw-data folder ---------------------------------------------------------------------------

def test_missing_raw_folder_is_named_before_any_chapter_runs(synthetic_env, tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    synthetic_env.setenv("LAB_RAW_DIR", str(missing))
    synthetic_env.setattr("lab.notebooks.run_chapter", lambda *a, **k: pytest.fail("a chapter ran"))
    assert main(["book", "--profile", "smoke", "--only", "01", "--artefacts", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "folder not found" in err
    assert "meta_<Category>.jsonl.gz" in err and "<Category>.jsonl.gz" in err and ".parquet" in err
    assert "Traceback" not in err


def test_missing_review_file_lists_the_categories_found(synthetic_env, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "All_Beauty.jsonl.gz").write_bytes(b"x")
    (raw / "meta_All_Beauty.jsonl.gz").write_bytes(b"x")
    synthetic_env.setenv("LAB_RAW_DIR", str(raw))
    synthetic_env.setenv("LAB_CATEGORY", "Video_Games")
    assert main(["book", "--profile", "smoke", "--only", "01", "--artefacts", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no review file for category 'Video_Games'" in err and "categories found there: All_Beauty" in err


def test_the_data_loader_names_the_missing_folder_too(tmp_path):
    cfg = lab.DataConfig(source="amazon", category="Video_Games", raw_dir=str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"gone: raw data folder not found.*Video_Games\.jsonl\.gz"):
        prepare_data(cfg, lab.Paths(root=tmp_path / "art", figures=tmp_path / "fig"), progress=False)
    with pytest.raises(DataError, match="folder not found"):
        raw_files("Video_Games", tmp_path / "gone")


def test_cli_subprocess_missing_raw_folder(tmp_path):
    env = {**os.environ, "LAB_RAW_DIR": str(tmp_path / "nonexistent"), "LAB_FIGURES": str(tmp_path / "f")}
    env.pop("LAB_CATEGORY", None)
    r = subprocess.run([sys.executable, "-m", "lab", "book", "--profile", "smoke", "--only", "01",
                        "--artefacts", str(tmp_path / "a")], capture_output=True, text=True, env=env,
                       cwd=lab.REPO_ROOT, timeout=300)
    assert r.returncode != 0
    assert "nonexistent: raw data folder not found" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout.strip() == ""


# --- item 13 (b): an unknown chapter ----------------------------------------------------------------------------------

def test_unknown_chapter_is_an_error_listing_the_chapters(synthetic_env, capsys):
    synthetic_env.setattr("lab.notebooks.run_chapter", lambda *a, **k: pytest.fail("a chapter ran"))
    assert main(["book", "--profile", "smoke", "--only", "99"]) == 2
    out = capsys.readouterr()
    assert "no chapter starts with '99'" in out.err
    assert all(ch.stem in out.err for ch in chapters())
    assert '"seconds"' not in out.out


# --- item 13 (c): a chapter run before the one that makes its input ---------------------------------------------------

def test_load_teacher_on_an_empty_artefact_folder_names_the_command(synthetic_env, tmp_path):
    P = lab.paths("smoke", tmp_path / "artefacts", seed=1)
    with pytest.raises(FileNotFoundError) as e:
        lab.load_teacher(P)
    msg = str(e.value)
    assert str(P.teacher) in msg
    assert f"python -m lab book --profile smoke --seed 1 --artefacts {tmp_path / 'artefacts'} --only 02" in msg


def test_chapters_needing_the_teacher_are_stopped_before_they_run(synthetic_env, tmp_path, capsys):
    synthetic_env.setattr("lab.notebooks.run_chapter", lambda *a, **k: pytest.fail("a chapter ran"))
    needing = [ch.stem[:2] for ch in chapters() if "load_teacher(" in ch.read_text()]
    assert needing, "chapters 03-05 load the teacher through lab.load_teacher"
    for ch in needing:
        assert main(["book", "--profile", "smoke", "--only", ch, "--artefacts", str(tmp_path / "a")]) == 2
        err = capsys.readouterr().err
        assert "no trained teacher" in err and "python -m lab book --profile smoke" in err and "--only 02" in err


def test_a_failing_chapter_exits_1_with_its_message(synthetic_env, tmp_path, capsys):
    def boom(path, **kw):
        raise ChapterFailed(f"chapter {path.stem} failed in cell 4 (index 4): ValueError: boom")

    synthetic_env.setattr("lab.notebooks.run_chapter", boom)
    assert main(["book", "--profile", "smoke", "--only", "01", "--artefacts", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "chapter 01_data failed in cell 4" in err and "ValueError: boom" in err and "Traceback" not in err


def test_load_teacher_loads_a_saved_teacher_in_eval_mode(synthetic_env, tmp_path):
    import torch

    from lab.models import build_model

    P = lab.paths("smoke", tmp_path / "artefacts")
    cfg = lab.ModelConfig(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32, item_dim=16)
    model = build_model(cfg, num_items=20, max_len=8)
    model.save_pretrained(P.teacher)
    synthetic_env.setattr(lab.book, "_CONTEXT", {})  # this test's own chapter context, dropped afterwards
    lab.setup(0, "smoke", tmp_path / "artefacts", chapter="99_x")  # remembers the chapter's Paths
    teacher = lab.load_teacher()
    assert not teacher.training and teacher.num_layers == 2
    x = torch.tensor([[0, 0, 3, 5, 7, 2, 9, 4]])
    model.eval()
    torch.testing.assert_close(teacher.recommend_scores(x), model.recommend_scores(x))  # the saved weights


def test_the_llm_book_runs_chapters_01_to_05_unless_told_otherwise(synthetic_env, tmp_path):
    """Issue 13: `python -m lab book --profile llm` runs chapters 01-05 (chapter 06 and 07 are sized for the teachers
    trained from scratch); `--only` still picks any chapter, and the other profiles run every chapter."""
    ran = []
    synthetic_env.setattr("lab.notebooks.run_chapter", lambda ch, **k: ran.append((k["profile"], ch.stem[:2])))
    assert main(["book", "--profile", "llm", "--artefacts", str(tmp_path / "a")]) == 0
    assert ran == [("llm", c) for c in ("01", "02", "03", "04", "05")]
    ran.clear()
    assert main(["book", "--profile", "llm", "--only", "06", "--artefacts", str(tmp_path / "a")]) == 2  # no teacher
    assert main(["book", "--profile", "smoke", "--artefacts", str(tmp_path / "a")]) == 0
    assert [c for _, c in ran] == [ch.stem[:2] for ch in chapters()]

"""`lab.archive`: a run's summaries saved into the repository's archive and restored where an artefacts folder lacks
them (issue 25)."""
from __future__ import annotations

import json

import pytest

from lab import archive, paths
from lab.__main__ import main


def _run(root, profile="smoke", seed=0, files=("results.json", "importance.parquet")):
    folder = paths(profile, root, seed).root
    for name in files:
        (folder / name).write_bytes(f"{name} of seed {seed}".encode())
    (folder / "teacher").mkdir()  # not a summary: never archived
    return folder


def test_save_then_restore_brings_back_exactly_the_kept_files(tmp_path):
    _run(tmp_path / "a", seed=0)
    _run(tmp_path / "a", seed=1, files=("results.json",))
    rows = archive.save("smoke", [0, 1], tmp_path / "a", tmp_path / "arch")
    saved = {(r["run"], r["file"]) for r in rows if r["action"] == "saved"}
    assert saved == {("smoke", "results.json"), ("smoke", "importance.parquet"), ("smoke-seed1", "results.json")}
    assert sorted(p.name for p in (tmp_path / "arch" / "smoke").iterdir()) == ["importance.parquet", "results.json"]

    restored = archive.restore("smoke", [0, 1, 2], tmp_path / "b", tmp_path / "arch")  # seed 2 was never archived
    assert [(r["run"], r["file"], r["action"]) for r in restored] == [
        ("smoke", "results.json", "restored"), ("smoke", "importance.parquet", "restored"),
        ("smoke-seed1", "results.json", "restored")]
    assert (tmp_path / "b" / "smoke-seed1" / "results.json").read_bytes() == b"results.json of seed 1"
    assert not (tmp_path / "b" / "smoke" / "teacher").exists()


def test_restore_keeps_a_file_the_artefacts_already_have(tmp_path):
    _run(tmp_path / "a")
    archive.save("smoke", [0], tmp_path / "a", tmp_path / "arch")
    newer = paths("smoke", tmp_path / "b", 0).root / "results.json"
    newer.write_text("measured here")
    rows = archive.restore("smoke", [0], tmp_path / "b", tmp_path / "arch")
    assert {r["file"]: r["action"] for r in rows} == {"results.json": "kept", "importance.parquet": "restored"}
    assert newer.read_text() == "measured here"


def test_save_refuses_a_file_too_large_for_the_repository_and_copies_nothing(tmp_path, monkeypatch):
    folder = _run(tmp_path / "a")
    monkeypatch.setattr(archive, "MAX_BYTES", 10)
    with pytest.raises(ValueError, match="results.json: 22 bytes"):
        archive.save("smoke", [0], tmp_path / "a", tmp_path / "arch")
    assert not (tmp_path / "arch").exists()
    assert (folder / "results.json").stat().st_size == 22


def test_archive_command_prints_what_it_copied(tmp_path, monkeypatch, capsys):
    _run(tmp_path / "a")
    monkeypatch.setattr(archive, "ARCHIVE", tmp_path / "arch")
    assert main(["archive", "save", "--profile", "smoke", "--seeds", "0", "--artefacts", str(tmp_path / "a")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [f["file"] for f in out["files"] if f["action"] == "saved"] == ["results.json", "importance.parquet"]
    assert main(["archive", "restore", "--profile", "smoke", "--artefacts", str(tmp_path / "b")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["seeds"] == [0, 1] and {f["action"] for f in out["files"]} == {"restored"}


def test_chapter_07s_missing_seed_names_the_restore_when_the_archive_keeps_it(tmp_path, monkeypatch):
    from lab import book, hypotheses

    monkeypatch.setattr(book, "ARCHIVE", tmp_path / "arch")
    with pytest.raises(FileNotFoundError) as gone:
        hypotheses.seed_inputs("smoke", 1, tmp_path / "a")
    assert "archive restore" not in str(gone.value)
    (tmp_path / "arch" / "smoke-seed1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="python -m lab archive restore --profile smoke --seeds 1"):
        hypotheses.seed_inputs("smoke", 1, tmp_path / "a")

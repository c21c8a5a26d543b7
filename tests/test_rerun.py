"""Batch reruns (lab.rerun, issue 15) on a fake book of three tiny chapters in tmp_path: a second rerun skips
everything, a changed parameter reruns the chapter that reads it and the later ones, a failed chapter is run again
while finished ones are skipped, provenance is recorded, and `lab.collect` gathers every seed's records."""
from __future__ import annotations

import json
import os

import pytest

import lab
from lab.notebooks import ChapterFailed, parameter_names
from lab.rerun import PROVENANCE, STATE, fingerprints, rerun

CHAPTER = '''# %% [markdown]
# # {nn} · fake (no torch import: a kernel starts in seconds)

# %% tags=["parameters"]
PROFILE = "smoke"  # profile
SEED = 0  # seed
ARTEFACTS = ""  # artefact root
{extra}

# %%
import json, os, pathlib
root = pathlib.Path(ARTEFACTS) / (PROFILE if SEED == 0 else f"{{PROFILE}}-seed{{SEED}}")
if (pathlib.Path(ARTEFACTS) / "fail_{nn}").exists():
    raise RuntimeError("asked to fail")

# %%
res = json.loads((root / "results.json").read_text()) if (root / "results.json").exists() else {{}}
res["{nn}_fake"] = {{"value": {value}, "seed": SEED, "nested": {{"a": 1.5}}}}
(root / "results.json").write_text(json.dumps(res))
'''


@pytest.fixture
def book(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "01_fake.py").write_text(CHAPTER.format(nn="01", extra="", value="1"))
    (folder / "02_fake.py").write_text(CHAPTER.format(nn="02", extra="SCALE = 2  # a knob", value="SCALE"))
    (folder / "03_fake.py").write_text(CHAPTER.format(nn="03", extra="", value="3"))
    return folder, tmp_path / "artefacts"


def run(folder, art, seeds=(0,), extra=None):
    return rerun("smoke", list(seeds), str(art), extra=extra, folder=folder,
                 out_dirs={s: art.parent / f"runs{s}" for s in seeds})


def test_parameter_names(book):
    assert parameter_names(book[0] / "02_fake.py") == {"PROFILE", "SEED", "ARTEFACTS", "SCALE"}


def test_skip_rerun_on_parameter_and_provenance(book):
    folder, art = book
    first = run(folder, art, seeds=(0, 1))
    assert all(isinstance(v, float) for s in first.values() for v in s.values())
    assert run(folder, art, seeds=(0, 1)) == {s: {c: "skipped" for c in first[s]} for s in (0, 1)}
    # a parameter only chapter 02 reads: 01 skipped, 02 and the later 03 rerun
    third = run(folder, art, extra={"SCALE": 5})[0]
    assert third["01_fake"] == "skipped" and isinstance(third["02_fake"], float) and isinstance(third["03_fake"], float)
    assert lab.results("smoke", str(art), 0)["02_fake"]["value"] == 5
    assert fingerprints("smoke", 0, str(art), {"SCALE": 5}, folder)["01_fake"] == \
        fingerprints("smoke", 0, str(art), {}, folder)["01_fake"]
    prov = json.loads(lab.paths("smoke", str(art), 0).file(PROVENANCE).read_text())
    for field in ("git_commit", "config_hash", "packages", "device", "threads", "lab_sources", "chapters"):
        assert field in prov, field
    assert prov["packages"]["torch"] and prov["chapters"]["03_fake"]["wall_s"] > 0
    assert prov["parameters"] == {"SCALE": 5}
    # a changed chapter source reruns it and the later ones
    src = folder / "03_fake.py"
    src.write_text(src.read_text().replace('"value": 3', '"value": 4'))
    assert isinstance(run(folder, art, extra={"SCALE": 5})[0]["03_fake"], float)


def test_resume_after_failure(book):
    folder, art = book
    art.mkdir()
    (art / "fail_02").write_text("")
    with pytest.raises(ChapterFailed):
        run(folder, art)
    state = json.loads(lab.paths("smoke", str(art), 0).file(STATE).read_text())
    assert state["01_fake"]["status"] == "done" and state["02_fake"]["status"] == "failed" and "03_fake" not in state
    (art / "fail_02").unlink()
    again = run(folder, art)[0]
    assert again["01_fake"] == "skipped" and isinstance(again["02_fake"], float) and isinstance(again["03_fake"], float)


def test_interrupted_chapter_is_rerun(book):
    """A rerun killed mid-chapter leaves the chapter "running" in the state: the next rerun runs it again."""
    folder, art = book
    run(folder, art)
    P = lab.paths("smoke", str(art), 0)
    state = json.loads(P.file(STATE).read_text())
    state["02_fake"]["status"] = "running"
    P.file(STATE).write_text(json.dumps(state))
    again = run(folder, art)[0]
    assert again["01_fake"] == "skipped" and isinstance(again["02_fake"], float)


def test_pooling_chapter_runs_last_and_follows_every_seed(book, monkeypatch):
    """A chapter that pools seeds (07) runs after every seed's other chapters, and reruns when another seed's
    chapter reran."""
    folder, art = book
    (folder / "07_fake.py").write_text(CHAPTER.format(nn="07", extra="", value="7"))
    order = []
    import lab.rerun as R

    real = R.run_chapter
    monkeypatch.setattr(R, "run_chapter", lambda ch, **kw: (order.append((kw["seed"], ch.stem)), real(ch, **kw))[1])
    out = rerun("smoke", [0, 1], str(art), only=["01", "07"], folder=folder,
                out_dirs={s: art.parent / f"runs{s}" for s in (0, 1)})
    assert order == [(0, "01_fake"), (1, "01_fake"), (0, "07_fake"), (1, "07_fake")]
    assert set(out[0]) == {"01_fake", "07_fake"}
    state = json.loads(lab.paths("smoke", str(art), 1).file(STATE).read_text())
    state["01_fake"]["status"] = "failed"  # seed 1's chapter 01 must run again: seed 0's 07 follows it
    lab.paths("smoke", str(art), 1).file(STATE).write_text(json.dumps(state))
    again = rerun("smoke", [0, 1], str(art), only=["01", "07"], folder=folder,
                  out_dirs={s: art.parent / f"runs{s}" for s in (0, 1)})
    assert again[0]["01_fake"] == "skipped" and isinstance(again[1]["01_fake"], float)
    assert isinstance(again[0]["07_fake"], float) and isinstance(again[1]["07_fake"], float)


def test_collect(book):
    folder, art = book
    run(folder, art, seeds=(0, 1))
    frame = lab.collect("smoke", [0, 1], str(art))
    assert list(frame.columns) == ["seed", "chapter", "key", "value", "json"]
    assert len(frame) == 2 * 3 * 3  # seeds x chapters x keys (nested flattened)
    row = frame[(frame.seed == 1) & (frame.chapter == "02_fake") & (frame.key == "value")]
    assert row["value"].item() == 2.0
    assert frame[(frame.key == "nested/a")]["value"].tolist() == [1.5] * 6
    assert frame[(frame.key == "seed")].groupby("seed")["value"].first().to_dict() == {0: 0.0, 1: 1.0}
    assert (art / "smoke-results.parquet").is_file()


def test_headlines_read_each_seeds_records_and_times(tmp_path):
    """`headlines`: a seed's recorded numbers in its column, its chapters' minutes, commit and day from
    provenance.json (`record_chapter`), "—" where a seed did not record a value, rows no seed recorded dropped."""
    from lab.io import write_json
    from lab.rerun import cpu_description, headlines, headlines_markdown, record_chapter

    art = str(tmp_path)
    comparison = {"diff": -0.0073, "ci_low": -0.0195, "ci_high": 0.0045}
    write_json(lab.paths("smoke", art, 0).results, {
        "02_teacher": {"teacher_ndcg10_test": 0.0924, "epochs": 25, "stopped_by": "patience", "n_layers": 24,
                       "depth_ndcg10": {"6": 0.0925, "2": 0.0997}, "small_ndcg10_test": 0.0997,
                       "depth_compare": comparison},
        "06_baselines": {"test_ndcg10": {"ease": 0.0757, "gru4rec": 0.1, "teacher": 0.0924}}})
    write_json(lab.paths("smoke", art, 1).results, {"02_teacher": {"teacher_ndcg10_test": 0.1, "epochs": 3,
                                                                   "stopped_by": "epochs", "n_layers": 8}})
    record_chapter("smoke", 0, art, "02_teacher", 90.0)
    record_chapter("smoke", 0, art, "06_baselines", 30.0)
    frame = headlines("smoke", [0, 1], art)
    assert list(frame.columns) == ["seed 0", "seed 1"]
    assert frame.loc[("02", "teacher, test NDCG@10")].tolist() == ["0.0924", "0.1000"]
    assert frame.loc[("02", "its epochs, stopped by")].tolist() == ["25, patience", "3, epochs"]
    assert frame.loc[("02", "L/4 / 2 layers from scratch"), "seed 0"] == "0.0925 / 0.0997"
    assert frame.loc[("02", "teacher − 2 layers, per user")].tolist() == ["-0.0073", "—"]
    assert frame.loc[("02", "its 95% CI"), "seed 0"] == "-0.0195 to +0.0045"
    assert frame.loc[("06", "best row, test NDCG@10"), "seed 0"] == "gru4rec 0.1000"
    assert frame.loc[("02", "minutes")].tolist() == ["1.5", "—"] and frame.loc[("06", "minutes"), "seed 0"] == "0.5"
    assert ("03", "Fisher in the lower half") not in frame.index  # no seed recorded it
    assert frame.loc[("run", "finished"), "seed 1"] == "—"
    assert frame.loc[("run", "CPU")].tolist() == [cpu_description(), "—"]
    prov = json.loads(lab.paths("smoke", art, 0).file(PROVENANCE).read_text())
    assert set(prov["chapters"]) == {"02_teacher", "06_baselines"}  # the second record kept the first
    table = headlines_markdown(frame).splitlines()
    assert table[0] == "| chapter | what | seed 0 | seed 1 |" and len(table) == 2 + len(frame)


def test_book_records_each_chapters_time(book, monkeypatch):
    """`python -m lab book` records each chapter's wall time in the run's provenance.json as it finishes."""
    folder, art = book
    import lab.notebooks as N
    from lab.__main__ import main

    monkeypatch.setattr(N, "select_chapters", lambda only: [folder / "01_fake.py", folder / "02_fake.py"])
    monkeypatch.setattr(N, "run_chapter", lambda ch, **kw: ch)  # what ran is not the point: its time is
    assert main(["book", "--profile", "smoke", "--artefacts", str(art), "--only", "01"]) == 0
    prov = json.loads(lab.paths("smoke", str(art), 0).file(PROVENANCE).read_text())
    assert set(prov["chapters"]) == {"01_fake", "02_fake"} and prov["chapters"]["02_fake"]["wall_s"] >= 0
    assert prov["chapters"]["01_fake"]["git_commit"] == prov["git_commit"]


def test_cpu_description_names_the_model_the_vector_unit_and_amx(tmp_path):
    """The CPU in provenance.json: a chapter's minutes mean little without it (an AMX machine ran an LLM epoch in
    about half the time of an AVX2-only one)."""
    import torch

    from lab.rerun import cpu_description

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    cap = torch.backends.cpu.get_cpu_capability()
    assert cpu_description(info) == f"Test CPU 9000, {cap}+AMX, {os.cpu_count()} cores"
    info.write_text("processor\t: 0\nmodel name\t: Other\nflags\t\t: fpu avx2\n")
    assert cpu_description(info) == f"Other, {cap}, {os.cpu_count()} cores"

"""The notebook harness: pairs in sync, one parameters cell, no committed outputs, clear failures."""
import re

import jupytext
import nbformat
import pytest

from lab.notebooks import ChapterFailed, chapters, pair_in_sync, parameters_cells, run_chapter

CHAPTERS = chapters()


def test_there_are_chapters():
    assert [c.stem[:2] for c in CHAPTERS][:2] == ["01", "02"]


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(py):
    assert pair_in_sync(py), f"{py.name} and its .ipynb differ (or the .ipynb has outputs): run `python -m lab sync`"


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_one_parameters_cell_with_profile_seed_artefacts(py):
    nb = jupytext.read(py)
    cells = parameters_cells(nb)
    assert len(cells) == 1
    src = nb.cells[cells[0]].source
    for name in ("PROFILE", "SEED", "ARTEFACTS"):
        assert f"{name} =" in src
    assert re.search(r"lab\.record(_all)?\(", nb.cells[-1].source), "the last cell records the chapter's key results"


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(py):
    """`papermill --help-notebook` (and its parameter inspection) sees each UPPERCASE constant of the parameters cell
    with its comment; a comment papermill cannot parse (e.g. one holding '=') hides the parameter and logs a warning
    on every run."""
    from papermill.translators import PythonTranslator

    nb = jupytext.read(py)
    src = nb.cells[parameters_cells(nb)[0]].source
    names = re.findall(r"^([A-Z][A-Z0-9_]*) =", src, flags=re.M)
    params = PythonTranslator.inspect({"source": src})
    assert [p.name for p in params] == names and all(p.help for p in params)


def test_out_of_sync_pair_is_detected(tmp_path):
    py = tmp_path / "01_x.py"
    py.write_text('# %% tags=["parameters"]\nPROFILE = "smoke"\n\n# %%\nprint(1)\n')
    nb = jupytext.read(py)
    jupytext.write(nb, tmp_path / "01_x.ipynb")
    assert pair_in_sync(py)
    py.write_text(py.read_text() + "\n# %%\nprint(2)\n")
    assert not pair_in_sync(py)


def test_failure_names_chapter_and_cell(tmp_path):
    py = tmp_path / "09_broken.py"
    py.write_text('# %% tags=["parameters"]\nPROFILE = "smoke"\nSEED = 0\nARTEFACTS = ""\n\n'
                  '# %%\nx = 1\n\n# %%\nraise ValueError("boom")\n')
    with pytest.raises(ChapterFailed, match=r"09_broken.*cell.*ValueError: boom"):
        run_chapter(py, out_dir=tmp_path / "runs")
    executed = nbformat.read(tmp_path / "runs" / "09_broken.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_seeds_keep_their_runs_apart(tmp_path, monkeypatch):
    import lab

    monkeypatch.setenv("LAB_FIGURES", str(tmp_path / "figures"))
    p0, p1 = lab.paths("smoke", tmp_path, seed=0), lab.paths("smoke", tmp_path, seed=1)
    assert p0.root == tmp_path / "smoke" and p1.root == tmp_path / "smoke-seed1"
    assert p1.figures == tmp_path / "figures" / "smoke-seed1"
    lab.record("x", 1, chapter="99_test", paths_=p0)
    lab.record("x", 2, chapter="99_test", paths_=p1)
    assert lab.results("smoke", tmp_path)["99_test"]["x"] == 1
    assert lab.results("smoke", tmp_path, seed=1)["99_test"]["x"] == 2
    py = tmp_path / "09_seeded.py"
    py.write_text('# %% tags=["parameters"]\nPROFILE = "smoke"\nSEED = 0\nARTEFACTS = ""\n\n# %%\nx = SEED\n')
    monkeypatch.setattr("lab.notebooks.RUNS", tmp_path / "runs")
    assert run_chapter(py, seed=2) == tmp_path / "runs" / "smoke-seed2" / "09_seeded.ipynb"


def _collect(*args) -> list[str]:
    import subprocess
    import sys

    from lab import REPO_ROOT

    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert r.returncode in (0, 5), r.stdout + r.stderr  # 5: nothing selected
    return [ln for ln in r.stdout.splitlines() if "::" in ln]


def test_chapter_tests_are_marked_notebook():
    files = [f"tests/test_chapter_{c.stem[:2]}.py" for c in CHAPTERS] + ["tests/test_env.py"]
    notebook, unit = _collect("-m", "notebook", *files), _collect("-m", "not notebook", *files)
    assert notebook and all(t.startswith("tests/test_chapter_") for t in notebook)
    assert {t.split("::")[0] for t in notebook} == set(files[:-1])  # every chapter has marked tests
    assert unit and all(t.startswith("tests/test_env.py") for t in unit)


def test_unbounded_channel_wait_polls_in_slices():
    """`_in_slices`: a wait without timeout polls again every slice until a message comes (a missed wake-up costs one
    slice, not the run); a wait with a timeout is passed through, Empty included."""
    import asyncio
    from queue import Empty

    from lab.notebooks import _in_slices

    calls = []

    async def get_msg(timeout=None):
        calls.append(timeout)
        if len(calls) < 3:
            raise Empty
        return {"msg_type": "execute_reply"}

    wait = _in_slices(get_msg, 0.25)
    assert asyncio.run(wait())["msg_type"] == "execute_reply"
    assert calls == [0.25, 0.25, 0.25]
    calls.clear()
    with pytest.raises(Empty):
        asyncio.run(wait(timeout=2.0))
    assert calls == [2.0]
    nudges = []
    silent = 7  # empty slices before the message

    async def slow(timeout=None):
        calls.append(timeout)
        if len(calls) <= silent:
            raise Empty
        return {"msg_type": "execute_reply", "nudges_before": len(nudges)}

    calls.clear()
    reply = asyncio.run(_in_slices(slow, 0.5, nudge=lambda: nudges.append(len(calls)), nudge_after_s=1.0)())
    assert nudges == [2, 4, 6] and reply["nudges_before"] == 3  # one nudge per 2 silent slices of 0.5 s


def test_widget_state_is_saved_through_the_engine(tmp_path, monkeypatch):
    """The `lab` papermill engine waits on the shell and IOPub channels in slices and keeps nbclient's widget
    handling: a displayed widget's state is in the executed notebook's metadata (the site renders chapter 03's
    explorer from it, `lab.site.static_widgets`)."""
    import lab.notebooks as nbs

    wrapped = []
    monkeypatch.setattr(nbs, "_in_slices", lambda get_msg, s, nudge=None: wrapped.append((s, nudge)) or get_msg)
    py = tmp_path / "09_widget.py"
    py.write_text('# %% tags=["parameters"]\nPROFILE = "smoke"\nSEED = 0\nARTEFACTS = ""\n\n'
                  '# %%\nimport ipywidgets as w\nout = w.Output()\nwith out:\n    print("inside")\n'
                  'display(w.VBox([w.IntSlider(value=7), out]))\n')
    executed = nbformat.read(run_chapter(py, out_dir=tmp_path / "runs"), as_version=4)
    assert [s for s, _ in wrapped] == [nbs.POLL_SLICE_S] * 2  # both channels of this run's client
    from jupyter_client.asynchronous import AsyncKernelClient

    assert wrapped[0][1].__func__ is AsyncKernelClient.kernel_info and wrapped[1][1] is None  # shell nudges
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    sliders = [m for m in state.values() if m["model_name"] == "IntSliderModel"]
    assert [m["state"]["value"] for m in sliders] == [7]
    outputs = [m for m in state.values() if m["model_name"] == "OutputModel"]
    assert outputs[0]["state"]["outputs"][0]["text"] == "inside\n"


def test_nudged_kernel_replies_do_not_confuse_the_run(tmp_path, monkeypatch):
    """With a nudge every 0.5 s of shell silence, a 3-second cell gets several `kernel_info_request`s queued behind
    it; their replies are skipped and every cell's own output lands in its own cell."""
    import lab.notebooks as nbs

    monkeypatch.setattr(nbs, "POLL_SLICE_S", 0.25)
    monkeypatch.setattr(nbs, "NUDGE_AFTER_S", 0.5)
    sent, in_slices = [], nbs._in_slices

    def counting(get_msg, slice_s, nudge=None):
        return in_slices(get_msg, slice_s, nudge=nudge and (lambda: sent.append(nudge())))

    monkeypatch.setattr(nbs, "_in_slices", counting)
    py = tmp_path / "09_slow.py"
    py.write_text('# %% tags=["parameters"]\nPROFILE = "smoke"\nSEED = 0\nARTEFACTS = ""\n\n'
                  '# %%\nimport time\ntime.sleep(3)\nprint("slept")\n\n# %%\nprint("next", 6 * 7)\n')
    executed = nbformat.read(run_chapter(py, out_dir=tmp_path / "runs"), as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert [o["text"] for o in code[-2].outputs] == ["slept\n"]
    assert [o["text"] for o in code[-1].outputs] == ["next 42\n"]
    assert len(sent) >= 3 and all(isinstance(m, str) for m in sent)  # the msg_ids of the nudges sent

"""The static site of a run (`lab.site`, `make site`): a page per executed chapter, an index linking them, every image
embedded or copied, widgets shown without a kernel.

The tests on the smoke run use `smoke_book` (tests/conftest.py), so they are marked `notebook` and, in `make test`,
run after the chapter tests (this file sorts after tests/test_chapter_*.py) on the chapters that session executed.
Run alone, they use `runs/smoke/` when it holds every chapter (`make book PROFILE=smoke`), else the fixture runs the
smoke book as the chapter tests do. The other tests are unit tests on tiny notebooks.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import nbformat
import pytest

from lab.notebooks import REPO_ROOT, chapters, run_dir
from lab.site import build_site, copy_file_images, readme_sections, results_table, static_widgets

STEMS = [c.stem for c in chapters()]
IMG = re.compile(r'<img\b[^>]*?\bsrc=(["\'])(.*?)\1', re.I)


@pytest.fixture(scope="module")
def smoke_run(smoke_book) -> Path:
    """The folder of the executed smoke chapters: this session's smoke book when it ran every chapter, else
    `runs/smoke` when it holds every chapter, else the smoke book run to its last chapter now."""
    if all(smoke_book.done.get(s) is True for s in STEMS):
        return smoke_book.runs
    existing = run_dir("smoke")
    if all((existing / f"{s}.ipynb").is_file() for s in STEMS):
        return existing
    smoke_book.run(STEMS[-1])
    return smoke_book.runs


@pytest.fixture(scope="module")
def site(smoke_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    assert build_site(smoke_run, out) == out / "index.html"
    return out


def test_every_chapter_has_a_page_linked_from_the_index(site):
    index = (site / "index.html").read_text()
    links = re.findall(r'<a href="([^"]+)"', index)
    for stem in STEMS:
        assert (site / f"{stem}.html").is_file(), stem
        assert f"{stem}.html" in links, stem
    assert "Which transformer layers matter for recommendation" in index  # README's question
    assert "<table>" in index and "What the default profile measured" in index  # README's results table


def test_every_image_is_embedded_or_copied(site):
    n = 0
    for page in site.glob("*.html"):
        for _, src in IMG.findall(page.read_text()):
            n += 1
            assert src.startswith("data:") or (site / src).is_file(), f"{page.name}: {src[:80]}"
    assert n >= len(STEMS) - 1  # every chapter but the last draws a figure


def test_explorer_is_a_static_heatmap(site):
    page = (site / "03_fisher.html").read_text()
    assert "application/vnd.jupyter.widget" not in page and "html-manager" not in page  # no widget JavaScript
    note = page.index("Interactive widget, shown as it was drawn")
    assert "<b>estimator</b>: <code>fisher_empirical</code>" in page[note:]
    assert IMG.search(page, note).group(2).startswith("data:image/png")  # the explorer's heatmap, from its Output


# -- unit tests on tiny notebooks -----------------------------------------------------------------------------------
def _widget_notebook():
    """A notebook whose one output is a saved VBox(Dropdown, Output holding a PNG), as nbclient stores it."""
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": "fig"}}
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_dd", "IPY_MODEL_out"]}},
        "dd": {"model_name": "DropdownModel", "state": {"description": "scale", "index": 1,
                                                        "_options_labels": ["linear", "log"]}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [png]}},
    }
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    cell = nbformat.v4.new_code_cell("display(box)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(...)"})]
    lost = nbformat.v4.new_code_cell("w")
    lost.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "gone"}, "text/plain": "IntSlider(value=3)"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Tiny\n\n**Question.** Does it render?"), cell, lost]
    return nb


def test_static_widgets_show_controls_and_output_images():
    nb = _widget_notebook()
    assert static_widgets(nb) == 1
    outs = nb.cells[1].outputs
    assert "<b>scale</b>: <code>log</code>" in outs[0].data["text/html"]
    assert outs[1].data["image/png"] == "iVBORw0KGgo="
    assert nb.cells[2].outputs[0].data == {"text/plain": "IntSlider(value=3)"}  # no saved state: its text
    assert "widgets" not in nb.metadata


def test_build_site_copies_images_referenced_as_files(tmp_path):
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "fig.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    nb = _widget_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("![a figure](fig.png)"))
    nbformat.write(nb, run / "01_tiny.ipynb")
    out = tmp_path / "site"
    build_site(run, out)
    page = (out / "01_tiny.html").read_text()
    srcs = [s for _, s in IMG.findall(page)]
    assert "assets/fig.png" in srcs and (out / "assets" / "fig.png").read_bytes() == b"\x89PNG\r\n\x1a\n"
    assert '<a href="01_tiny.html">01 · Tiny</a>' in (out / "index.html").read_text()
    with pytest.raises(FileNotFoundError, match="missing.png"):
        copy_file_images('<img src="missing.png">', [run], out / "assets")


def test_a_run_without_chapters_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="make book PROFILE=nothing"):
        build_site(tmp_path / "nothing", tmp_path / "site")


def test_readme_question_and_results_table():
    title, question, sections = readme_sections((REPO_ROOT / "README.md").read_text())
    assert title and question and "What the default profile measured" in sections
    table = results_table(sections["What the default profile measured"])
    assert table.splitlines()[-1].startswith("|") and "| chapter |" in table


def test_make_site_renders_the_profiles_run():
    cmd = subprocess.run(["make", "-n", "site", "PROFILE=smoke"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert "-m lab.site --run smoke --out site" in cmd.stdout

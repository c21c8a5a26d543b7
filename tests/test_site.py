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

from lab.book import REPO_ROOT
from lab.notebooks import chapters, run_dir
from lab.site import (build_site, copy_file_images, describe_images, doc_pages, merge_parameters, page_noise,
                      readme_sections, static_widgets)

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
    assert "These pages are the executed chapters of run <code>smoke</code>" in index  # which run, said once


def test_the_index_states_what_the_run_found(site, smoke_run):
    """The verdict table of the run it renders (chapter 07's records), not the README's numbers of another profile."""
    index = (site / "index.html").read_text()
    found = index[index.index("<h2>What this run found</h2>"):index.index("<h2>The chapters</h2>")]
    assert "<table>" in found and "<th>verdict</th>" in found
    for row in ("H1a", "H1b", "H2a", "C1"):
        assert f"<td>{row}</td>" in found, row
    assert "What the default profile measured" not in index
    assert re.search(r"teacher reaches test NDCG@10 0\.\d{3} against popularity's 0\.\d{3}", found)
    assert "docs/measurements.html" in index and (site / "docs" / "measurements.html").is_file()


def test_pages_carry_no_noise(smoke_run):
    """No PosixPath, progress bar, 16-digit float, config repr or absolute path of this machine in any output."""
    machine = (str(REPO_ROOT), str(Path.home()), str(smoke_run.parent))
    for stem in STEMS:
        nb = nbformat.read(smoke_run / f"{stem}.ipynb", as_version=4)
        assert page_noise(nb, machine) == [], stem


def test_pages_work_offline(site):
    """Nothing is loaded from the network: MathJax is served from the site's assets, require.js is gone."""
    for page in [*site.glob("*.html"), *site.glob("docs/*.html")]:
        text = page.read_text()
        assert not re.findall(r'<script[^>]+src="(?:https?:)?//', text), page.name
        assert not re.findall(r'<link[^>]+href="(?:https?:)?//', text), page.name
    assert 'src="assets/mathjax/MathJax.js?config=' in (site / "05_distillation.html").read_text()
    assert (site / "assets" / "mathjax" / "MathJax.js").is_file()
    assert (site / "assets" / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()  # the config named
    assert any((site / "assets" / "mathjax" / "fonts" / "HTML-CSS" / "STIX-Web" / "woff").iterdir())  # its fonts


def test_one_parameters_cell_and_described_figures(site):
    page = (site / "02_teacher.html").read_text()
    assert page.count("celltag_parameters") == 1 and "celltag_injected-parameters" not in page  # one cell
    alts = re.findall(r'<img\b[^>]*\balt="([^"]*)"', page)
    assert alts and all(a and "No description" not in a for a in alts)


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
    index = (out / "index.html").read_text()
    assert '<a href="01_tiny.html">01 · Tiny</a>' in index
    assert "Chapter 07 (the verdicts) has not run." in index  # a run without chapter 07 says so
    with pytest.raises(FileNotFoundError, match="missing.png"):
        copy_file_images('<img src="missing.png">', [run], out / "assets")


def test_doc_pages_copy_their_figures(tmp_path):
    """A docs page's figure committed beside it (`docs/img/...`) is copied into the site and the page points there."""
    docs = tmp_path / "docs"
    (docs / "img").mkdir(parents=True)
    (docs / "img" / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (docs / "results.md").write_text("# Results\n\n![the curve](img/curve.png)\n", encoding="utf-8")
    out = tmp_path / "site"
    assert doc_pages(docs, out, "home") == [("results", "Results")]
    srcs = [s for _, s in IMG.findall((out / "docs" / "results.html").read_text())]
    assert srcs == ["assets/curve.png"] and (out / "docs" / "assets" / "curve.png").read_bytes().startswith(b"\x89PNG")


def test_a_run_without_chapters_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="make book PROFILE=nothing"):
        build_site(tmp_path / "nothing", tmp_path / "site")


def test_readme_question():
    title, question, sections = readme_sections((REPO_ROOT / "README.md").read_text())
    assert title == "Layerwise Adapter" and "Which transformer layers matter" in question


def test_readme_is_a_door():
    """At most 150 lines: the question, the commands, what the book found, the package, the profiles and where to
    read more; the dated measurements live under docs/ (rendered by `make site`). No Markdown line over 120 chars."""
    readme = (REPO_ROOT / "README.md").read_text()
    _, _, sections = readme_sections(readme)
    assert len(readme.splitlines()) <= 150
    assert list(sections) == ["Read it", "What the book found", "The chapters", "The package", "Profiles", "Read more"]
    assert "make site" in sections["Read it"] and "site/index.html" in sections["Read it"]
    assert "| claim |" in sections["What the book found"] and "commit" in sections["What the book found"]
    for doc in re.findall(r"\]\((docs/[\w-]+\.md)\)", readme):
        assert (REPO_ROOT / doc).is_file(), doc
    assert not re.search(r"\bissue \d+", readme)  # say what a reference means, not its number
    for md in [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]:
        long = [i + 1 for i, line in enumerate(md.read_text().splitlines()) if len(line) > 120]
        assert not long, f"{md.name}: lines {long} are over 120 characters"


def test_page_noise_finds_what_a_reader_should_not_see():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": "PosixPath('/home/me/figures/01.png')"}),
        nbformat.v4.new_output("stream", name="stderr", text="epoch 1:  67%|██████▋   | 2/3 [00:01<00:00]"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "{'ndcg': 0.15234567890123456}"}),
        nbformat.v4.new_output("stream", name="stdout", text="saved: /work/repo/figures/a.png"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "ModelConfig(n_layers=8, hidden=32)"}),
    ]
    nb.cells = [cell]
    found = page_noise(nb, ("/work/repo",))
    kinds = [f.split(": ")[1] for f in found]
    assert kinds == ["PosixPath", "progress bar", "16-digit float", "absolute path", "config repr"]
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="NDCG@10 0.1523 (CI 0.14 to 0.16), 3.7x")]
    assert page_noise(nb, ("/work/repo",)) == []


def test_parameters_merged_and_images_described(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "default"  # smoke | default\nSEED = 0  # seed', metadata={
        "tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell('# Parameters\nPROFILE = "smoke"\nSEED = 0\n', metadata={
        "tags": ["injected-parameters"]})
    fig = nbformat.v4.new_code_cell('viz.save(fig, "01_tail", P)')
    fig.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "F"})]
    nb.cells = [params, injected, nbformat.v4.new_markdown_cell("## The tail"), fig]
    assert merge_parameters(nb) and len(nb.cells) == 3
    assert nb.cells[0].source.splitlines() == ['PROFILE = "smoke"  # set by the run (default "default")',
                                               "SEED = 0  # seed"]
    assert describe_images(nb, tmp_path) == 1  # no saved PNG there: the heading above
    html = nb.cells[2].outputs[0].data["text/html"]
    assert 'alt="Figure: The tail"' in html and 'src="data:image/png;base64,iVBORw0KGgo="' in html
    assert "image/png" not in nb.cells[2].outputs[0].data


def test_make_site_renders_the_profiles_run():
    cmd = subprocess.run(["make", "-n", "site", "PROFILE=smoke"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert "-m lab.site --run smoke --out site" in cmd.stdout

"""A run's executed chapters as a static website (`make site`, `python -m lab.site --run RUN [--out site]`).

`build_site(run_dir, out_dir)` renders every executed chapter of a run (`runs/<run>/NN_name.ipynb`, written by
`python -m lab book`) to `out_dir/NN_name.html` with its outputs, and writes `out_dir/index.html`: the book's question
(README.md's first section), the chapter list linking each page, and the README's results table.

Why nbconvert: it is already installed with the book's environment (jupyterlab's jupyter_server depends on it; papermill
itself does not, so pyproject's dev extra now names it), it renders an executed notebook as JupyterLab shows it (tables,
plots as embedded PNG data URIs, streams, tracebacks), and its mistune filter renders README markdown with tables,
so no further package (`markdown`, mkdocs, jupyter-book, quarto) is needed; those would add a build tool and a
configuration for what is one exporter call per chapter here.

Widgets: a chapter run by papermill has no kernel afterwards, but nbclient saves the widget state in the notebook's
metadata (`widgets`), including what an `ipywidgets.Output` captured. Chapter 03's layer explorer
(`lab.viz.explorer`) draws its heatmap into such an Output, so the saved state holds the heatmap PNG as it was drawn
for the initial control values. `static_widgets` replaces every widget view by static HTML built from that state
(control values as text, progress bars as `<progress>`, an Output's own outputs as they were) and drops the widget
state, so a page needs no widget JavaScript (nbconvert would otherwise load the widget manager from a CDN). Chapter 03
also draws the same heatmap as a plain figure (`viz.heatmap_layer_group`, log scale) in the cell before the explorer.

Images referenced as files (markdown `![](path)` or `<img src=path>`, relative to `notebooks/`, where the chapters
run, or to the run folder) are copied under `out_dir/assets/` and the page points there.
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from pathlib import Path

from . import REPO_ROOT
from .notebooks import NOTEBOOKS, RUNS

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"
RESULTS_HEADING = "What the default profile measured"  # README.md's section whose table the landing page shows
STYLE = """<style>
body.site{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45}
body.site table{border-collapse:collapse;font-size:.9em}
body.site td,body.site th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top}
nav.site{font-family:system-ui,sans-serif;padding:.5em 1em;border-bottom:1px solid #ddd;margin-bottom:1em}
.widget-static .widget-note{font-style:italic;color:#666;font-size:.85em}
</style>"""


# -- widgets without a kernel ---------------------------------------------------------------------------------------
def _widget_html(model: dict) -> str:
    """Static HTML of one leaf widget from its saved state."""
    s = model.get("state", {})
    name = model.get("model_name", "")
    desc = html.escape(str(s.get("description") or ""))
    label = f"<b>{desc}</b>: " if desc else ""
    if name in ("HTMLModel", "HTMLMathModel"):
        return str(s.get("value") or "")
    if name == "LabelModel":
        return html.escape(str(s.get("value") or ""))
    if name.endswith("ProgressModel"):
        return f'{label}<progress value="{s.get("value", 0)}" max="{s.get("max", 100)}"></progress>'
    if "_options_labels" in s:  # Dropdown, ToggleButtons, RadioButtons, Select: the chosen option's label
        idx, opts = s.get("index"), s.get("_options_labels") or []
        chosen = opts[idx] if isinstance(idx, int) and 0 <= idx < len(opts) else ""
        return f"{label}<code>{html.escape(str(chosen))}</code>"
    if "value" in s:  # sliders, checkboxes, text fields
        return f"{label}<code>{html.escape(str(s['value']))}</code>"
    return ""


def _widget_parts(model_id: str, state: dict, seen: set | None = None) -> list:
    """The widget tree under `model_id` in display order: ("html", str) chunks and ("outputs", [output]) of Output
    widgets. A box without an Output inside becomes one HTML chunk (a row for HBox, a column otherwise)."""
    seen = set() if seen is None else seen
    model = state.get(model_id)
    if model is None or model_id in seen:
        return []
    seen.add(model_id)
    s, name = model.get("state", {}), model.get("model_name", "")
    if name == "OutputModel":
        return [("outputs", list(s.get("outputs", [])))]
    if "children" in s:
        parts = [p for c in s["children"] for p in _widget_parts(str(c).removeprefix("IPY_MODEL_"), state, seen)]
        if all(kind == "html" for kind, _ in parts):
            row = "row" if name == "HBoxModel" else "column"
            inner = "".join(f"<div>{h}</div>" for _, h in parts)
            style = f"display:flex;flex-direction:{row};gap:.6em;align-items:center"
            return [("html", f'<div style="{style}">{inner}</div>')]
        return parts
    return [("html", _widget_html(model))]


def _interactive(model_id: str, state: dict, seen: set | None = None) -> bool:
    """True when the tree under `model_id` holds a control a reader would change (not only text and progress)."""
    seen = set() if seen is None else seen
    model = state.get(model_id)
    if model is None or model_id in seen:
        return False
    seen.add(model_id)
    s = model.get("state", {})
    if "children" in s:
        return any(_interactive(str(c).removeprefix("IPY_MODEL_"), state, seen) for c in s["children"])
    return "_options_labels" in s or model.get("model_name") in ("CheckboxModel", "IntSliderModel",
                                                                  "FloatSliderModel", "TextModel")


def static_widgets(nb) -> int:
    """Replace every widget view output of `nb` (in place) by static outputs from the saved widget state; drop the
    state. A view whose state was not saved keeps its plain-text fallback. Returns the number of views replaced."""
    import nbformat

    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                outputs.append(out)
                continue
            model_id = data[WIDGET_VIEW].get("model_id", "")
            if model_id not in state:
                out.data = {k: v for k, v in data.items() if k != WIDGET_VIEW}
                outputs.append(out)
                continue
            replaced += 1
            note = ('<div class="widget-note">Interactive widget, shown as it was drawn when the chapter ran; '
                    'open the notebook in JupyterLab to change it.</div>') if _interactive(model_id, state) else ""
            for kind, part in _widget_parts(model_id, state):
                if kind == "outputs":
                    outputs.extend(nbformat.from_dict(o) for o in part)
                else:
                    outputs.append(nbformat.v4.new_output("display_data", data={
                        "text/html": f'<div class="widget-static">{note}{part}</div>',
                        "text/plain": re.sub(r"<[^>]+>", " ", part)}))
                    note = ""
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return replaced


# -- pages ----------------------------------------------------------------------------------------------------------
IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=)(["\'])(.*?)\2', re.I)


def copy_file_images(page: str, search: list[Path], assets: Path) -> str:
    """Copy every image `page` references as a file (not a data: URI, not a URL) into `assets` and point the page
    there; raises FileNotFoundError for an image found in none of the `search` folders."""
    def fix(m: re.Match) -> str:
        src = html.unescape(m.group(3))
        if re.match(r"^(data:|[a-z][a-z0-9+.-]*://|//)", src, re.I) or src.startswith(f"{assets.name}/"):
            return m.group(0)
        found = next((d / src for d in search if (d / src).is_file()), None)
        if found is None:
            raise FileNotFoundError(f"image {src!r} of the page is in none of {', '.join(map(str, search))}")
        assets.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found, assets / found.name)
        return f"{m.group(1)}{m.group(2)}{assets.name}/{html.escape(found.name)}{m.group(2)}"

    return IMG_SRC.sub(fix, page)


def chapter_heading(nb) -> tuple[str, str]:
    """The chapter's title (its first markdown heading) and question (the `**Question.**` paragraph, if any)."""
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    title = next((ln.lstrip("#").strip() for ln in first.splitlines() if ln.startswith("#")), "")
    m = re.search(r"\*\*Question\.\*\*\s*(.*?)(?:\n\s*\n|$)", first, re.S)
    return title, " ".join(m.group(1).split()) if m else ""


def readme_sections(text: str) -> tuple[str, str, dict[str, str]]:
    """README.md as (title, first section's body, {heading: body} of its `##` sections)."""
    title, body = "", text
    m = re.match(r"\s*#\s+(.*)\n", text)
    if m:
        title, body = m.group(1).strip(), text[m.end():]
    chunks = re.split(r"^##\s+(.*)$", body, flags=re.M)
    return title, chunks[0].strip(), {h.strip(): b.strip() for h, b in zip(chunks[1::2], chunks[2::2])}


def results_table(section: str) -> str:
    """A README section up to the end of its first table (the sentence that introduces it, and the table)."""
    lines, seen_table = [], False
    for line in section.splitlines():
        if seen_table and not line.startswith("|"):
            break
        seen_table = seen_table or line.startswith("|")
        lines.append(line)
    return "\n".join(lines).strip()


def _with_nav(page: str, nav: str) -> str:
    page = page.replace("</head>", f"{STYLE}\n</head>", 1)
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, page, count=1)


def build_site(run_dir: str | Path, out_dir: str | Path, readme: str | Path = REPO_ROOT / "README.md") -> Path:
    """Render the executed chapters in `run_dir` into a static site in `out_dir`; return `out_dir/index.html`.

    Raises FileNotFoundError naming the command that makes the run when `run_dir` holds no executed chapter.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown_mistune import markdown2html_mistune as md

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    notebooks = sorted(run_dir.glob(CHAPTER_GLOB))
    if not notebooks:
        raise FileNotFoundError(f"no executed chapters (NN_name.ipynb) in {run_dir}: run `make book PROFILE="
                                f"{run_dir.name}` (or `python -m lab book --profile {run_dir.name}`) first")
    out_dir.mkdir(parents=True, exist_ok=True)
    title, question, sections = readme_sections(Path(readme).read_text(encoding="utf-8"))
    exporter = HTMLExporter(template_name="lab")
    entries = []
    for i, path in enumerate(notebooks):
        nb = nbformat.read(path, as_version=4)
        static_widgets(nb)
        ch_title, ch_question = chapter_heading(nb)
        page, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem, "path": str(NOTEBOOKS)}})
        page = copy_file_images(page, [NOTEBOOKS, path.parent, REPO_ROOT], out_dir / "assets")
        links = [f'<a href="index.html">{html.escape(title or "index")}</a>']
        if i > 0:
            links.append(f'<a href="{notebooks[i - 1].stem}.html">&larr; {notebooks[i - 1].stem}</a>')
        if i + 1 < len(notebooks):
            links.append(f'<a href="{notebooks[i + 1].stem}.html">{notebooks[i + 1].stem} &rarr;</a>')
        (out_dir / f"{path.stem}.html").write_text(
            _with_nav(page, f'<nav class="site">{" · ".join(links)} · run <code>{html.escape(run_dir.name)}</code>'
                            f"</nav>"), encoding="utf-8")
        entries.append((path.stem, ch_title or path.stem, ch_question))
    items = "\n".join(f'<li><a href="{stem}.html">{html.escape(t)}</a>'
                      + (f"<br><span>{md(q)}</span>" if q else "") + "</li>" for stem, t, q in entries)
    results = results_table(sections.get(RESULTS_HEADING, ""))
    index = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)} · {html.escape(run_dir.name)}</title>{STYLE}</head>
<body class="site">
<h1>{html.escape(title)}</h1>
{md(question)}
<h2>The chapters (run <code>{html.escape(run_dir.name)}</code>)</h2>
<ol>
{items}
</ol>
<h2>{html.escape(RESULTS_HEADING)} (README.md)</h2>
{md(results)}
</body></html>
"""
    index_path = out_dir / "index.html"
    index_path.write_text(copy_file_images(index, [REPO_ROOT], out_dir / "assets"), encoding="utf-8")
    return index_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.site", description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="default", help="a run under runs/ (e.g. smoke, default-seed1) or a folder")
    ap.add_argument("--out", default="site", help="the site's folder (default: site)")
    args = ap.parse_args(argv)
    run = Path(args.run) if Path(args.run).is_dir() and not (RUNS / args.run).is_dir() else RUNS / args.run
    try:
        index = build_site(run, args.out)
    except FileNotFoundError as e:
        print(f"python -m lab.site: error: {e}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A run's executed chapters as a static website (`make site`, `python -m lab.site --run RUN [--out site]`).

`build_site(run_dir, out_dir)` renders every executed chapter of a run (`runs/<run>/NN_name.ipynb`, written by
`python -m lab book`) to `out_dir/NN_name.html` with its outputs, every page under `docs/` (Markdown: the dated
measurements, sizing and GPU notes) to `out_dir/docs/NAME.html`, and `out_dir/index.html`: the book's question
(README.md's first section), which run the pages come from (profile, seed, when it ran, the commit), what that run
found (chapter 07's verdicts from the run's own `results.json`, with a paragraph of findings from the same numbers),
the chapter list and the docs.

Why nbconvert: it is already installed with the book's environment (jupyterlab's jupyter_server depends on it; papermill
itself does not, so pyproject's dev extra now names it), it renders an executed notebook as JupyterLab shows it (tables,
plots as embedded PNG data URIs, streams, tracebacks), and its mistune filter renders Markdown with tables, so no
further package (`markdown`, mkdocs, jupyter-book, quarto) is needed; those would add a build tool and a
configuration for what is one exporter call per chapter here.

Offline: a page loads nothing from the network. MathJax (chapter 05's loss) comes from the `jupyter-server-mathjax`
package (MathJax 2.7, the version nbconvert's template loads from a CDN), copied once under `out_dir/assets/mathjax/`
(the parts the TeX input and HTML-CSS output need); require.js, which only widget JavaScript would use, is dropped.

What a reader sees of a chapter is its prose, code and outputs: papermill's injected parameters are merged into the
chapter's one parameters cell (a changed value says so), each figure gets its title as alt text (the PNG that
`lab.viz.save` wrote carries it), and `page_noise` names what a page must not carry (a `PosixPath(`, a progress bar, a
float printed to 16 digits, the machine's absolute paths, a config's repr); `tests/test_site.py` checks the smoke run
has none.

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
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import REPO_ROOT, paths, run_name
from .io import read_json
from .notebooks import NOTEBOOKS, RUNS

__all__ = ["WIDGET_VIEW", "WIDGET_STATE", "CHAPTER_GLOB", "DOCS", "VERDICT_CHAPTER", "MATHJAX_PARTS", "MATHJAX_URL",
           "MATHJAX_FONTS", "STYLE", "static_widgets", "merge_parameters", "NOISE", "page_noise", "SAVE_CALL",
           "figure_title", "describe_images", "IMG_SRC", "copy_file_images", "copy_mathjax", "chapter_heading",
           "readme_sections", "run_facts", "verdict_rows", "verdict_table_html", "findings", "index_html", "doc_pages",
           "build_site", "main"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"
DOCS = REPO_ROOT / "docs"  # Markdown pages rendered beside the chapters (the README links them)
VERDICT_CHAPTER = "07_hypotheses"  # the chapter whose records hold the verdicts the index shows
MATHJAX_PARTS = ("MathJax.js", "config", "extensions", "jax/input/TeX", "jax/element", "jax/output/HTML-CSS",
                 "fonts/HTML-CSS/STIX-Web/woff", "LICENSE")  # what the TeX input and HTML-CSS output load
MATHJAX_URL = "assets/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"  # relative to a page
MATHJAX_FONTS = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], '
                 'preferredFont: null, webFont: "STIX-Web", imageFont: null}});</script>\n')  # the fonts shipped
STYLE = """<style>
body.site{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45}
body.site table{border-collapse:collapse;font-size:.9em}
body.site td,body.site th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top}
nav.site{font-family:system-ui,sans-serif;padding:.5em 1em;border-bottom:1px solid #ddd;margin-bottom:1em}
.widget-static .widget-note{font-style:italic;color:#666;font-size:.85em}
.jp-RenderedImage img{max-width:100%;height:auto}
.jp-RenderedHTMLCommon td,.jp-RenderedHTMLCommon th{white-space:normal;max-width:28em}
.verdict-supported{color:#1a7f37;font-weight:600}.verdict-contradicted{color:#b42318;font-weight:600}
.run-line{color:#555}
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


# -- what a page shows -----------------------------------------------------------------------------------------------
def merge_parameters(nb) -> bool:
    """Fold papermill's injected-parameters cell into the chapter's parameters cell (in place): one cell, the run's
    values, each changed one marked `# set by the run (default X)`. Returns True when there was a cell to fold."""
    injected = next((c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])), None)
    target = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if injected is None or target is None:
        return False
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]*) = (.*)$", injected.source, re.M))
    lines = []
    for line in target.source.splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*) = (.*?)(\s+#.*)?$", line)
        if m and m.group(1) in values and values[m.group(1)].strip() != m.group(2).strip():
            line = f"{m.group(1)} = {values[m.group(1)]}  # set by the run (default {m.group(2).strip()})"
        lines.append(line)
    target.source = "\n".join(lines)
    nb.cells.remove(injected)
    return True


NOISE = {  # what a published page's output must not carry, by kind (`page_noise`)
    "PosixPath": re.compile(r"(Posix|Windows)Path\("),
    "progress bar": re.compile(r"\d+%\|[^|\n]*\|\s*\d+/\d+|\d+/\d+ \[\d\d:\d\d<"),
    "16-digit float": re.compile(r"(?<![\w.])-?\d+\.\d{12,}"),
    "config repr": re.compile(r"\b[A-Z]\w*Config\((\w+=)"),
    "tqdm widget": re.compile(r"HBox\(children=\(HTML\(value=|IProgress"),
}


def _output_texts(out) -> list[str]:
    if out.get("output_type") == "stream":
        return [out.get("text", "")]
    if out.get("output_type") == "error":
        return ["\n".join(out.get("traceback", []))]
    data = out.get("data", {})
    return [str(data[k]) for k in ("text/plain", "text/html", "text/markdown") if k in data]


def page_noise(nb, machine_paths: tuple[str, ...] = ()) -> list[str]:
    """What a reader should not see in `nb`'s outputs, one line per finding ("cell 12: PosixPath: ...'"): the
    patterns of `NOISE`, and any of `machine_paths` (absolute folders of this machine, e.g. the repository)."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for text in _output_texts(out):
                kinds = [(k, rx.search(text)) for k, rx in NOISE.items()]
                kinds += [("absolute path", re.search(re.escape(mp), text)) for mp in machine_paths if mp]
                for kind, m in kinds:
                    if m:
                        excerpt = text[max(0, m.start() - 30):m.end() + 40].replace("\n", " ")
                        found.append(f"cell {i}: {kind}: {excerpt!r}")
    return found


SAVE_CALL = re.compile(r"""\bsave\(\s*[^,]+,\s*["']([\w.-]+?)(?:\.png)?["']""")


def figure_title(png: Path) -> str:
    """The title `lab.viz.save` wrote into a saved PNG (its `Title` text chunk), or ""."""
    try:
        from PIL import Image

        with Image.open(png) as im:
            return str(im.info.get("Title", ""))
    except (OSError, ImportError):
        return ""


def describe_images(nb, figures: Path | None) -> int:
    """Give every PNG output of `nb` alt text (in place): the title of the figure the cell saved in that order
    (`lab.viz.save`'s PNG in `figures`), else the section heading above the cell. The output becomes an HTML `<img>`
    (nbconvert's lab template writes no alt). Returns the number of images described."""
    heading, n = "", 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = next((ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")), heading)
            continue
        saved = SAVE_CALL.findall(cell.get("source", "")) if cell.cell_type == "code" else []
        k = 0
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" not in data:
                continue
            title = figure_title(figures / f"{saved[k]}.png") if figures and k < len(saved) else ""
            alt = title or (f"Figure: {heading}" if heading else "Figure")
            k += 1
            n += 1
            data["text/html"] = (f'<img src="data:image/png;base64,{data["image/png"].strip()}" '
                                 f'alt="{html.escape(alt)}" title="{html.escape(alt)}">')
            del data["image/png"]
    return n


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


def copy_mathjax(assets: Path) -> Path:
    """Copy MathJax (`jupyter_server_mathjax`'s files, `MATHJAX_PARTS`) to `assets/mathjax` once; return that folder.
    Raises ImportError naming the package when it is not installed."""
    try:
        import jupyter_server_mathjax
    except ImportError as e:
        raise ImportError("the site serves MathJax itself: pip install jupyter-server-mathjax (pyproject's dev extra "
                          "names it)") from e
    src, dst = Path(jupyter_server_mathjax.__file__).parent / "static", assets / "mathjax"
    for part in MATHJAX_PARTS:
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part, dirs_exist_ok=True)
        elif (src / part).is_file():
            (dst / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / part, dst / part)
    return dst


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


def _with_nav(page: str, nav: str, depth: int = 0) -> str:
    """`page` with the site's style and `nav` bar, MathJax from the site's assets and no require.js (module doc)."""
    page = page.replace("</head>", f"{STYLE}\n</head>", 1)
    page = re.sub(r'<script src="[^"]*require[^"]*\.js"></script>\s*', "", page)
    local = f'<script src="{"../" * depth}{MATHJAX_URL}">'
    page = page.replace(f'<script src="{MATHJAX_URL}">', MATHJAX_FONTS + local)
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, page, count=1)


# -- the index: which run, and what it found -------------------------------------------------------------------------
def run_facts(notebooks: list[Path]) -> dict:
    """Which run the pages come from: profile, seed, artefact root (papermill's parameters of the first chapter),
    when the chapters ran (first start, last end) and the commit (the run's `provenance.json`, written by
    `lab rerun`, else the repository's HEAD at build time, said as such)."""
    import nbformat

    metas = [nbformat.read(p, as_version=4).metadata.get("papermill", {}) for p in notebooks]
    params = next((m.get("parameters") for m in metas if m.get("parameters")), {}) or {}
    profile, seed = str(params.get("PROFILE", "?")), int(params.get("SEED", 0) or 0)
    run_paths = paths(profile, params.get("ARTEFACTS") or None, seed, create=False) if profile != "?" else None
    prov = run_paths.file("provenance.json") if run_paths else None
    commit, source = "", ""
    if prov is not None and prov.is_file():
        commit, source = str(json.loads(prov.read_text()).get("git_commit", ""))[:12], "recorded by the run"
    if not commit:
        try:
            commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True,
                                    text=True, timeout=10).stdout.strip()
            source = "the repository when the site was built"
        except (OSError, subprocess.SubprocessError):
            commit = ""
    times = sorted(t for m in metas for t in (m.get("start_time"), m.get("end_time")) if t)
    return {"profile": profile, "seed": seed, "run": run_name(profile, seed) if profile != "?" else "?",
            "paths": run_paths, "commit": commit, "commit_source": source,
            "started": times[0][:16].replace("T", " ") if times else "", "ended": times[-1][:16].replace("T", " ")
            if times else ""}


def _fmt(x, digits: int = 3) -> str:
    """A number as a reader wants it: 3 significant digits, "—" for a missing one."""
    if x is None or (isinstance(x, float) and x != x):
        return "—"
    return f"{x:.{digits}g}" if isinstance(x, (int, float)) else str(x)


def verdict_rows(results: dict) -> list[dict]:
    """Chapter 07's recorded verdicts as rows (row id, claim, estimate with its CI across seeds, Holm p, verdict,
    reason), in the order of `lab.hypotheses.CRITERIA`; [] when the run has no chapter 07 records."""
    from .hypotheses import CRITERIA

    rec = results.get(VERDICT_CHAPTER, {})
    verdicts = rec.get("verdict", {})
    rows = []
    for c in CRITERIA:
        if c.id not in verdicts:
            continue
        lo, hi = (rec.get("ci", {}).get(c.id) or [None, None])[:2]
        est = rec.get("estimate", {}).get(c.id)
        interval = f" ({_fmt(lo)} to {_fmt(hi)})" if lo is not None and hi is not None else ""
        rows.append({"row": c.id, "claim": c.claim, "estimate": _fmt(est) + interval if est is not None else "—",
                     "holm_p": _fmt(rec.get("p_adj", {}).get(c.id), 2), "verdict": verdicts[c.id],
                     "reason": rec.get("reason", {}).get(c.id, "")})
    return rows


def verdict_table_html(rows: list[dict]) -> str:
    """The verdict rows as an HTML table; a "not measured" row shows its reason in place of the estimate."""
    head = "<tr><th>row</th><th>claim</th><th>estimate (95% CI across seeds)</th><th>Holm p</th><th>verdict</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(r['row'])}</td><td>{html.escape(r['claim'])}</td>"
        f"<td>{html.escape(r['reason'] if r['verdict'] == 'not measured' and r['reason'] else r['estimate'])}</td>"
        f"<td>{html.escape(r['holm_p'])}</td><td class=\"verdict-{r['verdict'].replace(' ', '-')}\">"
        f"{html.escape(r['verdict'])}</td></tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


def findings(results: dict) -> str:
    """One paragraph of what the run found, each sentence from recorded numbers (a missing record drops its
    sentence): the teacher against popularity and the small model (02), where the Fisher mass sits (03), the best
    student's retention and speed-up (05), and the claims' verdicts (07)."""
    r02, r03 = results.get("02_teacher", {}), results.get("03_fisher", {})
    r05, r07 = results.get("05_distillation", {}), results.get(VERDICT_CHAPTER, {})
    said = []
    t, pop, small = (r02.get(k) for k in ("teacher_ndcg10_test", "popularity_ndcg10_test", "small_ndcg10_test"))
    if _is_number(t) and _is_number(pop):
        said.append(f"The {r02.get('n_layers', '')}-layer teacher reaches test NDCG@10 {t:.3f} against "
                    f"popularity's {pop:.3f}" + (f" and {small:.3f} for the small model trained from scratch"
                                                 if _is_number(small) else "") + ".")
    low = r03.get("lower_half_share")
    if _is_number(low):
        said.append(f"{low:.0%} of the Fisher information sits in the lower half of its layers"
                    + (f" (top layers by Fisher: {', '.join(map(str, r03['top_layers_fisher']))})"
                       if r03.get("top_layers_fisher") else "") + ".")
    best, ret, sp = r05.get("best_setting"), r05.get("best_retention"), r05.get("best_speedup")
    if best and _is_number(ret):
        said.append(f"The best student on validation (`{best}`) keeps {ret:.1%} of the teacher's test NDCG@10"
                    + (f" at {sp:.2f}x its throughput" if _is_number(sp) else "") + ".")
    claims = r07.get("claim_verdict", {})
    if claims:
        by = {}
        for claim, verdict in claims.items():
            by.setdefault(verdict, []).append(claim)
        said.append("Claims: " + "; ".join(f"{', '.join(cs)} {v}" for v, cs in by.items())
                    + f" (seeds {', '.join(map(str, r07.get('seeds', [])))}).")
    return " ".join(said)


def index_html(title: str, question: str, facts: dict, results: dict, entries: list, docs: list) -> str:
    """The landing page (module docstring)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune as md

    items = "\n".join(f'<li><a href="{stem}.html">{html.escape(t)}</a>'
                      + (f"<br><span>{md(q)}</span>" if q else "") + "</li>" for stem, t, q in entries)
    doc_items = "\n".join(f'<li><a href="docs/{stem}.html">{html.escape(t)}</a></li>' for stem, t in docs)
    rows = verdict_rows(results)
    seeds = results.get(VERDICT_CHAPTER, {}).get("seeds", [])
    run = (f'<p class="run-line">These pages are the executed chapters of run <code>{html.escape(facts["run"])}'
           f'</code> (profile <code>{html.escape(facts["profile"])}</code>, seed {facts["seed"]}), run '
           f'{html.escape(facts["started"])} to {html.escape(facts["ended"])} UTC'
           + (f', commit <code>{html.escape(facts["commit"])}</code> ({facts["commit_source"]})' if facts["commit"]
              else "") + ". Every number below comes from this run's <code>results.json</code>.</p>")
    if rows:
        found = (f"<h2>What this run found</h2>\n<p>{md(findings(results)).strip()[3:-4]}</p>\n"
                 f"<p>Chapter 07's verdicts, pooled over seed(s) {', '.join(map(str, seeds))}; the criteria were "
                 f"committed before any run (<code>lab.hypotheses.CRITERIA</code>).</p>\n{verdict_table_html(rows)}")
    else:
        found = ("<h2>What this run found</h2>\n<p>" + (md(findings(results)).strip()[3:-4] or
                 "This run has no recorded results yet.") + " Chapter 07 (the verdicts) has not run.</p>")
    more = f"<h2>More</h2>\n<ul>\n{doc_items}\n</ul>" if docs else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(title)} · {html.escape(facts['profile'])}</title>{STYLE}</head>
<body class="site">
<h1>{html.escape(title)}</h1>
{md(question)}
{run}
{found}
<h2>The chapters</h2>
<ol>
{items}
</ol>
{more}
</body></html>
"""


def doc_pages(docs: Path, out_dir: Path, home: str) -> list[tuple[str, str]]:
    """Render every `docs/*.md` to `out_dir/docs/NAME.html` (title: its first heading); return [(stem, title)]. An
    image a page references as a file (relative to `docs`, e.g. `![...](img/curve.png)`: a figure committed beside its
    dated measurement) is copied under `out_dir/docs/assets/`."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune as md

    written = []
    for src in sorted(Path(docs).glob("*.md")) if Path(docs).is_dir() else []:
        text = src.read_text(encoding="utf-8")
        title = next((ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("#")), src.stem)
        (out_dir / "docs").mkdir(parents=True, exist_ok=True)
        (out_dir / "docs" / f"{src.stem}.html").write_text(
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'{STYLE}</head>\n<body class="site"><nav class="site"><a href="../index.html">{html.escape(home)}</a>'
            f"</nav>\n{copy_file_images(md(text), [Path(docs)], out_dir / 'docs' / 'assets')}\n</body></html>\n",
            encoding="utf-8")
        written.append((src.stem, title))
    return written


def build_site(run_dir: str | Path, out_dir: str | Path, readme: str | Path = REPO_ROOT / "README.md",
               docs: str | Path = DOCS) -> Path:
    """Render the executed chapters in `run_dir` and the pages of `docs` into a static site in `out_dir`; return
    `out_dir/index.html`.

    Raises FileNotFoundError naming the command that makes the run when `run_dir` holds no executed chapter.
    """
    import nbformat
    from nbconvert import HTMLExporter

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    notebooks = sorted(run_dir.glob(CHAPTER_GLOB))
    if not notebooks:
        raise FileNotFoundError(f"no executed chapters (NN_name.ipynb) in {run_dir}: run `make book PROFILE="
                                f"{run_dir.name}` (or `python -m lab book --profile {run_dir.name}`) first")
    out_dir.mkdir(parents=True, exist_ok=True)
    title, question, _ = readme_sections(Path(readme).read_text(encoding="utf-8"))
    facts = run_facts(notebooks)
    figures = facts["paths"].figures if facts["paths"] else None
    copy_mathjax(out_dir / "assets")
    exporter = HTMLExporter(template_name="lab", mathjax_url=MATHJAX_URL)
    entries = []
    for i, path in enumerate(notebooks):
        nb = nbformat.read(path, as_version=4)
        static_widgets(nb)
        merge_parameters(nb)
        describe_images(nb, figures)
        ch_title, ch_question = chapter_heading(nb)
        page, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": ch_title or path.stem,
                                                                          "path": str(NOTEBOOKS)}})
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
    results = read_json(facts["paths"].results, default={}) if facts["paths"] else {}
    docs_written = doc_pages(Path(docs), out_dir, title or "index")
    index = index_html(title, question, facts, results, entries, docs_written)
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

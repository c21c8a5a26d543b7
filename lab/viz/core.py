"""What every figure of the book shares: the backend policy, constrained layout, the one saver `save`, the page's
limits on a figure (`layout_problems`), and a figure-or-axes helper.

Backend policy (the only place the package touches matplotlib's backend): when nothing has chosen one yet (pyplot
not imported, `$MPLBACKEND` unset, as under Jupyter, whose kernel sets the inline backend through `$MPLBACKEND`) and
there is no display, use Agg; otherwise leave the choice alone. Figure functions never call `plt.show()`, so they
work under any backend.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib
import matplotlib.text

from ..io import atomic_path

__all__ = ["use_backend", "figure_title", "save", "MAX_WIDTH_PX", "MAX_ASPECT", "layout_problems", "place_labels",
           "fig_ax"]


def use_backend() -> str:
    """Apply the backend policy (module docstring) and return the backend matplotlib will use."""
    chosen = "matplotlib.pyplot" in sys.modules or os.environ.get("MPLBACKEND")
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform != "darwin" \
        and sys.platform != "win32"
    if not chosen and headless:
        matplotlib.use("Agg")
    return matplotlib.get_backend()


use_backend()
matplotlib.rcParams["figure.constrained_layout.use"] = True  # every figure lays its labels out inside its canvas

import matplotlib.pyplot as plt  # noqa: E402


def figure_title(fig) -> str:
    """The words a figure is about: its suptitle, else its axes' titles joined by "; " ("" when it has none)."""
    sup = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    return sup or "; ".join(t for t in (ax.get_title() for ax in fig.axes) if t)


def save(fig, name: str, paths, dpi: int = 120, formats: tuple[str, ...] = ("png", "svg")) -> None:
    """Save `fig` as `<paths.figures>/<name>.png` and `<name>.svg`, each atomically (no half-written file is ever
    left). Returns None, so a chapter cell ending in `save(...)` shows the figure and nothing else.

    The one way every chapter saves a figure (chapters 01-05): the PNG is what the notebooks and the site show (it
    carries the figure's title as its `Title` text, the site's alt text), the SVG scales without blur for a paper or
    a slide. `name` may carry the `.png` suffix or not; `paths` is the run's `lab.Paths` (anything with a `figures`
    folder); `formats` lists the files written.
    """
    stem = name[:-4] if name.endswith(".png") else name
    title = figure_title(fig)
    for fmt in formats:
        meta = {"Date": None} if fmt == "svg" else {"Title": title} if fmt == "png" and title else None
        with atomic_path(Path(paths.figures) / f"{stem}.{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)  # no timestamp in the SVG


MAX_WIDTH_PX = 1000  # a page shows a figure at most this wide (the site's column): a wider one shrinks, text too
MAX_ASPECT = 2.5  # width / height: a wider strip is unreadable once a page shrinks it to its column


def layout_problems(fig, dpi: int = 120) -> list[str]:
    """What makes `fig` hard to read at a page's width, one line each: wider than `MAX_WIDTH_PX` at `dpi`, wider than
    `MAX_ASPECT`, a text outside the canvas (clipped when saved without `bbox_inches="tight"`), two visible texts
    overlapping (titles, labels, tick labels, legends' entries, annotations). `tests/test_viz.py` asserts that every
    chapter figure has none."""
    w, h = fig.get_size_inches()
    found = [f"{w * dpi:.0f} px wide at {dpi} dpi (> {MAX_WIDTH_PX})"] if w * dpi > MAX_WIDTH_PX + 0.5 else []
    found += [f"aspect {w / h:.2f}:1 (> {MAX_ASPECT}:1)"] if w / h > MAX_ASPECT + 1e-9 else []
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    canvas = fig.bbox
    undrawn = {id(t) for t in _tick_labels(fig, drawn=False)} - {id(t) for t in _tick_labels(fig, drawn=True)}
    undrawn |= {id(t) for ax in fig.axes if not ax.get_visible() for t in ax.findobj(matplotlib.text.Text)}
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()
             and id(t) not in undrawn and _text_box(t, renderer).width > 0]
    boxes = [(t, _text_box(t, renderer)) for t in texts]
    for t, b in boxes:
        if b.x0 < canvas.x0 - 1 or b.y0 < canvas.y0 - 1 or b.x1 > canvas.x1 + 1 or b.y1 > canvas.y1 + 1:
            found.append(f"outside the canvas: {t.get_text()!r}")
    for i, (t, b) in enumerate(boxes):
        for u, c in boxes[i + 1:]:
            if b.overlaps(c) and _overlap_area(b, c) > 4:  # a few px of anti-aliasing touch is not an overlap
                found.append(f"overlapping: {t.get_text()!r} and {u.get_text()!r}")
    return found


def _tick_labels(fig, drawn: bool) -> list:
    """Every tick label Text of `fig`'s axes, or (`drawn`) only those of ticks inside the view limits, which are the
    ones matplotlib draws (the others keep stale positions)."""
    out = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            ticks = axis._update_ticks() if drawn else axis.get_major_ticks() + axis.get_minor_ticks()
            out += [lab for t in ticks for lab in (t.label1, t.label2)]
    return out


def _text_box(t, renderer):
    """The box of a text's glyphs alone, in pixels (an annotation's own extent also spans its leader line; a new
    annotation is positioned first, as drawing would)."""
    if isinstance(t, matplotlib.text.Annotation):
        t.update_positions(renderer)
    return matplotlib.text.Text.get_window_extent(t, renderer)


def _overlap_area(a, b) -> float:
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def place_labels(ax, xs, ys, texts, fontsize: float = 7, step: float = 8.0) -> list:
    """Label each point (xs[i], ys[i]) with texts[i] just right of it, nudged up or down in `step`-point steps (with
    a thin leader line) until its box overlaps no label placed before it; returns the annotations. The figure is laid
    out first, so the boxes compared are the ones drawn (chapters 05 and 06: many students at one speed-up)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed, out = [], []
    order = sorted(range(len(texts)), key=lambda i: (float(xs[i]), -float(ys[i])))
    inside = ax.get_window_extent(renderer)
    for i in order:
        for k in range(0, 41):
            dy = step * ((k + 1) // 2) * (1 if k % 2 else -1)
            a = ax.annotate(str(texts[i]), (xs[i], ys[i]), xytext=(6, dy), textcoords="offset points",
                            fontsize=fontsize, va="center",
                            arrowprops=dict(arrowstyle="-", color="0.6", lw=0.5) if dy else None)
            box = _text_box(a, renderer)
            if box.x1 > inside.x1:  # no room on the right: left of the point
                a.set_position((-6, dy))
                a.set_horizontalalignment("right")
                box = _text_box(a, renderer)
            box = box.expanded(1.0, 1.1)
            fits = inside.y0 <= box.y0 and box.y1 <= inside.y1
            if (fits and not any(box.overlaps(b) for b in placed)) or k == 40:
                placed.append(box)
                out.append(a)
                break
            a.remove()
    return out


def fig_ax(ax, size):
    """(figure, axes): `ax`'s figure when an axes is given, else a new figure of `size` inches with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax

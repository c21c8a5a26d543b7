"""What every figure of the book shares: the backend policy, the one saver `save`, and a figure-or-axes helper.

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

from ..io import atomic_path


def use_backend() -> str:
    """Apply the backend policy (module docstring) and return the backend matplotlib will use."""
    chosen = "matplotlib.pyplot" in sys.modules or os.environ.get("MPLBACKEND")
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform != "darwin" \
        and sys.platform != "win32"
    if not chosen and headless:
        matplotlib.use("Agg")
    return matplotlib.get_backend()


use_backend()

import matplotlib.pyplot as plt  # noqa: E402


def save(fig, name: str, paths, dpi: int = 120, formats: tuple[str, ...] = ("png", "svg")) -> Path:
    """Save `fig` as `<paths.figures>/<name>.png` and `<name>.svg`, each atomically (no half-written file is ever
    left); return the PNG's path.

    The one way every chapter saves a figure (chapters 01-05): the PNG is what the notebooks and the site show, the
    SVG scales without blur for a paper or a slide. `name` may carry the `.png` suffix or not; `paths` is the run's
    `lab.Paths` (anything with a `figures` folder); `formats` lists the files written (the first one is returned).
    """
    stem = name[:-4] if name.endswith(".png") else name
    out = [Path(paths.figures) / f"{stem}.{fmt}" for fmt in formats]
    for path, fmt in zip(out, formats):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight",
                        metadata={"Date": None} if fmt == "svg" else None)  # no timestamp in the SVG
    return out[0]


def fig_ax(ax, size):
    """(figure, axes): `ax`'s figure when an axes is given, else a new figure of `size` inches with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax

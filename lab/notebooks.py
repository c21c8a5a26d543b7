"""The notebook harness: run the book's jupytext chapters headlessly with papermill.

Chapters are `notebooks/NN_name.py` (py:percent), paired with `.ipynb` through the root `jupytext.toml`. The runner
converts a chapter, injects its parameters (profile, seed, artefact folder), executes it with papermill and writes the
executed copy to `runs/<run>/NN_name.ipynb` (`lab.run_name`). A failure raises `ChapterFailed` naming the chapter and
the cell. `run_book` checks what it can before any chapter runs: the chapters asked for exist, and a chapter that
loads the teacher (`lab.load_teacher`) has one, or runs after chapter 02 in the same book run.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from . import REPO_ROOT, TEACHER_CHAPTER, paths, require_teacher, run_name
from .profiles import get_profile
from .console import batch_environment

__all__ = ["NOTEBOOKS", "RUNS", "ChapterFailed", "chapters", "select_chapters", "run_dir", "KERNELSPEC",
           "parameters_cells", "parameter_names", "run_chapter", "run_book", "pair_in_sync", "sync_all"]

NOTEBOOKS = REPO_ROOT / "notebooks"
RUNS = REPO_ROOT / "runs"


class ChapterFailed(RuntimeError):
    """A chapter raised while running; the message names the chapter, the cell and the error."""


def chapters(folder: Path = NOTEBOOKS) -> list[Path]:
    """The book's chapters in order: `NN_name.py` files."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.py"))


def select_chapters(only: list[str] | None = None, folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapters whose name starts with one of `only` (all when empty), in book order.

    Raises ValueError naming every prefix that matches no chapter, with the list of chapters.
    """
    every = chapters(folder)
    if not only:
        return every
    unknown = [o for o in only if not any(ch.stem.startswith(o) for ch in every)]
    if unknown:
        raise ValueError(f"no chapter starts with {', '.join(map(repr, unknown))}; the chapters are: "
                         f"{', '.join(ch.stem for ch in every)} (e.g. --only 01 02)")
    return [ch for ch in every if any(ch.stem.startswith(o) for o in only)]


def run_dir(profile: str = "smoke", seed: int = 0) -> Path:
    """Where the executed notebooks of a run go: `runs/<run>` (`lab.run_name`)."""
    return RUNS / run_name(profile, seed)


# How the client waits for a kernel (`_in_slices`, engine `lab`). Chapter 03's explorer cell (it displays widgets)
# sometimes never finished: kernel idle, client waiting for the execute reply (CI, 2026-12-06; 1 of 20 local runs of
# the chapter, 2026-12-07). Two known causes fit, both a missed edge of ZeroMQ's edge-triggered wake-up: on the
# client, a reply the asyncio poll did not see; in the kernel, ipykernel 7's shell ROUTER leaving a request unread
# until another message arrives (ipython/ipykernel#1554). The client therefore polls its sockets again every slice and,
# after `NUDGE_AFTER_S` of silence on the shell channel, sends a `kernel_info_request`, whose arrival wakes a stalled
# kernel (its reply, like every reply to another request, is skipped by nbclient). A cell that is still running just
# queues the request behind itself.
POLL_SLICE_S = 1.0
NUDGE_AFTER_S = 30.0
ENGINE = "lab"


def _in_slices(get_msg, slice_s: float, nudge=None, nudge_after_s: float | None = None):
    """Wrap a channel's async `get_msg` so that an unbounded wait (`timeout=None`) becomes repeated waits of
    `slice_s` seconds; each ends with a real poll of the socket, so a message whose wake-up was missed is read.
    `nudge()` (when given) is called after every `nudge_after_s` (default `NUDGE_AFTER_S`) seconds without a
    message."""
    from queue import Empty

    every = max(1, round((NUDGE_AFTER_S if nudge_after_s is None else nudge_after_s) / slice_s))

    async def get_msg_in_slices(timeout: float | None = None):
        if timeout is not None:
            return await get_msg(timeout=timeout)
        empty = 0
        while True:
            try:
                return await get_msg(timeout=slice_s)
            except Empty:
                empty += 1
                if nudge is not None and empty % every == 0:
                    nudge()

    return get_msg_in_slices


def _register_engine() -> str:
    """Register the papermill engine `lab`: papermill's nbclient engine whose client waits on the shell and
    IOPub channels in slices of `POLL_SLICE_S` and nudges a silent kernel (`_in_slices`). Returns its name."""
    from jupyter_core.utils import run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger

    class SlicedPollClient(PapermillNotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            kc.shell_channel.get_msg = _in_slices(kc.shell_channel.get_msg, POLL_SLICE_S, nudge=kc.kernel_info)
            kc.iopub_channel.get_msg = _in_slices(kc.iopub_channel.get_msg, POLL_SLICE_S)
            return kc

        # nbclient's synchronous twin is bound to its own coroutine, so it is rebuilt over this one
        start_new_kernel_client = run_sync(async_start_new_kernel_client)

    class SlicedPollEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            kwargs = {k: v for k, v in kwargs.items() if k not in ("input_path", "timeout", "startup_timeout")}
            return SlicedPollClient(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                                    kernel_name=kernel_name, log=logger, log_output=log_output,
                                    stdout_file=stdout_file, stderr_file=stderr_file, **kwargs).execute()

    papermill_engines.register(ENGINE, SlicedPollEngine)
    return ENGINE


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _with_kernel(nb):
    """Give a notebook read from a bare py:percent file the kernel and language metadata papermill needs."""
    nb.metadata.setdefault("kernelspec", dict(KERNELSPEC))
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def parameters_cells(nb) -> list[int]:
    """Indices of the cells tagged `parameters`."""
    return [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]


def parameter_names(chapter: str | os.PathLike) -> set[str]:
    """The UPPERCASE names assigned in a chapter's parameters cell (the chapter read by jupytext, the cell parsed by
    `ast`); empty when it has no such cell. `lab.rerun` fingerprints a chapter with the `-p` values it names."""
    import ast

    import jupytext

    nb = jupytext.read(chapter)
    cells = parameters_cells(nb)
    if not cells:
        return set()
    body = ast.parse(nb.cells[cells[0]].source).body
    targets = [t for node in body if isinstance(node, (ast.Assign, ast.AnnAssign))
               for t in (node.targets if isinstance(node, ast.Assign) else [node.target])]
    return {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}


def run_chapter(path: str | os.PathLike, profile: str = "smoke", seed: int = 0, artefacts: str | None = None,
                out_dir: str | os.PathLike | None = None, extra: dict | None = None, kernel: str = "python3",
                timeout: int | None = None) -> Path:
    """Execute one chapter with papermill and return the path of the executed notebook.

    Args:
        path: the chapter's `.py` (or `.ipynb`).
        profile, seed, artefacts: injected as PROFILE, SEED and ARTEFACTS.
        out_dir: where executed notebooks go (default `run_dir(profile, seed)`: `runs/<profile>`,
            `runs/<profile>-seed<N>` for seed N > 0, `runs/<profile>-<Category>` for real data).
        extra: further parameters (UPPERCASE names of the chapter's parameters cell).
    """
    import jupytext
    import nbformat
    import papermill as pm

    path = Path(path)
    nb = _with_kernel(jupytext.read(path))
    if len(parameters_cells(nb)) != 1:
        raise ChapterFailed(f"{path.name}: expected exactly one cell tagged 'parameters', "
                            f"found {len(parameters_cells(nb))}")
    out_dir = Path(out_dir or run_dir(profile, seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / f".{path.stem}.input.ipynb"
    nbformat.write(nb, src)
    out = out_dir / f"{path.stem}.ipynb"
    params = {"PROFILE": profile, "SEED": seed, "ARTEFACTS": str(artefacts or "")}
    params.update(extra or {})
    try:
        with batch_environment():  # the page is read later: no progress bars in its outputs (lab.console)
            pm.execute_notebook(str(src), str(out), parameters=params, kernel_name=kernel, cwd=str(path.parent),
                                progress_bar=False, execution_timeout=timeout, engine_name=_register_engine())
    except pm.PapermillExecutionError as e:
        raise ChapterFailed(f"chapter {path.stem} failed in cell {e.exec_count} (index {e.cell_index}): "
                            f"{e.ename}: {e.evalue}\n  executed copy: {out}") from None
    finally:
        src.unlink(missing_ok=True)
    return out


def run_book(profile: str = "smoke", seed: int = 0, artefacts: str | None = None, only: list[str] | None = None,
             out_dir: str | os.PathLike | None = None, extra: dict | None = None,
             on_chapter=None) -> dict[str, float]:
    """Run every chapter in order (or those whose name starts with one of `only`; without `only`, the profile's
    its block's `chapters` in `lab.profiles` where it names some); return seconds per chapter. `on_chapter(stem,
    seconds)` is called as each chapter finishes (`python -m lab book` records its time: `lab.rerun.record_chapter`).

    Before running anything: ValueError for a prefix that matches no chapter, FileNotFoundError (naming the command
    that trains it) when a chapter needs the teacher, there is none and chapter 02 is not part of this run.
    """
    selected = select_chapters(only or get_profile(profile).chapters)
    if (not any(ch.stem.startswith(TEACHER_CHAPTER) for ch in selected)
            and any("load_teacher(" in ch.read_text() for ch in selected)):
        require_teacher(paths(profile, artefacts, seed, create=False))
    times = {}
    for ch in selected:
        t0 = time.perf_counter()
        print(f"[book:{profile}] {ch.stem} ...", flush=True)
        run_chapter(ch, profile=profile, seed=seed, artefacts=artefacts, out_dir=out_dir, extra=extra)
        times[ch.stem] = time.perf_counter() - t0
        print(f"[book:{profile}] {ch.stem} done in {times[ch.stem]:.1f}s", flush=True)
        if on_chapter is not None:
            on_chapter(ch.stem, times[ch.stem])
    return times


def pair_in_sync(py: Path) -> bool:
    """True when `NN_name.ipynb` has the same cells as `NN_name.py` and carries no outputs."""
    import jupytext

    ipynb = py.with_suffix(".ipynb")
    if not ipynb.exists():
        return False
    a, b = jupytext.read(py), jupytext.read(ipynb)
    if any(c.get("outputs") or c.get("execution_count") for c in b.cells if c.cell_type == "code"):
        return False
    strip = lambda nb: [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]
    return strip(a) == strip(b)


def sync_all(folder: Path = NOTEBOOKS) -> list[Path]:
    """Regenerate every `.ipynb` (without outputs) from its `.py`; return the files written."""
    import jupytext

    written = []
    for py in chapters(folder):
        nb = _with_kernel(jupytext.read(py))
        for i, c in enumerate(nb.cells):
            c["id"] = f"{py.stem[:2]}-{i:02d}"  # stable ids keep the .ipynb diff small
            if c.cell_type == "code":
                c.outputs, c.execution_count = [], None
        jupytext.write(nb, py.with_suffix(".ipynb"))
        written.append(py.with_suffix(".ipynb"))
    return written

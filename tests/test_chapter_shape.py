"""Chapters tell, `lab` does: no code cell of a chapter holds more than `MAX_LOGIC` lines of logic.

A logic line is a non-blank, non-comment physical line of a code cell, except the parameters cell (constants) and
import statements. `lab.record(...)` / `lab.record_all(...)` calls count like any other line: what a chapter keeps is
built in `lab` (e.g. `lab.chapters.c04_selection.selection_record`), so the record cell is a short call. Run this
file directly (`.venv/bin/python tests/test_chapter_shape.py`) for the per-chapter table: the largest cell and the
total.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
MAX_LOGIC = 15  # logic lines per code cell (issue 11: "no chapter code cell with more than 15 lines of logic")


def code_cells(text: str) -> list[tuple[str, str]]:
    """(header, source) of every code cell of a py:percent file (markdown cells left out)."""
    parts = re.split(r"^(# %%.*)$", text, flags=re.M)
    cells = []
    for header, body in zip(parts[1::2], parts[2::2]):
        if "[markdown]" not in header:
            cells.append((header, body))
    return cells


def _import_lines(source: str) -> set[int]:
    """1-based lines belonging to import statements."""
    out: set[int] = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update(range(node.lineno, node.end_lineno + 1))
    return out


def logic_lines(source: str) -> int:
    """Non-blank, non-comment physical lines of `source`, imports left out (`lab.record` calls count)."""
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
            code.update(range(tok.start[0], tok.end[0] + 1))
    return len(code - _import_lines(source))


def chapter_counts(path: Path) -> list[int]:
    """Logic lines of every code cell of a chapter except the parameters cell."""
    return [logic_lines(src) for header, src in code_cells(path.read_text()) if "parameters" not in header]


CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def test_counter_on_a_small_cell():
    src = "import os\n\n# a comment\nx = 1  # trailing\nprint(f'{x}'\n      f'{x}')\nlab.record('a',\n  1)\n"
    assert logic_lines(src) == 5  # x = 1, the print's two lines and the record call's two; not the import


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_no_cell_over_the_limit(path):
    counts = chapter_counts(path)
    assert max(counts) <= MAX_LOGIC, f"{path.name}: cells with {counts} logic lines (limit {MAX_LOGIC})"


if __name__ == "__main__":
    for p in CHAPTERS:
        c = chapter_counts(p)
        print(f"{p.stem:<18} max {max(c):3d}  total {sum(c):4d}  cells {c}")

"""The package's layering: data flows one way, and no module imports one above it.

Every `lab` module's imports (top-level and inside functions; `if TYPE_CHECKING:` blocks excepted, they never run) are
parsed with `ast` and checked against `lab.LAYERS` (lab/__init__.py, the one statement of the order), bottom first. A
module may import modules of earlier layers and its own package (`lab.fisher.tables` -> `lab.fisher.estimators`), not
a module of its own layer or of a later one. The first layer holds the leaves, which import nothing of ours. The
package root `lab/__init__.py` re-exports `lab.book`, so it counts as `book`: `import lab` / `from lab import paths`
is an import of `book`.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lab

LAB = Path(__file__).resolve().parent.parent / "lab"

LAYERS = lab.LAYERS  # the one statement of the order (lab/__init__.py)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
ROOT = "book"  # what `lab/__init__.py` counts as
# Known imports against the order, each with its way out; an entry no longer needed fails the test (remove it).
KNOWN_UPWARD: dict = {}  # (module path, imported layer) -> why; empty: every import follows LAYERS


def top_name(path: Path) -> str:
    """The top-level module of `lab` a file belongs to: lab/fisher/tables.py -> 'fisher', lab/__init__.py -> ROOT."""
    rel = path.relative_to(LAB).with_suffix("")
    return ROOT if rel.parts == ("__init__",) else rel.parts[0]


def is_submodule(name: str, root: Path = LAB) -> bool:
    return (root / f"{name}.py").is_file() or (root / name).is_dir()


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(tree: ast.AST):
    """Every node of `tree` except the bodies of `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def lab_imports(path: Path, root: Path = LAB) -> set[str]:
    """The top-level `lab` modules the file `path` (under the package folder `root`) imports; ROOT for the package
    root itself."""
    package = list(path.relative_to(root.parent).with_suffix("").parts)[:-1]  # lab/fisher/tables.py -> lab.fisher
    out = set()
    for node in _nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "lab":
                    out.add(parts[1] if len(parts) > 1 and is_submodule(parts[1], root) else ROOT)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            else:
                base = node.module.split(".")
            if base[0] != "lab":
                continue
            if len(base) > 1:
                out.add(base[1])
            else:  # `from lab import x` / `from . import x` at the root: a submodule or a name of the root
                out.update(a.name if is_submodule(a.name, root) else ROOT for a in node.names)
    return out


def modules() -> list[Path]:
    return sorted(p for p in LAB.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    unplaced = sorted({top_name(p) for p in modules()} - set(RANK))
    assert not unplaced, f"place these lab modules in lab.LAYERS (lab/__init__.py): {unplaced}"


def test_no_module_imports_upward():
    bad, known = [], set()
    for path in modules():
        me = top_name(path)
        if me not in RANK:
            continue  # reported by test_every_module_has_a_layer
        for other in lab_imports(path) - {me}:
            if other not in RANK:
                continue
            if RANK[other] >= RANK[me]:
                where = str(path.relative_to(LAB.parent))
                if (where, other) in KNOWN_UPWARD:
                    known.add((where, other))
                    continue
                bad.append(f"{path.relative_to(LAB.parent)} ({me}, layer {RANK[me]}) imports {other} "
                           f"(layer {RANK[other]})")
    assert not bad, "imports against the layer order (lab.LAYERS):\n" + "\n".join(bad)
    assert known == set(KNOWN_UPWARD), f"fixed, remove from KNOWN_UPWARD: {set(KNOWN_UPWARD) - known}"


def test_leaves_import_nothing_of_ours():
    for path in modules():
        if top_name(path) in LAYERS[0]:
            assert lab_imports(path) <= {top_name(path)}, f"{path.name} is a leaf; it imports {lab_imports(path)}"


@pytest.mark.parametrize("where, source, expected", [
    ("fisher/x.py", "from ..selection import budgets", {"selection"}),
    ("fisher/x.py", "from .tables import order_groups", {"fisher"}),  # its own package
    ("fisher/x.py", "from .. import paths, viz", {ROOT, "viz"}),  # a name of the root, a submodule
    ("x.py", "from .fisher import order_groups", {"fisher"}),
    ("x.py", "from . import paths", {ROOT}),
    ("x.py", "from lab import viz, record", {"viz", ROOT}),
    ("x.py", "import lab.bench.compact\nimport lab", {"bench", ROOT}),
    ("x.py", "def f():\n    from .viz import save", {"viz"}),  # lazy imports count
    ("x.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .viz import save", set()),  # never run
])
def test_import_parser(tmp_path, where, source, expected):
    """The parser resolves relative, absolute and lazy imports, and skips `if TYPE_CHECKING:`."""
    root = tmp_path / "lab"
    for name in ("fisher", "viz", "bench"):
        (root / name).mkdir(parents=True)
    (root / "selection.py").write_text("")
    f = root / where
    f.write_text(source)
    assert lab_imports(f, root) == expected


# Modules that declare no `__all__`: the command line (a script) and packages that re-export nothing; and, until they
# declare one (issue 23 item 4), the modules below PENDING_ALL. A listed module that declares one is checked like any
# other, so declaring it never fails this test; remove it from the list then.
NO_ALL = {"__main__.py", "chapters/__init__.py", "crosscheck/__init__.py"}
PENDING_ALL: set = set()  # modules still to declare their public names (none left)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(LAB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _declares_all(path: Path) -> bool:
    """Whether the module at `path` assigns `__all__` at its top level."""
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def test_every_module_declares_its_public_names():
    """Each module under lab/ states its public names in `__all__` (helpers are private, `_name`), and every name
    listed exists in the module, once."""
    import importlib

    undeclared, wrong = [], []
    for path in modules():
        rel = path.relative_to(LAB).as_posix()
        if rel in NO_ALL:
            continue
        if not _declares_all(path):
            if rel not in PENDING_ALL:
                undeclared.append(rel)
            continue
        module = importlib.import_module(_module_name(path))
        names = list(module.__all__)
        missing = [n for n in names if not hasattr(module, n)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if missing or twice or not all(isinstance(n, str) for n in names):
            wrong.append(f"{rel}: missing {missing}, listed twice {twice}")
    assert not undeclared, f"declare `__all__` (the names other modules, notebooks and tests use) in: {undeclared}"
    assert not wrong, "`__all__` names that the module lacks:\n" + "\n".join(wrong)

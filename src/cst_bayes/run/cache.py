"""Cache keys of pipeline units: the inputs a unit saw and the code that made it.

The code part follows the import graph: a stage's key hashes the source of its entry modules
and of every package module they import, at any depth, including imports inside functions.
No hand-written list of files can then forget the module that actually does the work.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

PACKAGE = "cst_bayes"
PACKAGE_DIR = Path(__file__).resolve().parents[1]

#: Bump when the pipeline changes what a stage writes without any module changing.
FORMAT = 2


def module_file(name: str, root: Path = PACKAGE_DIR) -> Path | None:
    """The source file of package module ``name`` (``cst_bayes.a.b``), or None if not ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    parts = name.split(".")[1:]
    if not parts:
        return root / "__init__.py"
    rel = Path(*parts)
    for cand in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imported(path: Path, root: Path) -> set[str]:
    """Package modules a source file imports (``from a import b`` counts b when it is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if module_file(m, root) is not None}


def _walk_runtime(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations do not run)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return out


def import_closure(entries: tuple[str, ...], root: Path = PACKAGE_DIR) -> list[str]:
    """Every package module reachable from ``entries`` (parents' ``__init__`` included)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name, root)
        if path is None:
            raise ValueError(f"{name} is not a module of {PACKAGE}")
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b runs a
        todo.extend(_imported(path, root) - seen)
    return sorted(seen)


@functools.cache
def code_hash(entries: tuple[str, ...], root: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the sources of ``entries`` and everything they import in the package."""
    h = hashlib.sha256(f"format {FORMAT}".encode())
    for name in import_closure(entries, root):
        path = module_file(name, root)
        assert path is not None
        h.update(name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def input_hash(obj: Any) -> str:
    """Stable SHA-256 of a JSON-able description of a unit's inputs."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()

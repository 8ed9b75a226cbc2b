"""Your network's code as a run records it: a digest of the files your class is built from, so that a
resume, a retraining or a winner's reload can tell the code was edited since (its trials, or its weights,
were made with other code).

``code_digest(ref)`` reads the sources (nothing runs): the top-level module or package that ``ref``
names, the one its class was defined in (a class re-exported from a neighbour), and the modules of its
folder that those import, found in their ``import`` lines. It holds two digests: of the files' bytes,
which any Python reads the same (a colleague's copy, another interpreter), and of their syntax
(``ast.dump``), which leaves comments and layout aside but whose text changes between Python versions;
``same_code`` takes either, the syntax only under the same Python version.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

from .user import module_paths, module_root, user_model

__all__ = ["code_digest", "same_code"]


def _files(top: str, root: str | None) -> list[tuple[Path, Path]]:
    """``(file, base)`` of the sources of top-level module ``top``: its file, or every .py of a package
    (a namespace package's folders too); found in the module paths (``root`` first), else installed."""
    paths = [root, *(p for p in module_paths() if p != root)] if root else None
    spec = importlib.machinery.PathFinder.find_spec(top, paths) if paths else importlib.util.find_spec(top)
    if spec is None:
        return []
    folders = list(spec.submodule_search_locations or [])
    if folders:
        return [(file, Path(folder).parent) for folder in folders for file in sorted(Path(folder).rglob("*.py"))]
    if spec.origin and spec.origin.endswith(".py"):
        return [(Path(spec.origin), Path(spec.origin).parent)]
    return []  # a compiled or built-in module


def _imported(tree: ast.AST) -> list[str]:
    """The top-level names a module's import lines name (in functions and branches too)."""
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0
              and node.module]
    return [name.split(".")[0] for name in names]


def code_digest(ref: str) -> str:
    """``"<bytes digest>:<syntax digest>:<python version>"`` of the code your class ``ref`` is built from."""
    cls = user_model(ref)
    root = module_root(cls)
    raw, syntax, seen = hashlib.sha256(), hashlib.sha256(), set()
    todo = [ref.split(":")[0].split(".")[0], cls.__module__.split(".")[0]]
    while todo:
        top = todo.pop()
        if top in seen:
            continue
        seen.add(top)
        for file, base in _files(top, root):
            source = file.read_bytes()
            name = file.relative_to(base).as_posix().encode() + b"\0"
            raw.update(name + source + b"\0")
            try:
                tree = ast.parse(source)
            except (SyntaxError, ValueError):
                syntax.update(name + source + b"\0")
                continue
            syntax.update(name + ast.dump(tree).encode() + b"\0")
            if root:  # the neighbours it imports from its folder (an installed name finds no file there)
                todo += _imported(tree)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{raw.hexdigest()[:16]}:{syntax.hexdigest()[:16]}:{version}"


def same_code(stored, now: str) -> bool:
    """Whether the code recorded as ``stored`` is the code ``now``: the same bytes, or the same syntax under
    the same Python version (comments and layout aside)."""
    if not isinstance(stored, str) or stored.count(":") != 2:
        return False
    raw, syntax, version = stored.split(":")
    raw_now, syntax_now, version_now = now.split(":")
    return raw == raw_now or (version == version_now and syntax == syntax_now)

"""Your network's code as a run records it: a digest of the files your class is built from, so that a
resume, a retraining or a winner's reload can tell the code was edited since (its trials, or its weights,
were made with other code).

``code_digest(ref)`` reads the sources (nothing runs): the top-level module or package that ``ref``
names, the one its class was defined in (a class re-exported from a neighbour), and the neighbours
those import, as Python resolves each import (the standard library and what is installed come first:
a ``math.py`` beside your module is not the ``math`` it imports), else from your module's own folder.
It holds two digests: of the files' bytes, which any Python reads the same (a colleague's copy, another
interpreter), and of their syntax (``ast.dump``), which leaves comments and layout aside but whose
text changes between Python versions; ``same_code`` takes either, the syntax only under the same
Python version. ``module_digest(name)`` is the same record for a module imported by any means (the
scikit-learn door's classes); what is installed (a site-packages anywhere, a project's own ``.venv``
included) is never read as your code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import os
import site
import sys
import sysconfig
from pathlib import Path

from .user import _stamp, module_paths, user_model

__all__ = ["code_digest", "code_record", "module_digest", "same_code"]

_READ: dict[str, tuple[tuple[int, int], bytes, bytes, list[str]]] = {}  # file -> (stamp, raw, syntax, imports)


def _spec(name: str, folders: list[str] | None):
    """The spec of ``name`` as an import finds it. ``folders`` None: the module a space names, the module paths
    first. Else a neighbour of your module: as Python resolves it (the standard library, what is installed
    and the folders on sys.path before the module paths win), else from your module's ``folders`` (never from
    ``sys.modules``: another folder's module of that name may be the one loaded); None where there is none."""
    paths = list(module_paths())
    try:
        if folders is None:
            return importlib.machinery.PathFinder.find_spec(name, paths) or importlib.util.find_spec(name)
        if name in sys.builtin_module_names:
            return None
        before = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if p not in paths])
        return before or importlib.machinery.PathFinder.find_spec(name, folders + paths)
    except (ImportError, ValueError, AttributeError):
        return None


def _files(spec) -> list[tuple[Path, Path]]:
    """``(file, base)`` of a top-level module's sources: its file, or every .py of a package (a namespace
    package's folders too; dot files, an editor's lock links, are left out)."""
    folders = list(spec.submodule_search_locations or [])
    if folders:
        return [(file, Path(folder).parent) for folder in folders for file in sorted(Path(folder).rglob("*.py"))
                if not file.name.startswith(".") and file.is_file()]
    if spec.origin and spec.origin.endswith(".py") and os.path.isfile(spec.origin):
        return [(Path(spec.origin), Path(spec.origin).parent)]
    return []  # a compiled or built-in module


def _read(file: Path) -> tuple[bytes, bytes, list[str]]:
    """A file's bytes, its syntax (``ast.dump``; its bytes where it does not parse) and the top-level names its
    import lines name; kept per file while its mtime and size stay (a package of a thousand files)."""
    stat = file.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    kept = _READ.get(str(file))
    if kept is not None and kept[0] == stamp:
        return kept[1:]
    raw = file.read_bytes()
    try:
        tree = ast.parse(raw)
        syntax = ast.dump(tree).encode()
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0
                  and node.module]
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # a file Python never parses as we do
        syntax, names = raw, []
    tops = [name.split(".")[0] for name in names]
    _READ[str(file)] = (stamp, raw, syntax, tops)
    return raw, syntax, tops


def _ours(spec, folders: list[str]) -> bool:
    """Whether an imported module is your code: its file in your module's folder or a module path (through
    links too: a folder on PYTHONPATH that is a link)."""
    place = spec.origin if spec.origin and spec.origin.endswith(".py") else next(
        iter(spec.submodule_search_locations or []), None)
    if place is None or _installed(place):  # a project's own .venv inside your module's folder: torch is not yours
        return False
    places = {os.path.abspath(place), os.path.realpath(place)}
    roots = {os.path.join(f, "") for folder in folders for f in (folder, os.path.realpath(folder))}
    return any(p.startswith(root) for p in places for root in roots)


def code_digest(ref: str) -> str:
    """``"<bytes digest>:<syntax digest>:<python version>"`` of the code your class ``ref`` is built from."""
    return code_record(ref)[0]


def code_record(ref: str) -> tuple[str, dict[str, str]]:
    """``code_digest(ref)`` and ``{module name: file}`` of the files it reads: your module and the neighbours it
    imports, those imported only inside a function or on some configs' path included (what a worker without the
    files needs: ``hpsearch.training.models.shipping``). Kept while the files read and their folders stay as
    they were and the module paths are the same (asked for each config of each rung)."""
    cls = user_model(ref)  # (imported anew where edited, as before)
    key = (ref, module_paths())
    kept = _RECORDS.get(key)
    if kept is not None and all(_stamp(file) == stamp for file, stamp in kept[0].items()):
        return kept[1], kept[2]
    read: list[tuple[Path, Path]] = []
    digest = _digest([(ref.split(":")[0].split(".")[0], True), (cls.__module__.split(".")[0], True)], read)
    names = {}
    for file, base in read:
        parts = list(file.relative_to(base).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = str(file)
    # the folders too: a neighbour's file made or removed since changes what an import resolves to
    watched = {str(path) for file, base in read for path in (file, file.parent, base)}
    _RECORDS[key] = ({path: _stamp(path) for path in watched}, digest, names)
    return digest, names


_RECORDS: dict[tuple, tuple[dict[str, tuple[int, int]], str, dict[str, str]]] = {}


def module_digest(name: str) -> str | None:
    """``code_digest``'s record of module ``name`` (imported by any means: a scikit-learn user's ``import mynet``)
    and the neighbours it imports; None for one installed or in the standard library, and for one with no file
    to read (a script's ``__main__``, a notebook's cell)."""
    top = name.split(".")[0]
    if top in _NOT_YOURS or top in ("__main__", "__mp_main__", __package__.split(".")[0]):  # (hpsearch: the library)
        return None
    kept = _MODULES.get(top)
    if kept is not None and all(_stamp(file) == stamp for file, stamp in kept[0].items()):
        return kept[1]  # asked of every fit: unchanged files, the same digest
    spec = _spec(top, None)
    if spec is None:
        return None
    place = (spec.origin if spec.origin not in (None, "built-in", "frozen")
             else next(iter(spec.submodule_search_locations or []), None))
    if not place or not os.path.exists(place) or _installed(place):
        _NOT_YOURS.add(top)  # torch's, the standard library's: asked of every criterion and optimizer
        return None
    read: list[tuple[Path, Path]] = []
    digest = _digest([(top, True)], read)
    _MODULES[top] = ({str(file): _stamp(file) for file, _ in read}, digest)
    return digest


_INSTALLED = tuple({os.path.join(os.path.realpath(path), "") for path in [
    *(path for key, path in sysconfig.get_paths().items() if key in ("stdlib", "platstdlib", "purelib", "platlib")),
    *site.getsitepackages(), site.getusersitepackages()]})


def _installed(place: str) -> bool:
    """Whether a module's file was installed (the standard library, a site-packages anywhere: a venv of the
    project's own, the user's, one on PYTHONPATH), so never your code: reading it would parse all of torch."""
    real = os.path.realpath(place)
    return real.startswith(_INSTALLED) or any(part in ("site-packages", "dist-packages") for part in Path(real).parts)
_NOT_YOURS: set[str] = set()
_MODULES: dict[str, tuple[dict[str, tuple[int, int]], str]] = {}  # top -> ({file read: stamp}, digest)


def _digest(todo: list[tuple[str, bool]], read: list[tuple[Path, Path]] | None = None) -> str:
    """The digest of the top-level modules ``todo`` names (``(name, True)``) and of the neighbours they import;
    the files it read, with the folder each module path is relative to, are added to ``read``."""
    raw_digest, syntax_digest, seen = hashlib.sha256(), hashlib.sha256(), set()
    folders: list[str] = []  # your module's own folders, where its neighbours are looked for first
    while todo:
        top, named = todo.pop()
        if top in seen:
            continue
        seen.add(top)
        spec = _spec(top, None if named else folders)
        if spec is None or not (named or _ours(spec, [*folders, *module_paths()])):
            continue  # an import of the standard library or of what is installed
        for file, base in _files(spec):
            if named and os.path.abspath(base) not in folders:  # your module's own folder
                folders.append(os.path.abspath(base))
            try:
                raw, syntax, names = _read(file)
            except OSError:
                continue  # gone, or a link to nothing
            if read is not None:
                read.append((file, base))
            label = file.relative_to(base).as_posix().encode() + b"\0"
            raw_digest.update(label + raw + b"\0")
            syntax_digest.update(label + syntax + b"\0")
            todo += [(name, False) for name in names]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{raw_digest.hexdigest()[:16]}:{syntax_digest.hexdigest()[:16]}:{version}"


def same_code(stored, now: str) -> bool:
    """Whether the code recorded as ``stored`` is the code ``now``: the same bytes, or the same syntax under
    the same Python version (comments and layout aside)."""
    if not isinstance(stored, str):
        return False
    parts = stored.split(":")
    raw_now, syntax_now, version_now = now.split(":")
    if len(parts) == 1:  # a syntax digest alone (this session's first record of the code): this Python's
        return parts[0] == syntax_now
    if len(parts) != 3:
        return False
    raw, syntax, version = parts
    return raw == raw_now or (version == version_now and syntax == syntax_now)

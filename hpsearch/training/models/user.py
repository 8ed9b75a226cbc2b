"""Your own network: a space names a ``torch.nn.Module`` class by import path, ``model = "mynets:SmallCNN"``.

The contract: hpsearch builds it as ::

    SmallCNN(image_shape=(C, H, W), n_classes=K, **params)

where ``params`` are the space's entries that name the constructor's other arguments (``width``,
``depth``, ...); the training entries (``lr``, ``optimizer``, ``weight_decay``, ``batch_size``,
``max_epochs``, ``schedule``, ``augment``, ``loss``, ...) keep their meaning. ``forward`` takes float
images ``(n, C, H, W)`` in [0, 1] and returns logits ``(n, K)``; for one label per position
(Triple-MNIST) the constructor also takes ``positions`` and ``forward`` returns ``(n, positions, K)``.

The module is found in the folders of ``add_module_path`` (the space file's folder, or
``--module-path``; the most recently named first), then installed. A module imported before from
another folder, or edited since, is imported anew. The modules read from such a folder are sent to
the job processes and Dask workers *by value* (cloudpickle), so they need no copy of the files; a
run folder never holds code, and no folder in one is ever a module path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import json
import os
import re
import sys
from pathlib import Path

from torch import nn

from ...errors import UsageError, did_you_mean
from . import trust

__all__ = ["ModuleImportError", "gone_from_the_run", "is_user_model", "user_model", "add_module_path", "module_paths",
           "CONTRACT", "module_root", "run_folder_holding"]

CONTRACT = "Class(image_shape=(C, H, W), n_classes=K, **params) returning logits (n, K)"
_REF = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_PATHS: list[str] = []  # the module paths, the most recently named first
# a top-level module imported from a module path: (its file, {file: (mtime, size)} of every module-path module then)
_STAMPS: dict[str, tuple[str, dict[str, tuple[int, int]]]] = {}
RUN_MARKERS = ("trials.db", "winner.pt")


def is_user_model(kind) -> bool:
    """Whether a space's ``model`` value names a module by import path (``"mynets:SmallCNN"``)."""
    return isinstance(kind, str) and ":" in kind


def run_folder_holding(path) -> Path | None:
    """The run folder ``path`` is or lies in (a folder holding a trial store or a winner), else None."""
    path = Path(path).expanduser().resolve()
    return next((p for p in (path, *path.parents) if any((p / m).exists() for m in RUN_MARKERS)), None)


def add_module_path(folder) -> str:
    """Look for your modules in ``folder`` first (before the folders named earlier, and before what is
    installed); returns it, absolute. A folder in a run folder is refused: what a shared run folder holds
    is data, never code. The folder also goes to the *end* of ``sys.path``, so that your module's own
    imports of its neighbours work while nothing there can shadow the standard library."""
    path = Path(folder).expanduser().resolve()
    run = run_folder_holding(path)
    if run is not None:
        raise UsageError(f"module path {path} is in the run folder {run}; hpsearch never imports code from a run "
                         "folder: keep your module beside the space file, outside any run folder (or name its "
                         "folder with hpsearch search --module-path DIR)")
    text = str(path)
    trust.trust([text])  # named here by you (a space file, --module-path, your code): a run's are checked first
    if text in _PATHS:
        _PATHS.remove(text)
    _PATHS.insert(0, text)
    if text not in sys.path:
        sys.path.append(text)
    return text


def module_paths() -> tuple[str, ...]:
    return tuple(_PATHS)


def module_root(cls: type) -> str | None:
    """The module path your class was found in (the folder holding its top-level module or package);
    None for an installed one."""
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if not file:
        return None
    places = (Path(os.path.abspath(file)), Path(file).resolve())  # a module file that is a link: where it was found
    return next((p for p in _PATHS if any(place.is_relative_to(p) for place in places)), None)


class ModuleImportError(UsageError):
    """Your module cannot be imported; ``why`` says so in a few words, the message adds the fix."""

    def __init__(self, message: str, why: str, top: str = ""):
        super().__init__(message)
        self.why = why
        self.top = top  # the top-level module that could not be imported


def gone_from_the_run(run_dir, exc: ModuleImportError) -> str | None:
    """For a command on run folder ``run_dir`` whose own network is not found now (moved, renamed): where
    the search found it and how to make it found again (the flags a search takes, --space and
    --module-path, are not this command's); None when the module is there but fails to import."""
    if not exc.why.startswith("no module"):
        return None
    try:
        found = json.loads((Path(run_dir) / "settings.json").read_text()).get("module_path")
    except (OSError, ValueError, AttributeError, RecursionError):
        found = None
    top = exc.top or "your module"
    back = f"put {top}.py (or {top}/) back in {found} (where the search found it), or " if found else ""
    return f"{run_dir}: the run's own network cannot be imported here: {exc.why}; {back}make it importable (PYTHONPATH)"


def _stamp(file: str) -> tuple[int, int]:
    try:
        stat = os.stat(file)
    except OSError:
        return -1, -1
    return stat.st_mtime_ns, stat.st_size


def _path_files() -> dict[str, str]:
    """``{module name: file}`` of the modules imported from a module path: yours, and the neighbours yours import."""
    # by the file's text: a module found in a module path has a file named under it (no stat per module: this
    # runs for every class looked up, over thousands of torch's modules)
    prefixes = tuple(os.path.join(p, "") for p in _PATHS)
    files = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
    return {name: file for name, file in files.items() if isinstance(file, str) and file.startswith(prefixes)}


def _forget(top: str) -> None:
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _import_top(top: str):
    """The top-level module ``top``: from the module paths first (the most recent first), else installed.
    One imported before from another place (another space's folder), or whose files or neighbours' files
    (``from blocks import conv``) were edited since, is imported anew, with the edited neighbours."""
    spec = importlib.machinery.PathFinder.find_spec(top, _PATHS) if _PATHS else None
    current = sys.modules.get(top)
    if spec is None:
        return current if current is not None else importlib.import_module(top)
    where = spec.origin or str(list(spec.submodule_search_locations or []))  # a namespace package: its folders
    place, stamps = _STAMPS.get(top, (None, {}))
    edited = {file for file, stamp in stamps.items() if _stamp(file) != stamp}
    if current is not None and place == where and not edited:
        return current
    for name, file in _path_files().items():  # the edited neighbours are imported anew by its import
        if file in edited:
            del sys.modules[name]
    _forget(top)
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        _forget(top)
        raise
    _restamp(top, where)
    return module


def _restamp(top: str, where: str | None = None) -> None:
    """Stamp the module-path files ``top`` was imported with (again after a package's submodule is imported:
    its file too, or an edit of it went unseen)."""
    if where is None and top not in _STAMPS:
        return
    _STAMPS[top] = (where or _STAMPS[top][0], {file: _stamp(file) for file in _path_files().values()})


def _check_trusted(top: str, ref: str) -> None:
    """On a run folder, a module it names is imported only when trusted (``trust``): found in a trusted
    folder, or installed under a trusted name. Finding a spec imports nothing."""
    if trust.working_on() is None:
        return
    spec = importlib.machinery.PathFinder.find_spec(top, _PATHS) if _PATHS else None
    folder = next((p for p in _PATHS if spec is not None and spec.origin
                   and Path(spec.origin).resolve().is_relative_to(p)), None)
    if folder is None:
        named = trust.named_holding(top)
        if named is not None:
            raise trust.untrusted_message(ref, named)
        if importlib.util.find_spec(top) is None:
            return  # nothing would be imported: the message that it is missing follows
    if not trust.trusted(top, folder):
        raise trust.untrusted_message(ref, folder)


def _import(name: str, ref: str):
    _check_trusted(name.split(".")[0], ref)
    try:
        _import_top(name.split(".")[0])
        module = importlib.import_module(name)
        _restamp(name.split(".")[0])
        return module
    except ModuleNotFoundError as exc:
        if exc.name and exc.name != name and not name.startswith(exc.name + "."):
            why = f"{name} imports {exc.name}, which is not installed"
            raise ModuleImportError(f"model {ref!r}: {why} here; install it", why, name.split(".")[0]) from None
        where = f" in {' or '.join(_PATHS)}" if _PATHS else ""
        near = did_you_mean(name, _modules_in_paths()) if "." not in name else ""
        why = f"no module {name} (no {name.replace('.', '/')}.py{where}, and none installed)"
        top = name.split(".")[0]
        raise ModuleImportError(f"model {ref!r}: {why}{f'{near} Or' if near else ';'} put {top}.py (or the package "
                                f"{top}/) beside the space file, pass --module-path with its folder, or install it",
                                why, top) from None
    except Exception as exc:  # noqa: BLE001 - the user's module: a SyntaxError or what its top level raises
        why = (f"importing {name} failed ({type(exc).__name__}: "
               f"{str(exc).splitlines()[0][:150] if str(exc) else ''})")
        raise ModuleImportError(f"model {ref!r}: {why}; fix the module", why, name.split(".")[0]) from None


def _modules_in_paths() -> list[str]:
    """The top-level modules and packages in the module paths (what a typo of a module's name was near)."""
    found = []
    for folder in map(Path, _PATHS):
        try:
            found += [p.stem if p.suffix == ".py" else p.name for p in folder.iterdir()
                      if p.suffix == ".py" or (p / "__init__.py").is_file()]
        except OSError:
            continue
    return sorted(set(found))


def _by_value() -> None:
    """Send every module read from a module path (yours and the neighbours it imports) to job processes
    and Dask workers by value: they need no copy of the files."""
    import cloudpickle

    registered = set(cloudpickle.list_registry_pickle_by_value())
    for name in _path_files():
        if "." not in name and name not in registered:
            cloudpickle.register_pickle_by_value(sys.modules[name])


def user_model(ref: str) -> type[nn.Module]:
    """The ``nn.Module`` class ``ref`` (``"module:Class"``) names, checked against the contract; a
    ``UsageError`` in one line naming it and the fix otherwise."""
    if not isinstance(ref, str) or not _REF.fullmatch(ref):
        raise UsageError(f"model {ref!r} is not an import path; write \"module:Class\" (\"mynets:SmallCNN\" for class "
                         "SmallCNN in mynets.py beside the space file)")
    name, class_name = ref.split(":")
    if name.endswith(".py"):
        raise UsageError(f"model {ref!r} names a file; write the module's name without .py: "
                         f"\"{name.removesuffix('.py')}:{class_name}\"")
    module = _import(name, ref)
    cls = getattr(module, class_name, None)
    if cls is None:
        modules = [k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                   and getattr(v, "__module__", "") == module.__name__]
        raise UsageError(f"model {ref!r}: {name} has no {class_name}{did_you_mean(class_name, modules)} "
                         f"(its nn.Module classes: {', '.join(modules) or 'none'})")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        kind = type(cls).__name__
        raise UsageError(f"model {ref!r}: {class_name} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not an "
                         f"nn.Module class; name a class built as {CONTRACT}")
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    missing = [arg for arg in ("image_shape", "n_classes") if arg not in parameters and not takes_any]
    if missing:
        raise UsageError(f"model {ref!r}: {class_name}'s constructor lacks {' and '.join(missing)}; hpsearch builds "
                         f"it as {CONTRACT}: add {', '.join(missing)} to its arguments")
    _by_value()
    return cls

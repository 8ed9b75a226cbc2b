"""Your own network: a space names a ``torch.nn.Module`` class by import path, ``model = "mynets:SmallCNN"``.

The contract: hpsearch builds it as ::

    SmallCNN(image_shape=(C, H, W), n_classes=K, **params)

where ``params`` are the space's entries that name the constructor's other arguments (``width``,
``depth``, ...); the training entries (``lr``, ``optimizer``, ``weight_decay``, ``batch_size``,
``max_epochs``, ``schedule``, ``augment``, ``loss``, ...) keep their meaning. ``forward`` takes float
images ``(n, C, H, W)`` in [0, 1] and returns logits ``(n, K)``; for one label per position
(Triple-MNIST) the constructor also takes ``positions`` and ``forward`` returns ``(n, positions, K)``.

The module is found in the folders of ``add_module_path`` (the space file's folder, or
``--module-path``), then on ``sys.path`` (an installed package). A module read from such a folder is
sent to the job processes and Dask workers *by value* (cloudpickle), so they need not find the file;
a run folder never holds code, and none is ever imported from one.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

from torch import nn

from ...errors import UsageError, did_you_mean

__all__ = ["ModuleImportError", "is_user_model", "user_model", "add_module_path", "module_paths", "CONTRACT",
           "module_file", "shipped", "received", "ShippedModule"]

CONTRACT = "Class(image_shape=(C, H, W), n_classes=K, **params) returning logits (n, K)"
_REF = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_PATHS: list[str] = []
_RESOLVED: dict[str, type[nn.Module]] = {}


def is_user_model(kind) -> bool:
    """Whether a space's ``model`` value names a module by import path (``"mynets:SmallCNN"``)."""
    return isinstance(kind, str) and ":" in kind


def add_module_path(folder) -> str:
    """Look for your modules in ``folder`` too (first); returns it, absolute. A run folder is refused:
    what a shared run folder holds is data, never code."""
    path = Path(folder).expanduser().resolve()
    if (path / "trials.db").exists() or (path / "winner.pt").exists():
        raise UsageError(f"module path {path} is a run folder; hpsearch never imports code from a run folder: keep "
                         "your module beside the space file (or pass --module-path DIR)")
    text = str(path)
    if text not in _PATHS:
        _PATHS.insert(0, text)
    return text


def module_paths() -> tuple[str, ...]:
    return tuple(_PATHS)


def module_file(cls: type) -> str | None:
    """The file a class was defined in, if any."""
    return getattr(sys.modules.get(cls.__module__), "__file__", None)


class ModuleImportError(UsageError):
    """Your module cannot be imported; ``why`` says so in a few words, the message adds the fix."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


def _import(name: str, ref: str):
    added = [p for p in _PATHS if p not in sys.path]
    sys.path[:0] = added  # kept: a package's own lazy imports find their files later too
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and not name.startswith(exc.name):
            why = f"{name} imports {exc.name}, which is not installed"
            raise ModuleImportError(f"model {ref!r}: {why} here; install it", why) from None
        where = f" in {' or '.join(_PATHS)}" if _PATHS else ""
        why = f"no module {name} (no {name.replace('.', '/')}.py{where}, and none installed)"
        raise ModuleImportError(f"model {ref!r}: {why}; put {name.split('.')[-1]}.py beside the space file, pass "
                                "--module-path with its folder, or install it", why) from None
    except Exception as exc:  # noqa: BLE001 - the user's module: a SyntaxError or what its top level raises
        why = (f"importing {name} failed ({type(exc).__name__}: "
               f"{str(exc).splitlines()[0][:150] if str(exc) else ''})")
        raise ModuleImportError(f"model {ref!r}: {why}; fix the module", why) from None


def _by_value(module) -> None:
    """Send a module found in a module-path folder to job processes and Dask workers by value."""
    import cloudpickle

    path = getattr(module, "__file__", None)
    if path and any(Path(path).resolve().is_relative_to(p) for p in _PATHS):
        top = sys.modules[module.__name__.split(".")[0]]
        try:
            cloudpickle.register_pickle_by_value(top)
        except ValueError:  # already registered
            pass


def user_model(ref: str) -> type[nn.Module]:
    """The ``nn.Module`` class ``ref`` (``"module:Class"``) names, checked against the contract; a
    ``UsageError`` in one line naming it and the fix otherwise."""
    if ref in _RESOLVED:
        return _RESOLVED[ref]
    if not isinstance(ref, str) or not _REF.fullmatch(ref):
        raise UsageError(f"model {ref!r} is not an import path; write \"module:Class\" (\"mynets:SmallCNN\" for class "
                         "SmallCNN in mynets.py beside the space file)")
    name, class_name = ref.split(":")
    module = _import(name, ref)
    cls = getattr(module, class_name, None)
    if cls is None:
        modules = [k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                   and getattr(v, "__module__", "") == module.__name__]
        raise UsageError(f"model {ref!r}: {name} has no {class_name}{did_you_mean(class_name, modules)} "
                         f"(its nn.Module classes: {', '.join(modules) or 'none'})")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"model {ref!r}: {class_name} is a {type(cls).__name__}, not an nn.Module class; name a "
                         f"class built as {CONTRACT}")
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    missing = [arg for arg in ("image_shape", "n_classes") if arg not in parameters and not takes_any]
    if missing:
        raise UsageError(f"model {ref!r}: {class_name}'s constructor lacks {' and '.join(missing)}; hpsearch builds "
                         f"it as {CONTRACT}: add {', '.join(missing)} to its arguments")
    _by_value(module)
    _RESOLVED[ref] = cls
    return cls


class ShippedModule:
    """Your module's class as cloudpickle bytes, by value for a module of a module-path folder: every
    pickler sends it (Dask's plain pickle would send a reference to a file its workers cannot
    import), and the worker rebuilds the class from the bytes (``load``), once per class."""

    def __init__(self, cls: type[nn.Module]):
        import cloudpickle

        self.payload = cloudpickle.dumps(cls)

    def load(self) -> type[nn.Module]:
        import hashlib

        import cloudpickle

        key = hashlib.sha256(self.payload).hexdigest()
        if key not in _LOADED:
            _LOADED[key] = cloudpickle.loads(self.payload)  # bytes this run's own process made, never a file
        return _LOADED[key]


_LOADED: dict[str, type[nn.Module]] = {}


def shipped(config: dict) -> dict:
    """``{"module": ShippedModule}`` for a config of your module (else ``{}``): what a job's ``make_net``
    call takes along, so a worker builds the class it was sent instead of importing it again."""
    kind = config.get("model")
    return {"module": ShippedModule(user_model(kind))} if is_user_model(kind) else {}


def received(ref: str, module) -> type[nn.Module]:
    """In a worker: the class the job was sent for ``ref`` (a ``ShippedModule`` or a class), now known."""
    cls = module.load() if isinstance(module, ShippedModule) else module
    _RESOLVED[ref] = cls
    return cls

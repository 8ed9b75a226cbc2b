"""Your module's class as the job processes and Dask workers get it: by value (cloudpickle), with the sources
of the module-path modules it was imported with, so that they need no copy of your files; and checked against
the code the run recorded, so that a long run never trains on two codes."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

from torch import nn

from ...errors import UsageError
from .user import _path_files, is_user_model, user_model

__all__ = ["shipped", "received", "ShippedModule", "CodeChangedError"]


class ShippedModule:
    """Your module's class as cloudpickle bytes, by value for a module of a module-path folder: every
    pickler sends it (Dask's plain pickle would send a reference to a file its workers cannot
    import), and the worker rebuilds the class from the bytes (``load``), once per class. The sources of
    the module-path modules imported with it go along too, so that an ``import blocks`` run inside a
    method on a worker without the files finds the neighbour (``_SentModules``)."""

    def __init__(self, cls: type[nn.Module], files: dict[str, str] | None = None):
        import cloudpickle

        self.payload = cloudpickle.dumps(cls)
        self.sources = {}
        # the neighbours imported here, and those the code imports where it has not run here (a branch of
        # forward some configs take): ``code_record``, the files the run's code record reads
        for name, file in sorted({**_path_files(), **(files or {})}.items()):
            try:
                self.sources[name] = (file, os.path.basename(file) == "__init__.py", Path(file).read_text())
            except (OSError, UnicodeDecodeError):  # gone since, or not text: the worker imports it as it can
                continue

    def load(self) -> type[nn.Module]:
        import cloudpickle

        key = hashlib.sha256(self.payload).hexdigest()
        if key not in _LOADED:
            _SENT.receive(getattr(self, "sources", {}))
            _LOADED[key] = cloudpickle.loads(self.payload)  # bytes this run's own process made, never a file
        return _LOADED[key]


_LOADED: dict[str, type[nn.Module]] = {}


class _SentModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """In a job process or a Dask worker: the module-path modules the search's process sent, importable by name
    where the process finds no such module itself (the last finder: what is installed there comes first, as
    the module paths come last on the search's sys.path). Source text the search's own process read from your
    module's folder, never a file of a run folder."""

    def __init__(self):
        self.sources: dict[str, tuple[str, bool, str]] = {}

    def receive(self, sources: dict) -> None:
        for name, source in sources.items():
            if self.sources.get(name) != source:  # edited since an earlier run in this worker: imported anew
                module = sys.modules.get(name)
                if module is not None and getattr(module, "__loader__", None) is self:
                    del sys.modules[name]
                self.sources[name] = source
        if sources and self not in sys.meta_path:
            sys.meta_path.append(self)

    def find_spec(self, name, path=None, target=None):
        if name not in self.sources:
            return None
        file, package, _ = self.sources[name]
        return importlib.util.spec_from_loader(name, self, origin=file, is_package=package)

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        file, _, text = self.sources[module.__name__]
        module.__file__ = file
        exec(compile(text, file, "exec"), module.__dict__)  # noqa: S102 - your module's own code, as imported there


_SENT = _SentModules()


def shipped(config: dict, recorded: dict | None = None) -> dict:
    """``{"module": ShippedModule}`` for a config of your module (else ``{}``): what a job's ``make_net``
    call takes along, so a worker builds the class it was sent instead of importing it again.
    ``recorded``: the run's ``{ref: code digest}`` (its fingerprint's ``module_code``); a module edited since
    the run recorded it is refused (``CodeChangedError``), so a long run never trains on two codes."""
    kind = config.get("model")
    if not is_user_model(kind):
        return {}
    from .code import code_record, same_code

    cls = user_model(kind)
    digest, files = code_record(kind)
    if recorded and kind in recorded and not same_code(recorded[kind], digest):
        raise CodeChangedError(f"the code of {kind} (its module and the modules beside it that it imports) was "
                               "edited while the run went on; its finished work is kept: put the code back as it "
                               "was and run the same command again, or search the edited code in a new run folder")
    made = _MADE.get(kind)
    if made is None or made[0] is not cls or made[1] != digest:  # pickled and read once per class and code
        made = _MADE[kind] = (cls, digest, ShippedModule(cls, files))
    return {"module": made[2]}


_MADE: dict[str, tuple[type, str, ShippedModule]] = {}  # ref -> (class, code digest, what the jobs get)


class CodeChangedError(UsageError):
    """Your module was edited during a run: the run stops rather than train on a second code."""


def received(module) -> type[nn.Module]:
    """In a worker: the class a job was sent (a ``ShippedModule``, or the class itself)."""
    return module.load() if isinstance(module, ShippedModule) else module

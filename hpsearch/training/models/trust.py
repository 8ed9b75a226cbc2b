"""Which of your modules hpsearch imports for a run folder: only those you searched with here, or
trusted with ``hpsearch trust RUN``.

A run folder is data. But a run of your own network names its module (settings.json's module path,
space.toml's ``model = "mynets:SmallCNN"``, winner.pt's module entry), and importing a module runs
its code: a shared folder could name a folder it came with (``evil/mynets.py`` beside the run, in
the same zip) or any installed module. So once a command works on a run folder (``on_a_run``), a
module it names is imported only when trusted: its folder, or for an installed module its name, is
in ``trusted_modules.json`` in hpsearch's state folder (``$HPSEARCH_STATE_DIR``, else
``$XDG_STATE_HOME/hpsearch``, else ``~/.local/state/hpsearch``). A search from your own space file
trusts what it names (you chose it); ``hpsearch trust RUN`` trusts what a run names, after you read
it. Trust is never read from, nor written into, a run folder.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ...errors import UsageError, shell

__all__ = ["UntrustedModule", "trust", "trusted", "trusted_torchscript", "on_a_run", "working_on",
           "untrusted_message", "state_file", "note_named", "named_holding", "forget_runs"]

_ON_A_RUN: list[str] = []  # the run folder this process works on, once a command has read one
_NAMED: list[str] = []  # module folders a run named that are not trusted (not on any import path)


def state_file() -> Path:
    base = os.environ.get("HPSEARCH_STATE_DIR")
    if not base:
        base = str(Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state").expanduser() / "hpsearch")
    return Path(base) / "trusted_modules.json"


_KINDS = ("folders", "modules", "torchscript")  # torchscript: digests of the files this machine's export wrote


def _read() -> dict:
    try:
        data = json.loads(state_file().read_text())
    except (OSError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return {k: [] for k in _KINDS}
    return {k: [str(v) for v in data.get(k, []) if isinstance(v, str)] if isinstance(data.get(k), list) else []
            for k in _KINDS}


def trust(folders=(), modules=(), torchscript=()) -> None:
    """Trust these module folders (absolute), installed top-level module names and TorchScript files (by
    their sha256, as ``hpsearch export`` wrote them here) from now on."""
    data = _read()
    new_folders = [str(Path(f).resolve()) for f in folders if str(Path(f).resolve()) not in data["folders"]]
    new_modules = [m for m in modules if m not in data["modules"]]
    new_scripts = [d for d in torchscript if d not in data["torchscript"]]
    if not new_folders and not new_modules and not new_scripts:
        return
    data["folders"] += new_folders
    data["modules"] += new_modules
    data["torchscript"] += new_scripts
    path = state_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(temp, path)
    except OSError as exc:  # without it a later command on the run asks again: said, not fatal
        print(f"hpsearch: warning: cannot write {path} ({exc.strerror}); the next command on a run of this module "
              "will ask for hpsearch trust again", file=sys.stderr, flush=True)


def trusted(top: str, folder: str | None) -> bool:
    """Whether module ``top``, found in ``folder`` (None: installed), may be imported for a run."""
    data = _read()
    return str(Path(folder).resolve()) in data["folders"] if folder else top in data["modules"]


def trusted_torchscript(digest: str) -> bool:
    """Whether a TorchScript file of this sha256 was written by this machine's ``hpsearch export``."""
    return digest in _read()["torchscript"]


def on_a_run(run_dir) -> None:
    """This process works on run folder ``run_dir`` from now on: the modules it names need trust."""
    if str(run_dir) not in _ON_A_RUN:
        _ON_A_RUN.append(str(run_dir))


def working_on() -> str | None:
    return _ON_A_RUN[-1] if _ON_A_RUN else None


def forget_runs() -> None:
    """Leave run-folder mode (a test between commands run in one process)."""
    _ON_A_RUN.clear()
    _NAMED.clear()


def note_named(folder) -> None:
    """A module folder a run named but that is not trusted: kept off every import path, remembered for
    the message."""
    if str(folder) not in _NAMED:
        _NAMED.append(str(folder))


def named_holding(top: str) -> str | None:
    """The untrusted named folder that holds module ``top`` (``top.py`` or ``top/``), if any."""
    return next((f for f in _NAMED if (Path(f) / f"{top}.py").is_file() or (Path(f) / top).is_dir()), None)


class UntrustedModule(UsageError):
    """A module a run names that hpsearch will not import (not trusted): what needs the network stops;
    what only reads the run (the report's plots) goes on without it."""


def untrusted_message(ref: str, folder: str | None) -> UntrustedModule:
    run = working_on()
    where = f"the folder {folder}" if folder else "your installed packages"
    return UntrustedModule(f"{run}: the run names the network {ref!r} from {where}, which hpsearch has not imported "
                           "for you before, and importing a module runs its code; read it, then trust it with: "
                           f"hpsearch trust {shell(run)} (a run you searched here is trusted already)")

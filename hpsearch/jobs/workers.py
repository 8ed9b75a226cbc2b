"""Job processes that end with the process that started them.

joblib's (loky's) workers outlive a parent killed with ``kill -9``: each holds its share of the
data (hundreds of MB) and trains on for a minute or more. A worker that notices its parent is gone
(the OS re-parents an orphan, so its parent pid changes) exits at once. The watchdog starts with a
job's first task: a kill -9 before any task (in a search's first seconds) leaves its idle workers
until loky's idle timeout. Starting it as each worker starts, by loky's ``initializer``, closed
that gap but doubled the time of the tests' searches (measured: 94.7 s against 47.4 s for the same
tests), so it is not done.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import threading
import time

from ..errors import JobEnvironmentError

__all__ = ["die_with_parent", "missing_module", "check_missing", "pid_alive"]

_WATCHED_IN: int | None = None  # the pid of the process whose watchdog runs


def die_with_parent(interval_s: float = 0.5) -> None:
    """In a job process (a no-op in the main one): exit within ``interval_s`` of the parent's end.
    Cheap to call at the start of every task: one watchdog thread per process."""
    global _WATCHED_IN
    creator = multiprocessing.parent_process()
    if _WATCHED_IN == os.getpid() or creator is None:
        return
    _WATCHED_IN = os.getpid()
    parent = os.getppid()
    if parent != creator.pid and not pid_alive(creator.pid):
        os._exit(1)  # the parent died before this job's first task: it has been re-parented already

    def watch():
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(1)  # nothing of a job's is worth keeping without its parent: the store is the parent's

    threading.Thread(target=watch, name="hpsearch-die-with-parent", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not). A process started by a fork
    server has that server, not its creator, for parent: its creator is alive and it must stay."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the OS whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive
            return True
        return True


def missing_module(exc: ImportError) -> dict:
    """A job's failure to import a module, as its outcome: the config's failure, with the module and where the
    job ran, for ``check_missing`` in the search's process to tell a machine's fault from the config's."""
    try:
        from distributed import get_worker

        where = f"the Dask worker at {get_worker().address}"
    except (ImportError, ValueError):
        where = "a job process on this machine" if multiprocessing.parent_process() is not None else "this process"
    failure = {"error": f"{type(exc).__name__}: {exc}"}
    # only a module not found elsewhere than here can be the machine's fault ("cannot import name", a circular
    # import, or anything in the search's own process, is the config's code failing as it would anywhere)
    if not isinstance(exc, ModuleNotFoundError) or not exc.name or where == "this process":
        return failure
    return {**failure, "missing": exc.name, "where": where}


def check_missing(outcome: dict) -> None:
    """In the search's (or retraining's) process: a module a job could not import that this process can is the
    job's machine's fault, never the config's: a ``JobEnvironmentError`` in one line, nothing marked failed (a
    stored failure is never retried). One this process cannot import either is the config's failure (a
    package only some configs use, installed nowhere), kept as such. The outcome loses the two keys."""
    name, where = outcome.pop("missing", None), outcome.pop("where", None)
    if not name:
        return
    try:
        here = name in sys.modules or importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        here = False
    if here:
        raise JobEnvironmentError(
            f"{where} cannot import {name} ({outcome['error']}), which this process can; no config is marked "
            f"failed for it, and everything finished is kept: make {name} importable there (install it, or put "
            "its folder on the workers' PYTHONPATH), then run the same command again")

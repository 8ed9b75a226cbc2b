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

import multiprocessing
import os
import threading
import time

from ..errors import JobEnvironmentError

__all__ = ["die_with_parent", "import_failed_here"]

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
    if parent != creator.pid and not _alive(creator.pid):
        os._exit(1)  # the parent died before this job's first task: it has been re-parented already

    def watch():
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(1)  # nothing of a job's is worth keeping without its parent: the store is the parent's

    threading.Thread(target=watch, name="hpsearch-die-with-parent", daemon=True).start()


def _alive(pid: int) -> bool:
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
        return True


def import_failed_here(exc: ImportError) -> JobEnvironmentError:
    """The one line for a job that cannot import a module where it runs: which module, where, and the fix."""
    try:
        from distributed import get_worker

        where = f"the Dask worker at {get_worker().address}"
    except (ImportError, ValueError):
        where = "a job process on this machine" if multiprocessing.parent_process() is not None else "this process"
    name = exc.name or "a module"
    return JobEnvironmentError(
        f"{where} cannot import {name} ({type(exc).__name__}: {exc}); no config is marked failed for it, and "
        f"everything finished is kept: make {name} importable there (install it, or put its folder on the "
        "workers' PYTHONPATH), then run the same command again")

"""Job processes that end with the process that started them.

joblib's (loky's) workers outlive a parent killed with ``kill -9``: each holds its share of the
data (hundreds of MB) and trains on for a minute or more. A worker that notices its parent is gone
(the OS re-parents an orphan, so its parent pid changes) exits at once.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

__all__ = ["die_with_parent"]

_WATCHED_IN: int | None = None  # the pid of the process whose watchdog runs


def die_with_parent(interval_s: float = 0.5) -> None:
    """In a job process (a no-op in the main one): exit within ``interval_s`` of the parent's end.
    Cheap to call at the start of every task: one watchdog thread per process."""
    global _WATCHED_IN
    if _WATCHED_IN == os.getpid() or multiprocessing.parent_process() is None:
        return
    _WATCHED_IN = os.getpid()
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(1)  # nothing of a job's is worth keeping without its parent: the store is the parent's

    threading.Thread(target=watch, name="hpsearch-die-with-parent", daemon=True).start()

"""Dask worker plugins for hpsearch's own local cluster (imported only with Dask)."""

from __future__ import annotations

import signal

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["IgnoreCtrlC"]


class IgnoreCtrlC(WorkerPlugin):
    """SIGINT ignored in each worker process (and in each it restarts): a terminal's Ctrl-C reaches the whole
    process group, and every worker printed its traceback before hpsearch's one line; the search's process
    stops them itself. ``setup`` runs in the worker's main thread, where a handler may be set."""

    def setup(self, worker) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

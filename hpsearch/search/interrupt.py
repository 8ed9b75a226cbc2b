"""Ctrl-C and a lost Dask cluster: the exceptions that stop a search with every finished trial kept,
and the flag that tells a half-trained skorch net from a finished one."""

from __future__ import annotations

import signal

__all__ = ["SearchInterrupted", "ClusterLost", "InterruptFlag"]


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: every finished trial is stored; rerun to resume."""


class ClusterLost(SearchInterrupted):
    """The Dask cluster had no worker left for ``NO_WORKER_S``: every finished trial is stored."""


class InterruptFlag:
    """Turns SIGINT into a flag plus KeyboardInterrupt. skorch's ``fit`` swallows
    KeyboardInterrupt and returns a half-trained net; the flag tells us to discard that result."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        self.raised = True
        raise KeyboardInterrupt

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)

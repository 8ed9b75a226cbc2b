"""Ctrl-C and a lost Dask cluster: the exceptions that stop a search with every finished trial kept,
and the flag that tells a half-trained skorch net from a finished one."""

from __future__ import annotations

import signal
import sys
import threading

__all__ = ["SearchInterrupted", "ClusterLost", "InterruptFlag", "keep_swallowed_interrupts", "raise_if_interrupted"]

_swallowed = {"interrupt": False, "hook": None}


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
        self._installed = False

    def _handler(self, signum, frame):
        self.raised = True
        raise KeyboardInterrupt

    def __enter__(self):
        # only the main thread receives signals, and only it may set a handler: a search run from another
        # thread (a web app's callback, a notebook widget) raised "signal only works in main thread"
        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


def keep_swallowed_interrupts() -> None:
    """Keep a Ctrl-C that Python would lose. Its KeyboardInterrupt is raised wherever the signal lands;
    in a garbage collector's callback or a ``__del__`` Python prints "Exception ignored ... Traceback"
    and drops it, so a run went on drawing every picture and exited 0. Such an interrupt is now kept,
    silently, and raised again by ``raise_if_interrupted`` between steps and at the command's end."""
    if sys.unraisablehook is _swallowed["hook"] and _swallowed["hook"] is not None:
        return  # (installed again where another took its place: pytest wraps each test)
    default = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _swallowed["interrupt"] = True
            return
        default(unraisable)

    _swallowed["hook"] = sys.unraisablehook = hook


def raise_if_interrupted() -> None:
    """Raise the KeyboardInterrupt a Ctrl-C lost in a callback (see ``keep_swallowed_interrupts``), once."""
    if _swallowed["interrupt"]:
        _swallowed["interrupt"] = False
        raise KeyboardInterrupt

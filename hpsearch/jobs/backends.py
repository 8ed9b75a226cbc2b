"""Where the jobs run: loky processes on this machine (the default) or the workers of a Dask cluster.

A backend answers three questions for the search and the retraining, which name no backend:
how many jobs (``jobs``), how many torch threads each job takes (``threads``: jobs x threads <=
cores everywhere), and how the training data reach the jobs (``parallel``: a running joblib
``Parallel`` and the arrays to hand its tasks). The trial store is never the workers' business:
results come back to this process, which alone writes ``trials.db``.

- ``loky``: joblib's processes; the images go through a memory map in ``/dev/shm``
  (``evaluate.shared_array``), which only processes on this host can open.
- ``dask``: the workers of a Dask cluster (``hpsearch.jobs.dask_backend``).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from joblib import Parallel

from .. import setting_checks
from ..errors import UsageError, param
from .dask_backend import DaskBackend, parse_scheduler
from .resident import shared_array
from .resources import effective_jobs, threads_per_job

__all__ = ["BACKENDS", "LokyBackend", "DaskBackend", "open_backend", "backend_session", "check_backend_flags"]

BACKENDS = setting_checks.BACKENDS  # named where --help reads them without torch


def check_backend_flags(backend: str, scheduler: str | None) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"{param('backend')} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if scheduler is not None and backend != "dask":
        raise UsageError(f"{param('scheduler')} {scheduler} only applies with {param('backend')} dask; add "
                         f"{param('backend')} dask or "
                         f"leave {param('scheduler')} out")
    if scheduler is not None:
        parse_scheduler(scheduler)


class LokyBackend:
    """joblib's loky processes on this machine (the default)."""

    name = "loky"
    lost = False

    def jobs(self, n_jobs: int, n_tasks: int) -> int:
        return effective_jobs(n_jobs, n_tasks)

    def threads(self, busy_jobs: int) -> int:
        return threads_per_job(busy_jobs)

    @contextlib.contextmanager
    def parallel(self, jobs: int, X, shared=()):
        """A ``Parallel(return_as="generator_unordered")`` and ``X`` as the tasks get it (an array
        through a memory map; anything else, such as a whole Dataset, as it is: pickled per task)."""
        shared_X = shared_array(X) if isinstance(X, np.ndarray) else contextlib.nullcontext(X)
        # outermost, so it holds while joblib closes: a search stopped by its own error (a full disk, Ctrl-C)
        # cancels the tasks in flight on purpose, and joblib's advice on its input iterator would mislead
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tasks which were still being processed", category=UserWarning)
            with shared_X as X_shared, Parallel(n_jobs=jobs, return_as="generator_unordered") as parallel:
                yield parallel, X_shared

    def sees(self, path) -> bool:
        return True

    def failure(self, exc: BaseException) -> None:
        return None

    def check_device(self, device: str) -> None:
        """The device is this machine's: resolved (and checked) before the backend opens."""

    def close(self) -> None:
        pass


def open_backend(name: str = "loky", scheduler: str | None = None):
    """The backend ``name`` (``loky`` or ``dask`` on ``scheduler``), connected; close it when done."""
    check_backend_flags(name, scheduler)
    return LokyBackend() if name == "loky" else DaskBackend(scheduler)


@contextlib.contextmanager
def backend_session(name: str, scheduler: str | None):
    """The backend a command's search and its retraining share (one Dask cluster for both), said when it
    is a cluster, and closed after."""
    backend = open_backend(name, scheduler)
    if name == "dask":
        slots = backend.slots()
        print(f"dask: {len(slots)} workers, {sum(slots.values())} task slots at {backend.scheduler}")
    try:
        yield backend
    finally:
        backend.close()

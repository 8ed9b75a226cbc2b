"""Cores and torch threads per job: jobs x threads <= cores, everywhere (a search, a retraining, a
picture), with ``$OMP_NUM_THREADS`` as a cap."""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager

import torch

from ..errors import UsageError, param

__all__ = ["effective_jobs", "threads_per_job", "task_threads", "torch_threads", "cpu_count", "omp_cap",
           "rng_kept", "keeps_rng", "physical_memory", "import_before_timing"]


def cpu_count() -> int:
    """The cores this process may use: its affinity (``taskset``) and a container's CPU quota (cgroup
    ``cpu.max``), as joblib counts them, so ``n_jobs=-1`` means the same here and in scikit-learn."""
    import joblib

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count() or 1
    return max(1, min(affinity, joblib.cpu_count()))


def physical_memory() -> int:
    """This machine's memory in bytes, or a container's limit where lower (cgroup v2 ``memory.max``)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def omp_cap() -> int:
    """``$OMP_NUM_THREADS`` as a cap on the threads of one team: its first number (OpenMP also takes
    a list per nesting level, ``"1,1"``), 0 when unset or not a number."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def threads_per_job(n_jobs: int) -> int:
    """Torch threads per job so that jobs x threads <= cores; ``$OMP_NUM_THREADS``, when set,
    caps it (on a machine shared with other work, 1 thread per job avoids OpenMP's spin-waits)."""
    threads = max(1, cpu_count() // max(1, n_jobs))
    cap = omp_cap()
    return min(threads, cap) if cap > 0 else threads


def task_threads(threads) -> int:
    """The torch threads a task takes: ``threads`` itself, or from a ``{worker address: threads}``
    plan (``DaskBackend.threads``) this worker's entry (a worker that joined since: its own cores)."""
    if isinstance(threads, dict):
        try:
            from distributed import get_worker

            # a worker that joined after the plan: its host's cores over its own slots, under its OMP cap
            return threads.get(get_worker().address) or threads_per_job(get_worker().state.nthreads)
        except (ImportError, ValueError):  # not on a Dask worker
            return threads_per_job(1)
    return threads


@contextmanager
def torch_threads(threads):
    """Torch's thread count set to ``task_threads(threads)`` for the block, then restored: a task or
    command must not leave the process (a reused worker, the caller) with its own count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(task_threads(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def import_before_timing() -> None:
    """What a process's first fit would import, imported before a fit is timed: torch's first optimizer
    imports ``torch._dynamo`` (sympy with it), 1.4 s measured against 0.014 s for the same fit again, so
    each job's first fold was charged with an import as if it had trained a hundred times longer."""
    import torch._dynamo  # noqa: F401


def rng_kept():
    """Torch's random states as they were, put back after the block: the CPU's and every visible GPU's
    (``torch.manual_seed`` reseeds them all, so a caller's CUDA draws would change too)."""
    return torch.random.fork_rng(devices=list(range(torch.cuda.device_count())))


def keeps_rng(function):
    """``function`` run inside ``rng_kept``: a caller's torch draws after it are the ones it would have made
    without it (the fits run in this process reseed torch: the door and the sanity checks kept them, a search
    or retraining run in a notebook did not)."""
    @functools.wraps(function)
    def kept(*args, **kwargs):
        with rng_kept():
            return function(*args, **kwargs)
    return kept


def effective_jobs(n_jobs: int, n_tasks: int, name: str = "n_jobs") -> int:
    """Resolve ``n_jobs`` (``-1`` = all cores) and cap it at the number of tasks and cores."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise UsageError(f"{param(name)} must be a whole number >= 1, or -1 for one per core; "
                         f"got {n_jobs!r}")
    jobs = cpu_count() if n_jobs == -1 else n_jobs
    return max(1, min(jobs, n_tasks, cpu_count()))

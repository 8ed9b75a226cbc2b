"""The ``dask`` backend: the workers of a Dask cluster (``hpsearch.jobs.backends`` names the choice).

joblib's Dask backend on a ``distributed.Client``; the arrays are scattered once to every worker
(``broadcast``) and each task gets the worker's own copy. A worker's threads come from its own
host's cores, shared among the workers on that host. Dask reschedules the tasks of a worker that
dies on the others; a cluster left without any worker for ``NO_WORKER_S`` seconds stops the search
(everything finished is kept). Dask itself is imported only when a cluster is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import warnings
from pathlib import Path

from joblib import Parallel

from ..errors import UsageError, brief, param, plural
from .resources import cpu_count, effective_jobs, omp_cap

__all__ = ["DaskBackend", "parse_scheduler", "CONNECT_TIMEOUT_S", "NO_WORKER_S"]

CONNECT_TIMEOUT_S = float(os.environ.get("HPSEARCH_DASK_CONNECT_S", 10))  # a scheduler must answer (and have a worker)
NO_WORKER_S = float(os.environ.get("HPSEARCH_DASK_NO_WORKER_S", 60))  # a cluster this long without workers stops
INSTALL = "pip install -e '.[dask]'  (dask[distributed])"


def parse_scheduler(scheduler: str) -> int | None:
    """``local`` -> one worker per core, ``local:N`` -> N workers; ``None`` for an address."""
    if scheduler == "local":
        return cpu_count()
    if scheduler.startswith("local:"):
        value = scheduler[len("local:"):]
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"{param('scheduler')} local:N needs a whole number of workers N >= 1, got {scheduler!r}")
        return int(value)
    _check_address(scheduler)
    return None


SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")  # the comms Dask's scheduler listens on


def _check_address(scheduler: str) -> None:
    """A scheduler address as Dask takes it: ``[SCHEME://]HOST:PORT`` (tcp by default), checked here so
    that a typo is one line, not a connection attempt that times out."""
    scheme, sep, rest = scheduler.partition("://")
    if not sep:
        scheme, rest = "tcp", scheduler
    host, colon, port = rest.rpartition(":")
    wrong = (f"{param('scheduler')} must be a scheduler address (tcp://HOST:8786; tcp:// may be left out), local "
             f"or local:N, got {scheduler!r}")
    if scheme not in SCHEMES:
        hint = "; the dashboard's http:// address is not the scheduler's" if scheme.startswith("http") else ""
        raise UsageError(f"{wrong}: Dask speaks {', '.join(SCHEMES)}, not {scheme}://{hint}")
    if scheme != "inproc" and (not colon or not host.strip("[]") or not port.isdigit()
                               or not 0 < int(port) < 65536 or "/" in host or " " in host):
        raise UsageError(wrong)


def _host_threads() -> tuple[int, int]:
    """On a worker: its host's cores and the ``$OMP_NUM_THREADS`` cap (0: none)."""
    return cpu_count(), omp_cap()


class DaskBackend:
    """The workers of a Dask cluster: ``tcp://HOST:PORT`` (a running ``dask scheduler``),
    ``local`` or ``local:N`` (a ``LocalCluster`` of N one-thread worker processes on this machine,
    started here and closed at the end)."""

    name = "dask"

    def __init__(self, scheduler: str | None = None):
        try:
            import distributed
        except ImportError:
            raise UsageError(f"{param('backend')} dask needs Dask's distributed scheduler; install it with: "
                             f"{INSTALL}") from None
        self.scheduler = scheduler or "local"
        n_local = parse_scheduler(self.scheduler)
        self._quiet = contextlib.ExitStack()
        self._quiet.enter_context(_quiet_dask())  # until close(): a client reconnecting logs after the search
        self.cluster = None
        self.lost = False
        self.scheduler_lost = False
        self._watch_stop = threading.Event()
        try:
            if n_local is not None:  # its workers' logs too: their tracebacks after a Ctrl-C are no news
                # its nannies run in this process and set their workers' environment here too (an unset
                # OMP_NUM_THREADS became 1: the pictures after the search drew on one thread)
                kept = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                       "MALLOC_TRIM_THRESHOLD_")}
                try:
                    self.cluster = distributed.LocalCluster(n_workers=n_local, threads_per_worker=1, processes=True,
                                                            dashboard_address=None, silence_logs=logging.CRITICAL)
                finally:
                    for key, value in kept.items():
                        if value is None:
                            os.environ.pop(key, None)
                        else:
                            os.environ[key] = value
                self.client = distributed.Client(self.cluster, set_as_default=False)
                # a terminal's Ctrl-C reaches this cluster's worker processes too: each printed its traceback
                # before hpsearch's one line; this process stops them itself
                from .dask_plugins import IgnoreCtrlC

                self.client.register_plugin(IgnoreCtrlC(), name="hpsearch-ignore-ctrl-c")
            else:
                self.client = _connect(distributed, self.scheduler)
        except BaseException:
            self._quiet.close()
            raise
        try:
            self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError):
            self.close()
            raise UsageError(f"{param('scheduler')} {self.scheduler}: the scheduler answers but has no worker after "
                             f"{CONNECT_TIMEOUT_S:g} s; start some with `dask worker {self.scheduler}`") from None
        self.no_worker_s = NO_WORKER_S
        threading.Thread(target=self._watch_workers, name="hpsearch-dask-watch", daemon=True).start()

    def _watch_workers(self) -> None:
        """Stop the search (as Ctrl-C does: everything finished is kept) once the cluster has had no
        worker for ``NO_WORKER_S`` seconds; Dask itself would wait for one forever."""
        since = None
        while not self._watch_stop.wait(1.0):
            try:
                n = len(self.client.nthreads())
            except Exception:  # noqa: BLE001 - the scheduler itself is gone: no worker either
                n = 0
            since = None if n else (since or time.monotonic())
            if since is not None and time.monotonic() - since > self.no_worker_s:
                self.lost = True
                os.kill(os.getpid(), signal.SIGINT)
                return

    def slots(self) -> dict[str, int]:
        """``{worker address: threads}`` of the workers connected now."""
        return dict(self.client.nthreads())

    def jobs(self, n_jobs: int, n_tasks: int) -> int:
        """Every worker thread of the cluster (``--n-jobs``, when given, caps it)."""
        effective_jobs(n_jobs, 1)  # checks the value
        slots = sum(self.slots().values()) or 1
        return max(1, min(slots if n_jobs == -1 else min(n_jobs, slots), n_tasks))

    def threads(self, busy_jobs: int) -> dict[str, int]:
        """Torch threads per task, by worker address: the host's cores shared among the task
        slots of every worker on that host (so two workers on a 2-core box get one thread each)."""
        info = self.client.scheduler_info()["workers"]
        hosts = self.client.run(_host_threads)
        per_host: dict[str, int] = {}
        for worker in info.values():
            per_host[worker["host"]] = per_host.get(worker["host"], 0) + int(worker["nthreads"])
        plan = {}
        for address, worker in info.items():
            cores, cap = hosts.get(address, (1, 0))
            threads = max(1, cores // max(1, per_host[worker["host"]]))
            plan[address] = min(threads, cap) if cap else threads
        return plan

    @contextlib.contextmanager
    def parallel(self, jobs: int, X, shared=()):
        """joblib's Dask backend over this client, ``X`` and ``shared`` scattered once to every
        worker (the tasks receive the worker's copy, not a pickle each)."""
        from joblib import parallel_config

        _register_remote_backend()
        scatter = [a for a in (X, *shared) if a is not None]
        with warnings.catch_warnings():  # a stopped search cancels its tasks on purpose (as loky's)
            warnings.filterwarnings("ignore", message=".*tasks which were still being processed", category=UserWarning)
            with parallel_config(backend=_REMOTE, client=self.client, scatter=scatter), \
                    Parallel(n_jobs=jobs, return_as="generator_unordered") as parallel:
                yield parallel, X

    def failure(self, exc: BaseException) -> str | None:
        """What went wrong with the cluster when ``exc`` (raised by a task's future) is the cluster's
        failure rather than the task's: its workers gone, a task lost with them; else ``None``."""
        import distributed

        if self.lost:
            return f"has had no worker for {self.no_worker_s:g} s"
        lost = (distributed.client.FutureCancelledError, distributed.KilledWorker, distributed.comm.CommClosedError)
        if isinstance(exc, lost) and "scheduler-connection-lost" in str(exc):
            self.scheduler_lost = True
            return "lost its scheduler (the connection to it closed)"
        if isinstance(exc, lost):  # the data scattered to the workers go with the last one: its tasks are cancelled
            return f"lost its workers or their tasks ({type(exc).__name__}: {brief(exc)})"
        return None

    def check_device(self, device: str) -> None:
        """``device`` checked on every worker, where the configs train (a CPU laptop may drive GPU workers)."""
        found = self.client.run(_device_problem, device)
        bad = {worker: problem for worker, problem in found.items() if problem}
        if bad:
            worker, problem = next(iter(bad.items()))
            raise UsageError(f"{param('device')} {device}: {len(bad)} of {plural(len(found), 'Dask worker')} cannot "
                             f"train on it (worker {worker} says: {problem})")

    def restart_advice(self) -> str:
        """What to start again before the same command resumes the search."""
        if self.scheduler_lost:
            return f"start the scheduler again (dask scheduler) and its workers (dask worker {self.scheduler})"
        return f"start workers (dask worker {self.scheduler})"

    def sees(self, path) -> bool:
        """Whether every worker sees ``path`` as a folder (halving keeps its continuation states there)."""
        found = self.client.run(os.path.isdir, str(Path(path).resolve()))
        return bool(found) and all(found.values())

    def close(self) -> None:
        self._watch_stop.set()
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        self._quiet.close()


_REMOTE = "hpsearch-dask"


def _device_problem(device: str) -> str | None:
    """On a worker: why ``device`` cannot be used there, or None."""
    from ..training.net import resolve_device

    try:
        resolve_device(device)
    except UsageError as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def _quiet_dask():
    """Dask's and tornado's own logs off while a cluster is in use: a lost scheduler or a Ctrl-C printed their
    tracebacks (40 lines of CommClosedError) before hpsearch's one line, which says the same and the fix."""
    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] in ("distributed", "tornado")]
    loggers = [logging.getLogger(name) for name in names]  # each: Dask's config gives its children own levels
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _register_remote_backend() -> None:
    """joblib's Dask backend, except that a cluster of one worker thread still gets the tasks: joblib
    runs a Parallel of one job in this process, which on a cluster is the wrong machine."""
    from joblib import register_parallel_backend
    from joblib._dask import DaskDistributedBackend

    class AlwaysOnTheCluster(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs):
            return max(2, super().effective_n_jobs(n_jobs))

    register_parallel_backend(_REMOTE, AlwaysOnTheCluster)


def _connect(distributed, scheduler: str):
    """A client of the scheduler at ``scheduler``, or a UsageError in one line. The client is made in two
    steps so that a failed connection can be closed at once: left to itself, a half-made client's
    ``__del__`` waits 20 s at exit and prints a traceback."""
    client = distributed.Client.__new__(distributed.Client)
    try:
        _handshake(scheduler)  # Dask's own waits for the handshake without end (a dashboard's port, a silent one)
        client.__init__(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        return client
    except (OSError, TimeoutError) as exc:
        reason = (f"no Dask scheduler answered within {CONNECT_TIMEOUT_S:g} s ({type(exc).__name__}); start one with "
                  f"`dask scheduler` (and workers with `dask worker {scheduler}`), check the address (the "
                  f"scheduler's port, 8786 by default, not its dashboard's), or use {param('scheduler')} local:N")
    except Exception as exc:  # noqa: BLE001 - something answered in another protocol (garbage, a huge length, ...)
        reason = (f"something answers there but not as a Dask scheduler ({type(exc).__name__}); check the address "
                  "and port (the scheduler's, not its dashboard's)")
    with contextlib.suppress(Exception):
        client.close(timeout=1)
    raise UsageError(f"{param('scheduler')} {scheduler}: {reason}") from None


def _handshake(scheduler: str) -> None:
    """Connect to ``scheduler`` and read its handshake within ``CONNECT_TIMEOUT_S``, then hang up: TimeoutError
    when nothing answers as Dask does, OSError when nothing listens. On a thread of its own, with its own
    event loop: the caller may be running one (a notebook)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect
    from distributed.comm.addressing import normalize_address

    async def shake() -> None:
        comm = await asyncio.wait_for(connect(normalize_address(scheduler), timeout=CONNECT_TIMEOUT_S),
                                      CONNECT_TIMEOUT_S + 1)
        await comm.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, shake()).result()

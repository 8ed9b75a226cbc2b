"""Per-epoch progress of long fits (retraining), shown in the main process whichever job trains.

A fit reports each finished epoch through a skorch callback (``EpochReport``) to a *sink*: in the
main process that is the progress bar itself; in joblib's worker processes it is a queue of a
``multiprocessing.Manager``, which a thread of the main process drains into the bar. So one bar
counts epochs over every config in flight, and its ETA is the measured epoch rate, not a guess.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from multiprocessing.managers import SyncManager

from skorch.callbacks import Callback
from tqdm.auto import tqdm

from ..jobs.workers import die_with_parent

__all__ = ["EpochReport", "EpochBar", "epoch_sink", "fit_sink"]


class EpochReport(Callback):
    """Send ``(key, epoch, max_epochs, train_loss, valid_acc)`` to ``sink.put`` after each epoch."""

    def __init__(self, key, sink):
        self.key = key
        self.sink = sink

    def __getstate__(self):  # a copy or a pickled net (sent back from a job) does not take the queue along
        return {**self.__dict__, "sink": None}

    def on_epoch_end(self, net, **kwargs):
        if self.sink is None:
            return
        row = net.history[-1]
        try:
            self.sink.put((self.key, row["epoch"], net.max_epochs, row.get("train_loss"), row.get("valid_acc")))
        except (OSError, EOFError):  # the bar's process is gone (Ctrl-C): progress never fails a fit
            pass


class EpochBar:
    """A tqdm bar over the epochs of several fits; ``put`` takes ``EpochReport``'s events."""

    def __init__(self, total_epochs: int, n_fits: int, *, desc: str, enabled: bool):
        self.bar = tqdm(total=total_epochs, desc=desc, unit="epoch", disable=not enabled, dynamic_ncols=True)
        self.n_fits, self.done = n_fits, 0
        self.best = None
        self.seen: set = set()  # a fit resumed from a checkpoint counts the epochs it had at its first report

    def put(self, event) -> None:
        key, epoch, max_epochs, loss, acc = event
        # only at a key's first report: compare's --same-config groups share a trial, and train side by side
        self.bar.update(1 if key in self.seen else max(1, epoch))
        self.seen.add(key)
        fields = [f"trial {key} epoch {epoch}/{max_epochs}"]
        if loss is not None:
            fields.append(f"loss {loss:.4f}")
        if acc is not None:
            fields.append(f"test acc {acc:.4f}")
        fields.append(f"done {self.done}/{self.n_fits}")
        if self.best is not None:
            fields.append(f"best {self.best:.4f}")
        self.bar.set_postfix_str("  ".join(fields), refresh=False)

    def finished(self, best: float | None) -> None:
        self.done += 1
        self.best = best

    def close(self) -> None:
        self.bar.close()


def _manager_process() -> None:
    """In the queue's manager process: Ctrl-C is the main process's to handle, and a kill -9 of the
    main process must not leave the manager behind (re-parented to init)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


@contextmanager
def epoch_sink(bar: EpochBar, cross_process: bool):
    """The sink the fits report to: ``bar`` itself in this process, or a Manager queue drained into
    ``bar`` by a thread while the block runs (for fits in other processes)."""
    if not cross_process:
        yield bar
        return
    manager = SyncManager()
    manager.start(_manager_process)
    queue = manager.Queue()

    def drain():
        while (event := queue.get()) is not None:
            bar.put(event)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        queue.put(None)
        thread.join(timeout=5)
        manager.shutdown()


@contextmanager
def fit_sink(bar: EpochBar, jobs: int, remote: bool):
    """Where the fits report their epochs: nowhere on a cluster (a worker elsewhere cannot reach this
    process's queue; the bar moves per finished config), else ``epoch_sink``."""
    if remote:
        yield None
        return
    with epoch_sink(bar, cross_process=jobs > 1) as sink:
        yield sink

"""Score one config by k-fold cross-validation, with ``cross_val_score`` semantics.

Each fold clones the same seeded net, fits it on the other folds and scores the held-out one, so
the split scores equal ``sklearn.model_selection.cross_val_score(net, X, y, cv=folds)``. Folds run
in parallel joblib jobs, each limited to ``cores // jobs`` torch threads (never oversubscribed).
A fold that diverges or raises does not raise here: the config gets NaN scores and a reason.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedKFold

from .errors import DivergedError, UsageError

__all__ = ["make_folds", "evaluate_config", "score_probabilities", "CVResult", "SCORINGS", "threads_per_job",
           "cpu_count"]

SCORINGS = ("neg_log_loss", "accuracy")


@dataclass
class CVResult:
    """The outcome of one config's cross-validation."""

    test_scores: list[float] = field(default_factory=list)
    test_accuracies: list[float] = field(default_factory=list)
    fit_times: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def mean_test_score(self) -> float:
        return float(np.mean(self.test_scores)) if self.error is None else float("nan")


def make_folds(y: np.ndarray, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled, seeded folds: the same ``seed`` gives the same folds."""
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise UsageError(f"--cv must be a whole number >= 2, got {cv!r}; 4 is the seed's choice")
    smallest = int(np.bincount(y).min())
    if cv > smallest:
        raise UsageError(f"--cv {cv} is more folds than the rarest class has images ({smallest});"
                         " use fewer folds or more data")
    return list(StratifiedKFold(cv, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(n_jobs: int) -> int:
    """Torch threads per job so that jobs x threads <= cores; ``$OMP_NUM_THREADS``, when set,
    caps it (on a machine shared with other work, 1 thread per job avoids OpenMP's spin-waits)."""
    threads = max(1, cpu_count() // max(1, n_jobs))
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(cap)) if cap.isdigit() and int(cap) > 0 else threads


def score_probabilities(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray,
                        scoring: str) -> tuple[float, float]:
    """``(score, accuracy)`` of predicted probabilities on a held-out fold, as sklearn's scorers
    compute them; non-finite probabilities raise ``DivergedError``. Both engines score with this."""
    if not np.all(np.isfinite(proba)):
        raise DivergedError("the net predicts non-finite probabilities")
    accuracy = float(accuracy_score(y_true, classes[proba.argmax(axis=1)]))
    if scoring == "neg_log_loss":
        return float(-log_loss(y_true, proba, labels=classes)), accuracy
    return accuracy, accuracy


def _score_fold(make, X, y, train, test, scoring, threads):
    """Fit a fresh net on ``train`` and score ``test``; errors come back as a string."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = make()
        start = time.perf_counter()
        net.fit(X[train], y[train])
        fit_time = time.perf_counter() - start
        score, accuracy = score_probabilities(y[test], net.predict_proba(X[test]), net.classes_, scoring)
        return dict(score=score, accuracy=accuracy, fit_time=fit_time,
                    epochs=len(net.history), error=None)
    except DivergedError as exc:
        return dict(error=f"diverged: {exc}")
    except Exception as exc:  # noqa: BLE001 - a failing config is data, not a crash
        return dict(error=f"{type(exc).__name__}: {exc}")
    finally:
        torch.set_num_threads(previous)


def evaluate_config(make_net, X: np.ndarray, y: np.ndarray, folds, *, n_jobs: int = 1,
                    scoring: str = "neg_log_loss", parallel: Parallel | None = None) -> CVResult:
    """Cross-validate the net that ``make_net()`` builds on ``folds``.

    Parameters
    ----------
    make_net : callable
        Returns a fresh unfitted net (called once per fold, in the worker).
    X, y : arrays
        The training data; ``folds`` index into them.
    folds : list of (train_idx, test_idx)
    n_jobs : int
        Parallel jobs over folds (``-1``: one per core, at most one per fold).
    scoring : {"neg_log_loss", "accuracy"}
        The score to rank by; accuracy is recorded either way.
    parallel : joblib.Parallel, optional
        A running ``Parallel`` to reuse (keeps workers warm across configs).
    """
    if scoring not in SCORINGS:
        raise UsageError(f"--scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    jobs = effective_jobs(n_jobs, len(folds))
    threads = threads_per_job(jobs)
    parallel = parallel or Parallel(n_jobs=jobs)
    outcomes = parallel(
        delayed(_score_fold)(make_net, X, y, train, test, scoring, threads) for train, test in folds
    )
    errors = [o["error"] for o in outcomes if o["error"]]
    if errors:
        return CVResult(error=errors[0])
    return CVResult(
        test_scores=[o["score"] for o in outcomes],
        test_accuracies=[o["accuracy"] for o in outcomes],
        fit_times=[o["fit_time"] for o in outcomes],
        epochs=[o["epochs"] for o in outcomes],
    )


def effective_jobs(n_jobs: int, n_tasks: int) -> int:
    """Resolve ``n_jobs`` (``-1`` = all cores) and cap it at the number of tasks and cores."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise UsageError(f"--n-jobs must be a whole number >= 1, or -1 for one per core; "
                         f"got {n_jobs!r}")
    jobs = cpu_count() if n_jobs == -1 else n_jobs
    return max(1, min(jobs, n_tasks, cpu_count()))

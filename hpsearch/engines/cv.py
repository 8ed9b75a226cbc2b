"""Score configs by k-fold cross-validation, with ``cross_val_score`` semantics.

Each fold clones the same seeded net, fits it on the other folds and scores the held-out one, so
the split scores equal ``sklearn.model_selection.cross_val_score(net, X, y, cv=folds)``. Folds run
in parallel joblib jobs, each limited to ``cores // jobs`` torch threads (never oversubscribed);
``evaluate_configs`` feeds the folds of many configs to the jobs as one stream. The training data
are put on the device once per job (``resident``). A fold that diverges or raises does not raise
here: the config gets NaN scores and a reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs

from .. import setting_checks
from ..errors import DivergedError, StorageError, UsageError, param
from ..jobs.resident import resident
from ..jobs.resources import cpu_count, effective_jobs, import_before_timing, threads_per_job, torch_threads
from ..jobs.workers import check_missing, die_with_parent, missing_module
from ..rundir.states import capture, early_stopping_of, load_state, refuse_state, restore, save_state
from ..tasks import task_of

__all__ = ["make_folds", "evaluate_config", "evaluate_configs", "score_probabilities", "CVResult", "FoldGather",
           "SCORINGS"]


SCORINGS = setting_checks.SCORINGS  # named where --help reads them without torch


@dataclass
class CVResult:
    """The outcome of one config's cross-validation."""

    test_scores: list[float] = field(default_factory=list)
    test_accuracies: list[float] = field(default_factory=list)
    fit_times: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    error: str | None = None
    metrics: list[dict] = field(default_factory=list)  # per fold, the task's own (digit_0_accuracy, ...)
    stopped: str | None = None  # fold racing stopped it after the folds listed (why): it cannot survive the rung

    @property
    def mean_test_score(self) -> float:
        return float(np.mean(self.test_scores)) if self.error is None else float("nan")


def make_folds(y: np.ndarray, cv: int, seed: int, class_names=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled, seeded folds, stratified for one label per image (``hpsearch.tasks``): the same
    ``seed`` gives the same folds. ``class_names`` name the rarest class when there are too few images."""
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise UsageError(f"{param('cv')} must be a whole number >= 2, got {cv!r}; 4 is the seed's choice")
    task = task_of(y)
    strata = task.strata(y)
    if strata is None:
        smallest, rarest = len(y), None
    else:
        values, counts = np.unique(strata, return_counts=True)
        smallest, rarest = int(counts.min()), values[counts.argmin()]
    if cv > smallest:
        what = "there are images"
        if strata is not None:
            named = f" ({class_names[int(rarest)]})" if class_names is not None and y.ndim == 1 else ""
            what = f"the rarest class{named} has images"
        raise UsageError(f"{param('cv')} {cv} is more folds than {what} ({smallest}); use fewer folds or more data")
    return list(task.splitter(cv, seed).split(np.zeros(len(y)), strata))


def score_probabilities(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray,
                        scoring: str) -> tuple[float, float]:
    """``(score, accuracy)`` of predicted probabilities on a held-out fold, as sklearn's scorers
    compute them (averaged over positions for labels per position: ``hpsearch.tasks``);
    non-finite probabilities raise ``DivergedError``."""
    return task_of(y_true).score(y_true, proba, classes, scoring)[:2]


def _score_fold(make, X, y, train, test, scoring, threads, state=None):
    """Fit a net on ``train`` and score ``test``; the config's errors come back as a string, a
    problem with the data itself raises.

    ``state`` is ``(path, keep, owner)`` for a fit that may continue (a halving rung): the fit goes on
    from the state at ``path`` when there is one of ``owner``'s (``hpsearch.rundir.states.owner_of``; a
    fold that early stopping ended stays as it is) up to the net's ``max_epochs``, and, with ``keep``,
    leaves its own state there for the next rung.
    """
    die_with_parent()  # a kill -9 of the search must not leave this job training
    with torch_threads(threads):
        try:
            net = make()
        except ImportError as exc:  # the config's, unless the search's own process has the module (check_missing)
            return missing_module(exc)
        except Exception as exc:  # noqa: BLE001 - a failing config is data, not a crash
            return _failure(exc)
        data = resident(X, net.device)
        train_rows, test_rows = (torch.as_tensor(rows, device=data.device) for rows in (train, test))
        try:
            import_before_timing()
            start = time.perf_counter()
            earlier = _fit_or_continue(net, data.index_select(0, train_rows), y[train], state)
            fit_time = time.perf_counter() - start if earlier is None else earlier
            if state is not None and state[1]:  # with the budget it trained to and its time, for a resume
                save_state(state[0], {**capture(net), "budget": int(net.max_epochs), "fit_time": fit_time}, state[2])
            proba = net.predict_proba(data.index_select(0, test_rows))
            score, accuracy, metrics = task_of(y).score(y[test], proba, net.classes_, scoring)
        except StorageError:  # the run folder's fault (a full disk), not the config's: stop, keep the rest
            raise
        except ImportError as exc:  # (a module imported inside forward)
            return missing_module(exc)
        except Exception as exc:  # noqa: BLE001
            return _failure(exc)
        return dict(score=score, accuracy=accuracy, fit_time=fit_time, epochs=len(net.history), error=None,
                    metrics=metrics)


def _fit_or_continue(net, X_train, y_train, state) -> float | None:
    """``net.fit``, or, from a stored continuation state, ``partial_fit`` for the epochs left. Returns the
    seconds the fit took when a session before this one trained it to this budget (a resume: its time is
    that fit's, not the reload's), else None."""
    stored = load_state(state[0], state[2]) if state is not None else None
    if stored is not None and len(stored["history"]) > net.max_epochs:  # a later rung's: not this fit's past
        stored = refuse_state(state[0], f"has {len(stored['history'])} epochs, more than this rung's {net.max_epochs}")
    earlier = None
    if stored is None:
        net.fit(X_train, y_train)
    else:
        if stored.get("budget") == net.max_epochs and isinstance(stored.get("fit_time"), float):
            earlier = stored["fit_time"]  # this rung's own fit, done before an interrupt
        restore(net, stored)
        if len(net.history) < net.max_epochs and not stored["stopped"]:
            net.partial_fit(X_train, y_train, epochs=net.max_epochs - len(net.history))
    stopping = early_stopping_of(net)
    last = net.history[-1] if len(net.history) else {}
    # skorch adds an epoch's row when the epoch starts: a row without its timing was cut short
    if "dur" not in last or (len(net.history) < net.max_epochs and not (stopping is not None and stopping.stopped)):
        # skorch swallows KeyboardInterrupt: a fit cut short by Ctrl-C must not be scored or kept
        raise FitInterrupted(f"the fit stopped at epoch {len(net.history)} of {net.max_epochs}")
    return earlier


class FitInterrupted(RuntimeError):
    """A fit ended before its epochs and not by early stopping: Ctrl-C reached it."""


def _failure(exc: Exception) -> dict:
    if isinstance(exc, DivergedError):
        return dict(error=f"diverged: {exc}")
    return dict(error=f"{type(exc).__name__}: {exc}")


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
    jobs = effective_jobs(n_jobs, len(folds))
    if parallel is not None:  # its own processes share the cores, whatever n_jobs says (joblib's -2 included)
        jobs = max(1, min(effective_n_jobs(parallel.n_jobs), len(folds), cpu_count()))
    parallel = parallel or Parallel(n_jobs=jobs)
    [(_, result)] = evaluate_configs({0: make_net}, X, y, folds, parallel=parallel, scoring=scoring,
                                     threads=threads_per_job(jobs))
    return result


def evaluate_configs(makers: dict, X: np.ndarray, y: np.ndarray, folds, *, parallel: Parallel,
                     scoring: str = "neg_log_loss", threads: int = 1, stop=None, states=None,
                     on_start=None):
    """Cross-validate many configs through one stream of fold tasks; yields ``(key, CVResult)``.

    With a ``Parallel(return_as="generator_unordered")`` a worker that finishes a fold takes the
    next task, of this config or the next, so no worker idles while a config's slowest fold
    (early stopping makes folds uneven) runs on; each config is yielded as soon as its last
    fold is back, so not necessarily in the order of ``makers``. Every fold is the same seeded fit
    as in ``evaluate_config``, so the scores do not depend on the order.

    Parameters
    ----------
    makers : dict
        ``{key: make_net}``, each returning a fresh unfitted net.
    threads : int
        Torch threads in each fold's job (``threads_per_job`` of the jobs ``parallel`` runs).
    stop : callable, optional
        Checked after every fold: when it returns true, raises ``KeyboardInterrupt`` (the configs
        not yet yielded are dropped, never half scored).
    states : dict, optional
        ``{key: [(path, keep, owner) per fold]}``: folds that continue from (and keep) a state file
        (``_score_fold``); keys not in it train from scratch and keep nothing.
    on_start : callable, optional
        ``on_start(key)`` as a config's first fold is handed to the jobs (maybe from joblib's
        dispatch thread: keep it to recording a time).
    """
    if scoring not in SCORINGS:
        raise UsageError(f"{param('scoring')} must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    def tasks():
        for key, make in makers.items():
            if on_start is not None:
                on_start(key)
            for k in range(len(folds)):
                yield key, k, make

    gather = FoldGather(len(folds))
    states = states or {}
    for key, k, outcome in parallel(delayed(_keyed_fold)(key, k, make, X, y, *folds[k], scoring, threads,
                                                         states[key][k] if key in states else None)
                                    for key, k, make in tasks()):
        if stop is not None and stop():
            raise KeyboardInterrupt
        check_missing(outcome)
        result = gather.add(key, k, outcome)
        if result is not None:
            yield key, result
    gather.check_empty()


def _keyed_fold(key, k, make, X, y, train, test, scoring, threads, state):
    return key, k, _score_fold(make, X, y, train, test, scoring, threads, state)


class FoldGather:
    """Fold outcomes (``_score_fold``'s dicts) as they come back, in any order: ``add`` returns a
    config's ``CVResult`` once its last fold is in, else None (both engines stream folds)."""

    def __init__(self, folds: int | list[int]):
        self.folds = list(range(folds)) if isinstance(folds, int) else list(folds)  # how many, or which
        self.pending: dict = {}

    def add(self, key, k: int, outcome: dict) -> CVResult | None:
        parts = self.pending.setdefault(key, {})
        parts[k] = outcome
        if len(parts) < len(self.folds):
            return None
        del self.pending[key]
        return _cv_result([parts[j] for j in self.folds])

    def check_empty(self) -> None:
        """Every config's folds came back: a lost fold must fail loudly, not drop its config."""
        if self.pending:
            raise RuntimeError(f"folds of trials {sorted(self.pending)[:5]} never came back")


def _cv_result(outcomes: list[dict]) -> CVResult:
    errors = [o["error"] for o in outcomes if o["error"]]
    if errors:
        return CVResult(error=errors[0])
    return CVResult(
        test_scores=[o["score"] for o in outcomes],
        test_accuracies=[o["accuracy"] for o in outcomes],
        fit_times=[o["fit_time"] for o in outcomes],
        epochs=[o["epochs"] for o in outcomes],
        metrics=[o["metrics"] for o in outcomes] if any(o.get("metrics") for o in outcomes) else [],
    )

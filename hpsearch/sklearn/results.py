"""What ``SearchCV`` records: each (candidate, budget, fold) fitted and scored as scikit-learn's
``_fit_and_score`` does, in one metric or several, and ``cv_results_`` shaped as scikit-learn's halving
search shapes it."""

from __future__ import annotations

import time
import warnings
from collections import Counter

import numpy as np
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.exceptions import FitFailedWarning
from sklearn.utils.validation import _check_method_params

__all__ = ["fit_and_score", "results_table", "warn_fit_failures", "first_fit_error"]


def _score(scorer, net, X, y, error_score):
    """The fitted ``net``'s score on ``(X, y)``: a float, or ``{metric: float}`` for a dict of scorers (or
    a callable scorer returning a dict), as scikit-learn's multi-metric searches score."""
    if isinstance(scorer, dict):
        return {name: float(_one_score(s, net, X, y, error_score)) for name, s in scorer.items()}
    score = _one_score(scorer, net, X, y, error_score)
    return {name: float(v) for name, v in score.items()} if isinstance(score, dict) else float(score)


def _one_score(scorer, net, X, y, error_score):
    """One scorer's value; a scorer that raises gives ``error_score`` with scikit-learn's warning (or raises
    with ``error_score="raise"``), as its ``_score`` does."""
    try:
        return scorer(net, X, y)
    except Exception as exc:  # noqa: BLE001 - a failing score is data, as in scikit-learn
        if error_score == "raise":
            raise
        warnings.warn(f"Scoring failed. The score on this train-test partition for these parameters will be set to "
                      f"{error_score}. Details: {type(exc).__name__}: {exc}", UserWarning, stacklevel=2)
        return error_score


def fit_and_score(net, params: dict, X, y, train, test, scorer, train_score: bool, error_score,
                  fit_params: dict | None = None) -> dict:
    """One (candidate, budget, fold): fit (continuing) and score, as scikit-learn's ``_fit_and_score``
    does (``fit_params`` cut to the fold's rows, as there); a failing fit scores ``error_score`` (or raises
    with ``error_score="raise"``), in every metric."""
    net = clone(net).set_params(**params)
    start = time.perf_counter()
    try:
        net.fit(X[train], y[train], **_check_method_params(X, fit_params or {}, train))
    except Exception as exc:  # noqa: BLE001 - a failing candidate is data, as in scikit-learn
        if error_score == "raise":
            raise
        return {"test": error_score, "train": error_score, "fit_time": time.perf_counter() - start,
                "score_time": 0.0, "error": f"{type(exc).__name__}: {exc}"}
    fit_time = time.perf_counter() - start
    start = time.perf_counter()
    test = _score(scorer, net, X[test], y[test], error_score)
    score_time = time.perf_counter() - start
    return {"test": test, "train": _score(scorer, net, X[train], y[train], error_score) if train_score else None,
            "fit_time": fit_time, "score_time": score_time, "error": None}


def _metric_scores(rows: list[dict], part: str) -> dict[str, np.ndarray]:
    """Each metric's ``part`` scores (``"test"``, ``"train"``), one row per (candidate, budget), one column per
    fold: ``{"score": ...}`` for one metric, ``{name: ...}`` for several (a failed fit's error_score in each)."""
    values = [[f[part] for f in r["folds"]] for r in rows]
    names = next((list(v) for row in values for v in row if isinstance(v, dict)), ["score"])
    return {name: np.array([[v[name] if isinstance(v, dict) else v for v in row] for row in values], dtype=float)
            for name in names}


def _ranks(means: np.ndarray) -> np.ndarray:
    """scikit-learn's ``rank_test_*``: 1 for the best mean, equal means the same (lowest) rank, the
    failed (NaN) ones tied after the worst scored one (all 1 when every one failed)."""
    if np.isnan(means).all():
        return np.ones(len(means), dtype=np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32)


def results_table(rows: list[dict], n_splits: int, train_score: bool) -> dict:
    """``cv_results_`` as scikit-learn's halving search shapes it, one row per (candidate, budget)."""
    budgets = sorted({r["n_resources"] for r in rows})
    results: dict = {"iter": np.array([budgets.index(r["n_resources"]) for r in rows]),
                     "n_resources": np.array([r["n_resources"] for r in rows])}
    for key in ("fit_time", "score_time"):
        values = np.array([[f[key] for f in r["folds"]] for r in rows])
        results[f"mean_{key}"], results[f"std_{key}"] = values.mean(axis=1), values.std(axis=1)
    names = sorted({k for r in rows for k in r["params"]})
    for name in names:
        column = np.ma.MaskedArray(np.empty(len(rows), dtype=object), mask=True)
        for i, r in enumerate(rows):
            if name in r["params"]:
                column[i] = r["params"][name]
        results[f"param_{name}"] = column
    results["params"] = [r["params"] for r in rows]
    for part in ("test", "train") if train_score else ("test",):
        for name, scores in _metric_scores(rows, part).items():  # scikit-learn's keys: ..._score, or ..._<metric>
            for k in range(n_splits):
                results[f"split{k}_{part}_{name}"] = scores[:, k]
            results[f"mean_{part}_{name}"], results[f"std_{part}_{name}"] = scores.mean(axis=1), scores.std(axis=1)
            if part == "test":
                results[f"rank_test_{name}"] = _ranks(results[f"mean_test_{name}"])
    return results


def warn_fit_failures(outcomes: list[dict], error_score) -> None:
    """scikit-learn's ``FitFailedWarning`` for the fits of one budget that raised: how many, the score they
    got, and each distinct error with its count (a search over nets that all fail says why, not only NaN)."""
    errors = Counter(o["error"] for o in outcomes if o.get("error"))
    if not errors:
        return
    details = "\n".join(f"{n} fit{'s' if n > 1 else ''} failed with: {error}" for error, n in errors.most_common())
    warnings.warn(f"{errors.total()} fits failed out of a total of {len(outcomes)}.\nThe score on these train-test "
                  f"partitions for these parameters will be set to {error_score}.\nIf these failures are not "
                  f"expected, you can try to debug them by setting error_score='raise'.\n\n{details}",
                  FitFailedWarning, stacklevel=3)


def first_fit_error(rows: list[dict]) -> str | None:
    """The first line of the first error a fit raised, in the order the rows were recorded; None when every
    fit trained."""
    error = next((f["error"] for r in rows for f in r["folds"] if f.get("error")), None)
    return error.splitlines()[0] if error else None

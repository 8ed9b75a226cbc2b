"""``SearchCV(strategy=...)``: hpsearch's own strategies (random, halving, hyperband, tpe, tpe-halving)
over any skorch net and scikit-learn's ``param_distributions``, fitted like scikit-learn's searches.

The strategies run unchanged (``hpsearch.strategies``); ``EstimatorEvaluate`` is their evaluate seam
for an estimator: it draws candidates from scikit-learn's ``ParameterSampler`` (or, for TPE, from an
Optuna study whose distributions are translated from ``param_distributions``), cross-validates each
at a budget of epochs with continuing nets (``hpsearch.sklearn.continuing``: survivors go on from
their state) and records one ``cv_results_`` row per (candidate, budget).
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterSampler, check_cv
from sklearn.model_selection._search import BaseSearchCV

from ..errors import UsageError
from ..jobs.resources import threads_per_job
from ..space.optuna_bridge import stored_params, suggest_config
from ..space.search_space import ParamGenerator
from ..strategies import make_strategy
from .checks import check_search
from .continuing import continuing
from .fitting import Float32Input, as_float32, fit_storage, jobs_of, seed_of, trained_epochs
from .spaces import config_column, is_space, net_params

__all__ = ["SearchCV", "EstimatorEvaluate"]


def _optuna_distribution(name: str, values):
    """An Optuna distribution for TPE from a list or a scipy.stats frozen distribution."""
    import optuna

    if isinstance(values, list | tuple):
        if not all(v is None or isinstance(v, bool | int | float | str) for v in values):
            raise UsageError(f"param_distributions[{name!r}]: TPE takes lists of numbers, strings, booleans or None; "
                             f"got {values!r}: use strategy 'random' or 'halving' for other values")
        return optuna.distributions.CategoricalDistribution(list(values))
    dist_name = getattr(getattr(values, "dist", None), "name", "")
    low, high = (float(v) for v in values.support())
    if dist_name in ("loguniform", "reciprocal"):
        return optuna.distributions.FloatDistribution(low, high, log=True)
    if dist_name == "uniform":
        return optuna.distributions.FloatDistribution(low, high)
    if dist_name == "randint":
        return optuna.distributions.IntDistribution(int(low), int(high))
    raise UsageError(f"param_distributions[{name!r}]: TPE translates lists, uniform, loguniform and randint; got "
                     f"scipy.stats {dist_name or type(values).__name__}: use one of those, or strategy 'random'")


def _fit_and_score(net, params: dict, X, y, train, test, scorer, train_score: bool, error_score) -> dict:
    """One (candidate, budget, fold): fit (continuing) and score, as scikit-learn's ``_fit_and_score``
    does; a failing fit scores ``error_score`` (or raises with ``error_score="raise"``)."""
    net = clone(net).set_params(**params)
    start = time.perf_counter()
    try:
        net.fit(X[train], y[train])
    except Exception as exc:  # noqa: BLE001 - a failing candidate is data, as in scikit-learn
        if error_score == "raise":
            raise
        return {"test": error_score, "train": error_score, "fit_time": time.perf_counter() - start,
                "score_time": 0.0, "error": f"{type(exc).__name__}: {exc}"}
    fit_time = time.perf_counter() - start
    start = time.perf_counter()
    test = float(scorer(net, X[test], y[test]))
    score_time = time.perf_counter() - start
    return {"test": test, "train": float(scorer(net, X[train], y[train])) if train_score else None,
            "fit_time": fit_time, "score_time": score_time, "error": None}


class _Distributions:
    """Candidates from scikit-learn's ``param_distributions``: ``ParameterSampler``'s at ``random_state``,
    and for TPE an Optuna study over their translation (``_optuna_distribution``)."""

    def __init__(self, param_distributions, n: int, random_state):
        self.groups, self.random_state = param_distributions, random_state
        self.candidates = list(ParameterSampler(param_distributions, n, random_state=random_state))
        self.distributions = None

    def sample(self, index: int) -> dict:
        if index >= len(self.candidates):  # the strategy asks for more than n_candidates: draw on
            self.candidates = list(ParameterSampler(self.groups, index + 1, random_state=self.random_state))
        return dict(self.candidates[index])

    def _optuna(self) -> dict:
        if self.distributions is None:
            if isinstance(self.groups, list):
                raise UsageError("strategy tpe takes param_distributions as one dict, not a list of dicts")
            self.distributions = {k: _optuna_distribution(k, v) for k, v in self.groups.items()}
        return self.distributions

    def remember(self, study, params: dict):
        study.enqueue_trial({k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()})
        return study.ask(self._optuna())

    def ask(self, study) -> tuple[dict, object]:
        trial = study.ask(self._optuna())
        return dict(trial.params), trial


class _Space:
    """Candidates from an hpsearch ``SearchSpace``: its configs (``hpsearch search``'s at the seed; TPE's
    through the space's own Optuna encoding), compiled to the net's parameters on the data's shape."""

    def __init__(self, space, n: int, random_state, X, y):
        self.space, self.X, self.y = space, X, y  # X: a row is enough (its shape)
        self.generator = ParamGenerator(space, seed=seed_of(random_state))
        self.configs: list[dict] = []
        self.compiled: list[dict] = []

    def _compiled(self, config: dict) -> dict:
        params = net_params(config, self.X, self.y)
        self.configs.append(config)
        self.compiled.append(params)
        return params

    def sample(self, index: int) -> dict:
        return self._compiled(self.generator.sample(index))

    def remember(self, study, params: dict):
        config = self.configs[self.compiled.index(params)]
        study.enqueue_trial(stored_params(self.space, config)[0])
        trial = study.ask()
        suggest_config(self.space, trial)  # the enqueued values, recorded in the space's encoding
        return trial

    def ask(self, study) -> tuple[dict, object]:
        trial = study.ask()
        return self._compiled(suggest_config(self.space, trial)), trial


class EstimatorEvaluate:
    """The evaluate seam (``hpsearch.strategies.seam.Evaluate``) for an estimator and its folds."""

    def __init__(self, search: SearchCV, net, X, y, folds, scorer, parallel: Parallel, jobs: int, max_epochs: int):
        self.search, self.net, self.X, self.y, self.folds = search, net, X, y, folds
        self.scorer, self.parallel, self.concurrency, self.max_epochs = scorer, parallel, jobs, max_epochs
        source = search.param_distributions
        self.source = (_Space(source, search.n_candidates, search.random_state, X[:1], y) if is_space(source)
                       else _Distributions(source, search.n_candidates, search.random_state))
        self.rows: list[dict] = []
        self.trials: dict = {}
        self.study = None

    def draw(self, k: int, sampler=None) -> dict[int, dict]:
        start, drawn = len(self.trials), {}
        for index in range(start, start + k):
            if sampler is None:
                drawn[index] = self.source.sample(index)
                self._remember(index, drawn[index])
            else:
                study = self._study()
                study.sampler = sampler
                drawn[index], self.trials[index] = self.source.ask(study)
        return drawn

    def _study(self):
        import optuna

        if self.study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self.study = optuna.create_study(direction="maximize")
        return self.study

    def _remember(self, index: int, params: dict) -> None:
        """A drawn candidate as an Optuna trial too, so that TPE learns from the random start."""
        learns = self.search.strategy in ("tpe", "tpe-halving")
        self.trials[index] = self.source.remember(self._study(), params) if learns else None

    def __call__(self, candidates: dict[int, dict], epochs: int) -> dict[int, float]:
        s = self.search
        tasks = [(index, k, {**config, "max_epochs": epochs}) for index, config in candidates.items()
                 for k in range(len(self.folds))]
        outcomes = self.parallel(delayed(_fit_and_score)(self.net, params, self.X, self.y, *self.folds[k],
                                                         self.scorer, s.return_train_score, s.error_score)
                                 for _, k, params in tasks)
        by_index: dict[int, list] = {}
        for (index, _, _), outcome in zip(tasks, outcomes, strict=True):
            by_index.setdefault(index, []).append(outcome)
        scores = {}
        for index, folds in by_index.items():
            tests = np.array([f["test"] for f in folds], dtype=float)
            scores[index] = float(tests.mean()) if np.all(np.isfinite(tests)) else math.nan
            self.rows.append({"index": index, "params": {**candidates[index], "max_epochs": epochs},
                              "n_resources": epochs, "folds": folds})
            trial = self.trials.get(index)
            if trial is not None:
                from optuna.trial import TrialState

                if math.isnan(scores[index]):
                    self.study.tell(trial, state=TrialState.FAIL)
                    self.trials[index] = None
                elif epochs >= self.max_epochs:
                    self.study.tell(trial, scores[index])
                    self.trials[index] = None
                else:
                    trial.report(scores[index], epochs)
        return scores

    def race(self, candidates: dict[int, dict], epochs: int, keep: int, margin: float) -> dict[int, float]:
        raise NotImplementedError("fold racing is hpsearch search's --fold-racing; these estimators score every fold")

    def prune(self, indices) -> None:
        for index in indices:
            trial = self.trials.get(index)
            if trial is not None:
                from optuna.trial import TrialState

                self.study.tell(trial, state=TrialState.PRUNED)
                self.trials[index] = None


def _results(rows: list[dict], n_splits: int, train_score: bool) -> dict:
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
        scores = np.array([[f[part] for f in r["folds"]] for r in rows], dtype=float)
        for k in range(n_splits):
            results[f"split{k}_{part}_score"] = scores[:, k]
        results[f"mean_{part}_score"], results[f"std_{part}_score"] = scores.mean(axis=1), scores.std(axis=1)
    means = np.where(np.isnan(results["mean_test_score"]), -np.inf, results["mean_test_score"])
    order = np.argsort(-means, kind="stable")
    ranks = np.empty(len(rows), dtype=np.int32)
    ranks[order] = np.arange(1, len(rows) + 1)
    results["rank_test_score"] = ranks
    return results


class SearchCV(Float32Input, BaseSearchCV):
    """hpsearch's strategies as a scikit-learn search estimator (see the module's text).

    ``strategy``: ``"random"`` (every candidate the full budget), ``"halving"`` (successive halving,
    survivors continue), ``"hyperband"`` (several halving brackets), ``"tpe"`` (Optuna's TPE proposes
    each candidate from the scores so far, after ``n_startup`` random ones) or ``"tpe-halving"`` (TPE
    proposes, asynchronous halving prunes). ``n_candidates`` configs are drawn (scikit-learn's
    ``ParameterSampler`` at ``random_state``; TPE's after its start); budgets are epochs:
    ``max_resources`` (``"auto"``: the net's ``max_epochs``) and ``min_resources`` (the first rung;
    ``None``: automatic, as ``hpsearch search``'s). ``best_index_`` is the best row at the largest
    budget reached; ``cv_results_`` has scikit-learn's keys plus ``iter`` and ``n_resources``.
    ``param_distributions`` may be an hpsearch ``SearchSpace`` (``hpsearch.sklearn.spaces``): then
    ``cv_results_["config"]`` and ``best_config_`` give the configs as the space writes them.
    """

    resource = "max_epochs"  # the budget every strategy gives: not a searched parameter (check_search)

    def __init__(self, estimator, param_distributions, *, strategy="halving", n_candidates=27, factor=3,
                 max_resources="auto", min_resources=None, n_startup=10, cv=5, scoring=None, refit=True,
                 error_score=np.nan, return_train_score=False, random_state=None, n_jobs=None, verbose=0,
                 storage=None):
        super().__init__(estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         error_score=error_score, return_train_score=return_train_score)
        self.param_distributions = param_distributions
        self.strategy = strategy
        self.n_candidates = n_candidates
        self.factor = factor
        self.max_resources = max_resources
        self.min_resources = min_resources
        self.n_startup = n_startup
        self.random_state = random_state
        self.storage = storage

    def _strategy(self, max_epochs: int):
        """The strategy, built and checked as ``hpsearch search`` builds it (its name refused with did-you-mean)."""
        return make_strategy(SimpleNamespace(strategy=self.strategy, n=self.n_candidates, max_epochs=max_epochs,
                                             seed=seed_of(self.random_state), factor=self.factor,
                                             min_epochs=self.min_resources, n_startup=self.n_startup))

    def fit(self, X, y=None, **params):
        check_search(self)
        max_epochs = (int(self.estimator.get_params()["max_epochs"]) if self.max_resources == "auto"
                      else int(self.max_resources))
        strategy = self._strategy(max_epochs)
        X, y = as_float32(X), np.asarray(y)
        folds = list(check_cv(self.cv, y, classifier=True).split(X, y))
        self.n_splits_ = len(folds)
        self.scorer_ = check_scoring(self.estimator, scoring=self.scoring)
        jobs = jobs_of(self.n_jobs)
        with fit_storage(self.storage) as folder, Parallel(n_jobs=jobs) as parallel:
            net = continuing(self.estimator, folder, seed_of(self.random_state), threads_per_job(jobs))
            evaluate = EstimatorEvaluate(self, net, X, y, folds, self.scorer_, parallel, jobs, max_epochs)
            strategy.run(evaluate)
            self.n_fold_epochs_ = sum(trained_epochs(folder))
            self.cv_results_ = _results(evaluate.rows, self.n_splits_, self.return_train_score)
            if isinstance(evaluate.source, _Space):  # the space's own words beside the net's parameters
                self.cv_results_["config"] = config_column(self.cv_results_["params"], evaluate.source.configs,
                                                           evaluate.source.compiled)
            top = self.cv_results_["n_resources"].max()
            means = np.where(self.cv_results_["n_resources"] == top, self.cv_results_["mean_test_score"], np.nan)
            if np.all(np.isnan(means)):
                raise UsageError(f"every candidate failed at the full budget ({top} epochs); see cv_results_'s scores "
                                 "and the nets' errors (error_score='raise' shows the first)")
            self.best_index_ = int(np.nanargmax(means))
            self.best_params_ = self.cv_results_["params"][self.best_index_]
            self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
            if "config" in self.cv_results_:
                self.best_config_ = self.cv_results_["config"][self.best_index_]
            self.n_resources_ = sorted({int(r) for r in self.cv_results_["n_resources"]})
            self.n_candidates_ = [int(np.sum(self.cv_results_["n_resources"] == r)) for r in self.n_resources_]
            self.n_iterations_ = len(self.n_resources_)
            self.multimetric_ = False
            if self.refit:  # seeded as the search's fits, then the user's own class again
                start = time.perf_counter()
                self.best_estimator_ = clone(net).set_params(**self.best_params_).fit(X, y)
                self.best_estimator_.__class__ = type(self.estimator)
                self.refit_time_ = time.perf_counter() - start
        return self

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
import warnings
from types import SimpleNamespace

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import check_scoring
from sklearn.metrics._scorer import _check_multimetric_scoring
from sklearn.model_selection import check_cv
from sklearn.model_selection._search import BaseSearchCV

from ..errors import UsageError, parameter_names, plural
from ..jobs.resources import threads_per_job
from ..strategies import make_strategy
from .candidates import Distributions, SpaceCandidates, grid_size
from .checks import check_search, chosen_index, ranking_metric, whole_number
from .continuing import continuing
from .fitting import Float32Input, as_rows, callers_state_kept, fit_storage, jobs_of, seed_of, trained_epochs
from .results import first_fit_error, fit_and_score, results_table, warn_fit_failures
from .spaces import check_space_on_rows, config_column, is_space

__all__ = ["SearchCV", "EstimatorEvaluate"]


class EstimatorEvaluate:
    """The evaluate seam (``hpsearch.strategies.seam.Evaluate``) for an estimator and its folds."""

    def __init__(self, search: SearchCV, net, X, y, folds, scorer, parallel: Parallel, jobs: int, max_epochs: int,
                 n: int, fit_params: dict | None = None):
        self.search, self.net, self.X, self.y, self.folds = search, net, X, y, folds
        self.fit_params = fit_params or {}
        self.scorer, self.parallel, self.concurrency, self.max_epochs = scorer, parallel, jobs, max_epochs
        source = search.param_distributions  # n: the candidates to draw (n_candidates, or a smaller grid's all)
        self.source = (SpaceCandidates(source, n, search.random_state, X[:1], y) if is_space(source)
                       else Distributions(source, n, search.random_state))
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
        if s.verbose:  # as scikit-learn's searches say each iteration
            print(f"Fitting {len(self.folds)} folds for each of {len(candidates)} candidates at "
                  f"{plural(epochs, 'epoch')}, totalling {len(tasks)} fits")
        outcomes = self.parallel(delayed(fit_and_score)(self.net, params, self.X, self.y, *self.folds[k],
                                                         self.scorer, s.return_train_score, s.error_score,
                                                         self.fit_params)
                                 for _, k, params in tasks)
        outcomes = list(outcomes)
        warn_fit_failures(outcomes, s.error_score)
        by_index: dict[int, list] = {}
        for (index, _, _), outcome in zip(tasks, outcomes, strict=True):
            by_index.setdefault(index, []).append(outcome)
        scores = {}
        for index, folds in by_index.items():
            tests = np.array([self._ranked(f["test"]) for f in folds], dtype=float)
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

    def _ranked(self, score) -> float:
        """The score a strategy ranks by: the one, or of several metrics ``refit``'s."""
        return score[ranking_metric(self.search.refit, score)] if isinstance(score, dict) else score

    def race(self, candidates: dict[int, dict], epochs: int, keep: int, margin: float) -> dict[int, float]:
        raise NotImplementedError("fold racing is hpsearch search's --fold-racing; these estimators score every fold")

    def prune(self, indices) -> None:
        for index in indices:
            trial = self.trials.get(index)
            if trial is not None:
                from optuna.trial import TrialState

                self.study.tell(trial, state=TrialState.PRUNED)
                self.trials[index] = None


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
    ``scoring`` with several metrics (a list or dict, as scikit-learn's ``RandomizedSearchCV`` takes) gives
    ``cv_results_`` each metric's keys; ``refit`` must name the one that ranks, promotes and picks the best.
    Every setting is checked before any training, and messages name them as here (``n_candidates``,
    ``factor``, ``min_resources``, ``max_resources``, ``n_startup``).
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

    def _max_epochs(self) -> int:
        """The full budget: ``max_resources``, or with ``"auto"`` the net's ``max_epochs``."""
        if self.max_resources != "auto":
            return whole_number("max_resources", self.max_resources, 1,
                          "give the full budget in epochs, or 'auto' for the net's own max_epochs")
        return whole_number("the net's max_epochs", self.estimator.get_params()["max_epochs"], 1,
                      "max_resources='auto' takes it as the full budget: set it, or give max_resources")

    def _strategy(self, max_epochs: int):
        """The strategy, built and checked as ``hpsearch search`` builds it (its name refused with did-you-mean),
        its settings checked first as this estimator's own (``n_candidates``, not the command line's ``n``)."""
        n = whole_number("n_candidates", self.n_candidates, 1, "draw at least one, e.g. n_candidates=27 (the default)")
        size = grid_size(self.param_distributions)
        asked, n = n, n if size is None else min(n, size)  # as scikit-learn's ParameterSampler: each grid point once
        factor = whole_number("factor", self.factor, 2, "each rung keeps 1/factor of its candidates: e.g. factor=3 "
                                                 "(the default)")
        n_startup = whole_number("n_startup", self.n_startup, 1, "TPE's random start: e.g. n_startup=10 (the default)")
        min_epochs = None if self.min_resources is None else whole_number(
            "min_resources", self.min_resources, 1, "the first rung's epochs, or None for an automatic first rung")
        # what the strategies check themselves names their settings as SearchCV's parameters
        full = "max_resources" if self.max_resources != "auto" else "the net's max_epochs"
        names = {"n": "n_candidates", "min_epochs": "min_resources", "max_epochs": full}
        try:
            with parameter_names(lambda name: names.get(name, name)):
                strategy = make_strategy(SimpleNamespace(strategy=self.strategy, n=n, max_epochs=max_epochs,
                                                         seed=seed_of(self.random_state), factor=factor,
                                                         min_epochs=min_epochs, n_startup=n_startup))
        except UsageError as exc:  # the grid's size, not n_candidates, is what falls short: say so
            if n < asked and str(exc).startswith(f"n_candidates ({n})"):
                need = str(exc).split(" must be ", 1)[-1].split(";")[0]
                raise UsageError(f"param_distributions holds only {plural(n, 'candidate')} (every combination of its "
                                 f"lists), and their count must be {need}; add values to its lists, lower factor, or "
                                 "use strategy='random'") from None
            raise
        if n < asked:  # said once every setting has passed
            warnings.warn(f"The total space of parameters {size} is smaller than n_candidates={asked}. Running {n} "
                          "candidates. For exhaustive searches, use GridSearchCV.", UserWarning, stacklevel=3)
        return strategy

    def _scorers(self):
        """``scorer_`` as scikit-learn's searches keep it: one scorer, or for several metrics a dict of
        them, ``refit`` naming the one that ranks."""
        if isinstance(self.scoring, list | tuple | set | dict):
            scorers = _check_multimetric_scoring(self.estimator, self.scoring)
            ranking_metric(self.refit, scorers)
            return scorers
        return check_scoring(self.estimator, scoring=self.scoring)

    def fit(self, X, y=None, **params):
        with callers_state_kept():
            return self._fit(X, y, **params)

    def _fit(self, X, y=None, **params):
        check_search(self)
        max_epochs = self._max_epochs()
        self.scorer_ = self._scorers()
        strategy = self._strategy(max_epochs)  # last: it says when a grid holds fewer than n_candidates
        X, y = as_rows(X, y)
        if is_space(self.param_distributions):
            check_space_on_rows(self.param_distributions, X, y, self.random_state)
        groups = params.pop("groups", None)  # the splitter's (GroupKFold's); the rest go to each fit, per fold
        folds = list(check_cv(self.cv, y, classifier=True).split(X, y, groups))
        self.n_splits_ = len(folds)
        jobs = jobs_of(self.n_jobs)
        with fit_storage(self.storage) as folder, Parallel(n_jobs=jobs) as parallel:
            net = continuing(self.estimator, folder, seed_of(self.random_state), threads_per_job(jobs))
            evaluate = EstimatorEvaluate(self, net, X, y, folds, self.scorer_, parallel, jobs, max_epochs, strategy.n,
                                         params)
            strategy.run(evaluate)
            self.n_fold_epochs_ = sum(trained_epochs(folder))
            self.cv_results_ = results_table(evaluate.rows, self.n_splits_, self.return_train_score)
            if isinstance(evaluate.source, SpaceCandidates):  # the space's own words beside the net's parameters
                self.cv_results_["config"] = config_column(self.cv_results_["params"], evaluate.source.configs,
                                                           evaluate.source.compiled)
            self.multimetric_ = any(isinstance(f["test"], dict) for r in evaluate.rows for f in r["folds"])
            metric = self.refit if self.multimetric_ else "score"  # the ranking metric (checked before training)
            top = self.cv_results_["n_resources"].max()
            means = np.where(self.cv_results_["n_resources"] == top, self.cv_results_[f"mean_test_{metric}"], np.nan)
            if np.all(np.isnan(means)):
                error = first_fit_error(evaluate.rows)
                why = (f"the first fit raised {error}" if error else "no fit raised: the nets diverged or the scorer "
                       "failed (see the warnings)")
                # (the budget the last of them reached: every candidate may have failed at the first rung)
                reached = plural(int(top), "epoch") + ("" if top == max_epochs else f" of the {max_epochs} asked")
                raise UsageError(f"every candidate failed at the most epochs any reached ({reached}): {why}; "
                                 "error_score='raise' shows the first failure's traceback")
            if callable(self.refit):  # scikit-learn's rule: the function picks, and there is no best_score_
                self.best_index_ = chosen_index(self.refit, self.cv_results_)
            else:
                self.best_index_ = int(np.nanargmax(means))
                self.best_score_ = float(self.cv_results_[f"mean_test_{metric}"][self.best_index_])
            self.best_params_ = self.cv_results_["params"][self.best_index_]
            if "config" in self.cv_results_:
                self.best_config_ = self.cv_results_["config"][self.best_index_]
            self.n_resources_ = sorted({int(r) for r in self.cv_results_["n_resources"]})
            self.n_candidates_ = [int(np.sum(self.cv_results_["n_resources"] == r)) for r in self.n_resources_]
            self.n_iterations_ = len(self.n_resources_)
            if self.refit:  # seeded as the search's fits, then the user's own class again
                start = time.perf_counter()
                self.best_estimator_ = clone(net).set_params(**self.best_params_).fit(X, y, **params)
                self.best_estimator_.__class__ = type(self.estimator)
                self.refit_time_ = time.perf_counter() - start
        return self

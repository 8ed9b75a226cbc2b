"""scikit-learn's search estimators for skorch nets, with survivors that continue.

``HalvingRandomSearchCV`` and ``RandomizedSearchCV`` are scikit-learn's own (their candidates,
folds, ``cv_results_``, ranking, ``refit`` and every fitted attribute), with three differences:

- halving's resource is ``max_epochs``, and a candidate that survives an iteration goes on from the
  state it reached instead of training again from epoch 0 (``hpsearch.sklearn.continuing``);
- every fit is seeded (``random_state`` and the candidate's parameters), so a search is
  reproducible and a continued fit equals a straight one;
- ``storage=`` (a folder) keeps every fit's state: a second ``fit`` with the same arguments restores
  the fits already done instead of training them again (without it, a temporary folder).

``param_distributions`` is scikit-learn's (a dict or list of dicts of lists and scipy.stats
distributions, skorch's dunder names included) or an hpsearch ``SearchSpace``, whose configs
(those ``hpsearch search --seed`` draws) become the net's parameters (``hpsearch.sklearn.spaces``).

Changing the import is the whole migration::

    from sklearn.experimental import enable_halving_search_cv  # noqa
    from sklearn.model_selection import HalvingRandomSearchCV     # before
    from hpsearch import HalvingRandomSearchCV                    # after
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - registers scikit-learn's class
from sklearn.metrics import check_scoring
from sklearn.model_selection import HalvingRandomSearchCV as _SkHalving
from sklearn.model_selection import RandomizedSearchCV as _SkRandomized

from ..errors import UsageError
from ..jobs.resources import threads_per_job
from ..space.search_space import SearchSpace
from .checks import check_search, chosen_index
from .continuing import continuing
from .fitting import Float32Input, as_rows, callers_state_kept, fit_storage, jobs_of, seed_of, trained_epochs
from .spaces import check_space_on_rows, config_column, is_space, net_params, space_configs

__all__ = ["HalvingRandomSearchCV", "RandomizedSearchCV"]


class _ContinuingSearch:
    """What both estimators add to scikit-learn's ``fit`` (mixed in before scikit-learn's class)."""

    def fit(self, X, y=None, **params):
        with callers_state_kept():
            return self._fit(X, y, **params)

    def _fit(self, X, y=None, **params):
        check_search(self)
        X, y = as_rows(X, y)
        if is_space(self.param_distributions):
            check_space_on_rows(self.param_distributions, X, y, self.random_state)
        # a SearchSpace's configs compile on the rows' shape and classes (kept during this fit only)
        self._hp_rows, self._hp_drawn = (X[:1], y), None
        try:
            self._fit_continuing(X, y, **params)
        finally:
            drawn = self._hp_drawn
            del self._hp_rows, self._hp_drawn
        if drawn is not None:  # the space's own words beside the net's parameters
            self.cv_results_["config"] = config_column(self.cv_results_["params"], *drawn)
            if hasattr(self, "best_index_"):
                self.best_config_ = self.cv_results_["config"][self.best_index_]
        return self

    def _fit_continuing(self, X, y, **params) -> None:
        original = self.estimator
        with fit_storage(self.storage) as folder:
            # during scikit-learn's fit only: clone(self.estimator) must see the user's net afterwards
            jobs, asked = jobs_of(self.n_jobs), self.n_jobs
            self.estimator = continuing(original, folder, seed_of(self.random_state), threads_per_job(jobs))
            # and scikit-learn's Parallel runs those jobs, at most the cores (n_jobs=4 ran 4 on 2 cores)
            self.n_jobs = jobs
            try:
                super().fit(X, y, **params)
            finally:
                self.estimator, self.n_jobs = original, asked
            trained = trained_epochs(folder)
        if hasattr(self, "best_estimator_"):
            self.best_estimator_.__class__ = type(original)  # the user's own class again (picklable as theirs)
            trained = trained[:-1]  # the refit's line: the search's cost is the fold fits
        if hasattr(self, "scorer_") and not isinstance(self.scorer_, dict):
            self.scorer_ = check_scoring(original, scoring=self.scoring)  # it held the continuing net
        self.n_fold_epochs_ = int(sum(trained))

    def _space_candidates(self, n: int) -> list[dict]:
        """The first ``n`` configs of the space at ``random_state``, as the net's parameters."""
        configs = space_configs(self.param_distributions, n, self.random_state)
        compiled = [net_params(config, *self._hp_rows) for config in configs]
        self._hp_drawn = (configs, compiled)
        return compiled


class HalvingRandomSearchCV(Float32Input, _ContinuingSearch, _SkHalving):
    """scikit-learn's ``HalvingRandomSearchCV`` whose survivors continue (see the module's text).

    The resource is ``max_epochs``, the only one: each iteration trains its candidates for
    ``n_resources`` epochs in all, and a survivor's next iteration adds only the epochs it lacks. With
    ``resource="n_samples"`` (scikit-learn's default) a survivor would meet more rows at each
    iteration, so no fit could go on from the last one; it is refused.
    ``max_resources="auto"`` is the net's own ``max_epochs``. Extra parameter: ``storage``, a
    folder keeping every fit's state (a second ``fit`` resumes); ``None``, a temporary one. Extra
    fitted attribute: ``n_fold_epochs_``, the epochs the cross-validation fits trained in all.
    """

    def __init__(self, estimator, param_distributions, *, n_candidates="exhaust", factor=3,
                 resource="max_epochs", max_resources="auto", min_resources="smallest",
                 aggressive_elimination=False, cv=5, scoring=None, refit=True, error_score=np.nan,
                 return_train_score=True, random_state=None, n_jobs=None, verbose=0, storage=None):
        super().__init__(estimator, param_distributions, n_candidates=n_candidates, factor=factor,
                         resource=resource, max_resources=max_resources, min_resources=min_resources,
                         aggressive_elimination=aggressive_elimination, cv=cv, scoring=scoring, refit=refit,
                         error_score=error_score, return_train_score=return_train_score,
                         random_state=random_state, n_jobs=n_jobs, verbose=verbose)
        self.storage = storage

    _parameter_constraints: dict = {**_SkHalving._parameter_constraints,
                                    "param_distributions": [dict, list, SearchSpace]}

    def _generate_candidate_params(self):
        if not is_space(self.param_distributions):
            return super()._generate_candidate_params()
        exhaust = self.n_candidates == "exhaust"  # as scikit-learn's: enough for the last iteration's resources
        return self._space_candidates(self.max_resources_ // self.min_resources_ if exhaust else self.n_candidates)

    @staticmethod
    def _select_best_index(refit, refit_metric, results):
        # scikit-learn's halving ignores a callable refit (its docstring says it picks): it picks here, as in
        # BaseSearchCV and SearchCV (best_score_ is then the picked row's, as scikit-learn's halving sets it)
        if callable(refit):
            return chosen_index(refit, results)
        return _SkHalving._select_best_index(refit, refit_metric, results)

    def _check_input_parameters(self, X, y, split_params):
        factor = self.factor
        if isinstance(factor, numbers.Real) and not isinstance(factor, bool) and factor <= 1:
            # scikit-learn takes any factor > 0: 1 divided by zero, 0.5 failed on an index, deep in its fit
            raise UsageError(f"factor must be a number above 1 (each iteration keeps 1/factor of its candidates and "
                             f"gives them factor times the epochs), got {factor!r}; e.g. factor=3")
        if self.max_resources != "auto":
            return super()._check_input_parameters(X, y, split_params)
        self.max_resources = int(self.estimator.get_params()["max_epochs"])  # scikit-learn's "auto" is n_samples'
        try:
            return super()._check_input_parameters(X, y, split_params)
        finally:
            self.max_resources = "auto"


class RandomizedSearchCV(Float32Input, _ContinuingSearch, _SkRandomized):
    """scikit-learn's ``RandomizedSearchCV`` with seeded fits and ``storage`` (see the module's text):
    every candidate trains its full ``max_epochs``; a second ``fit`` with the same ``storage`` restores
    the fits already done. Extra fitted attribute: ``n_fold_epochs_``."""

    def __init__(self, estimator, param_distributions, *, n_iter=10, scoring=None, n_jobs=None, refit=True,
                 cv=None, verbose=0, pre_dispatch="2*n_jobs", random_state=None, error_score=np.nan,
                 return_train_score=False, storage=None):
        super().__init__(estimator, param_distributions, n_iter=n_iter, scoring=scoring, n_jobs=n_jobs,
                         refit=refit, cv=cv, verbose=verbose, pre_dispatch=pre_dispatch, random_state=random_state,
                         error_score=error_score, return_train_score=return_train_score)
        self.storage = storage

    _parameter_constraints: dict = {**_SkRandomized._parameter_constraints,
                                    "param_distributions": [dict, list, SearchSpace]}

    def _run_search(self, evaluate_candidates, **kwargs):
        if not is_space(self.param_distributions):
            return super()._run_search(evaluate_candidates, **kwargs)
        evaluate_candidates(self._space_candidates(self.n_iter))

    # scikit-learn passes _run_search what its own takes (its callback context since 1.9): the same here
    _run_search.__signature__ = inspect.signature(_SkRandomized._run_search)

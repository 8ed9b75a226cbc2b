"""bench/strategies.py's scikit-learn contenders: scikit-learn's own ``HalvingRandomSearchCV``
(survivors retrain from scratch; ``max_epochs`` or ``n_samples`` as the resource) and hpsearch's
``HalvingRandomSearchCV`` (the scikit-learn door: survivors continue), both over the bench's configs."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from _contest import CV, N_JOBS, SPACE, Bench, Outcome, compute_of, config_key, log_record, read_records
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingRandomSearchCV, StratifiedKFold

from hpsearch.engines.cv import make_folds, score_probabilities
from hpsearch.jobs.resources import threads_per_job
from hpsearch.space.search_space import load_space
from hpsearch.training.net import make_net
from hpsearch.training.seeds import trial_seed


def timed_fit(search, data) -> float:
    """The search's ``fit`` on the training images, its wall time (the failed fits' warnings hushed:
    each contender counts its failures)."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # FitFailedWarning of diverged configs
        search.fit(data.X_train, data.y_train)
    return time.perf_counter() - start


class ConfigNet(ClassifierMixin, BaseEstimator):
    """Config ``config_index`` of a fixed list as an sklearn estimator, with ``max_epochs`` as a param.

    Why a wrapper and not the skorch net's own dunder params: HalvingRandomSearchCV must draw
    *exactly* our n configs. Given ``{"config_index": list(range(n))}`` and ``n_candidates=n``, its
    ParameterSampler (all values lists) samples the grid without replacement, so it gets each config
    once; a list of n single-point dicts would be sampled with replacement (duplicates, misses). The
    wrapper also seeds each config as hpsearch does (``trial_seed(seed, i)``; a dunder grid would
    need ``random_state`` per dict) and keeps the resource ``max_epochs`` a plain param. ``fit``
    builds the very net hpsearch builds, so the 27-epoch rung reproduces hpsearch's random scores.

    The search scores one metric only (``_top_k`` reads ``mean_test_score``), so the scorer ranks
    by neg-log-loss and writes each fold's accuracy (and ``fit`` its epochs) to ``log_dir``, one
    small file per call: the workers are other processes.
    """

    def __init__(self, config_index=0, max_epochs=27, configs=(), seed=0, n_features=1, n_classes=2,
                 threads=1, log_dir=None):
        self.config_index = config_index
        self.max_epochs = max_epochs
        self.configs = configs
        self.seed = seed
        self.n_features = n_features
        self.n_classes = n_classes
        self.threads = threads
        self.log_dir = log_dir

    def fit(self, X, y):
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.net_ = make_net(self.configs[self.config_index], self.n_features, self.n_classes,
                             max_epochs=self.max_epochs, patience=0,
                             random_state=trial_seed(self.seed, self.config_index))
        try:
            self.net_.fit(X, y)
        finally:
            torch.set_num_threads(previous)
            log_record(self.log_dir, "fit", config=self.config_index, budget=self.max_epochs,
                 epochs=len(self.net_.history), samples=len(y))
        self.classes_ = self.net_.classes_
        return self

    def predict_proba(self, X):
        return self.net_.predict_proba(X)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def neg_log_loss_scorer(estimator, X, y):
    """sklearn's neg_log_loss, as hpsearch scores a fold; the fold's accuracy goes to the log."""
    proba = estimator.predict_proba(X)
    score, accuracy = score_probabilities(y, proba, estimator.classes_, "neg_log_loss")
    log_record(estimator.log_dir, "score", config=estimator.config_index, budget=estimator.max_epochs, samples=len(y),
         accuracy=accuracy)
    return score


def sklearn_halving(bench: Bench, resource: str = "max_epochs") -> Outcome:
    """``HalvingRandomSearchCV`` over our configs, with ``max_epochs`` or ``n_samples`` as its resource."""
    by_samples = resource == "n_samples"
    outcome = Outcome("sklearn-halving-samples" if by_samples else "sklearn-halving")
    data = bench.dataset
    log_dir = bench.tmp / outcome.name
    log_dir.mkdir(parents=True)
    folds = StratifiedKFold(CV, shuffle=True, random_state=bench.seed)  # what make_folds builds
    for (a, b), (c, d) in zip(folds.split(np.zeros(len(data.y_train)), data.y_train),
                              make_folds(data.y_train, CV, bench.seed), strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    # max_epochs: the fit's epochs when images are the resource (HalvingRandomSearchCV sets it by epochs)
    estimator = ConfigNet(max_epochs=bench.max_epochs, configs=bench.configs, seed=bench.seed,
                          n_features=data.n_features, n_classes=data.n_classes, threads=threads_per_job(N_JOBS),
                          log_dir=str(log_dir))
    if by_samples:  # as many rungs as by epochs, each 1/factor of the next one's images; max: all of them
        rungs = 1 + min(math.floor(math.log(bench.max_epochs // bench.first_rung, bench.factor) + 1e-9),
                        math.floor(math.log(bench.n, bench.factor) + 1e-9))  # HalvingRandomSearchCV's count
        min_resources = len(data.y_train) // bench.factor ** (rungs - 1)
        max_resources = min_resources * bench.factor ** (rungs - 1)  # the last rung: (nearly) all images
    else:
        min_resources, max_resources = bench.first_rung, bench.max_epochs
    search = HalvingRandomSearchCV(
        estimator, {"config_index": list(range(bench.n))}, n_candidates=bench.n, factor=bench.factor,
        resource=resource, min_resources=min_resources, max_resources=max_resources, cv=folds,
        scoring=neg_log_loss_scorer, refit=False, error_score=np.nan, n_jobs=N_JOBS, random_state=bench.seed,
        return_train_score=False)  # the Halving*SearchCV default (True) scores every training fold too
    outcome.wall_s = timed_fit(search, data)
    results = search.cv_results_
    first = [p["config_index"] for p, it in zip(results["params"], results["iter"], strict=True) if it == 0]
    assert sorted(first) == list(range(bench.n)), "HalvingRandomSearchCV did not draw exactly our configs"
    fits = read_records(log_dir, "fit")
    fold_size = len(data.y_train) - len(data.y_train) // CV  # a whole training fold (to within one image)
    assert len(fits) == CV * len(results["params"]), (len(fits), len(results["params"]))

    def fold_epochs(fit: dict) -> float:  # a fit on a share of a fold counts as that share of its epochs
        return fit["epochs"] * (min(1.0, fit["samples"] / fold_size) if by_samples else 1)

    outcome.fold_epochs = float(sum(fold_epochs(r) for r in fits))
    outcome.compute = float(sum(compute_of(fold_epochs(r), bench.configs[r["config"]], data) for r in fits))
    best = search.best_index_
    index, budget = results["params"][best]["config_index"], int(results["n_resources"][best])
    outcome.config = bench.configs[index]
    outcome.cv_score = float(results["mean_test_score"][best])
    scored = [r for r in read_records(log_dir, "score") if r["config"] == index]
    if by_samples:  # the winner's last rung: its CV scorings on the largest held-out shares
        accs = [r["accuracy"] for r in sorted(scored, key=lambda r: r["samples"])[-CV:]]
    else:
        accs = [r["accuracy"] for r in scored if r["budget"] == budget]
    outcome.cv_accuracy = float(np.mean(accs)) if len(accs) == CV else math.nan
    outcome.budget = bench.max_epochs if by_samples else budget
    full = [(p["config_index"], s) for p, r, s in zip(results["params"], results["n_resources"],
                                                     results["mean_test_score"], strict=True)
            if r == max_resources and np.isfinite(s)]
    outcome.full_budget = len(full)
    outcome.full_scores = {config_key(bench.configs[i]): float(s) for i, s in full}
    failed = int(np.sum(~np.isfinite(results["mean_test_score"])))
    unit = f"training images, {bench.max_epochs} epochs each" if by_samples else "epochs"
    outcome.note = (f"rungs {search.n_candidates_} configs x {search.n_resources_} {unit}"
                    + (f"; {failed} failed fits" if failed else ""))
    return outcome


class LoggedNegLogLoss:
    """The neg-log-loss scorer for skorch nets; each fold's accuracy goes to ``log_dir`` under the
    fit's identity (``fit_key``: its parameters but ``max_epochs``) and budget."""

    def __init__(self, log_dir):
        self.log_dir = log_dir

    def __call__(self, net, X, y):
        from hpsearch.sklearn.continuing import fit_key

        score, accuracy = score_probabilities(y, net.predict_proba(X), net.classes_, "neg_log_loss")
        log_record(self.log_dir, "score", fit=fit_key(net), budget=int(net.max_epochs), accuracy=accuracy)
        return score


def hpsearch_halving_cv(bench: Bench) -> Outcome:
    """hpsearch's ``HalvingRandomSearchCV`` given the Lab 3 space: the bench's configs, survivors continuing."""
    from hpsearch import HalvingRandomSearchCV as ContinuingHalving
    from hpsearch.sklearn.continuing import fit_key

    outcome = Outcome("hpsearch-halving-cv")
    data = bench.dataset
    log_dir = bench.tmp / outcome.name
    log_dir.mkdir(parents=True)
    net = make_net(bench.configs[0], data, max_epochs=bench.max_epochs, patience=0)
    search = ContinuingHalving(
        net, load_space(SPACE), n_candidates=bench.n, factor=bench.factor, min_resources=bench.first_rung,
        max_resources=bench.max_epochs, cv=StratifiedKFold(CV, shuffle=True, random_state=bench.seed),
        scoring=LoggedNegLogLoss(str(log_dir)), refit=False, n_jobs=N_JOBS, random_state=bench.seed,
        return_train_score=False)
    outcome.wall_s = timed_fit(search, data)
    results = search.cv_results_
    first = [c for c, it in zip(results["config"], results["iter"], strict=True) if it == 0]
    assert first == bench.configs, "the door did not draw exactly the bench's configs"
    # a survivor trains only the epochs its new budget adds (continuation), each on every fold
    reached: dict[str, int] = {}
    fold_epochs = compute = 0.0
    for config, budget in sorted(zip(results["config"], results["n_resources"], strict=True), key=lambda r: r[1]):
        added = int(budget) - reached.get(config_key(config), 0)
        reached[config_key(config)] = int(budget)
        fold_epochs += CV * added
        compute += compute_of(CV * added, config, data)
    outcome.fold_epochs, outcome.compute = fold_epochs, compute
    best = search.best_index_
    outcome.config, outcome.budget = search.best_config_, int(results["n_resources"][best])
    outcome.cv_score = float(results["mean_test_score"][best])
    identity = fit_key(clone(net).set_params(**results["params"][best]))
    accs = [r["accuracy"] for r in read_records(log_dir, "score")
            if r["fit"] == identity and r["budget"] == outcome.budget]
    outcome.cv_accuracy = float(np.mean(accs)) if len(accs) == CV else math.nan
    full = [(c, s) for c, r, s in zip(results["config"], results["n_resources"], results["mean_test_score"],
                                      strict=True) if r == bench.max_epochs and np.isfinite(s)]
    outcome.full_budget = len(full)
    outcome.full_scores = {config_key(c): float(s) for c, s in full}
    failed = int(np.sum(~np.isfinite(results["mean_test_score"])))
    outcome.note = (f"rungs {search.n_candidates_} configs x {search.n_resources_} epochs; trained "
                    f"{search.n_fold_epochs_:,} fold-epochs (counted)" + (f"; {failed} failed fits" if failed else ""))
    return outcome

"""hpsearch's HalvingRandomSearchCV and RandomizedSearchCV against scikit-learn's own, on digits with a
skorch net around a module written here: the same keys, candidates and (with nets seeded alike) the
same scores and best, from fewer fold-epochs; a resumed storage, Pipeline, clone, scorers, splitters,
float64 input after the fit and the errors raised before any training."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from scipy.stats import loguniform, norm
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingRandomSearchCV as SkHalving
from sklearn.model_selection import ParameterSampler, StratifiedKFold
from sklearn.model_selection import RandomizedSearchCV as SkRandomized
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback
from torch import nn

from hpsearch import HalvingRandomSearchCV, RandomizedSearchCV, SearchCV
from hpsearch.errors import UsageError
from hpsearch.sklearn.continuing import fit_key

DISTRIBUTIONS = {"lr": loguniform(2e-2, 3e-1), "module__width": [16, 32, 64]}


class Net(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x):
        return self.layers(x)


EPOCHS = []


class CountEpochs(Callback):
    def on_epoch_end(self, net, **kwargs):
        EPOCHS.append(1)


class SeededAsHpsearch(NeuralNetClassifier):
    """scikit-learn's side, seeded as hpsearch seeds each candidate (random_state 0): its from-scratch
    fits are the fits hpsearch continues."""

    def initialize(self):
        torch.manual_seed(int(hashlib.sha256(f"0:{fit_key(self)}".encode()).hexdigest()[:8], 16))
        return super().initialize()


def _net(cls=NeuralNetClassifier, **kw):
    return cls(Net, max_epochs=9, lr=0.1, optimizer=torch.optim.SGD, criterion=nn.CrossEntropyLoss,
               train_split=None, verbose=0, callbacks=[("count", CountEpochs())], **kw)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def both(data):
    """The same search in scikit-learn (from scratch) and in hpsearch (continuing), fold-epochs counted."""
    X, y = data
    kw = dict(n_candidates=9, factor=3, min_resources=1, cv=3, random_state=0)
    EPOCHS.clear()
    theirs = SkHalving(_net(SeededAsHpsearch), DISTRIBUTIONS, resource="max_epochs", max_resources=9, **kw).fit(X, y)
    their_epochs = len(EPOCHS) - 9  # the refit's 9 epochs
    EPOCHS.clear()
    ours = HalvingRandomSearchCV(_net(), DISTRIBUTIONS, **kw).fit(X, y)
    return theirs, their_epochs, ours, len(EPOCHS) - 9


def test_the_same_keys_candidates_scores_and_best_from_fewer_fold_epochs(both):
    theirs, their_epochs, ours, our_epochs = both
    assert set(ours.cv_results_) == set(theirs.cv_results_)
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]  # the same candidates, iteration by iteration
    for key in ("iter", "n_resources", "mean_test_score", "rank_test_score", "split0_test_score", "mean_train_score"):
        np.testing.assert_array_equal(ours.cv_results_[key], theirs.cv_results_[key], err_msg=key)
    assert ours.best_params_ == theirs.best_params_ and ours.best_index_ == theirs.best_index_
    assert ours.best_score_ == theirs.best_score_ > 0.8
    assert (ours.n_candidates_, ours.n_resources_, ours.n_iterations_) == ([9, 3, 1], [1, 3, 9], 3)
    # 9 x 1 + 3 x 3 + 1 x 9 epochs per fold from scratch; continuing: 9 x 1 + 3 x 2 + 1 x 6
    assert their_epochs == 3 * (9 + 9 + 9) == 81 and our_epochs == 3 * (9 + 6 + 6) == 63 == ours.n_fold_epochs_


def test_fitted_like_scikit_learns(both, data):
    X, y = data
    _, _, ours, _ = both
    assert type(ours.best_estimator_) is NeuralNetClassifier  # the user's own class, refit on all of X
    assert ours.best_estimator_.max_epochs == 9 and len(ours.best_estimator_.history) == 9
    np.testing.assert_array_equal(ours.classes_, np.arange(10))
    assert ours.predict(X[:5]).shape == (5,) and ours.predict_proba(X[:5]).shape == (5, 10)
    assert ours.score(X, y) > 0.85
    check_is_fitted(ours)
    assert callable(ours.scorer_)
    assert pickle.loads(pickle.dumps(ours)).predict(X[:3]).tolist() == ours.predict(X[:3]).tolist()


def test_conventions_clone_params_and_a_pipeline(data, tmp_path):
    X, y = data
    search = HalvingRandomSearchCV(_net(), DISTRIBUTIONS, n_candidates=3, min_resources=3, cv=2, random_state=1,
                                   storage=str(tmp_path / "s"))
    copy = clone(search)
    assert copy.get_params()["storage"] == str(tmp_path / "s") and copy.get_params()["resource"] == "max_epochs"
    copy.set_params(factor=2)
    assert copy.factor == 2 and search.factor == 3
    pipe = make_pipeline(FunctionTransformer(lambda Z: Z * 16), FunctionTransformer(lambda Z: Z / 16), search)
    pipe.fit(X.astype(np.float64), y)  # a float64 step's output: converted for skorch
    assert pipe.score(X, y) > 0.8


@pytest.mark.parametrize("make", [
    lambda net: HalvingRandomSearchCV(net, DISTRIBUTIONS, n_candidates=2, factor=2, min_resources=1, cv=2,
                                      random_state=0),
    lambda net: RandomizedSearchCV(net, DISTRIBUTIONS, n_iter=2, cv=2, random_state=0),
    lambda net: SearchCV(net, DISTRIBUTIONS, n_candidates=2, factor=2, cv=2, random_state=0),
], ids=["halving", "randomized", "search_cv"])
def test_a_fitted_search_takes_float64_as_fit_does(data, make):
    X, y = data[0][:200], data[1][:200]
    X64 = X.astype(np.float64)  # X / 16 as load_digits gives it: the same values, float64
    search = make(_net().set_params(max_epochs=2)).fit(X64, y)
    np.testing.assert_array_equal(search.predict(X64), search.predict(X))
    np.testing.assert_array_equal(search.predict_proba(X64), search.predict_proba(X))
    assert search.score(X64, y) == search.score(X, y)
    # only what the net has: a scorer must not find a decision_function that fails when called
    assert not hasattr(search, "decision_function") and not hasattr(search, "predict_log_proba")


def test_a_search_inside_a_pipeline_predicts_a_scalers_float64(data):
    X, y = data[0][:200].astype(np.float64), data[1][:200]
    search = RandomizedSearchCV(_net().set_params(max_epochs=2), DISTRIBUTIONS, n_iter=2, cv=2, random_state=0)
    pipe = make_pipeline(StandardScaler(), search).fit(X, y)
    scaled = pipe[0].transform(X)
    assert scaled.dtype == np.float64
    assert pipe.score(X, y) == search.score(scaled.astype(np.float32), y) > 0.2  # chance: 0.1
    np.testing.assert_array_equal(pipe.predict_proba(X), search.predict_proba(scaled.astype(np.float32)))


def test_a_second_fit_with_the_same_storage_resumes(data, tmp_path):
    X, y = data
    kw = dict(n_candidates=3, min_resources=3, cv=2, random_state=2, storage=str(tmp_path / "store"))
    first = HalvingRandomSearchCV(_net(), DISTRIBUTIONS, **kw).fit(X, y)
    again = HalvingRandomSearchCV(_net(), DISTRIBUTIONS, **kw).fit(X, y)
    assert first.n_fold_epochs_ == 3 * 3 * 2 + 1 * 6 * 2 and again.n_fold_epochs_ == 0  # every fit restored
    np.testing.assert_array_equal(first.cv_results_["mean_test_score"], again.cv_results_["mean_test_score"])


def test_scorers_splitters_and_parallel_jobs(data):
    X, y = data
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    search = HalvingRandomSearchCV(_net(), DISTRIBUTIONS, n_candidates=3, min_resources=3, cv=folds,
                                   scoring="neg_log_loss", random_state=0, n_jobs=2).fit(X, y)
    assert search.best_score_ < 0 and "split2_test_score" in search.cv_results_
    mine = HalvingRandomSearchCV(_net(), DISTRIBUTIONS, n_candidates=3, min_resources=3, cv=2, random_state=0,
                                 scoring=lambda est, X_, y_: float((est.predict(X_) == y_).mean())).fit(X, y)
    assert 0.2 < mine.best_score_ <= 1  # accuracy, better than chance (0.1) after 9 epochs on 2 folds


def test_randomized_search_sees_scikit_learns_candidates(data, tmp_path):
    X, y = data
    kw = dict(n_iter=3, cv=2, random_state=0)  # the seed SeededAsHpsearch seeds its nets with
    theirs = SkRandomized(_net(SeededAsHpsearch), DISTRIBUTIONS, **kw).fit(X, y)
    ours = RandomizedSearchCV(_net(), DISTRIBUTIONS, **kw, storage=str(tmp_path / "r")).fit(X, y)
    assert ours.cv_results_["params"] == theirs.cv_results_["params"] and set(ours.cv_results_) == set(
        theirs.cv_results_)
    np.testing.assert_array_equal(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"])
    assert RandomizedSearchCV(_net(), DISTRIBUTIONS, **kw, storage=str(tmp_path / "r")).fit(X, y).n_fold_epochs_ == 0


@pytest.mark.parametrize("make, message", [
    (lambda: HalvingRandomSearchCV(NeuralNetRegressor(Net), DISTRIBUTIONS),
     "estimator must be a skorch NeuralNetClassifier (any module, your own included), got NeuralNetRegressor"),
    (lambda: HalvingRandomSearchCV(_net(), {"lr": 0.1}),
     "param_distributions['lr'] must be a non-empty list of values or a scipy.stats distribution (with rvs), got 0.1"),
    (lambda: HalvingRandomSearchCV(_net(), {"module__widht": [8]}),
     "Net takes no argument 'widht' (it takes width); did you mean 'width'?"),
    (lambda: HalvingRandomSearchCV(_net(), {"learning_rate": [0.1]}), "which NeuralNetClassifier does not have"),
    (lambda: HalvingRandomSearchCV(_net(), {"max_epochs": [3, 9]}), "the resource halving gives each iteration"),
    (lambda: HalvingRandomSearchCV(_net(), DISTRIBUTIONS, resource="n_samples"),
     "resource must be 'max_epochs'"),
    (lambda: HalvingRandomSearchCV(Pipeline([("scale", StandardScaler()), ("net", _net())]), {"net__lr": [0.1]}),
     "estimator must be the skorch net itself, got a Pipeline (steps: scale, net); put the search inside the pipeline "
     "instead, e.g. make_pipeline(StandardScaler(), HalvingRandomSearchCV(net, ...)), with param_distributions named "
     "without the 'net__' prefix ('lr', not 'net__lr'); the steps before it are then fitted on all rows, test folds "
     "included: fine for a fixed transform or a scaler, not for one that selects features or learns from the labels "
     "(its CV scores are inflated)"),
    (lambda: SearchCV(make_pipeline(StandardScaler(), _net()), {"neuralnetclassifier__lr": [0.1]}),
     "e.g. make_pipeline(StandardScaler(), SearchCV(neuralnetclassifier, ...))"),
])
def test_errors_are_one_line_before_any_training(data, tmp_path, make, message):
    X, y = data
    EPOCHS.clear()
    search = make().set_params(storage=str(tmp_path / "never"))
    with pytest.raises(UsageError) as exc:
        search.fit(X, y)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert EPOCHS == [] and not (tmp_path / "never").exists()


def _by_candidate(search) -> dict:
    r = search.cv_results_
    return {(tuple(sorted((k, float(v) if k == "lr" else v) for k, v in p.items()))): s
            for p, s in zip(r["params"], r["mean_test_score"], strict=True)}


def test_search_cv_halving_is_halving_random_search_cv(both, data):
    """SearchCV(strategy="halving") runs hpsearch's own halving strategy through the same seam: the
    same candidates, rungs, scores and best as HalvingRandomSearchCV."""
    X, y = data
    _, _, halving, _ = both
    ours = SearchCV(_net(), DISTRIBUTIONS, strategy="halving", n_candidates=9, cv=3, random_state=0).fit(X, y)
    assert _by_candidate(ours) == _by_candidate(halving)
    assert ours.best_params_ == halving.best_params_ and ours.n_fold_epochs_ == halving.n_fold_epochs_ == 63


@pytest.mark.parametrize("strategy, epochs", [pytest.param("random", 6 * 9 * 2, marks=pytest.mark.slow),
                                              ("hyperband", None), pytest.param("tpe", 6 * 9 * 2, marks=pytest.mark.slow),
                                              ("tpe-halving", None)])
def test_search_cv_runs_every_strategy(data, strategy, epochs, tmp_path):
    X, y = data
    kw = dict(strategy=strategy, n_candidates=6, n_startup=3, factor=3, cv=2, random_state=0,
              storage=str(tmp_path / "s"))
    search = SearchCV(_net(), DISTRIBUTIONS, **kw).fit(X, y)
    assert {"params", "mean_test_score", "rank_test_score", "split1_test_score", "iter", "n_resources"} <= set(
        search.cv_results_)
    top = search.cv_results_["n_resources"] == 9
    assert search.best_score_ == np.nanmax(search.cv_results_["mean_test_score"][top]) > 0.2  # chance: 0.1
    assert type(search.best_estimator_) is NeuralNetClassifier and search.predict(X[:4]).shape == (4,)
    assert epochs is None or search.n_fold_epochs_ == epochs
    ranks = search.cv_results_["rank_test_score"]
    assert max(search.n_resources_) == 9 and ranks[search.best_index_] == ranks[top].min()
    if strategy.startswith("tpe"):  # after the random start, TPE proposes values ParameterSampler never drew
        drawn = {float(c["lr"]) for c in ParameterSampler(DISTRIBUTIONS, 6, random_state=0)}
        assert {float(p["lr"]) for p in search.cv_results_["params"]} - drawn
    again = SearchCV(_net(), DISTRIBUTIONS, **kw).fit(X, y)  # the same storage: every fit restored
    assert again.n_fold_epochs_ == 0 and again.best_params_ == search.best_params_


def test_search_cv_refuses_what_it_cannot_run(data):
    X, y = data
    with pytest.raises(UsageError, match="strategy must be one of .*did you mean 'hyperband'"):
        SearchCV(_net(), DISTRIBUTIONS, strategy="hyperbands").fit(X, y)
    with pytest.raises(UsageError, match="TPE translates lists, uniform, loguniform and randint; got scipy.stats norm"):
        SearchCV(_net(), {"lr": norm(0.1, 0.01)}, strategy="tpe", n_candidates=4, n_startup=2).fit(X, y)
    with pytest.raises(UsageError, match="the resource halving gives each iteration"):
        SearchCV(_net(), {"max_epochs": [3, 9]}).fit(X, y)


def test_an_hpsearch_net_is_an_estimator_too(data):
    from hpsearch import load_dataset, make_net

    X, y = data
    net = make_net({"hidden": [32], "optimizer": "adam", "lr": 3e-3}, load_dataset("digits"), max_epochs=3,
                   patience=0)
    search = RandomizedSearchCV(net, {"lr": loguniform(1e-3, 1e-2)}, n_iter=2, cv=2, random_state=0).fit(X, y)
    assert search.best_score_ > 0.5 and type(search.best_estimator_).__name__ == "SeededNet"

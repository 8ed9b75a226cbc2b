"""SearchCV's settings as its own parameters, on hpsearch's bundled digits: every bad one refused in one line
naming it (n_candidates, factor, min_resources, max_resources, n_startup; never the command line's n)
before any training; scoring with several metrics as hpsearch's RandomizedSearchCV takes it, refit naming
the metric that ranks and promotes; and where SearchCV's halving and HalvingRandomSearchCV part (fewer
candidates than the factor), and RandomizedSearchCV searching max_epochs as scikit-learn's does."""

import hashlib

import numpy as np
import pytest
import torch
from sklearn.exceptions import FitFailedWarning
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingRandomSearchCV as SkHalving
from sklearn.model_selection import RandomizedSearchCV as SkRandomized
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from torch import nn

from hpsearch import HalvingRandomSearchCV, RandomizedSearchCV, SearchCV, load_dataset
from hpsearch.errors import UsageError
from hpsearch.sklearn.continuing import fit_key

DISTRIBUTIONS = {"lr": [0.03, 0.1, 0.3], "module__width": [16, 32]}
SCORING = {"acc": "accuracy", "loss": "neg_log_loss"}
EPOCHS = []


class Net(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x):
        return self.layers(x)


class CountEpochs(Callback):
    def on_epoch_end(self, net, **kwargs):
        EPOCHS.append(1)


class SeededAsHpsearch(NeuralNetClassifier):
    """scikit-learn's side, seeded as hpsearch seeds each candidate at random_state 0."""

    def initialize(self):
        torch.manual_seed(int(hashlib.sha256(f"0:{fit_key(self)}".encode()).hexdigest()[:8], 16))
        return super().initialize()


def _net(cls=NeuralNetClassifier, max_epochs=2):
    return cls(Net, max_epochs=max_epochs, lr=0.1, optimizer=torch.optim.SGD, criterion=nn.CrossEntropyLoss,
               train_split=None, verbose=0, callbacks=[("count", CountEpochs())])


@pytest.fixture(scope="module")
def data():
    digits = load_dataset("digits")
    return digits.X_train[:400], digits.y_train[:400]


@pytest.mark.parametrize("settings, message", [
    (dict(strategy="random", n_candidates=0),
     "n_candidates must be a whole number >= 1, got 0; draw at least one, e.g. n_candidates=27 (the default)"),
    (dict(strategy="random", n_candidates=-1), "n_candidates must be a whole number >= 1, got -1"),
    (dict(strategy="random", n_candidates=2.5), "n_candidates must be a whole number >= 1, got 2.5"),
    (dict(strategy="random", factor=1), "factor must be a whole number >= 2, got 1; each rung keeps 1/factor"),
    (dict(strategy="random", n_startup=0), "n_startup must be a whole number >= 1, got 0"),
    (dict(min_resources=0), "min_resources must be a whole number >= 1, got 0; the first rung's epochs, or None"),
    (dict(max_resources="full"),
     "max_resources must be a whole number >= 1, got 'full'; give the full budget in epochs, or 'auto'"),
    # what the strategies check themselves, named as SearchCV's parameters (not the command line's n)
    (dict(strategy="halving", n_candidates=2),
     "n_candidates (2) must be >= factor (3) for successive halving: with fewer configs than the factor no rung "
     "keeps fewer than it trained; raise n_candidates or lower factor"),
    (dict(n_candidates=3, min_resources=5),
     "min_resources (5) must be <= the net's max_epochs (2): the first rung cannot train longer than the last; "
     "lower min_resources or raise the net's max_epochs"),
    (dict(n_candidates=3, min_resources=5, max_resources=4), "min_resources (5) must be <= max_resources (4)"),
    (dict(strategy="hyperband", n_candidates=3, min_resources=1, max_resources=27),
     "raise n_candidates or min_resources"),
    # several metrics: refit names the one that ranks, promotes and picks the best
    (dict(scoring=SCORING), "refit must name the metric that ranks the candidates when scoring has several "
     "('acc', 'loss'), got True: SearchCV's strategies promote candidates, and pick the best, by one metric; "
     "e.g. refit='acc'"),
    (dict(scoring=["accuracy", "neg_log_loss"], refit=False), "('accuracy', 'neg_log_loss'), got False"),
    (dict(scoring=SCORING, refit="accuracy"), "got 'accuracy'"),
    (dict(scoring=SCORING, refit=lambda results: 0), "got <function"),
    (dict(error_score="nan"), "error_score must be the string 'raise' or a number (the score of a failing fit, "
     "np.nan by default), got 'nan'"),
])
def test_search_cv_refuses_its_settings_by_their_names_before_any_training(data, tmp_path, settings, message):
    X, y = data
    EPOCHS.clear()
    with pytest.raises(UsageError) as exc:
        SearchCV(_net(), DISTRIBUTIONS, cv=2, storage=str(tmp_path / "never"), **settings).fit(X, y)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert "n (" not in str(exc.value) and "raise n " not in str(exc.value)  # the command line's spelling
    assert EPOCHS == [] and not (tmp_path / "never").exists()


def test_a_grid_smaller_than_n_candidates_runs_each_point_once_as_scikit_learn_does(data):
    """6 grid points, 9 candidates asked: every point once and scikit-learn's warning (an IndexError before)."""
    X, y = data
    with pytest.warns(UserWarning, match="The total space of parameters 6 is smaller than n_candidates=9. Running 6"):
        search = SearchCV(_net(max_epochs=1), DISTRIBUTIONS, strategy="random", n_candidates=9, cv=2,
                          random_state=0).fit(X, y)
    points = sorted((p["lr"], p["module__width"]) for p in search.cv_results_["params"])
    assert points == sorted((lr, w) for lr in DISTRIBUTIONS["lr"] for w in DISTRIBUTIONS["module__width"])


def test_a_grid_too_small_for_halving_names_the_grid_not_n_candidates(data):
    """2 grid points under the default 27 candidates: raising n_candidates, as the message said, cannot help."""
    X, y = data
    with pytest.raises(UsageError, match=r"param_distributions holds only 2 candidates \(every combination of its "
                                         r"lists\), and their count must be >= factor \(3\).*add values to its "
                                         r"lists, lower factor, or use strategy='random'"):
        SearchCV(_net(max_epochs=1), {"lr": [0.05, 0.1]}, cv=2).fit(X, y)


def test_search_cv_takes_numpy_whole_numbers(data):
    X, y = data
    search = SearchCV(_net(), DISTRIBUTIONS, strategy="halving", n_candidates=np.int64(3), factor=np.int64(3),
                      min_resources=np.int64(1), max_resources=np.int64(2), cv=2, random_state=0).fit(X, y)
    assert (search.n_resources_, search.n_candidates_) == ([1, 2], [3, 1])


def test_search_cv_scores_several_metrics_as_randomized_search_cv(data):
    """strategy="random" with two metrics: RandomizedSearchCV's candidates, keys and scores, ranked and
    refit by refit's metric."""
    X, y = data
    kw = dict(cv=2, scoring=SCORING, refit="loss", random_state=0, return_train_score=True)
    theirs = RandomizedSearchCV(_net(), DISTRIBUTIONS, n_iter=3, **kw).fit(X, y)
    ours = SearchCV(_net(), DISTRIBUTIONS, strategy="random", n_candidates=3, **kw).fit(X, y)
    assert set(ours.cv_results_) == set(theirs.cv_results_) | {"iter", "n_resources", "param_max_epochs"}
    assert [{k: v for k, v in p.items() if k != "max_epochs"} for p in ours.cv_results_["params"]] == \
        theirs.cv_results_["params"]
    scores = [key for key in theirs.cv_results_ if "_test_" in key or "_train_" in key]
    assert len(scores) == 2 * (5 + 4)  # per metric: test 2 splits, mean, std, rank; train 2 splits, mean, std
    for key in scores:
        np.testing.assert_array_equal(ours.cv_results_[key], theirs.cv_results_[key], err_msg=key)
    assert "mean_test_score" not in ours.cv_results_ and ours.multimetric_ and theirs.multimetric_
    assert ours.best_index_ == theirs.best_index_ == int(np.argmax(theirs.cv_results_["mean_test_loss"]))
    assert ours.best_score_ == theirs.best_score_ < 0  # the log-loss's, not the accuracy's
    assert set(ours.scorer_) == {"acc", "loss"} and ours.score(X, y) == theirs.score(X, y) < 0


def test_search_cv_halving_promotes_by_refits_metric(data):
    X, y = data
    search = SearchCV(_net(max_epochs=3), DISTRIBUTIONS, strategy="halving", n_candidates=6, factor=2, cv=2,
                      scoring=SCORING, refit="loss", random_state=0).fit(X, y)
    r = search.cv_results_
    assert search.n_resources_ == [1, 2, 3] and search.n_candidates_ == [6, 3, 2]
    first, second = r["n_resources"] == 1, r["n_resources"] == 2
    by_loss = np.array(r["params"], dtype=object)[first][np.argsort(-r["mean_test_loss"][first], kind="stable")]
    promoted = [{**p, "max_epochs": 1} for p in r["params"] if p["max_epochs"] == 2]
    assert sorted(map(str, promoted)) == sorted(map(str, by_loss[:3]))  # the best half by log-loss went on
    assert r["rank_test_acc"].dtype == np.int32 and second.sum() == 3
    assert search.best_score_ == np.max(r["mean_test_loss"][r["n_resources"] == 3])


def test_halving_random_search_cv_runs_fewer_candidates_than_the_factor_as_scikit_learns(data):
    """HalvingRandomSearchCV follows scikit-learn: 2 candidates, factor 3, one iteration at min_resources
    ("smallest": 1 epoch), the best refit at that budget; SearchCV's halving refuses it (see above)."""
    X, y = data
    kw = dict(n_candidates=2, factor=3, cv=2, random_state=0)
    theirs = SkHalving(_net(SeededAsHpsearch), DISTRIBUTIONS, resource="max_epochs", max_resources=2, **kw).fit(X, y)
    ours = HalvingRandomSearchCV(_net(), DISTRIBUTIONS, **kw).fit(X, y)
    assert (ours.n_resources_, ours.n_candidates_, ours.n_iterations_) == ([1], [2], 1)
    assert (theirs.n_resources_, theirs.n_candidates_, theirs.n_iterations_) == ([1], [2], 1)
    np.testing.assert_array_equal(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"])
    assert ours.best_params_ == theirs.best_params_ and ours.best_params_["max_epochs"] == 1
    assert len(ours.best_estimator_.history) == 1


def test_randomized_search_cv_searches_max_epochs_as_scikit_learns(data):
    """RandomizedSearchCV has no resource: max_epochs is a parameter like any other, the same scores as
    scikit-learn's; a longer candidate continues a shorter one's fit of the same parameters."""
    X, y = data
    params, kw = {"max_epochs": [1, 2], "lr": [0.1]}, dict(n_iter=2, cv=2, random_state=0)
    theirs = SkRandomized(_net(SeededAsHpsearch), params, **kw).fit(X, y)
    ours = RandomizedSearchCV(_net(), params, **kw).fit(X, y)
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    np.testing.assert_array_equal(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"])
    assert ours.best_params_ == theirs.best_params_
    assert ours.n_fold_epochs_ == 2 * (1 + 1)  # from scratch: 2 * (1 + 2)


def test_ranks_follow_scikit_learn_ties_share_the_best_rank_and_failures_tie_last():
    from hpsearch.sklearn.results import _ranks

    means = np.array([0.5, 0.7, np.nan, 0.7, 0.1, np.nan])
    assert _ranks(means).tolist() == [3, 1, 5, 1, 4, 5]  # rankdata(method="min"), NaN after the worst
    assert _ranks(np.array([np.nan, np.nan])).tolist() == [1, 1]  # every fit failed: scikit-learn's ones
    assert _ranks(means).dtype == np.int32


def _picky(net, X, y):
    """A scorer that fails for one learning rate."""
    if net.lr == 0.3:
        raise ValueError("no score for lr 0.3")
    return float((net.predict(X) == y).mean())


@pytest.mark.parametrize("scoring", [_picky, {"acc": _picky, "loss": "neg_log_loss"}], ids=["one", "several"])
def test_a_scorer_that_raises_scores_error_score_as_in_scikit_learn(data, scoring):
    X, y = data
    refit = "loss" if isinstance(scoring, dict) else True  # (ours ranks by one metric: refit names it)
    kw = dict(cv=2, scoring=scoring, refit=refit, random_state=0, error_score=-1.0)
    with pytest.warns(UserWarning, match="Scoring failed"):  # every point of the 6-point grid, once
        theirs = RandomizedSearchCV(_net(), DISTRIBUTIONS, n_iter=6, **kw).fit(X, y)
    with pytest.warns(UserWarning, match="Scoring failed. The score on this train-test partition for these "
                                         "parameters will be set to -1.0. Details: ValueError: no score for lr 0.3"):
        ours = SearchCV(_net(), DISTRIBUTIONS, strategy="random", n_candidates=6, **kw).fit(X, y)
    keys = [key for key in theirs.cv_results_ if key.startswith(("split", "mean_test", "rank_test"))]
    assert any((theirs.cv_results_[key] == -1.0).any() for key in keys)  # the failing scores are there
    for key in keys:
        np.testing.assert_array_equal(ours.cv_results_[key], theirs.cv_results_[key], err_msg=key)
    with pytest.raises(ValueError, match="no score for lr 0.3"):
        SearchCV(_net(), DISTRIBUTIONS, strategy="random", n_candidates=6, **{**kw, "error_score": "raise"}).fit(X, y)


def test_a_callable_refit_picks_the_best_as_in_randomized_search_cv(data):
    """refit=f(cv_results_) -> index: that row is best_index_ and is refit; there is no best_score_."""
    X, y = data

    def worst(results):
        return int(np.argmin(results["mean_test_score"]))

    kw = dict(cv=2, refit=worst, random_state=0)
    theirs = RandomizedSearchCV(_net(), DISTRIBUTIONS, n_iter=3, **kw).fit(X, y)
    ours = SearchCV(_net(), DISTRIBUTIONS, strategy="random", n_candidates=3, **kw).fit(X, y)
    assert ours.best_index_ == theirs.best_index_ == worst(theirs.cv_results_)
    assert ours.best_index_ != int(np.argmax(ours.cv_results_["mean_test_score"]))  # not the best: the function's
    assert {k: v for k, v in ours.best_params_.items() if k != "max_epochs"} == theirs.best_params_
    assert not hasattr(ours, "best_score_") and not hasattr(theirs, "best_score_")
    assert ours.best_estimator_.lr == theirs.best_estimator_.lr
    with pytest.raises(UsageError, match=r"refit \(a function of cv_results_\) must return a row index from 0 to 2, "
                                         r"got 3"):
        SearchCV(_net(), DISTRIBUTIONS, strategy="random", n_candidates=3, cv=2, refit=lambda r: 3).fit(X, y)


class Picky(nn.Module):
    """Raises in its constructor for widths above 8, as a user's module may."""

    def __init__(self, width=4):
        super().__init__()
        if width > 8:
            raise ValueError(f"width {width} is too wide")
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x):
        return self.layers(x)


def test_failed_fits_say_why_as_scikit_learn_says(data):
    """A fit that raises scores NaN with scikit-learn's FitFailedWarning naming the error (it was silent),
    and when every candidate fails the error says the first failure (it said only 'see cv_results_')."""
    X, y = data
    # (CrossEntropyLoss: skorch's default NLLLoss on logits runs to -inf, a diverged fit, failed as well)
    net = NeuralNetClassifier(Picky, max_epochs=1, train_split=None, verbose=0, lr=0.1, criterion=nn.CrossEntropyLoss)
    with pytest.warns(FitFailedWarning, match=r"(?s)2 fits failed out of a total of 4\..*2 fits failed with: "
                                              r"ValueError: width 16 is too wide"):
        search = SearchCV(net, {"module__width": [4, 16]}, strategy="random", n_candidates=2, cv=2).fit(X, y)
    assert np.isnan(search.cv_results_["mean_test_score"]).sum() == 1
    with pytest.warns(FitFailedWarning), pytest.raises(
            UsageError, match=r"every candidate failed at the most epochs any reached \(1 epoch\): the first fit "
                              r"raised ValueError: width \d+ is too wide"):
        SearchCV(net, {"module__width": [16, 32]}, strategy="random", n_candidates=2, cv=2).fit(X, y)
    # halving's candidates all failed at its first rung: not "the full budget (1 epochs)" of a 2-epoch search
    with pytest.warns(FitFailedWarning), pytest.raises(
            UsageError, match=r"every candidate failed at the most epochs any reached \(1 epoch of the 2 asked\)"):
        SearchCV(net.set_params(max_epochs=2), {"module__width": [16, 32, 64]}, strategy="halving", n_candidates=3,
                 factor=2, cv=2).fit(X, y)


def test_halving_refuses_a_factor_that_keeps_every_candidate_and_honours_a_callable_refit(data):
    """scikit-learn's constraint takes any factor > 0: factor=1 was a ZeroDivisionError and 0.5 an IndexError
    deep in its fit. Its halving ignores a callable refit (its docs say it picks); here it picks."""
    from hpsearch import HalvingRandomSearchCV

    X, y = data
    for factor in (1, 0.5):
        search = HalvingRandomSearchCV(_net(max_epochs=2), {"lr": [0.05, 0.1]}, factor=factor, cv=2)
        with pytest.raises(UsageError, match=rf"factor must be a number above 1 \(each iteration keeps 1/factor of "
                                             rf"its candidates .*\), got {factor}; e.g. factor=3"):
            search.fit(X, y)
    search = HalvingRandomSearchCV(_net(max_epochs=3), {"lr": [0.01, 0.05, 0.1]}, n_candidates=3, factor=3,
                                   min_resources=1, cv=2, random_state=0, refit=lambda results: 0).fit(X, y)
    assert search.best_index_ == 0 and search.best_params_ == search.cv_results_["params"][0]
    # as scikit-learn's halving sets it (its docs say it is absent): the score of the row the function picked
    assert search.best_score_ == search.cv_results_["mean_test_score"][0]


def test_inputs_the_net_cannot_take_are_one_line_and_a_list_is_an_array(data):
    X, y = data
    search = SearchCV(_net(max_epochs=1), {"lr": [0.05, 0.1]}, strategy="random", n_candidates=2, cv=2)
    with pytest.raises(UsageError, match=r"X holds uint8 values, and the net takes floats; scale them .* / 255"):
        search.fit((X * 255).astype(np.uint8), y)
    with pytest.raises(UsageError, match=r"y must hold whole-number class labels .* got text values \('0', '1', "):
        search.fit(X, y.astype(str))
    with pytest.raises(UsageError, match=r"got float64 values \(0\.0, 1\.0, .*LabelEncoder"):
        search.fit(X, y.astype(float))
    assert search.fit(X.tolist(), y.tolist()).best_score_ == search.fit(X, y).best_score_


def test_a_tpe_fit_leaves_the_callers_random_state_and_optunas_log_level(data):
    """Scoring draws from torch's global generator (skorch's loaders) and a TPE study set Optuna's level."""
    import optuna

    X, y = data
    optuna.logging.set_verbosity(optuna.logging.INFO)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    SearchCV(_net(max_epochs=2), {"lr": [0.02, 0.05, 0.1, 0.2]}, strategy="tpe", n_candidates=3, n_startup=2,
             cv=2, random_state=0).fit(X, y)
    assert torch.equal(torch.get_rng_state(), before)
    assert optuna.logging.get_verbosity() == optuna.logging.INFO


def test_verbose_says_each_rung_as_scikit_learns_searches_do(data, capsys):
    X, y = data
    SearchCV(_net(max_epochs=3), {"lr": [0.02, 0.05, 0.1]}, strategy="halving", n_candidates=3, min_resources=1,
             cv=2, verbose=1).fit(X, y)
    assert capsys.readouterr().out.splitlines() == [
        "Fitting 2 folds for each of 3 candidates at 1 epoch, totalling 6 fits",
        "Fitting 2 folds for each of 1 candidates at 3 epochs, totalling 2 fits"]


"""What scikit-learn's searches take, the door takes too: numpy arrays and ranges as value lists, an
empty dict (the net as it is), a module whose constructor takes **kwargs, SearchCV's groups and fit
parameters; and a bad n_jobs or resource is one line that names it."""

import os
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GroupKFold
from sklearn.model_selection import RandomizedSearchCV as SkRandomized
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from torch import nn

from hpsearch import HalvingRandomSearchCV, RandomizedSearchCV, SearchCV
from hpsearch.errors import UsageError


class Net(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def forward(self, x):
        return self.layers(x)


class KeywordNet(Net):
    def __init__(self, dropout=0.0, **kwargs):
        super().__init__(**kwargs)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X[:240] / 16).astype(np.float32), y[:240]


def _net(module=Net):
    return NeuralNetClassifier(module, max_epochs=2, lr=0.1, optimizer=torch.optim.SGD, criterion=nn.CrossEntropyLoss,
                               train_split=None, verbose=0)


def test_arrays_and_ranges_are_value_lists_drawn_as_scikit_learn_draws(data):
    space = {"lr": np.logspace(-2, -0.5, 4), "module__width": range(8, 40, 8)}
    ours = RandomizedSearchCV(_net(), space, n_iter=3, cv=2, random_state=0, refit=False).fit(*data)
    theirs = SkRandomized(_net(), space, n_iter=3, cv=2, random_state=0, refit=False).fit(*data)
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    assert {p["module__width"] for p in ours.cv_results_["params"]} <= {8, 16, 24, 32}


def test_an_empty_dict_is_the_net_as_it_is(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 3 candidates in all, fewer than n_iter: scikit-learn says so
        search = RandomizedSearchCV(_net(), [{"lr": [0.05, 0.2]}, {}], n_iter=4, cv=2, random_state=0,
                                    refit=False).fit(*data)
    assert sorted(map(str, search.cv_results_["params"])) == ["{'lr': 0.05}", "{'lr': 0.2}", "{}"]


def test_a_module_taking_keyword_arguments_takes_any_name(data):
    search = RandomizedSearchCV(_net(KeywordNet), {"module__width": [8, 16]}, n_iter=2, cv=2, refit=False).fit(*data)
    assert [p["module__width"] for p in search.cv_results_["params"]] == [8, 16]


def test_search_cv_splits_by_groups_and_hands_fit_parameters_to_each_fit(data):
    groups = np.arange(len(data[1])) % 3
    search = SearchCV(_net(), {"lr": [0.05, 0.1, 0.2]}, n_candidates=3, min_resources=1, cv=GroupKFold(3),
                      refit=False).fit(*data, groups=groups)
    assert search.n_splits_ == 3
    # skorch hands fit parameters to the module's forward, which takes none: the net says so
    with pytest.raises(TypeError, match="unexpected keyword argument 'temperature'"):
        SearchCV(_net(), {"lr": [0.05, 0.1, 0.2]}, n_candidates=3, min_resources=1, cv=2,
                 error_score="raise").fit(*data, temperature=2.0)


@pytest.mark.filterwarnings("ignore:The total space of parameters")
@pytest.mark.parametrize("search", [SearchCV, HalvingRandomSearchCV, RandomizedSearchCV])
@pytest.mark.parametrize("n_jobs", ["two", 0, 1.5])
def test_a_bad_n_jobs_is_named(data, search, n_jobs):
    with pytest.raises(ValueError, match=f"n_jobs must be a whole number .* got {n_jobs!r}"):
        search(_net(), {"lr": [0.05, 0.1, 0.2], "module__width": [8, 16, 32]}, n_jobs=n_jobs).fit(*data)


def test_another_resource_is_refused_for_its_own_reason(data):
    with pytest.raises(UsageError, match="got 'lr'; epochs are the budget") as refused:
        HalvingRandomSearchCV(_net(), {"module__width": [8, 16]}, resource="lr").fit(*data)
    assert "n_samples" not in str(refused.value)


class RecordPid(Callback):
    """Appends the pid of the process each fit runs in to a file."""

    def __init__(self, path=None):
        self.path = path

    def on_train_begin(self, net, **kwargs):
        with open(self.path, "a") as fh:
            fh.write(f"{os.getpid()}\n")


def test_more_jobs_than_cores_run_at_most_one_process_per_core(data, tmp_path):
    """HalvingRandomSearchCV / RandomizedSearchCV handed n_jobs=8 to scikit-learn's Parallel as it was: 8
    processes on 2 cores (their threads were computed from the capped count, so each still took one)."""
    from hpsearch.jobs.resources import cpu_count

    log = tmp_path / "pids.txt"
    net = NeuralNetClassifier(Net, max_epochs=1, lr=0.1, train_split=None, verbose=0, criterion=nn.CrossEntropyLoss,
                              callbacks=[("pid", RecordPid(str(log)))])
    search = RandomizedSearchCV(net, {"lr": [0.02, 0.05, 0.1, 0.2], "module__width": [8, 16]}, n_iter=8, cv=2,
                                n_jobs=8, refit=False, random_state=0).fit(*data)
    assert search.n_jobs == 8  # the user's parameter as given (get_params, clone)
    assert 1 <= len(set(log.read_text().split())) <= cpu_count()

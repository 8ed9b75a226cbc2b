"""What a continued fit keeps beyond weights and optimizer, and what tells fits apart in any process: a
restored fit is scored as a trained one (its classes), parameters a callback froze stay frozen, a loader's
own generator goes on, a set's order and a net fitted before the search change no fit's key."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping, Freezer
from torch import nn

from hpsearch import HalvingRandomSearchCV, RandomizedSearchCV
from hpsearch.sklearn.continuing import continuing, described, fit_key


class Net(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.l1, self.l2 = nn.Linear(64, width), nn.Linear(width, 10)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16).astype(np.float32), y[:300]


def _net(**kw):
    return NeuralNetClassifier(Net, **{"max_epochs": 3, "lr": 0.1, "batch_size": 16, "optimizer": torch.optim.SGD,
                                       "criterion": nn.CrossEntropyLoss, "train_split": None, "verbose": 0, **kw})


def _fits(net, folder, data, *epochs):
    made = continuing(net, folder, 0, 1)
    for target in epochs:
        fitted = clone(made).set_params(max_epochs=target).fit(*data)
    return fitted


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.module_.parameters(), b.module_.parameters(), strict=True))


def test_a_restored_fit_is_scored_under_a_scikit_learn_scoring_string(tmp_path, data):
    """A fit restored instead of trained (a resumed storage, or a survivor that had stopped early) never
    learned its classes: every score under scoring='accuracy' was NaN."""
    space, kw = {"lr": [0.05, 0.1]}, dict(n_iter=2, cv=2, scoring="accuracy", storage=tmp_path / "s", random_state=0)
    first = RandomizedSearchCV(_net(), space, **kw).fit(*data)
    again = RandomizedSearchCV(_net(), space, **kw).fit(*data)
    assert again.n_fold_epochs_ == 0 and np.isfinite(again.best_score_)
    np.testing.assert_array_equal(again.cv_results_["mean_test_score"], first.cv_results_["mean_test_score"])
    assert again.score(*data) == first.score(*data)
    stops = [("es", EarlyStopping(monitor="train_loss", patience=1, threshold=10, threshold_mode="abs"))]
    halving = HalvingRandomSearchCV(_net(max_epochs=9, callbacks=stops), space, n_candidates=2, cv=2, factor=2,
                                    min_resources=2, scoring="accuracy", random_state=0).fit(*data)
    assert np.isfinite(halving.cv_results_["mean_test_score"]).all()


def test_frozen_parameters_and_a_loaders_generator_go_on_as_in_a_straight_fit(tmp_path, data):
    """Freezer(at=2) froze l1 at epoch 2; a continued fit came back to a fresh module training every
    parameter. A loader's own generator restarted from its first state at every continuation."""
    for name, kw in (("freezer", dict(callbacks=[Freezer("l1.*", at=2)])),
                     ("generator", dict(iterator_train__shuffle=True,
                                        iterator_train__generator=torch.Generator().manual_seed(7)))):
        straight = _fits(_net(**kw), tmp_path / f"{name}-straight", data, 4)
        continued = _fits(_net(**kw), tmp_path / f"{name}-continued", data, 3, 4)
        assert _same_weights(continued, straight), name


def test_keys_are_the_same_in_every_process_and_after_a_fit_before_the_search():
    """A set's order follows each process's string hashing; a generator or RandomState of another seed
    was the same key (its repr names an address); fitting the net before the search changed a criterion
    instance's key (its `training` flag) and an initialized Freezer recursed without end."""
    code = ("from hpsearch.sklearn.continuing import described; "
            "print(described({'train_loss', 'valid_acc', 'dur', 'event_lr'}))")
    seen = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                           capture_output=True, text=True, check=True).stdout for seed in ("1", "2", "3")}
    assert len(seen) == 1
    assert described(torch.Generator().manual_seed(5)) != described(torch.Generator().manual_seed(6))
    assert described(np.random.RandomState(0)) != described(np.random.RandomState(1))
    criterion = nn.CrossEntropyLoss(weight=torch.ones(10))
    before = fit_key(_net(criterion=criterion))
    criterion.eval()  # as skorch's fit leaves it
    assert fit_key(_net(criterion=criterion)) == before
    net = _net(callbacks=[Freezer("l1.*", at=2)])
    net.initialize()  # the Freezer's schedule is now a bound method of itself
    assert isinstance(fit_key(net), str)

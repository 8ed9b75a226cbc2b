"""An hpsearch SearchSpace as the search estimators' param_distributions: the configs `hpsearch search`
draws at the same seed, compiled to the net's parameters through make_net's mapping, on digits."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier
from torch import nn

from hpsearch import HalvingRandomSearchCV, RandomizedSearchCV, SearchCV
from hpsearch.errors import UsageError
from hpsearch.space.search_space import ParamGenerator, SearchSpace, load_space
from hpsearch.training.models import MLP

SPACE = {
    "model": "mlp",
    "hidden": {"distribution": "decreasing_int", "layers": 2, "low": 16, "high": 96},
    "lr": {"distribution": "log_uniform", "low": 3e-3, "high": 3e-2},
    "optimizer": {"distribution": "categorical", "choices": ["adam", "rmsprop"]},
    "weight_decay": 1e-5,
}


class Placeholder(nn.Module):  # the user's net as they had it: the space's configs replace its module
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(64, 10)

    def forward(self, x):
        return self.layer(x.flatten(1))


def _net(max_epochs=9):
    return NeuralNetClassifier(Placeholder, max_epochs=max_epochs, train_split=None, verbose=0)


@pytest.fixture(scope="module")
def images():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32).reshape(-1, 1, 8, 8), y


@pytest.fixture(scope="module")
def space():
    return SearchSpace.from_dict(SPACE, name="digits_mlp")


@pytest.fixture(scope="module")
def halving(images, space):
    X, y = images
    return HalvingRandomSearchCV(_net(), space, n_candidates=9, factor=3, min_resources=1, cv=3,
                                 random_state=4).fit(X, y)


def test_halving_draws_the_configs_hpsearch_search_draws(halving, space):
    """The first iteration's rows are ParamGenerator(space, seed)'s configs in order, each compiled by
    make_net's mapping: module, widths as a tuple, the optimizer class, weight decay, lr, cross-entropy."""
    configs = ParamGenerator(space, seed=4).gen_values(9)
    first = halving.cv_results_["iter"] == 0
    assert [c for c, f in zip(halving.cv_results_["config"], first, strict=True) if f] == configs
    for config, params in zip(configs, halving.cv_results_["params"], strict=False):
        assert params["module"] is MLP and params["module__hidden"] == tuple(config["hidden"])
        assert params["module__n_inputs"] == 64 and params["module__n_classes"] == 10
        assert params["lr"] == config["lr"] and params["optimizer__weight_decay"] == 1e-5
        assert params["optimizer"] is {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[config["optimizer"]]
        assert params["criterion"] is nn.CrossEntropyLoss  # skorch's own default (NLLLoss) would not fit logits


def test_halving_on_a_space_is_fitted_like_scikit_learns(halving, images):
    X, y = images
    assert halving.n_resources_ == [1, 3, 9] and halving.n_candidates_ == [9, 3, 1]
    assert halving.best_config_ == halving.cv_results_["config"][halving.best_index_]
    assert not hasattr(halving, "_hp_rows")  # the rows it compiled on are not kept (nor pickled) after fit
    assert halving.best_score_ > 0.85  # digits, chance 0.1
    assert type(halving.best_estimator_.module_) is MLP
    assert halving.score(X, y) > 0.9 and halving.n_fold_epochs_ == 3 * (9 * 1 + 3 * 2 + 1 * 6)


def test_randomized_search_and_every_strategy_take_a_space(images, space, tmp_path):
    X, y = images
    randomized = RandomizedSearchCV(_net(max_epochs=2), space, n_iter=3, cv=2, random_state=1).fit(X, y)
    assert list(randomized.cv_results_["config"]) == ParamGenerator(space, seed=1).gen_values(3)
    assert randomized.best_config_ == randomized.cv_results_["config"][randomized.best_index_]
    tpe = SearchCV(_net(max_epochs=3), space, strategy="tpe-halving", n_candidates=6, n_startup=3, cv=2,
                   random_state=1, storage=str(tmp_path / "tpe")).fit(X, y)
    configs = tpe.cv_results_["config"]
    assert configs[:3] == ParamGenerator(space, seed=1).gen_values(3)  # the random start, then TPE's own
    assert all(16 <= c["hidden"][1] < c["hidden"][0] <= 96 and 3e-3 <= c["lr"] <= 3e-2 for c in configs)
    assert len({c["lr"] for c in configs}) > 3 and tpe.best_score_ > 0.5


def test_the_lab3_space_runs_as_it_is(images):
    X, y = images
    search = SearchCV(_net(max_epochs=1), load_space("mlp_mnist"), strategy="random", n_candidates=2, cv=2,
                      random_state=0).fit(X, y)
    assert [p["module__hidden"] for p in search.cv_results_["params"]] == [
        tuple(c["hidden"]) for c in ParamGenerator(load_space("mlp_mnist"), seed=0).gen_values(2)]


@pytest.mark.parametrize("extra, message", [
    ({"max_epochs": 9}, "names max_epochs, the budget the search gives each candidate"),
    ({"schedule": "cosine"}, "draws schedule 'cosine', which hpsearch's own training loop applies.*LRScheduler"),
    ({"loss": {"distribution": "categorical", "choices": ["ce", "worst_class"]}}, "draws loss 'worst_class'"),
])
def test_a_space_only_hpsearch_search_can_run_is_refused(images, extra, message):
    X, y = images
    space = SearchSpace.from_dict({**SPACE, **extra})
    with pytest.raises(UsageError, match=message):
        HalvingRandomSearchCV(_net(), space, n_candidates=3, min_resources=1, cv=2).fit(X, y)


WRONG_OUT = '''import torch.nn as nn


class WrongOut(nn.Module):  # three logits too many
    def __init__(self, image_shape=(1, 8, 8), n_classes=10):
        super().__init__()
        self.layer = nn.Linear(image_shape[0] * image_shape[1] * image_shape[2], n_classes + 3)

    def forward(self, x):
        return self.layer(x.flatten(1))
'''


@pytest.mark.parametrize("make", [HalvingRandomSearchCV, SearchCV])
def test_rows_the_space_cannot_take_are_refused_before_training(images, tmp_path, make):
    """What `hpsearch search` checks on its loaded data, checked on the rows given to fit: labels that
    are not the net's output indices (they failed every fit), grey images without their channel axis
    for a CNN (a conv error deep in torch), and your module's output (13 logits for 10 classes trained
    silently, predict_proba wider than classes_)."""
    X, y = images
    three = np.isin(y, [0, 5, 9])
    with pytest.raises(UsageError, match=r"y's labels must be 0\.\.2 with a SearchSpace .* got 0, 5, 9; encode"):
        make(_net(), SearchSpace.from_dict(SPACE), cv=2).fit(X[three], y[three])
    with pytest.raises(UsageError, match=r"model 'cnn' fails on the first config with X of shape \(1797, 8, 8\) "
                                         r"\(images go in as \(n, C, H, W\): X\[:, None\]"):
        make(_net(), load_space("cnn_mnist"), cv=2).fit(X[:, 0], y)
    (tmp_path / "badnets.py").write_text(WRONG_OUT)
    (tmp_path / "space.toml").write_text('model = "badnets:WrongOut"\nlr = 0.01\n')
    with pytest.raises(UsageError, match=r"model 'badnets:WrongOut' returns a tensor of shape \(2, 13\) for 2 rows; "
                                         r"the search needs logits \(2, 10\)"):
        make(_net(), load_space(tmp_path / "space.toml"), cv=2).fit(X, y)

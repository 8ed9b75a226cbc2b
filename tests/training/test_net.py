"""make_net: a Dataset or (n_features, n_classes), and extra skorch callbacks that add to
hpsearch's own early stopping and non-finite-loss stop."""

import numpy as np
import pytest
from skorch.callbacks import EarlyStopping, EpochScoring, LRScheduler
from torch.optim.lr_scheduler import StepLR

from hpsearch import make_net
from hpsearch.data.dataset import Dataset
from hpsearch.errors import DivergedError, UsageError
from hpsearch.training.callbacks import ContinuableEarlyStopping, StopOnNonFiniteLoss


def test_early_stopping_still_fires_with_an_extra_callback(digits):
    halving = LRScheduler(policy=StepLR, step_size=1, gamma=0.5)
    sizes = digits.n_features, digits.n_classes  # the signature the callbacks predate
    net = make_net({"hidden": [32], "lr": 0.01}, *sizes, patience=3, max_epochs=200, callbacks=[halving])
    net.fit(digits.X_train, digits.y_train)
    assert {"non_finite", "early_stopping", "LRScheduler"} <= set(dict(net.callbacks_))
    assert dict(net.callbacks_)["early_stopping"].stopped and len(net.history) < 200
    # the extra callback ran: the learning rate halved every epoch
    lrs = net.history[:, "event_lr"]
    np.testing.assert_allclose(lrs, 0.01 * 0.5 ** np.arange(len(lrs)))
    assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** len(lrs))


def test_the_non_finite_stop_stays_with_extra_callbacks(digits):
    net = make_net({"hidden": [32], "optimizer": "sgd", "lr": 80.0}, digits.n_features, digits.n_classes,
                   patience=0, max_epochs=20,
                   callbacks=[("acc", EpochScoring("accuracy", on_train=True))])
    with pytest.raises(DivergedError, match="training loss became"):
        net.fit(digits.X_train, digits.y_train)


def test_a_callback_named_like_ours_replaces_it(digits):
    mine = EarlyStopping(patience=1)
    net = make_net({"hidden": [8]}, digits, patience=5, callbacks=[("early_stopping", mine)]).initialize()
    callbacks = dict(net.callbacks_)
    assert callbacks["early_stopping"] is mine and isinstance(callbacks["non_finite"], StopOnNonFiniteLoss)
    plain = dict(make_net({"hidden": [8]}, digits, patience=5).initialize().callbacks_)
    assert isinstance(plain["early_stopping"], ContinuableEarlyStopping)


@pytest.mark.parametrize("config", [{"hidden": [16], "dropout": 0.2},
                                    {"model": "cnn", "filters": [4, 4], "block_size": 1, "dense": []}])
def test_a_dataset_or_its_sizes_give_the_same_net(config, digits):
    small = digits.subset(300, 50)
    by_dataset = make_net(config, small, max_epochs=2, patience=0)
    by_sizes = make_net(config, small.n_features, small.n_classes, image_shape=small.image_shape, max_epochs=2,
                        patience=0)
    params = {k: v for k, v in by_dataset.get_params().items() if k.startswith("module__")}
    assert params == {k: v for k, v in by_sizes.get_params().items() if k.startswith("module__")}
    by_dataset.fit(small.X_train, small.y_train)
    by_sizes.fit(small.X_train, small.y_train)
    np.testing.assert_array_equal(by_dataset.predict_proba(small.X_test), by_sizes.predict_proba(small.X_test))


def test_a_dataset_gives_its_image_shape_and_classes():
    rng = np.random.default_rng(0)
    X = rng.random((30, 3, 4, 6), dtype=np.float32)  # 3 channels, not square: sizes alone cannot say
    y = np.arange(30) % 3
    toy = Dataset("toy", X, y, X[:6], y[:6], class_names=("cat", "dog", "owl"))
    net = make_net({"model": "gapcnn", "filters": [4], "pool_after": []}, toy, max_epochs=1, patience=0)
    net.fit(toy.X_train, toy.y_train)
    assert net.predict_proba(toy.X_test).shape == (6, 3)
    assert net.module_.features[0].in_channels == 3
    with pytest.raises(UsageError, match="needs image_shape"):
        make_net({"model": "gapcnn", "filters": [4]}, toy.n_features, toy.n_classes)


def test_make_net_argument_errors_name_the_fix(digits):
    with pytest.raises(UsageError, match="takes the classes from dataset.class_names; drop n_classes=10"):
        make_net({}, digits, 10)
    with pytest.raises(UsageError, match=r"needs n_classes with n_features: make_net\(config, n_features"):
        make_net({}, 64)
    with pytest.raises(UsageError, match="must be a Dataset .* got str"):
        make_net({}, "digits")

"""The lean training path computes exactly what the plain skorch path computes.

Same DataLoader, sampler and RNG draws: only how a batch is gathered changes (one indexing op on
tensors prepared once instead of per-sample ``__getitem__`` + collation), so on the CPU the scores
are bitwise equal, not merely close.
"""

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset as SkorchDataset
from skorch.helper import predefined_split
from torch.utils.data import DataLoader

from hpsearch.engines.cv import evaluate_config, make_folds
from hpsearch.training.net import TensorBatches, make_net

CONFIG = {"model": "mlp", "hidden": [48, 24], "dropout": 0.3, "lr": 3e-3, "optimizer": "adam",
          "weight_decay": 1e-4}


def _make(digits, lean, **kwargs):
    kwargs = {"max_epochs": 6, "patience": 3, "random_state": 11, **kwargs}
    return make_net(CONFIG | kwargs.pop("config", {}), digits.n_features, digits.n_classes, lean=lean, **kwargs)


def test_cv_scores_identical_to_plain_skorch(digits):
    folds = make_folds(digits.y_train, 3, seed=5)
    results = {}
    for lean in (False, True):
        results[lean] = evaluate_config(lambda lean=lean: _make(digits, lean), digits.X_train, digits.y_train,
                                        folds, n_jobs=1)
    plain, lean = results[False], results[True]
    assert plain.error is None and lean.error is None
    assert lean.test_scores == plain.test_scores  # bitwise: same batches, same dropout masks
    assert lean.test_accuracies == plain.test_accuracies
    assert lean.epochs == plain.epochs
    assert np.mean(lean.test_accuracies) > 0.6  # a real fit (chance is 0.1), not two identical failures


def test_history_identical_with_early_stopping_and_rmsprop(digits):
    nets = {lean: _make(digits, lean, config={"optimizer": "rmsprop", "lr": 0.02}, max_epochs=30, patience=2)
            for lean in (False, True)}
    for net in nets.values():
        net.fit(digits.X_train, digits.y_train)
    plain, lean = nets[False], nets[True]
    assert len(lean.history) == len(plain.history) < 30  # early stopping fired at the same epoch
    for key in ("train_loss", "valid_loss", "valid_acc"):
        assert lean.history[:, key] == plain.history[:, key]
    np.testing.assert_array_equal(lean.predict_proba(digits.X_test), plain.predict_proba(digits.X_test))


def test_predefined_validation_set_falls_back_to_skorch_dataset(digits):
    """retrain.py passes a skorch Dataset as the validation split: that side keeps skorch's
    collation, the training side is lean, and the result is unchanged."""
    valid = predefined_split(SkorchDataset(digits.X_test, digits.y_test))
    nets = {lean: _make(digits, lean, patience=0, max_epochs=5, train_split=valid) for lean in (False, True)}
    for net in nets.values():
        net.fit(digits.X_train, digits.y_train)
    assert nets[True].history[:, "valid_loss"] == nets[False].history[:, "valid_loss"]


def test_batches_equal_default_collation(digits):
    X, y = digits.X_train[:300], digits.y_train[:300]
    loaders = [DataLoader(SkorchDataset(X, y), batch_size=64, shuffle=True),
               DataLoader(TensorBatches(X, y), batch_size=64, shuffle=True, collate_fn=lambda b: b)]
    batches = []
    for loader in loaders:
        torch.manual_seed(3)
        batches.append(list(loader))
    assert len(batches[0]) == len(batches[1]) == 5
    for (xa, ya), (xb, yb) in zip(*batches, strict=True):
        assert xa.dtype == xb.dtype == torch.float32 and ya.dtype == yb.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_lean_drops_only_the_silent_print_log(digits):
    names = lambda net: [name for name, _ in net.get_default_callbacks()]  # noqa: E731
    assert "print_log" not in names(_make(digits, True))
    assert "valid_acc" in names(_make(digits, True))  # learning curves plot it
    assert "print_log" in names(_make(digits, True, verbose=1))
    assert "print_log" in names(_make(digits, False))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dataset_lives_on_the_gpu_once(digits):
    net = _make(digits, True, device="cuda", patience=0, max_epochs=3)
    net.fit(digits.X_train, digits.y_train)
    dataset = net.get_dataset(digits.X_train, digits.y_train)
    assert dataset.X.device.type == "cuda" and dataset.y.device.type == "cuda"
    xb, yb = next(iter(net.get_iterator(dataset, training=True)))
    assert xb.device.type == "cuda" and yb.device.type == "cuda"
    plain = _make(digits, False, device="cuda", patience=0, max_epochs=3)
    plain.fit(digits.X_train, digits.y_train)
    np.testing.assert_allclose(net.history[:, "train_loss"], plain.history[:, "train_loss"], rtol=1e-4)

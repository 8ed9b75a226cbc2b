"""One label per image vs one per position (hpsearch.tasks), the output heads and their losses
(hpsearch.training.heads), on images of three digits built from sklearn's digits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.model_selection import KFold

from hpsearch.data.dataset import Dataset
from hpsearch.engines.cv import evaluate_config, make_folds
from hpsearch.errors import UsageError
from hpsearch.space.checks import check_space_for_data
from hpsearch.space.search_space import load_space
from hpsearch.tasks import Positions, SingleLabel, task_of
from hpsearch.training.heads import HeadLoss, head_probabilities
from hpsearch.training.net import make_net

SMALL_CNN = {"model": "cnn", "filters": [16, 32], "dense": [64], "lr": 3e-3}


def test_a_dataset_with_three_labels_per_image_is_a_positions_task(digit_triples):
    assert digit_triples.task == Positions(3) and digit_triples.y_train.shape[1] == 3
    assert task_of(np.zeros(5, np.int64)) == SingleLabel()


def test_train_and_test_with_different_label_shapes_are_refused(digit_triples):
    d = digit_triples
    with pytest.raises(UsageError, match=r"y_train has shape \(\d+, 3\) but y_test \(\d+, 2\)"):
        Dataset("t", d.X_train, d.y_train, d.X_test, d.y_test[:, :2])
    bad = d.y_train.copy()
    bad[0, 1] = 10
    with pytest.raises(UsageError, match="1 label outside 0..9"):
        Dataset("t", d.X_train, bad, d.X_test, d.y_test)


def test_folds_of_positions_are_shuffled_kfold_partitions(digit_triples):
    y = digit_triples.y_train
    folds = make_folds(y, 4, seed=3)
    expected = list(KFold(4, shuffle=True, random_state=3).split(np.zeros(len(y))))
    for (train, test), (e_train, e_test) in zip(folds, expected, strict=True):
        assert np.array_equal(train, e_train) and np.array_equal(test, e_test)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(len(y)))


def _logits_and_targets():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, 10, generator=g) * 2, torch.randint(0, 10, (6, 3), generator=g)


def test_softmax_ce_is_cross_entropy_averaged_over_positions():
    z, y = _logits_and_targets()
    expected = np.mean([F.cross_entropy(z[:, k], y[:, k]).item() for k in range(3)])
    assert HeadLoss("softmax", "ce")(z, y).item() == pytest.approx(expected, rel=1e-6)


def test_sigmoid_ce_is_keras_categorical_crossentropy_of_sigmoid_outputs():
    z, y = _logits_and_targets()
    p = torch.sigmoid(z.double())
    p = p / p.sum(-1, keepdim=True)  # Keras renormalizes the outputs to sum to 1
    expected = -torch.log(p.gather(-1, y[..., None])).mean().item()
    assert HeadLoss("sigmoid", "ce")(z, y).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_bce_is_keras_binary_crossentropy_of_the_head_outputs(head):
    z, y = _logits_and_targets()
    p = (torch.softmax(z.double(), -1) if head == "softmax" else torch.sigmoid(z.double())).clamp(1e-7, 1 - 1e-7)
    t = F.one_hot(y, 10).double()
    expected = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean().item()
    assert HeadLoss(head, "bce")(z, y).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_head_probabilities_sum_to_one_per_position_and_keep_the_argmax(head):
    z, _ = _logits_and_targets()
    p = head_probabilities(head)(z)
    assert torch.allclose(p.sum(-1), torch.ones(6, 3), atol=1e-6)
    assert torch.equal(p.argmax(-1), z.argmax(-1))


@pytest.fixture(scope="module")
def trained_positions_cnn(digit_triples):
    net = make_net(SMALL_CNN, digit_triples, max_epochs=8, patience=0)
    return net.fit(digit_triples.X_train, digit_triples.y_train)


def test_a_cnn_learns_each_position_of_the_three_digit_images(trained_positions_cnn, digit_triples):
    net, d = trained_positions_cnn, digit_triples
    assert net.predict_proba(d.X_test).shape == (len(d.y_test), 3, 10)
    predicted = net.predict(d.X_test)
    assert predicted.shape == d.y_test.shape
    metrics = d.task.test_metrics(d.y_test, net.predict_proba(d.X_test))
    for k in range(3):
        assert metrics[f"test_digit_{k}_accuracy"] == pytest.approx(np.mean(predicted[:, k] == d.y_test[:, k]))
        assert metrics[f"test_digit_{k}_accuracy"] > 0.6  # chance is 0.1
    assert metrics["test_exact_match"] == pytest.approx(np.mean((predicted == d.y_test).all(1)))
    assert metrics["test_accuracy"] == pytest.approx(np.mean(predicted == d.y_test))


@pytest.mark.parametrize("head,loss", [("softmax", "ce"), ("softmax", "bce"), ("sigmoid", "ce"), ("sigmoid", "bce")])
def test_every_head_and_loss_trains_and_scores_with_cross_validation(digit_triples, head, loss):
    d = digit_triples
    folds = make_folds(d.y_train, 2, seed=0)
    config = {**SMALL_CNN, "head": head, "loss": loss, "batch_size": 32}
    result = evaluate_config(lambda: make_net(config, d, max_epochs=4, patience=0), d.X_train, d.y_train, folds)
    assert result.error is None and np.isfinite(result.test_scores).all()
    assert all(set(m) == {"digit_0_accuracy", "digit_1_accuracy", "digit_2_accuracy", "exact_match"}
               for m in result.metrics)
    per_position = [np.mean([m[f"digit_{k}_accuracy"] for k in range(3)]) for m in result.metrics]
    assert result.test_accuracies == pytest.approx(per_position)
    if (head, loss) != ("sigmoid", "bce"):
        assert np.mean(result.test_accuracies) > 0.25  # chance is 0.1
    else:  # ten independent sigmoids learn slowly (the seed saw it too): its loss falls, at least
        net = make_net(config, d, max_epochs=3, patience=0).fit(d.X_train, d.y_train)
        losses = net.history[:, "train_loss"]
        assert losses[-1] < losses[0]


def test_a_gap_cnn_or_a_worst_class_loss_is_refused_for_labels_per_position(digit_triples):
    with pytest.raises(UsageError, match="model 'gapcnn' maps each class to one channel"):
        make_net({"model": "gapcnn"}, digit_triples)
    with pytest.raises(UsageError, match="loss 'worst_class' trains one softmax label per image"):
        make_net({**SMALL_CNN, "loss": "worst_class"}, digit_triples)


def test_a_flip_is_refused_for_labels_per_position(digit_triples, tmp_path):
    """A mirrored image swaps its left and right digits while the labels stay: refused, in make_net
    and before a search (the space against the data)."""
    with pytest.raises(UsageError, match="augment 'flip-crop' mirrors each image"):
        make_net({**SMALL_CNN, "augment": "flip-crop"}, digit_triples)
    space = tmp_path / "space.toml"
    space.write_text("model = 'cnn'\nfilters = [4]\n[augment]\ndistribution = 'categorical'\n"
                     "choices = ['none', 'flip']\n")
    with pytest.raises(UsageError, match="augment 'flip' mirrors each image, which swaps the left and right digits"):
        check_space_for_data(load_space(str(space)), digit_triples)
    make_net({**SMALL_CNN, "augment": "none"}, digit_triples)  # no augmentation is fine


def test_single_label_nets_are_unchanged_by_default(digits):
    # softmax + ce on one label per image is still plain CrossEntropyLoss with skorch's softmax
    net = make_net({"hidden": [20]}, digits, max_epochs=1, patience=0).initialize()
    assert type(net.criterion_) is torch.nn.CrossEntropyLoss and net.predict_nonlinearity == "auto"
    other = make_net({"hidden": [20], "head": "sigmoid", "loss": "bce"}, digits, max_epochs=2, patience=0)
    proba = other.fit(digits.X_train, digits.y_train).predict_proba(digits.X_test)
    assert proba.shape == (len(digits.y_test), 10) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_a_training_slice_of_labels_per_position_is_a_seeded_sample_of_rows(digit_triples):
    part = digit_triples.training_slice(200, seed=1)
    again = digit_triples.training_slice(200, seed=1)
    assert part.y_train.shape == (200, 3) and np.array_equal(part.X_train, again.X_train)
    rows = [int(np.flatnonzero((digit_triples.X_train == x).all(axis=(1, 2, 3)))[0]) for x in part.X_train[:5]]
    assert np.array_equal(digit_triples.y_train[rows], part.y_train[:5])

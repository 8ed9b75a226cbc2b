"""The worst-class loss (the CAM seed's custom loss): the formula, the rounds, and a search."""

import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier
from skorch.history import History
from torch import nn

from hpsearch import make_net
from hpsearch.engines.stack_fit import batchable, unbatchable_reason
from hpsearch.errors import UsageError
from hpsearch.retrain.top import retrain_top
from hpsearch.rundir.store import load_results
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.space.search_space import SearchSpace, load_space
from hpsearch.training.losses import WorstClassLoss, WorstClassRounds, misclassified_counts, worst_classes


def _batch(n=12, classes=4):
    return torch.randn(n, classes), torch.randint(0, classes, (n,))


def test_equals_cross_entropy_when_no_class_is_worst():
    logits, target = _batch()
    loss = WorstClassLoss(4, worst_weight=3.0)
    assert torch.equal(loss(logits, target), nn.CrossEntropyLoss()(logits, target))
    loss.set_worst([])
    assert torch.equal(loss(logits, target), nn.CrossEntropyLoss()(logits, target))


def test_hand_computed_formula():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([0, 2, 2, 1])
    ce = [-torch.log_softmax(logits[i], 0)[target[i]].item() for i in range(4)]
    loss = WorstClassLoss(3, worst_weight=2.0)
    loss.set_worst([2])
    # CE(batch) + w * (1/N) * sum of the worst classes' per-sample CE: samples 1 and 2 are class 2
    expected = np.mean(ce) + 2.0 * (ce[1] + ce[2]) / 4
    assert loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    loss.eval()  # validation losses stay plain cross-entropy
    assert loss(logits, target).item() == pytest.approx(np.mean(ce), rel=1e-6)


def test_worst_set_is_above_the_mean_count():
    assert worst_classes([0, 5, 1, 6, 3]) == [1, 3]      # mean 3: 5 and 6 are above, 3 is not
    assert worst_classes([2, 2, 2]) == [] and worst_classes([0, 0]) == []


class _Fixed(nn.Module):
    """Predicts the class given in the first feature."""

    def __init__(self, n_classes):
        super().__init__()
        self.n_classes = n_classes
        self.unused = nn.Parameter(torch.zeros(1))  # the optimizer wants a parameter

    def forward(self, X):
        return nn.functional.one_hot(X[:, 0].long(), self.n_classes).float()


def test_round_picks_the_classes_above_the_mean_on_hand_made_predictions():
    # true labels and predictions: class 0 is always right, class 1 wrong 3 times, class 2 once,
    # class 3 twice: counts [0, 3, 1, 2], mean 1.5 -> worst {1, 3}
    y = np.array([0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3])
    pred = np.array([0, 0, 0, 2, 3, 1, 1, 2, 0, 0, 3])
    net = NeuralNetClassifier(_Fixed, module__n_classes=4, criterion=WorstClassLoss, criterion__n_classes=4,
                              train_split=None, callbacks="disable").initialize()
    X = pred[:, None].astype(np.float32)
    counts = misclassified_counts(net, net.get_dataset(X, y), 4)
    np.testing.assert_array_equal(counts, [0, 3, 1, 2])
    net.history.new_epoch()
    WorstClassRounds(round_epochs=1).on_epoch_end(net, dataset_train=net.get_dataset(X, y))
    assert net.criterion_.worst == (1, 3)
    assert net.criterion_.is_worst.tolist() == [False, True, False, True]
    assert net.history[-1, "worst_classes"] == [1, 3]


def test_make_net_rounds_set_epochs_and_the_worst_set(digits):
    config = {"hidden": [16], "loss": "worst_class", "rounds": 3, "round_epochs": 2, "worst_weight": 1.5}
    for patience in (0, 5):  # no split: the training data; a split: the validation data
        net = make_net(config, digits, patience=patience, max_epochs=50)
        assert net.max_epochs == 6
        net.fit(digits.X_train[:400], digits.y_train[:400])
        assert len(net.history) <= 6 and net.criterion_.worst_weight == 1.5
        picks = [row.get("worst_classes") for row in net.history]
        assert [p is not None for p in picks] == [(e + 1) % 2 == 0 for e in range(len(net.history))]
        assert net.callbacks_[-1][0] == "worst_class" or "worst_class" in dict(net.callbacks_)
    assert make_net({**config, "max_epochs": 4}, digits).max_epochs == 4


def test_a_worst_weight_of_0_trains_the_weights_plain_cross_entropy_trains(digits):
    """README: 0 is plain cross-entropy. The counting pass drew from torch's generator, so from round 2 on
    every batch order and dropout mask differed (train losses 1.266109 and 1.266959 at epoch 3)."""
    base = {"hidden": [16], "lr": 5e-3, "dropout": 0.2}
    for patience in (0, 5):  # counted on the training data, and on the validation split
        nets = [make_net(config, digits, max_epochs=4, patience=patience, random_state=123).fit(
            digits.X_train[:400], digits.y_train[:400]) for config in (
            {**base, "loss": "ce"}, {**base, "loss": "worst_class", "rounds": 2, "round_epochs": 2, "worst_weight": 0.0})]
        assert nets[1].history[1, "worst_classes"] is not None  # a round was picked, and counted
        for a, b in zip(nets[0].module_.parameters(), nets[1].module_.parameters(), strict=True):
            assert torch.equal(a, b)


def test_batched_engine_hands_worst_class_to_skorch():
    assert not batchable({"loss": "worst_class"}) and batchable({"loss": "ce"})
    assert "loss 'worst_class'" in unbatchable_reason({"loss": "worst_class"})


@pytest.mark.parametrize("spec, message", [
    ({"loss": "focal"}, "loss must be one of 'ce', 'bce', 'worst_class'"),
    ({"loss": "worst_class", "worst_weight": -1.0}, "worst_weight must be >= 0, got -1.0"),
    ({"loss": "worst_class", "rounds": 0}, "rounds must be a whole number >= 1, got 0"),
    ({"loss": "worst_class", "round_epochs": 2.5}, "round_epochs must be a whole number >= 1"),
    ({"rounds": 3}, "rounds sets up a worst_class loss, but this space's loss is 'ce'"),
])
def test_bad_loss_keys_are_refused_at_load_time(spec, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        SearchSpace.from_dict({"hidden": [8], **spec})


def test_worst_class_space_loads():
    space = load_space("mlp_worst_class")
    assert set(space.params["loss"].support()) == {"ce", "worst_class"}


def test_search_and_retrain_with_worst_class(tmp_path, digits):
    space = tmp_path / "space.toml"
    space.write_text("hidden = [24]\nlr = 0.01\nrounds = 2\nround_epochs = 2\nworst_weight = 1.0\n"
                     "[loss]\ndistribution = 'categorical'\nchoices = ['ce', 'worst_class']\n")
    run = run_search(SearchSettings(n=2, seed=1, out=str(tmp_path / "run"), space=str(space), dataset="digits", cv=2,
                                    max_epochs=3, patience=0, n_jobs=1, progress=False))
    frame = load_results(run)
    assert set(frame["param_loss"]) == {"ce", "worst_class"}
    assert frame["mean_test_score"].notna().all() and (frame["mean_test_accuracy"] > 0.5).all()
    result = retrain_top(run, top=2, retrain_epochs=2, dataset=digits, progress=False, n_jobs=1)
    assert len(result.table) == 2 and result.table["test_accuracy"].notna().all()
    # what each CV score is of: the worst-class config trained its 2 x 2 epochs, not --max-epochs 3
    cv_epochs = dict(zip(result.table["param_loss"], result.table["cv_epochs"], strict=True))
    assert cv_epochs == {"ce": 3, "worst_class": 4}
    assert dict(zip(frame["param_loss"], frame["mean_epochs"], strict=True)) == {"ce": 3, "worst_class": 4}


def test_a_continued_fit_keeps_its_worst_set(digits):
    config = {"hidden": [16], "loss": "worst_class", "rounds": 1, "round_epochs": 2}
    net = make_net(config, digits, patience=0)
    net.fit(digits.X_train[:300], digits.y_train[:300])
    picked, history = net.history[-1, "worst_classes"], net.history.to_list()
    assert picked and net.criterion_.worst == tuple(picked)
    net.initialize()  # a fresh criterion, as restoring a state (hpsearch.rundir.states.restore) makes
    net.history = History(history)
    assert net.criterion_.worst == ()
    net.partial_fit(digits.X_train[:300], digits.y_train[:300], epochs=1)  # epoch 3: no round ends
    assert len(net.history) == 3 and net.criterion_.worst == tuple(picked)

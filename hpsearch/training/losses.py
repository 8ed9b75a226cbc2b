"""The training losses a config may choose (``loss = "ce" | "worst_class"``).

``"worst_class"`` is the CAM seed's custom loss (``seeds/mnist-cam-custom-loss.txt``): training
runs in ``rounds`` rounds of ``round_epochs`` epochs; after each round the classes whose count of
misclassified samples is above the mean count (``worst_classes``) become the *worst set*, and the
next round's loss on a batch of ``N`` samples is

    L = CE(batch) + worst_weight * (1/N) * sum_i [y_i in worst set] * CE_i

with ``CE_i`` the cross-entropy of sample ``i`` and ``CE(batch)`` their mean: the seed's
``loss + (loss * mask).mean()`` with the mask applied to the per-sample losses (the seed's code
multiplies the batch mean, which would add ``CE * (share of worst samples)`` and weigh no class
more than another), vectorised (the seed loops over the batch in Python) and on whatever device
the logits are (the seed hard-codes ``"cuda"``). ``worst_weight = 1`` is the seed. With an empty
worst set (the first round; or when every class has the mean count) it is exactly
``CrossEntropyLoss``; in evaluation mode (skorch's ``valid_loss``) it is always plain
cross-entropy, so validation losses (and early stopping on them) compare across rounds.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from skorch.callbacks import Callback
from skorch.utils import to_tensor
from torch import nn

from ..errors import UsageError
from .heads import HEAD_LOSSES, HEADS, HeadLoss

__all__ = ["LOSSES", "WorstClassLoss", "WorstClassRounds", "worst_classes", "misclassified_counts",
           "loss_setup", "DEFAULT_ROUNDS", "DEFAULT_ROUND_EPOCHS", "DEFAULT_WORST_WEIGHT", "fit_epochs"]

DEFAULT_ROUNDS = 6          # the seed: 6 rounds of 15 epochs
DEFAULT_ROUND_EPOCHS = 15
DEFAULT_WORST_WEIGHT = 1.0
# the config keys that only a worst-class loss reads
WORST_CLASS_KEYS = ("rounds", "round_epochs", "worst_weight")


class WorstClassLoss(nn.CrossEntropyLoss):
    """Cross-entropy plus ``worst_weight`` times the batch mean of the worst classes' per-sample
    cross-entropy (zero for the other samples); see the module docstring. A ``CrossEntropyLoss``
    subclass, so skorch's ``predict_proba`` applies the softmax to the logits as for plain CE.

    Parameters
    ----------
    n_classes : int
        Number of classes (the targets are ``0 .. n_classes - 1``).
    worst_weight : float
        Weight of the extra term, >= 0 (0 is plain cross-entropy).
    """

    def __init__(self, n_classes: int, worst_weight: float = DEFAULT_WORST_WEIGHT):
        super().__init__()
        self.n_classes = int(n_classes)
        self.worst_weight = float(worst_weight)
        self.worst = ()  # the worst set, kept on the host so an empty one costs no device sync
        self.register_buffer("is_worst", torch.zeros(self.n_classes, dtype=torch.bool))

    def set_worst(self, classes: Iterable[int]) -> None:
        """Make ``classes`` the worst set (an empty one turns the extra term off)."""
        self.worst = tuple(sorted(int(c) for c in classes))
        mask = torch.zeros(self.n_classes, dtype=torch.bool)
        mask[list(self.worst)] = True
        self.is_worst.copy_(mask)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.worst or not self.training or self.worst_weight == 0:
            return F.cross_entropy(logits, target)
        per_sample = F.cross_entropy(logits, target, reduction="none")
        extra = (per_sample * self.is_worst[target]).mean()
        return per_sample.mean() + self.worst_weight * extra


def worst_classes(counts) -> list[int]:
    """The classes whose misclassification count is above the mean count (none when all equal)."""
    counts = np.asarray(counts, dtype=float)
    return [int(c) for c in np.flatnonzero(counts > counts.mean())]


def misclassified_counts(net, dataset, n_classes: int) -> np.ndarray:
    """Per true class, how many samples of ``dataset`` the (fitted) skorch ``net`` gets wrong. Torch's random
    state is put back: the loader's draw shifted every later batch order and dropout mask, so worst_weight = 0
    trained other weights than plain cross-entropy from the second round on."""
    counts = None
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # (the loader seeds from the CPU's generator)
        for batch in net.get_iterator(dataset, training=False):
            predicted = net.evaluation_step(batch, training=False).argmax(dim=1)
            target = to_tensor(batch[1], device=predicted.device).long()
            wrong = torch.bincount(target[predicted != target], minlength=n_classes)
            counts = wrong if counts is None else counts + wrong
    return np.zeros(n_classes, dtype=np.int64) if counts is None else counts.cpu().numpy()


class WorstClassRounds(Callback):
    """After every ``round_epochs`` epochs, picks the next round's worst set for the net's
    ``WorstClassLoss`` from the per-class misclassification counts on the validation split, or,
    with ``use_valid=False`` or when the net has none (``train_split=None``: inside the CV folds,
    which are the validation, and when retraining with ``patience=0``), on the training data.
    Each pick is recorded in the history as ``worst_classes`` (and its counts as ``worst_counts``).

    Rounds follow ``len(net.history)``, and a fit continued with ``partial_fit`` (or from a
    restored history, as a halving rung does) goes on with the last worst set its history records.
    """

    def __init__(self, round_epochs: int = DEFAULT_ROUND_EPOCHS, use_valid: bool = True):
        self.round_epochs = round_epochs
        self.use_valid = use_valid

    def on_train_begin(self, net, **kwargs):
        picks = [row["worst_classes"] for row in net.history if "worst_classes" in row]
        if picks and isinstance(net.criterion_, WorstClassLoss):
            net.criterion_.set_worst(picks[-1])

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        if len(net.history) % self.round_epochs:
            return
        criterion = net.criterion_
        if not isinstance(criterion, WorstClassLoss):
            raise TypeError(f"WorstClassRounds needs criterion=WorstClassLoss, got {type(criterion).__name__}")
        data = dataset_valid if self.use_valid and dataset_valid is not None else dataset_train
        counts = misclassified_counts(net, data, criterion.n_classes)
        worst = worst_classes(counts)
        criterion.set_worst(worst)
        net.history.record("worst_classes", worst)
        net.history.record("worst_counts", counts.tolist())


LOSSES = {"ce": nn.CrossEntropyLoss, "bce": HeadLoss, "worst_class": WorstClassLoss}


def fit_epochs(config: dict, budget: int) -> int:
    """The epochs a fit of ``config`` trains when given ``budget``: the config's own ``max_epochs``, else a
    worst-class config's ``rounds x round_epochs``, else the budget."""
    if "max_epochs" in config:
        return int(config["max_epochs"])
    if config.get("loss") == "worst_class":
        return int(config.get("rounds", DEFAULT_ROUNDS)) * int(config.get("round_epochs", DEFAULT_ROUND_EPOCHS))
    return int(budget)


def loss_setup(config: dict, n_classes: int, use_valid: bool,
               positions: int = 0) -> tuple[type, dict, list]:
    """What ``make_net`` needs for ``config["loss"]`` and ``config["head"]``: ``(criterion, net
    params, callbacks)`` (a worst-class fit's epochs are ``fit_epochs``'). The softmax head with
    ``"ce"`` on one label per image is plain ``CrossEntropyLoss``; any other head or loss, or labels
    per position, a ``heads.HeadLoss``."""
    loss, head = config.get("loss", "ce"), config.get("head", "softmax")
    if loss not in LOSSES:
        raise UsageError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if head not in HEADS:
        raise UsageError(f"head must be one of {', '.join(map(repr, HEADS))}, got {head!r}")
    if loss == "worst_class" and (positions or head != "softmax"):
        raise UsageError("loss 'worst_class' trains one softmax label per image; "
                         + ("these labels are one per position: use loss 'ce' or 'bce'" if positions
                            else f"head {head!r} needs loss 'ce' or 'bce'"))
    if loss == "ce" and head == "softmax" and not positions:
        return nn.CrossEntropyLoss, {}, []
    if loss in HEAD_LOSSES:
        return HeadLoss, {"criterion__head": head, "criterion__loss": loss}, []
    round_epochs = int(config.get("round_epochs", DEFAULT_ROUND_EPOCHS))
    params = {"criterion__n_classes": n_classes,
              "criterion__worst_weight": float(config.get("worst_weight", DEFAULT_WORST_WEIGHT))}
    callbacks = [("worst_class", WorstClassRounds(round_epochs, use_valid=use_valid))]
    return WorstClassLoss, params, callbacks

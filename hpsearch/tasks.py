"""What differs between one label per image and one label per position (Triple-MNIST's three
digits), in one place: the label shape, the fold splitter, the internal validation split, the
prediction and the scores.

A dataset's task follows from its labels (:func:`task_of`): ``y`` of shape ``(n,)`` is
:class:`SingleLabel`, ``(n, k)`` is :class:`Positions` of ``k`` (each position one of the same
classes, left to right). A net for ``Positions(k)`` returns logits ``(n, k, classes)`` and
``predict_proba`` ``(n, k, classes)``; its loss is a ``heads.HeadLoss``. Both tasks are plain
picklable objects, so a job process gets the task with its net.
"""

from __future__ import annotations

import contextlib
import re
import warnings

import numpy as np
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import KFold, StratifiedKFold
from skorch.dataset import ValidSplit

from .errors import DivergedError

VALID_SPLITS = 5  # early stopping watches a fifth of each training fold (skorch's default ValidSplit)

__all__ = ["SingleLabel", "Positions", "task_of", "task_for", "VALID_SPLITS", "StratifiedValidSplit",
           "position_names", "position_titles",
           "few_members_quiet"]


@contextlib.contextmanager
def few_members_quiet():
    """Without scikit-learn's warning that a class has fewer members than the splits, which early
    stopping's split would give on every fit: a search says it once, before the first (search.run)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class in y has only", category=UserWarning)
        yield


class StratifiedValidSplit(ValidSplit):
    """skorch's stratified ``ValidSplit`` (the 20% early stopping watches), quiet about small classes."""

    def __init__(self, cv=VALID_SPLITS, stratified=True, random_state=None):
        super().__init__(cv, stratified=stratified, random_state=random_state)

    def __call__(self, dataset, y=None, groups=None):
        with few_members_quiet():
            return super().__call__(dataset, y, groups)


def _finite(proba: np.ndarray) -> None:
    if not np.all(np.isfinite(proba)):
        raise DivergedError("the net predicts non-finite probabilities")


class SingleLabel:
    """One class per image: stratified folds, ``argmax`` predictions, sklearn's scorers."""

    positions = 0
    name = "single-label"
    batched_engine_reason = None  # the batched engine trains these

    def __eq__(self, other):
        return type(other) is type(self) and other.positions == self.positions

    def __hash__(self):
        return hash((type(self).__name__, self.positions))

    def __repr__(self):
        return f"{type(self).__name__}()"

    def strata(self, y: np.ndarray) -> np.ndarray | None:
        """What a stratified split keeps the proportions of (None: a plain shuffled split)."""
        return y

    def splitter(self, cv: int, seed: int):
        return StratifiedKFold(cv, shuffle=True, random_state=seed)

    def valid_split(self) -> ValidSplit:
        """The 20% early stopping watches, inside a training fold (skorch's default)."""
        return StratifiedValidSplit()

    def predict(self, proba: np.ndarray) -> np.ndarray:
        return proba.argmax(axis=-1)

    def net_params(self) -> dict:
        """skorch parameters the task sets on every net."""
        return {}

    def metric_names(self) -> list[str]:
        """The metrics ``score`` records beside the score and the accuracy."""
        return []

    def score(self, y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray,
              scoring: str) -> tuple[float, float, dict]:
        """``(score, accuracy, metrics)`` of probabilities on a held-out fold, as sklearn's scorers
        compute them; non-finite probabilities raise ``DivergedError``."""
        _finite(proba)
        accuracy = float(accuracy_score(y_true, classes[proba.argmax(axis=1)]))
        if scoring == "neg_log_loss":
            return float(-log_loss(y_true, proba, labels=classes)), accuracy, {}
        return accuracy, accuracy, {}

    def test_metrics(self, y_true: np.ndarray, proba: np.ndarray) -> dict:
        """``test_accuracy``, ``test_loss`` (mean cross-entropy) and the task's own metrics."""
        accuracy = float(np.mean(proba.argmax(1) == y_true))
        picked = proba[np.arange(len(proba)), y_true]
        return {"test_accuracy": accuracy, "test_loss": float(-np.mean(np.log(np.clip(picked, 1e-12, 1))))}


class Positions(SingleLabel):
    """One class per position (``y`` of shape ``(n, positions)``): plain shuffled folds (a config
    of three digits has no class to stratify by), an argmax per position, and scores averaged over
    positions; per-position accuracy (``digit_{k}_accuracy``) and exact-match accuracy (all
    positions right) are recorded beside them."""

    name = "multi-position"
    batched_engine_reason = "one label per position (the batched engine trains one label per image)"

    def __init__(self, positions: int = 3):
        self.positions = int(positions)

    def __repr__(self):
        return f"Positions({self.positions})"

    def strata(self, y):
        return None

    def splitter(self, cv: int, seed: int):
        return KFold(cv, shuffle=True, random_state=seed)

    def valid_split(self) -> ValidSplit:
        return ValidSplit(VALID_SPLITS, stratified=False)

    def net_params(self):
        # skorch's default ``valid_acc`` is sklearn's accuracy_score, which refuses multi-output labels
        return {"callbacks__valid_acc__scoring": position_accuracy}

    def metric_names(self) -> list[str]:
        return [f"digit_{k}_accuracy" for k in range(self.positions)] + ["exact_match"]

    def _metrics(self, y_true, proba) -> dict:
        right = proba.argmax(axis=-1) == y_true
        metrics = {f"digit_{k}_accuracy": float(right[:, k].mean()) for k in range(self.positions)}
        metrics["exact_match"] = float(right.all(axis=1).mean())
        return metrics

    def score(self, y_true, proba, classes, scoring):
        _finite(proba)
        metrics = self._metrics(y_true, proba)
        accuracy = float(np.mean([metrics[f"digit_{k}_accuracy"] for k in range(self.positions)]))
        if scoring == "neg_log_loss":
            losses = [log_loss(y_true[:, k], proba[:, k], labels=classes) for k in range(self.positions)]
            return float(-np.mean(losses)), accuracy, metrics
        return accuracy, accuracy, metrics

    def test_metrics(self, y_true, proba):
        metrics = self._metrics(y_true, proba)
        picked = np.take_along_axis(proba, y_true[..., None], axis=-1)[..., 0]
        return {"test_accuracy": float(np.mean(proba.argmax(-1) == y_true)),
                "test_loss": float(-np.mean(np.log(np.clip(picked, 1e-12, 1)))),
                **{f"test_{k}": v for k, v in metrics.items()}}


def position_accuracy(net, X, y) -> float:
    """The mean over positions of the accuracy of ``net`` on ``(X, y)`` (a skorch scoring)."""
    return float(np.mean(net.predict(X) == np.asarray(y)))


def task_for(positions: int):
    """The task of nets with ``positions`` outputs groups (0: one label per image)."""
    return Positions(positions) if positions else SingleLabel()


def task_of(y: np.ndarray):
    """The task of labels ``y``: ``(n,)`` one label per image, ``(n, k)`` one per position."""
    y = np.asarray(y)
    return Positions(y.shape[1]) if y.ndim == 2 else SingleLabel()


_WHERE = {1: ("",), 2: ("left", "right"), 3: ("left", "middle", "right")}


def position_names(positions: int) -> list[str]:
    """``["digit 1 (left)", "digit 2 (middle)", "digit 3 (right)"]`` for 3 positions (left, right
    for 2; ``"digit k"`` for more): printed lines and pictures count positions from 1, the files from 0."""
    where = _WHERE.get(positions)
    return [f"digit {k + 1}" + (f" ({where[k]})" if where and where[k] else "") for k in range(positions)]


def position_titles(columns) -> dict[str, str]:
    """Table titles of the per-position score columns among ``columns`` (``test_digit_0_accuracy`` ->
    ``"digit 1 (left)"``, ``..._exact_match`` -> ``"exact match"``), as printed lines name them."""
    columns = list(columns)
    digit = re.compile(r"(?:^|_)digit_(\d+)_accuracy$")
    found = {c: int(m[1]) for c in columns if (m := digit.search(c))}
    names = position_names(max(found.values(), default=-1) + 1)
    titles = {c: names[k] for c, k in found.items()}
    titles.update({c: "exact match" for c in columns if c.endswith("exact_match")})
    return titles

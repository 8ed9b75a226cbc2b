"""How a classifier does on the test set: confusion matrix, per-class report, misclassified
images, and learning curves from a skorch history.

Number functions (``class_report``, ``misclassified``, ``learning_curves``) return arrays or
DataFrames; the ``plot_*`` functions draw them and return a matplotlib ``Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import ConfusionMatrixDisplay, classification_report

from ..errors import UsageError, param
from .fonts import plain
from .images import show_image

__all__ = ["class_report", "misclassified", "learning_curves", "plot_confusion_matrix",
           "plot_class_report", "plot_misclassified", "plot_learning_curves"]


def _check_labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise UsageError(f"y_true and y_pred must be 1-d and of one length, got shapes {y_true.shape} "
                         f"and {y_pred.shape}")
    return y_true, y_pred


def class_report(y_true, y_pred, class_names: Sequence[str]) -> tuple[str, pd.DataFrame]:
    """Precision, recall, F1 and support per class, plus accuracy and the averages.

    Returns
    -------
    text : str
        scikit-learn's ``classification_report`` (4 digits).
    table : DataFrame
        One row per class (index = class name) then ``accuracy``, ``macro avg``, ``weighted avg``;
        columns ``precision``, ``recall``, ``f1-score``, ``support``.
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    labels = np.arange(len(class_names))
    names = [str(c) for c in class_names]
    kwargs = dict(labels=labels, target_names=names, zero_division=0)
    text = classification_report(y_true, y_pred, digits=4, **kwargs)
    report = classification_report(y_true, y_pred, output_dict=True, **kwargs)
    accuracy = float(np.mean(y_true == y_pred))
    report["accuracy"] = {"precision": accuracy, "recall": accuracy, "f1-score": accuracy,
                          "support": float(len(y_true))}
    table = pd.DataFrame(report).T[["precision", "recall", "f1-score", "support"]]
    table["support"] = table["support"].astype(int)
    table.index.name = "class"
    return text, table


def misclassified(y_true, y_pred, proba: np.ndarray | None = None) -> np.ndarray:
    """Indices of the wrong predictions; the most confident mistakes first when ``proba``
    (shape ``(n, classes)``) is given, else in data order."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    if proba is not None:
        confidence = np.asarray(proba)[wrong, y_pred[wrong]]
        wrong = wrong[np.argsort(-confidence, kind="stable")]
    return wrong


def learning_curves(history) -> pd.DataFrame:
    """Per-epoch columns of a skorch history (or a list of epoch dicts): ``epoch``,
    ``train_loss`` and, where recorded, ``valid_loss`` and ``valid_acc``."""
    rows = [dict(epoch) for epoch in history]
    if not rows:
        raise UsageError("the net has no training history (it was never fitted, or loaded without one)")
    columns = [c for c in ("epoch", "train_loss", "valid_loss", "valid_acc") if c in rows[0]]
    frame = pd.DataFrame([{c: r.get(c, np.nan) for c in columns} for r in rows])
    if "epoch" not in frame:
        frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame


# ----------------------------------------------------------------------------- plotting


def plot_confusion_matrix(y_true, y_pred, class_names: Sequence[str], *, normalize: str | None = None,
                          title: str = "") -> Figure:
    """Confusion-matrix heatmap (rows: true class, columns: predicted), counts in the cells.

    ``normalize`` is scikit-learn's: None (counts), ``"true"``, ``"pred"`` or ``"all"``.
    Two axes: the matrix and its colorbar.
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    n = len(class_names)
    fig = Figure(figsize=(2.0 + 0.55 * n, 1.5 + 0.5 * n), layout="constrained")
    ax = fig.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=np.arange(n), display_labels=[plain(c) for c in class_names],
        normalize=normalize, ax=ax, cmap="Blues", colorbar=True, xticks_rotation=45 if n > 5 else "horizontal",
        values_format=".2f" if normalize else "d")
    accuracy = float(np.mean(y_true == y_pred))
    ax.set_title(title or f"Confusion matrix on the test set (accuracy {accuracy:.2%})", fontsize=10)
    return fig


def plot_class_report(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Bars of precision, recall and F1 per class (from ``class_report``'s table); one axes."""
    classes = table.drop(index=[i for i in ("accuracy", "macro avg", "weighted avg") if i in table.index])
    fig = Figure(figsize=(max(5.0, 0.7 * len(classes) + 1.5), 3.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(classes))
    for k, metric in enumerate(("precision", "recall", "f1-score")):
        ax.bar(x + (k - 1) * 0.27, classes[metric], width=0.27, label=metric)
    ax.set_xticks(x, [plain(c) for c in classes.index], rotation=45 if len(classes) > 5 else 0, ha="right")
    low = float(classes[["precision", "recall", "f1-score"]].to_numpy().min())
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_ylabel("score on the test set")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(title or "Per-class precision, recall and F1", fontsize=10)
    return fig


def check_image_count(n) -> None:
    """``n`` (``--images``) must be a whole number >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"n ({param('images')}) must be a whole number >= 1, got {n!r}")


def message_figure(text: str) -> Figure:
    """A small figure saying ``text``: what a picture shows when there is nothing to draw."""
    fig = Figure(figsize=(4, 1), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def plot_misclassified(images: np.ndarray, y_true, y_pred, class_names: Sequence[str], *,
                       proba: np.ndarray | None = None, n: int = 25) -> Figure:
    """A grid of the first ``n`` misclassified images (the most confident first when ``proba``
    is given), each titled ``true -> predicted``. One panel per image shown (at most ``n``);
    a figure with a single message when nothing is misclassified."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    check_image_count(n)
    wrong = misclassified(y_true, y_pred, proba)
    shown = wrong[:n]
    if len(shown) == 0:
        return message_figure("no misclassified test image")
    ncols = min(len(shown), max(1, math.ceil(math.sqrt(len(shown)))))
    nrows = math.ceil(len(shown) / ncols)
    # at least 4 inches wide, and the title wraps to the width: never clipped, whatever the count
    fig = Figure(figsize=(max(4.0, 1.6 * ncols), 1.7 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, i in zip(axes, list(shown) + [None] * (len(axes) - len(shown)), strict=True):
        if i is None:
            fig.delaxes(ax)
            continue
        show_image(ax, images[i])  # grey, or RGB for colour data
        label = plain(f"{class_names[y_true[i]]} \u2192 {class_names[y_pred[i]]}")
        if proba is not None:
            label += f" ({np.asarray(proba)[i, y_pred[i]]:.2f})"
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    order = "most confident first" if proba is not None else "in test-set order"
    fig.suptitle(f"{len(wrong)} of {len(y_true)} test images misclassified; {len(shown)} shown ({order}), "
                 "true \u2192 predicted", fontsize=9, wrap=True)
    return fig


def plot_learning_curves(history, *, valid_label: str | None = None,
                         train_label: str = "train loss (mean over mini-batches, dropout on)") -> Figure:
    """Loss per epoch from a skorch history: the training loss, and the held-out loss when the
    history has one (``valid_loss``), labelled ``valid_label`` so the plot says what it was
    computed on. A second panel shows ``valid_acc`` when recorded.

    Returns
    -------
    Figure
        One axes (loss) or two (loss, held-out accuracy).
    """
    frame = learning_curves(history)
    has_valid = "valid_loss" in frame and frame["valid_loss"].notna().any()
    has_acc = "valid_acc" in frame and frame["valid_acc"].notna().any()
    fig = Figure(figsize=(10 if has_acc else 6, 3.8), layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False).ravel()
    ax = axes[0]
    ax.plot(frame["epoch"], frame["train_loss"], label=train_label)
    held_out = valid_label or "validation loss"
    if has_valid:
        ax.plot(frame["epoch"], frame["valid_loss"], label=held_out)
    ax.set_ylabel("cross-entropy loss")
    ax.set_yscale("log")
    # below the panels, never over the curves (constrained layout makes room for it)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8,
               ncols=2 if has_acc else 1, frameon=False)
    ax.set_title("Learning curves" if has_valid else
                 "Training loss (no held-out data was evaluated during training)", fontsize=10)
    for panel in axes:
        panel.set_xlabel("epoch")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no tick at 2.5
    if has_acc:
        ax2 = axes[1]
        ax2.plot(frame["epoch"], frame["valid_acc"], color="C1")
        ax2.set_ylabel("accuracy")
        ax2.set_title(f"Accuracy on the same held-out data ({held_out.split(' ')[0]})", fontsize=10)
    return fig

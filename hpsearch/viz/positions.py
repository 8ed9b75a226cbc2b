"""Pictures of a winner with one label per position (Triple-MNIST: three digits side by side, left
to right; ``hpsearch.tasks.Positions``): a confusion matrix and a class report per position, the
test images with a wrong position, and one heat map per position.

Labels are ``(n, positions)`` arrays of class indices, probabilities ``(n, positions, classes)``.
Number functions (``position_names``, ``position_accuracy``, ``position_report``, ``wrong_images``,
``position_targets``, ``position_maps``) return arrays or DataFrames; the ``plot_*`` functions draw
them and return a matplotlib ``Figure``. A heat map of position ``k`` explains the logit of the
digit predicted there, ``output[i, k, digit]`` (Captum's tuple target), so the three maps of one
image say where the net looked for each of its three digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import ConfusionMatrixDisplay

from ..errors import UsageError
from ..tasks import position_names
from .attribution import attribute
from .evaluation import check_image_count, class_report, message_figure
from .fonts import plain
from .heatmaps import (
    LABELS,
    SIGNED_METHODS,
    _colorbar,
    _overlay,
    heat_scale,
    heatmap,
    method_title,
    plot_heatmaps,
)
from .images import show_image
from .modules import as_batch, as_module, model_session, positions_of, to_numpy

__all__ = ["MAX_IMAGES", "EXPLAINED_IMAGES", "position_names", "label_text", "position_accuracy",
           "accuracy_line", "position_report", "wrong_images", "position_targets", "cycling_targets",
           "position_maps", "plot_position_confusion", "plot_position_report", "plot_position_misclassified",
           "plot_position_attribution", "plot_position_explanations"]

MAX_IMAGES = 12  # images of a per-position heat-map figure: three images (nine maps) per row, four rows
EXPLAINED_IMAGES = 3  # images of plot_position_explanations: one row per (image, position), nine rows
def _check(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise UsageError(f"y_true and y_pred must be (n, positions) of one shape, got {y_true.shape} "
                         f"and {y_pred.shape}")
    return y_true, y_pred


def label_text(labels, class_names: Sequence[str]) -> str:
    """One image's labels as text, left to right: ``"042"`` (joined with spaces when a class name
    is longer than one character)."""
    names = [str(class_names[int(c)]) for c in labels]
    return ("" if all(len(n) == 1 for n in names) else " ").join(names)


def position_accuracy(y_true, y_pred) -> dict:
    """``{"positions": [accuracy at each position], "mean": their mean, "exact_match": the share
    of images with every position right}``."""
    y_true, y_pred = _check(y_true, y_pred)
    right = y_true == y_pred
    return {"positions": [float(v) for v in right.mean(axis=0)], "mean": float(right.mean()),
            "exact_match": float(right.all(axis=1).mean())}


def accuracy_line(y_true, y_pred) -> str:
    """``"accuracy per position: digit 1 (left) 71.00%, ...; exact match (every position right) 35.00%"``."""
    acc = position_accuracy(y_true, y_pred)
    names = position_names(len(acc["positions"]))
    per = ", ".join(f"{name} {a:.2%}" for name, a in zip(names, acc["positions"], strict=True))
    return f"accuracy per position: {per}; exact match (every position right) {acc['exact_match']:.2%}"


def position_report(y_true, y_pred, class_names: Sequence[str]) -> tuple[str, pd.DataFrame]:
    """``class_report`` per position, and the accuracies.

    Returns
    -------
    text : str
        Each position's scikit-learn report under its name, then ``accuracy_line``.
    table : DataFrame
        Indexed by ``(position, class)``: for each position (0 = left) its rows of ``class_report``
        (the classes, ``accuracy``, ``macro avg``, ``weighted avg``), then one row
        ``("all", "exact match")`` whose scores are the exact-match accuracy; columns
        ``precision``, ``recall``, ``f1-score``, ``support``.
    """
    y_true, y_pred = _check(y_true, y_pred)
    names = position_names(y_true.shape[1])
    texts, tables = [], []
    for k, name in enumerate(names):
        text, table = class_report(y_true[:, k], y_pred[:, k], class_names)
        texts.append(f"{name}\n{text}")
        tables.append(table.assign(position=k).set_index("position", append=True).swaplevel())
    exact = position_accuracy(y_true, y_pred)["exact_match"]
    tables.append(pd.DataFrame({"precision": exact, "recall": exact, "f1-score": exact, "support": len(y_true)},
                               index=pd.MultiIndex.from_tuples([("all", "exact match")], names=["position", "class"])))
    return "\n".join(texts) + "\n" + accuracy_line(y_true, y_pred) + "\n", pd.concat(tables)


def wrong_images(y_true, y_pred, proba: np.ndarray | None = None) -> np.ndarray:
    """Indices of the images with at least one wrong position; the most confident first when
    ``proba`` ``(n, positions, classes)`` is given (the product over positions of the predicted
    digits' probabilities), else in data order."""
    y_true, y_pred = _check(y_true, y_pred)
    wrong = np.flatnonzero((y_true != y_pred).any(axis=1))
    if proba is not None:
        picked = np.take_along_axis(np.asarray(proba)[wrong], y_pred[wrong][..., None], axis=-1)[..., 0]
        wrong = wrong[np.argsort(-picked.prod(axis=1), kind="stable")]
    return wrong


# ----------------------------------------------------------------------------- heat maps

def _predicted(module, X: torch.Tensor) -> np.ndarray:
    with model_session(module), torch.no_grad():
        logits = module(X)
    if logits.ndim != 3:
        raise UsageError(f"expected a net with one label per position (logits (n, positions, classes)), got "
                         f"logits of shape {tuple(logits.shape)}")
    return logits.argmax(dim=-1).cpu().numpy()


def position_targets(model, X, target: int | None = None) -> np.ndarray:
    """``(n * positions, 2)`` targets ``(position, digit)``: row ``i * positions + k`` explains
    position ``k`` of image ``i``, the digit predicted there (or ``target`` at every position)."""
    module = as_module(model)
    predicted = _predicted(module, as_batch(module, X))
    n, positions = predicted.shape
    digits = predicted if target is None else np.full_like(predicted, int(target))
    return np.stack([np.tile(np.arange(positions), n), digits.reshape(-1)], axis=1)


def cycling_targets(model, X) -> np.ndarray:
    """``(n, 2)`` targets that cover every position at the cost of one map per image: image ``i``
    explains position ``i % positions``, the digit predicted there (the sanity check's)."""
    module = as_module(model)
    predicted = _predicted(module, as_batch(module, X))
    k = np.arange(len(predicted)) % predicted.shape[1]
    return np.stack([k, predicted[np.arange(len(predicted)), k]], axis=1)


def position_maps(model, X, method: str, target: int | None = None, **options) -> np.ndarray:
    """``method``'s map of each position of each image, ``(n, positions, H, W)`` (summed over
    channels): position ``k``'s map explains the digit predicted there (or ``target``)."""
    module = as_module(model)
    X = to_numpy(as_batch(module, X))
    positions = positions_of(module)
    t = position_targets(module, X, target)
    maps = heatmap(attribute(module, np.repeat(X, positions, axis=0), method, t, **options))
    return maps.reshape(len(X), positions, *maps.shape[1:])


def plot_position_attribution(model, X, method: str, target: int | None = None, *,
                              class_names: Sequence[str] | None = None, alpha: float = 0.5,
                              max_images: int = MAX_IMAGES, **options) -> Figure:
    """One heat map per position of each of the first ``max_images`` images, three images per row
    (one scale and colour bar for all), titled with the position and the digit it explains."""
    module = as_module(model)
    images = to_numpy(as_batch(module, X))
    total, images = len(images), images[:max_images]
    positions = positions_of(module)
    maps = position_maps(module, images, method, target, **options)
    predicted = _predicted(module, as_batch(module, images))
    name = (lambda c: plain(class_names[c])) if class_names is not None else str
    names = position_names(positions)
    titles = []
    for i in range(len(images)):
        for k in range(positions):
            c, p = int(predicted[i, k]) if target is None else int(target), int(predicted[i, k])
            titles.append(f"{names[k]}: {name(c)}" + (f" (pred {name(p)})" if c != p else ""))
    suptitle = method_title(module, method, options) + ", one map per position"
    if total > len(images):
        suptitle += f" (the first {len(images)} of {total} images)"
    return plot_heatmaps(np.repeat(images, positions, axis=0), maps.reshape(-1, *maps.shape[2:]), titles=titles,
                         alpha=alpha, ncols=positions * min(3, len(images)), suptitle=suptitle,
                         signed=True if method in SIGNED_METHODS else None, label=LABELS.get(method, method))


def plot_position_explanations(model, X, methods: Sequence[str] = ("gradcam", "saliency", "occlusion"),
                               target: int | None = None, *, class_names: Sequence[str] | None = None,
                               alpha: float = 0.5, options: dict | None = None,
                               max_images: int = EXPLAINED_IMAGES) -> Figure:
    """One row per (image, position) of the first ``max_images`` images: the input, then each
    method's map of that position's digit; each method's column on one scale, its colour bar below."""
    module = as_module(model)
    images = to_numpy(as_batch(module, X))[:max_images]
    positions = positions_of(module)
    names = position_names(positions)
    t = position_targets(module, images, target)
    rows = np.repeat(images, positions, axis=0)
    n = len(rows)
    fig = Figure(figsize=(1.5 * (len(methods) + 1), 1.4 * n + 0.8), layout="constrained")
    axes = fig.subplots(n, len(methods) + 1, squeeze=False)
    name = (lambda c: plain(class_names[c])) if class_names is not None else str
    for r in range(n):
        show_image(axes[r, 0], rows[r])
        axes[r, 0].set_title(f"{names[int(t[r, 0])]}: {name(int(t[r, 1]))}", fontsize=7)
    for j, m in enumerate(methods, start=1):
        maps = heatmap(attribute(module, rows, m, t, **(options or {}).get(m, {})))
        scale = heat_scale(maps, signed=True if m in SIGNED_METHODS else None)
        for r in range(n):
            _overlay(axes[r, j], rows[r], maps[r], alpha, scale)
        axes[0, j].set_title(m, fontsize=8)
        _colorbar(fig, axes[:, j].tolist(), scale, LABELS.get(m, m), location="bottom", shrink=0.9, fraction=0.2 / n)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"one row per position of the first {len(images)} images", fontsize=9)
    return fig


# ----------------------------------------------------------------------------- how it does

def plot_position_confusion(y_true, y_pred, class_names: Sequence[str]) -> Figure:
    """A row of confusion matrices, one per position (rows: true digit, columns: predicted),
    counts in the cells, each titled with its position and accuracy."""
    y_true, y_pred = _check(y_true, y_pred)
    positions, n = y_true.shape[1], len(class_names)
    side = 1.0 + 0.45 * n
    fig = Figure(figsize=(side * positions + 0.5, side + 0.8), layout="constrained")
    axes = fig.subplots(1, positions, squeeze=False).ravel()
    acc = position_accuracy(y_true, y_pred)
    for k, (ax, title) in enumerate(zip(axes, position_names(positions), strict=True)):
        ConfusionMatrixDisplay.from_predictions(
            y_true[:, k], y_pred[:, k], labels=np.arange(n), display_labels=[plain(c) for c in class_names], ax=ax,
            cmap="Blues", colorbar=False, values_format="d", xticks_rotation=45 if n > 5 else "horizontal",
            text_kw={"fontsize": 7})
        ax.set_title(f"{title} (accuracy {acc['positions'][k]:.2%})", fontsize=10)
        if k:
            ax.set_ylabel("")
    fig.suptitle(f"Confusion matrices on the test set, one per position; exact match (every position right) "
                 f"{acc['exact_match']:.2%}", fontsize=10)
    return fig


def plot_position_report(table: pd.DataFrame) -> Figure:
    """F1 per class, one bar per position (from ``position_report``'s table); one axes."""
    per = table.drop(index="all", level="position", errors="ignore")
    positions = list(dict.fromkeys(per.index.get_level_values("position")))
    classes = [c for c in dict.fromkeys(per.index.get_level_values("class"))
               if c not in ("accuracy", "macro avg", "weighted avg")]
    names = position_names(len(positions))
    fig = Figure(figsize=(max(6.0, 0.8 * len(classes) + 2.5), 3.6), layout="constrained")
    ax = fig.add_subplot()
    x, width = np.arange(len(classes)), 0.8 / len(positions)
    for j, k in enumerate(positions):
        f1 = per.loc[k].loc[classes, "f1-score"].to_numpy(dtype=float)
        accuracy = float(per.loc[(k, "accuracy"), "f1-score"])
        ax.bar(x + (j - (len(positions) - 1) / 2) * width, f1, width=width,
               label=f"{names[j]}, accuracy {accuracy:.2%}")
    ax.set_xticks(x, [plain(c) for c in classes])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("F1 on the test set")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    exact = float(table.loc[("all", "exact match"), "f1-score"]) if ("all", "exact match") in table.index else math.nan
    ax.set_title(f"Per-class F1 at each position; exact match (every position right) {exact:.2%}", fontsize=10)
    return fig


def plot_position_misclassified(images: np.ndarray, y_true, y_pred, class_names: Sequence[str], *,
                                proba: np.ndarray | None = None, n: int = 25) -> Figure:
    """A grid of the first ``n`` test images with a wrong position (``wrong_images``), each titled
    ``true -> predicted`` (``"042 \u2192 047"``), a red frame around each wrong position."""
    y_true, y_pred = _check(y_true, y_pred)
    check_image_count(n)
    wrong = wrong_images(y_true, y_pred, proba)
    shown = wrong[:n]
    if len(shown) == 0:
        return message_figure("no test image with a wrong position")
    positions = y_true.shape[1]
    ncols = max(1, math.ceil(math.sqrt(len(shown))))
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(max(4.0, 1.7 * ncols), 1.8 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, i in zip(axes, list(shown) + [None] * (len(axes) - len(shown)), strict=True):
        if i is None:
            fig.delaxes(ax)
            continue
        show_image(ax, images[i])
        h, w = np.shape(images[i])[1:]
        for k in np.flatnonzero(y_true[i] != y_pred[i]):
            ax.add_patch(Rectangle((k * w / positions - 0.5, -0.5), w / positions, h, fill=False, edgecolor="red",
                                   linewidth=1.5))
        label = plain(f"{label_text(y_true[i], class_names)} \u2192 {label_text(y_pred[i], class_names)}")
        if proba is not None:
            label += f" ({np.prod(np.asarray(proba)[i, np.arange(positions), y_pred[i]]):.2f})"
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    order = "most confident first" if proba is not None else "in test-set order"
    fig.suptitle(f"{len(wrong)} of {len(y_true)} test images with a wrong position (red frame); {len(shown)} shown "
                 f"({order}), true \u2192 predicted left to right", fontsize=9, wrap=True)
    return fig

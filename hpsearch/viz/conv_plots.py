"""Pictures of what ``hpsearch.viz.conv`` computes: image grids (maximizers, DeepDream, filters) and
feature maps, each a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import UsageError
from .images import show_image, show_weights

__all__ = ["feature_map_label", "plot_feature_maps", "plot_filters", "plot_images", "plot_deep_dream"]


def _show(ax, image: np.ndarray, scale: bool = False, signed: bool = False) -> None:
    if signed:
        show_weights(ax, image)
    else:
        show_image(ax, image, stretch=scale)
    ax.set_axis_off()


def plot_images(images, *, titles: Sequence[str] | None = None, ncols: int = 8, scale: bool = False,
                signed: bool = False, suptitle: str | None = None):
    """A grid of images (n, C, H, W): maximizers, DeepDream results, filters; grey for C = 1,
    RGB for C = 3 (the rules of ``hpsearch.viz.images``).

    ``scale`` min-max stretches each image (all its channels together); ``signed`` draws signed
    weights (``show_weights``: zero is white on RdBu_r, or mid grey in RGB); otherwise values are
    shown in [0, 1].

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    images = np.asarray(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(1.3 * ncols, 1.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            _show(ax, images[i], scale, signed)
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, wrap=True)
    return fig


def plot_filters(weights: np.ndarray, *, ncols: int = 8):
    """First-layer filters (K, C, kh, kw): grey ones min-max stretched (black = the filter's lowest
    weight, white its highest); RGB ones (C == 3) as ``(kh, kw, 3)`` patches ``0.5 + w / (2 max|w|)``
    on each filter's own scale, so mid grey is 0 and a patch's colour is the colour it responds to."""
    weights = np.asarray(weights)
    rgb = weights.ndim == 4 and weights.shape[1] == 3
    how = "grey = 0, colour = what raises it" if rgb else "each stretched black to white"
    return plot_images(weights, titles=[str(k) for k in range(len(weights))], ncols=ncols, scale=not rgb,
                       signed=rgb, suptitle=f"first conv layer filters ({how})")


def feature_map_label(index: int, acts: np.ndarray) -> str:
    """How a feature-map row is labelled: ``"conv 3 (64 ch, 14\u00d714)"`` for the third conv
    layer (``index`` counts from 1) whose output ``acts`` has shape (channels, h, w)."""
    c, h, w = np.shape(acts)
    return f"conv {index} ({c} ch, {h}\u00d7{w})"


def plot_feature_maps(maps: list[tuple[str, np.ndarray]], image=None, *, max_channels: int = 16):
    """One row per conv layer (``feature_maps``' order), labelled ``feature_map_label``, with its
    first ``max_channels`` maps (each stretched to its own range); the input image first when given.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if not maps:
        raise UsageError("nothing to plot: no feature maps were given")
    ncols = min(max_channels, max(len(a) for _, a in maps))
    rows = len(maps) + (image is not None)
    fig = Figure(figsize=(1.1 * ncols + 1.2, 1.2 * rows), layout="constrained")
    axes = fig.subplots(rows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    r0 = 0
    if image is not None:
        _show(axes[0, 0], np.asarray(image).reshape(-1, *np.asarray(image).shape[-2:]))
        axes[0, 0].set_title("input", fontsize=8)
        r0 = 1
    for k, (_, acts) in enumerate(maps, start=1):
        r = r0 + k - 1
        for c in range(min(ncols, len(acts))):
            axes[r, c].imshow(acts[c], cmap="viridis")
        axes[r, 0].set_title(feature_map_label(k, acts), fontsize=8, loc="left")
    return fig


def plot_deep_dream(images, dreamed, *, titles: Sequence[str] | None = None):
    """Originals (top row) and their DeepDream versions (bottom row)."""
    from matplotlib.figure import Figure

    images, dreamed = np.asarray(images), np.asarray(dreamed)
    n = len(images)
    fig = Figure(figsize=(1.4 * n, 3.0), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        _show(axes[0, i], images[i])
        _show(axes[1, i], dreamed[i])
        if titles is not None:
            axes[0, i].set_title(titles[i], fontsize=7)
    axes[1, 0].set_title("DeepDream", fontsize=8, loc="left")
    return fig

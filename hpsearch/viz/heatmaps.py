"""Pictures of the attribution methods in ``hpsearch.viz.attribution``: heat maps over the images.

One rule for every figure: each method gets one colour map and one scale, shared by all its
panels, and a colour bar that says what the colours mean. A signed method (occlusion, guided
backprop, or any map with a negative value) is drawn on a diverging map centred on 0 (red for the
class, blue against, white = 0) with a symmetric scale ``±max|value|``; a non-negative one
(saliency, Grad-CAM after its ReLU, CAM's positive part) on a sequential map from 0 to the largest
value. CAM is drawn as its positive part, as Grad-CAM keeps it, so on a GAP net the two pictures are
the same up to the factor ``h·w`` shown on their colour bars.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from ..errors import UsageError
from .attribution import attribute
from .fonts import plain
from .images import show_image
from .modules import as_batch, as_module, model_session, to_numpy
from .targets import resolve_targets

__all__ = ["SIGNED_CMAP", "POSITIVE_CMAP", "LABELS", "TITLES", "heatmap", "heat_scale", "plot_heatmaps",
           "plot_explanations", "plot_attribution"]

SIGNED_CMAP = "RdBu_r"  # as the receptive fields: red > 0, blue < 0, white = 0
POSITIVE_CMAP = "inferno"  # 0 = black, the largest value = pale yellow
SIGNED_METHODS = ("guided_backprop", "occlusion")  # signed by nature, even where a batch is not
PICTURE_OPTIONS = {"cam": {"relu": True}}  # CAM drawn as its positive part, like Grad-CAM
LABELS = {  # colour-bar labels (short: they sit under one column of plot_explanations)
    "cam": "\u03a3 w\u00b7A, > 0",
    "gradcam": "Grad-CAM",
    "hirescam": "HiResCAM",
    "saliency": "|gradient|",
    "guided_backprop": "guided gradient",
    "occlusion": "logit drop",
}
TITLES = {  # titles of the one-method figures
    "cam": "CAM (class activation map, \u03a3 w\u00b7A), positive part",
    "gradcam": "Grad-CAM at the last conv layer's activation (its ReLU keeps the positive part)",
    "hirescam": "HiResCAM at the last conv layer's activation: gradient x activation per cell (positive part)",
    "saliency": "saliency: |gradient of the class logit| per pixel",
    "guided_backprop": "guided backpropagation (red: raises the class logit, blue: lowers it)",
    "occlusion": "occlusion: drop of the class logit when a patch is zeroed (red: the patch helps the class)",
}
LAYERED = ("gradcam", "hirescam")  # the methods a --layer applies to


def method_title(module, method: str, options: dict) -> str:
    """A one-method figure's title; with a ``layer`` (``--layer``) the layer it explains, by name."""
    title = TITLES.get(method, method)
    layer = options.get("layer")
    if method in LAYERED and layer is not None:
        name = next((n for n, m in module.named_modules() if m is layer), type(layer).__name__)
        title = title.replace("the last conv layer's activation", f"layer {name}")
    return title


MAX_EXPLAINED = 8  # rows of plot_explanations: 8 images x 5 methods are 1080 x 1440 px at 120 dpi


def heatmap(attr: np.ndarray) -> np.ndarray:
    """One map per image: (n, H, W) stays; (n, C, H, W) is summed over channels."""
    attr = np.asarray(attr)
    return attr.sum(axis=1) if attr.ndim == 4 else attr


def heat_scale(maps: np.ndarray, *, signed: bool | None = None) -> tuple[str, float, float]:
    """``(cmap, vmin, vmax)`` shared by every panel of ``maps``.

    ``signed`` None means signed when any value is negative. Signed: ``SIGNED_CMAP`` on
    ``[-m, m]`` with ``m = max|value|``; else ``POSITIVE_CMAP`` on ``[0, max]``. An all-zero
    batch gets the range ``[0, 1]`` (or ``[-1, 1]``) so the colour bar still has a scale.
    """
    maps = np.asarray(maps, dtype=np.float64)
    lo, hi = (float(maps.min()), float(maps.max())) if maps.size else (0.0, 0.0)
    if signed is None:
        signed = lo < 0
    if signed:
        m = max(-lo, hi) or 1.0
        return SIGNED_CMAP, -m, m
    return POSITIVE_CMAP, 0.0, hi or 1.0


def _overlay(ax, image: np.ndarray, hmap: np.ndarray, alpha: float, scale) -> None:
    cmap, vmin, vmax = scale
    show_image(ax, image)
    h, w = image.shape[1:]
    ax.imshow(hmap, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
              interpolation="bilinear")


def _colorbar(fig, axes, scale, label: str, **kw):
    """One colour bar for ``axes``, opaque (not the overlays' alpha), labelled."""
    cmap, vmin, vmax = scale
    bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=axes, label=label, **kw)
    bar.locator = MaxNLocator(nbins=3)  # a few round ticks, readable under a narrow column
    bar.formatter = FormatStrFormatter("%.2g")
    bar.ax.tick_params(labelsize=7)
    bar.ax.xaxis.label.set_fontsize(8)
    bar.ax.yaxis.label.set_fontsize(8)
    return bar


def plot_heatmaps(images, maps, *, titles: Sequence[str] | None = None, alpha: float = 0.5,
                  ncols: int = 8, suptitle: str | None = None, signed: bool | None = None,
                  label: str = "attribution") -> Figure:
    """Each heat map over its image (grey or RGB), one colour map and scale for all, one colour bar.

    Parameters
    ----------
    images : array (n, C, H, W) in [0, 1]
    maps : array (n, H, W) or (n, C, H, W) (summed over channels)
    titles : sequence of str, optional
    signed : bool, optional
        Diverging map centred on 0 (True) or sequential from 0 (False); default: signed when a
        value is negative (see ``heat_scale``).
    label : str
        The colour bar's label.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel, then the colour bar's.
    """
    images, hmaps = np.asarray(images), heatmap(maps)
    scale = heat_scale(hmaps, signed=signed)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(1.6 * ncols + 1.0, 1.7 * nrows + (0.4 if suptitle else 0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            _overlay(ax, images[i], hmaps[i], alpha, scale)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    _colorbar(fig, axes.tolist(), scale, label, shrink=min(1.0, 0.4 + 0.2 * nrows))
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, wrap=True)
    return fig


def _explained_batch(model, X, target):
    """``(module, images, targets, predicted)`` for plotting: the batch as numpy, the classes to
    explain (default: predicted) and the predicted classes, as integer arrays."""
    module = as_module(model)
    with model_session(module):
        Xt = as_batch(module, X)
        t = resolve_targets(module, Xt, target).cpu().numpy()
        predicted = resolve_targets(module, Xt, None).cpu().numpy()
    return module, to_numpy(Xt), t, predicted


def _picture(module, images, method: str, t, options: dict | None) -> tuple[np.ndarray, bool | None]:
    """One method's maps as drawn (CAM's positive part), and whether they are signed by nature."""
    kw = {**PICTURE_OPTIONS.get(method, {}), **(options or {})}
    maps = heatmap(attribute(module, images, method, t, **kw))
    return maps, (True if method in SIGNED_METHODS else None)


def plot_explanations(model, X, methods: Sequence[str] = ("gradcam", "saliency", "occlusion"),
                      target=None, *, class_names: Sequence[str] | None = None, alpha: float = 0.5,
                      options: dict | None = None, max_images: int = MAX_EXPLAINED) -> Figure:
    """One row per image: the input, then each method's map over it, for the same targets.

    Each method's column has one colour map and scale for all its rows, with a colour bar below.

    Parameters
    ----------
    methods : sequence of str
        Names from ``METHODS``.
    options : dict, optional
        ``{method: {option: value}}`` passed on, e.g. ``{"occlusion": {"window": 4}}``.
    max_images : int
        Only the first ``max_images`` images are shown (the title says so), so the figure stays a
        sane size; the per-method pictures (``plot_attribution``) show any number.

    Returns
    -------
    matplotlib.figure.Figure
        ``rows x (len(methods) + 1)`` axes, then one colour bar per method.
    """
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise UsageError(f"max_images must be a whole number >= 1, got {max_images!r}")
    module, images, t, predicted = _explained_batch(model, X, target)
    total = len(images)
    images, t, predicted = images[:max_images], t[:max_images], predicted[:max_images]
    n = len(images)
    fig = Figure(figsize=(1.5 * (len(methods) + 1), 1.4 * n + 0.8), layout="constrained")
    axes = fig.subplots(n, len(methods) + 1, squeeze=False)
    name = (lambda c: plain(class_names[c])) if class_names is not None else str
    for i in range(n):
        show_image(axes[i, 0], images[i])
        p, c = int(predicted[i]), int(t[i])
        axes[i, 0].set_title(f"pred {name(p)}" + (f"\nexplains {name(c)}" if c != p else ""), fontsize=8)
    for j, m in enumerate(methods, start=1):
        maps, signed = _picture(module, images, m, t, (options or {}).get(m))
        scale = heat_scale(maps, signed=signed)
        for i in range(n):
            _overlay(axes[i, j], images[i], maps[i], alpha, scale)
        axes[0, j].set_title(m, fontsize=8)
        _colorbar(fig, axes[:, j].tolist(), scale, LABELS.get(m, m), location="bottom", shrink=0.9,
                  fraction=0.2 / n)  # of the column's height: a bar's room, not 15% of 8 rows
    for ax in axes.ravel():
        ax.set_axis_off()
    if total > n:
        fig.suptitle(f"the first {n} of {total} images", fontsize=9)
    return fig


def plot_attribution(model, X, method: str, target=None, *, class_names: Sequence[str] | None = None,
                     alpha: float = 0.5, **options) -> Figure:
    """Compute ``method`` for the images ``X`` and draw each map over its image, titled with the
    prediction (``pred 3``), and the class it explains when that differs (``explains 5, pred 3``),
    as the explanations figure says them; on one scale with a colour bar.

    Returns
    -------
    matplotlib.figure.Figure
    """
    module, images, t, predicted = _explained_batch(model, X, target)
    maps, signed = _picture(module, images, method, t, options)
    name = (lambda c: plain(class_names[c])) if class_names is not None else str
    titles = [f"pred {name(p)}" if c == p else f"explains {name(c)}, pred {name(p)}"
              for c, p in zip(t, predicted, strict=True)]
    return plot_heatmaps(images, maps, titles=titles, alpha=alpha, suptitle=method_title(module, method, options),
                         signed=signed, label=LABELS.get(method, method))

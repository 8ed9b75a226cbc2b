"""How one ``(C, H, W)`` array becomes what ``imshow`` draws: the rule every picture follows.

Two kinds of arrays are drawn, and each has one rule per channel count:

- **images** (pixel values, inputs, maximizers, DeepDream results; ``picture``/``show_image``):
  C = 1 is drawn grey on the fixed range [0, 1] (black 0, white 1); C = 3 as RGB ``(H, W, 3)``,
  clipped to [0, 1]. With ``stretch`` the image is first min-max scaled to [0, 1], all channels
  together (one minimum and one maximum per image, so its colours keep their balance).
- **signed weights** (receptive fields, conv filters; ``weight_picture``/``show_weights``): each
  panel on its own symmetric scale ``m = max|w|`` over all its channels. C = 1 on the diverging
  map ``RdBu_r`` from ``-m`` (blue) to ``+m`` (red), white = 0; C = 3 as the RGB image
  ``0.5 + w / (2 m)`` per channel: mid grey = 0 everywhere, and a pixel's colour is the colour
  that raises the unit there (its complement lowers it); the channel with the largest ``|w|``
  reaches 0 or 1.

Any other channel count (2, 4, ...) is drawn as its mean over channels, grey (images) or on
``RdBu_r`` (weights), so nothing fails on an unusual net; hpsearch's datasets have 1 or 3.
"""

from __future__ import annotations

import numpy as np

__all__ = ["picture", "show_image", "weight_picture", "show_weights", "is_rgb", "WEIGHT_CMAP",
           "WEIGHT_LEGEND"]

WEIGHT_CMAP = "RdBu_r"  # red > 0, blue < 0, white = 0
WEIGHT_LEGEND = {  # what the colours of a weight picture mean, for titles
    "grey": "red = positive weight, blue = negative",
    "rgb": "grey = 0; each channel 0.5 + w/(2 max|w|): the colour shown raises the unit",
}


def _chw(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image[None]
    if image.ndim != 3:
        raise ValueError(f"one image must be (C, H, W) or (H, W), got shape {image.shape}")
    return image


def is_rgb(image) -> bool:
    """Whether an image ``(C, H, W)`` is drawn in colour (C == 3)."""
    return np.ndim(image) == 3 and np.shape(image)[0] == 3


def picture(image, *, stretch: bool = False) -> np.ndarray:
    """An image ``(C, H, W)`` (or ``(H, W)``) as ``imshow`` takes it: ``(H, W)`` in [0, 1] for grey
    (and any C but 3: the channels' mean), ``(H, W, 3)`` in [0, 1] for RGB; ``stretch`` min-max
    scales it first, all channels together."""
    image = _chw(image)
    if stretch:
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / (hi - lo or 1.0)
    if image.shape[0] == 3:
        return np.clip(image.transpose(1, 2, 0), 0.0, 1.0)
    return image[0] if image.shape[0] == 1 else image.mean(axis=0)


def show_image(ax, image, *, stretch: bool = False, **kw):
    """Draw an image with ``picture``'s rule on ``ax``; returns the ``AxesImage``."""
    shown = picture(image, stretch=stretch)
    if shown.ndim == 3:
        return ax.imshow(shown, **kw)
    return ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, **kw)


def weight_picture(weights) -> tuple[np.ndarray, float]:
    """Signed weights ``(C, H, W)`` as drawn, and their scale ``m = max|w|`` (1 when all are 0).

    RGB (C == 3): ``(H, W, 3)`` equal to ``0.5 + w / (2 m)``, in [0, 1] with 0.5 for a zero weight.
    Otherwise: ``(H, W)``, the weights themselves (the channels' mean when C != 1), to draw on
    ``WEIGHT_CMAP`` over ``[-m, m]``.
    """
    weights = _chw(weights)
    limit = float(np.abs(weights).max()) or 1.0
    if weights.shape[0] == 3:
        return np.clip(0.5 + weights.transpose(1, 2, 0) / (2.0 * limit), 0.0, 1.0).astype(np.float32), limit
    flat = weights[0] if weights.shape[0] == 1 else weights.mean(axis=0)
    return flat, float(np.abs(flat).max()) or 1.0


def show_weights(ax, weights, **kw):
    """Draw signed weights with ``weight_picture``'s rule on ``ax``; returns the ``AxesImage``."""
    shown, limit = weight_picture(weights)
    if shown.ndim == 3:
        return ax.imshow(shown, **kw)
    return ax.imshow(shown, cmap=WEIGHT_CMAP, vmin=-limit, vmax=limit, **kw)

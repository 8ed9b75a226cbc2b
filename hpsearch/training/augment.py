"""Data augmentation of training batches: ``augment = "none" | "flip" | "flip-crop" |
"flip-crop-noise"`` in a search space (the CIFAR-10 tutorial's flips and shifts, plus noise).

Each step works on a whole batch ``X`` of shape ``(n, channels, height, width)`` (pixel values in
[0, 1]) with torch operations on ``X``'s device, drawing from that device's default torch generator,
so a net seeded by its ``random_state`` augments reproducibly and a continuation state (which keeps
torch's random state, ``hpsearch.rundir.states``) goes on exactly. The steps, in this order:

- ``flip``: each image mirrored left-right (``torch.flip`` on the width) with probability 0.5,
  independently;
- ``crop``: the batch padded with zeros by ``max(1, H // 8)`` rows above and below and
  ``max(1, W // 8)`` columns left and right (CIFAR-10's 32 -> 4, MNIST's 28 -> 3, digits' 8 -> 1),
  then from each padded image a random ``H x W`` window, its corner uniform over all
  ``(2 * pad + 1)`` positions per axis: the image shifted by up to ``pad`` pixels each way, the
  uncovered border zero;
- ``noise``: Gaussian noise of standard deviation 0.05 added to every pixel, then clipped to [0, 1].

``SeededNet(augment=...)`` (``make_net`` passes the config's ``augment``) applies
``augment_batch`` to the images of each *training* batch only; the validation split of early
stopping, a held-out fold, ``predict``/``predict_proba`` and the test set see the images as they
are. The batched engine does not augment: it hands such configs to the skorch engine.
"""

from __future__ import annotations

import torch

from ..errors import UsageError, did_you_mean

__all__ = ["AUGMENTS", "augment_batch", "check_augment_name", "flip", "random_crop", "gaussian_noise",
           "crop_padding", "NOISE_SIGMA", "FLIP_P"]

AUGMENTS = {
    "none": "the images as they are",
    "flip": "each image mirrored left-right with probability 0.5",
    "flip-crop": "flip, then a random shift of up to max(1, H // 8) pixels (zero padding)",
    "flip-crop-noise": "flip-crop, then Gaussian noise (sigma 0.05) clipped to [0, 1]",
}
FLIP_P = 0.5
NOISE_SIGMA = 0.05


def check_augment_name(name, where: str = "augment") -> str:
    """``name`` when it is one of ``AUGMENTS``, else a UsageError naming ``where`` and the choices."""
    if not isinstance(name, str) or name not in AUGMENTS:
        hint = did_you_mean(name, list(AUGMENTS)) if isinstance(name, str) else ""
        raise UsageError(f"{where} must be one of {', '.join(map(repr, AUGMENTS))}, got {name!r}{hint}")
    return name


def _check_images(X) -> torch.Tensor:
    if not isinstance(X, torch.Tensor) or X.ndim != 4 or not X.is_floating_point():
        shape = tuple(X.shape) if hasattr(X, "shape") else type(X).__name__
        raise UsageError("augment needs a batch of float images (n, channels, height, width), got "
                         f"{shape}; give the net images (a Dataset's X_train), not flat vectors, or augment = 'none'")
    return X


def flip(X: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
    """``X`` with the images ``which`` (a bool tensor of shape ``(n,)``) mirrored left-right;
    by default each image with probability 0.5, drawn on ``X``'s device."""
    if which is None:
        which = torch.rand(len(X), device=X.device) < FLIP_P
    return torch.where(which.view(-1, 1, 1, 1), X.flip(-1), X)


def crop_padding(height: int, width: int) -> tuple[int, int]:
    """The zero padding of ``random_crop``: ``(max(1, height // 8), max(1, width // 8))``."""
    return max(1, height // 8), max(1, width // 8)


def random_crop(X: torch.Tensor) -> torch.Tensor:
    """Each image of ``X`` shifted by a random ``(dy, dx)``, each uniform in ``[-pad, pad]``
    (``crop_padding``), the uncovered border zero: a random ``H x W`` window of the zero-padded image."""
    n, channels, height, width = X.shape
    pad_h, pad_w = crop_padding(height, width)
    padded = torch.nn.functional.pad(X, (pad_w, pad_w, pad_h, pad_h))
    top = torch.randint(0, 2 * pad_h + 1, (n,), device=X.device)
    left = torch.randint(0, 2 * pad_w + 1, (n,), device=X.device)
    rows = (top[:, None] + torch.arange(height, device=X.device)).view(n, 1, height, 1)
    cols = (left[:, None] + torch.arange(width, device=X.device)).view(n, 1, 1, width)
    images = torch.arange(n, device=X.device).view(n, 1, 1, 1)
    planes = torch.arange(channels, device=X.device).view(1, channels, 1, 1)
    return padded[images, planes, rows, cols]


def gaussian_noise(X: torch.Tensor, sigma: float = NOISE_SIGMA) -> torch.Tensor:
    """``X`` plus Gaussian noise of standard deviation ``sigma``, clipped to [0, 1]."""
    return (X + sigma * torch.randn_like(X)).clamp_(0.0, 1.0)


_STEPS = {"flip": flip, "crop": random_crop, "noise": gaussian_noise}


def augment_batch(X: torch.Tensor, kind: str) -> torch.Tensor:
    """The batch ``X`` (``(n, channels, height, width)``, float) augmented as ``kind`` (one of
    ``AUGMENTS``) says: ``X`` itself for ``"none"``, else a new tensor on ``X``'s device."""
    check_augment_name(kind)
    if kind == "none":
        return X
    _check_images(X)
    for step in kind.split("-"):
        X = _STEPS[step](X)
    return X

"""Does an input look like the training images? A flag beside every prediction, because a softmax
is confident about anything: random noise comes back as "4: 100%".

The measure: the distance of the preprocessed image (what the net reads, ``(C, H, W)`` in [0, 1]) to
its nearest neighbour among ``REFERENCE`` training images kept with the winner, as a root mean
square over its pixels. It is calibrated on ``CALIBRATION`` other training images: the threshold is
their distances' ``QUANTILE`` (99%), so about 1% of images like the training ones are flagged. The
score reported is the distance over that threshold: above 1, "this does not look like the training
images". It needs no access to the net's layers, so it works for every model kind and your own
module; it judges pixels, so it flags noise, gradients and images of another dataset, and says
nothing about whether the class is right.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["familiarity_reference", "distances", "Familiarity", "QUANTILE", "unlike"]

REFERENCE = 1000
CALIBRATION = 1000
QUANTILE = 0.99


def distances(X: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each image of ``X`` (n, ...) to its nearest image of ``reference`` (m, ...): RMS over pixels."""
    q = np.asarray(X, np.float64).reshape(len(X), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    squared = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * q @ r.T
    return np.sqrt(np.maximum(squared.min(axis=1), 0.0) / q.shape[1])


def familiarity_reference(X_train: np.ndarray, seed: int = 0) -> dict:
    """What the winner bundle keeps: ``REFERENCE`` training images (8 bits) and the threshold
    calibrated on ``CALIBRATION`` others (half and half of a small training set)."""
    rows = np.random.default_rng(seed).permutation(len(X_train))
    n_ref = min(REFERENCE, len(rows) // 2)
    reference = np.round(np.asarray(X_train)[rows[:n_ref]] * 255).astype(np.uint8)
    calibration = np.asarray(X_train)[rows[n_ref:n_ref + CALIBRATION]]
    threshold = float(np.quantile(distances(calibration, reference / 255.0), QUANTILE))
    return {"reference": torch.from_numpy(reference), "threshold": max(threshold, 1e-6), "quantile": QUANTILE,
            "calibrated_on": int(len(calibration))}


class Familiarity:
    """A winner's reference, ready to score inputs (``score(x)``: distance over threshold)."""

    def __init__(self, entry: dict):
        self.reference = np.asarray(entry["reference"].numpy() if hasattr(entry["reference"], "numpy")
                                    else entry["reference"], np.float64) / 255.0
        self.threshold = float(entry["threshold"])
        self.quantile = float(entry.get("quantile", QUANTILE))

    @classmethod
    def of(cls, info: dict) -> Familiarity | None:
        entry = info.get("familiarity")
        return cls(entry) if isinstance(entry, dict) and "reference" in entry else None

    def score(self, X: np.ndarray) -> np.ndarray:
        """Distance to the nearest reference image over the calibrated threshold, per image; > 1: unlike."""
        X = np.asarray(X)
        return distances(X.reshape(-1, *self.reference.shape[1:]), self.reference) / self.threshold


def unlike(familiarity: Familiarity | None, x: np.ndarray) -> dict:
    """``ood_score`` (one preprocessed image's distance over the threshold) and ``unlike_training``
    (above 1), or None for both without a reference (a winner or an export from before it was kept)."""
    if familiarity is None:
        return {"ood_score": None, "unlike_training": None}
    score = float(familiarity.score(x[None])[0])
    return {"ood_score": round(score, 4), "unlike_training": score > 1.0}

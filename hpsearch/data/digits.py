"""scikit-learn's bundled 8x8 digits (1,797 images): the offline default for demos and tests."""

from __future__ import annotations

import numpy as np

from .dataset import DIGIT_CLASSES, Dataset
from .preprocess import scale

__all__ = ["load_digits_dataset"]


def load_digits_dataset(data_dir=None) -> Dataset:
    """The digits with a fixed stratified 80/20 split (``data_dir`` is not used: they ship with
    scikit-learn)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    X = scale(bunch.images, 16.0)[:, None, :, :]  # the conventions of hpsearch.data.preprocess
    y = bunch.target.astype(np.int64)
    # A fixed stratified 80/20 split: the test images never take part in the search.
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    return Dataset("digits", X_train, y_train, X_test, y_test, DIGIT_CLASSES)

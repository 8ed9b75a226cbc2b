"""Datasets: a small frozen container and the loaders that fill it.

Every loader returns images as float32 arrays of shape ``(n, channels, height, width)`` scaled to
[0, 1] and labels as int64, so MLPs (which flatten) and CNNs read the same arrays. Every dataset
is checked when it is made (``Dataset.validate``): labels in range, at least 2 training classes,
one image size, matching counts; an idx dataset's messages name the file at fault.

``dataset`` holds the container and its checks, ``idx`` the file format, ``mnist`` where the idx
files of MNIST and Fashion-MNIST are found or downloaded.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import UsageError
from ..preprocess import scale
from .dataset import DIGIT_CLASSES, SPLITS, Dataset, check_splits
from .idx import IdxError, read_idx, write_idx
from .mnist import DOWNLOADS, IDX_FILES, SYSTEM_DIRS, default_cache_dir, download_idx, load_idx_dataset

__all__ = ["Dataset", "load_dataset", "read_idx", "write_idx", "DATASETS", "IdxError"]
__all__ += ["DIGIT_CLASSES", "FASHION_CLASSES", "IDX_FILES", "DOWNLOADS", "SYSTEM_DIRS", "SPLITS",
            "check_splits", "default_cache_dir", "download_idx"]

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

DATASETS = ("digits", "mnist", "fashion-mnist")


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    X = scale(bunch.images, 16.0)[:, None, :, :]  # the conventions of hpsearch.preprocess
    y = bunch.target.astype(np.int64)
    # A fixed stratified 80/20 split: the test images never take part in the search.
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=0
    )
    return Dataset("digits", X_train, y_train, X_test, y_test, DIGIT_CLASSES)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion-mnist"}
        ``digits`` is scikit-learn's bundled 8x8 set (1,797 images, a fixed stratified 80/20
        split). ``mnist`` and ``fashion-mnist`` are read from the four standard idx files.
    data_dir : path, optional
        A folder holding the idx files (raw or gzipped). Without it they are looked for in the
        cache (``$HPSEARCH_DATA`` or ``~/.cache/hpsearch/<name>``), then in Debian's
        ``/usr/share/datasets/fashion-mnist``, then downloaded into the cache with checksums.

    Raises
    ------
    UsageError
        For an unknown name; ``IdxError`` (a ``UsageError``) when an idx file is missing or
        damaged or the four files do not fit together, in one line naming the file.
    """
    key = name.lower().replace("_", "-")
    if key == "digits":
        return _load_digits()
    if key == "mnist":
        return load_idx_dataset("mnist", data_dir, DIGIT_CLASSES)
    if key in ("fashion-mnist", "fashionmnist"):
        return load_idx_dataset("fashion-mnist", data_dir, FASHION_CLASSES)
    raise UsageError(f"--dataset must be one of {', '.join(DATASETS)}, got {name!r}")

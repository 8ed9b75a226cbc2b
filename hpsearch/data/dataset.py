"""The dataset container and the checks that every dataset passes before anything trains on it."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError, param

DIGIT_CLASSES = tuple(str(i) for i in range(10))

SPLITS = ("train_images", "train_labels", "test_images", "test_labels")


def arrays_digest(*arrays) -> str:
    """A sha256 of arrays' values as they are (pixels and labels, not files): any changed value changes it."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def square_image_shape(n_features: int) -> tuple[int, int, int] | None:
    """The image shape ``n_features`` pixels make when nothing else says: ``(1, s, s)`` when it is
    a square (784 -> 1x28x28), ``(3, s, s)`` when a third of it is (3,072 -> 3x32x32 RGB), else None.

    Never ambiguous: no whole number is both a square and three times a square (sqrt 3 is irrational).
    """
    for channels in (1, 3):
        side = math.isqrt(int(n_features) // channels)
        if side > 0 and channels * side * side == n_features:
            return channels, side, side
    return None


def _size(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


def check_splits(arrays: Mapping[str, np.ndarray], n_classes: int, names: Mapping[str, str] | None = None,
                 where: str = "dataset", error: type[UsageError] = UsageError) -> None:
    """Raise ``error`` unless the four arrays (keys :data:`SPLITS`) fit together.

    Checked: as many labels as images in each split; integer labels in ``[0, n_classes)`` in each
    split; at least 2 classes in the training set and no test class the training set lacks; one
    image shape for train and test. ``names`` says what each array is called in the message (the
    idx loader passes the file names, ``where`` their folder); messages are one line each.
    """
    names = names or {key: key for key in SPLITS}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        img, lab = names[f"{split}_images"], names[f"{split}_labels"]
        if labels.ndim not in (1, 2) or (labels.ndim == 2 and labels.shape[1] < 2):
            raise error(f"{where}: {lab} has shape {labels.shape}, expected one label per image (n,) "
                        "or one per position (n, positions >= 2); flatten a column of labels with y.ravel()")
        if len(images) != len(labels):
            raise error(f"{where}: {img} holds {len(images)} images but {lab} holds {len(labels)} labels; "
                        "the counts must match: re-download or re-save them, or do the files mix two datasets?")
        if not (np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_):
            raise error(f"{where}: {lab} holds {labels.dtype} labels, expected integers 0..{n_classes - 1}")
        outside = (labels < 0) | (labels >= n_classes)
        if outside.any():
            count = int(outside.sum())
            raise error(f"{where}: {lab} holds {count} label{'s' * (count > 1)} outside 0..{n_classes - 1} "
                        f"(e.g. {int(labels[outside][0])}) for {n_classes} classes; is it another dataset's file?")
    train_img, test_img = names["train_images"], names["test_images"]
    if arrays["train_labels"].shape[1:] != arrays["test_labels"].shape[1:]:
        raise error(f"{where}: {names['train_labels']} has shape {arrays['train_labels'].shape} but "
                    f"{names['test_labels']} {arrays['test_labels'].shape}; train and test need as many "
                    "labels per image: do the files mix two datasets?")
    train_lab, test_lab = names["train_labels"], names["test_labels"]
    train, test = arrays["train_images"], arrays["test_images"]
    if train.shape[1:] != test.shape[1:]:
        raise error(f"{where}: {test_img} holds {_size(test.shape[1:])} images but {train_img} holds "
                    f"{_size(train.shape[1:])}; train and test need one size: do the files mix two datasets?")
    if 0 in train.shape[1:]:  # it loads and trains, every config at chance, and no winner can be written
        raise error(f"{where}: {train_img} holds images of {_size(train.shape[1:])}, with no pixels; "
                    "is it the right file, or damaged?")
    classes = np.unique(arrays["train_labels"])
    if len(classes) < 2:
        found = f"only class {int(classes[0])}" if len(classes) else "no labels"
        raise error(f"{where}: {train_lab} holds {found}; a classifier needs at least 2 classes to learn "
                    "and be scored: is it the right file, or a slice of one class?")
    unseen = np.setdiff1d(np.unique(arrays["test_labels"]), classes)
    if len(unseen):
        listed = ", ".join(str(int(c)) for c in unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        raise error(f"{where}: {test_lab} holds class {listed}, which {train_lab} never has; "
                    "do the files mix two datasets?")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images with their labels and what describes them.

    The constructor checks that the splits fit together (see :meth:`validate`) and raises a
    ``UsageError`` saying what does not.

    Attributes
    ----------
    name : str
        The dataset's name (``"digits"``, ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``).
    X_train, X_test : ndarray of float32, shape (n, channels, height, width)
        Pixel values in [0, 1]; 1 channel for grey images, 3 (R, G, B) for colour ones.
    y_train, y_test : ndarray of int64, shape (n,) or (n, positions)
        Class indices in ``[0, n_classes)``: one per image, or one per position (Triple-MNIST's
        three digits, left to right); ``task`` says which (``hpsearch.tasks``).
    class_names : tuple of str
    source : dict
        Where the images came from and how they were read, for the run folder (an image folder's
        root, image size, colour and held-out test files); empty for the bundled datasets.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = field(default=DIGIT_CLASSES)
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    def validate(self) -> Dataset:
        """Raise a ``UsageError`` unless images are ``(n, channels, height, width)`` of one shape in
        both splits, each split has one integer label per image (or per position) in ``[0, n_classes)``, the training
        set holds at least 2 classes and the test set none that training lacks. Returns ``self``."""
        for attr in ("X_train", "X_test"):
            shape = np.shape(getattr(self, attr))
            if len(shape) != 4:
                raise UsageError(f"dataset {self.name!r}: {attr} has shape {shape}, expected (n, channels, "
                                 "height, width); add a channel axis with X[:, None]")
        arrays = dict(zip(SPLITS, (self.X_train, self.y_train, self.X_test, self.y_test), strict=True))
        names = dict(zip(SPLITS, ("X_train", "y_train", "X_test", "y_test"), strict=True))
        check_splits({k: np.asarray(v) for k, v in arrays.items()}, self.n_classes, names,
                     where=f"dataset {self.name!r} ({self.n_classes} class names)")
        return self

    @property
    def task(self):
        """``SingleLabel()`` for labels ``(n,)``, ``Positions(k)`` for ``(n, k)`` (``hpsearch.tasks``)."""
        from ..tasks import task_of

        return task_of(self.y_train)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(channels, height, width)`` of one image."""
        return tuple(self.X_train.shape[1:])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.image_shape))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train`` training and ``n_test`` test images (for quick runs and tests)."""
        return Dataset(
            self.name, self.X_train[:n_train], self.y_train[:n_train],
            self.X_test[:n_test], self.y_test[:n_test], self.class_names, self.source,
        )

    def training_slice(self, max_train: int | None, seed: int = 0) -> Dataset:
        """At most ``max_train`` training images, a stratified sample seeded by ``seed`` (kept in
        their original order); the test set is untouched. ``None`` keeps every image."""
        if max_train is None or max_train >= len(self.y_train):
            return self
        from sklearn.model_selection import train_test_split

        rows = np.arange(len(self.y_train))
        try:
            kept, _ = train_test_split(rows, train_size=max_train, stratify=self.task.strata(self.y_train),
                                       random_state=seed)
        except ValueError as exc:  # fewer images than classes
            raise UsageError(f"{param('max_train')} {max_train} is too small a slice of {self.name}'s "
                             f"{self.n_classes} classes ({exc}); use at least a few images per class") from None
        kept = np.sort(kept)
        return Dataset(self.name, self.X_train[kept], self.y_train[kept], self.X_test, self.y_test,
                       self.class_names, self.source)

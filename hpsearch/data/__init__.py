"""Datasets: a small frozen container and the loaders that fill it.

Every loader returns images as float32 arrays of shape ``(n, channels, height, width)`` scaled to
[0, 1] (1 channel for grey images, 3 for CIFAR-10's RGB) and labels as int64, so MLPs (which
flatten) and CNNs read the same arrays. Every dataset is checked when it is made
(``Dataset.validate``): labels in range, at least 2 training classes, one image size, matching
counts; a file-backed dataset's messages name the file at fault.

``dataset`` holds the container and its checks, ``idx`` the file format, ``mnist`` where the idx
files of MNIST and Fashion-MNIST are found or downloaded, ``cifar10`` the CIFAR-10 batches (read
with a restricted unpickler: a pickle that names anything but numpy arrays is refused),
``multidigit`` Triple-MNIST (three digits per image, labels ``(n, 3)``), its loader; ``make_triple`` its builder;
``npz`` your arrays, ``folder`` your image folders (``image_files`` the safe reading they share with Triple-MNIST).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from functools import partial

from ..errors import UsageError, did_you_mean, param
from ..setting_checks import DATASET_ALIASES, canonical_dataset
from .cifar10 import load_cifar10
from .dataset import DIGIT_CLASSES, Dataset
from .digits import load_digits_dataset
from .folder import load_folder
from .mnist import load_idx_dataset
from .multidigit import load_triple
from .npz import load_npz

__all__ = ["load_dataset", "DATASETS", "FASHION_CLASSES"]

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# The datasets by name: a loader taking the data folder (None: the cache, Debian's copy or a checked
# download). A new dataset is one loader module plus one line here.
DATASETS: dict[str, Callable[[str | os.PathLike | None], Dataset]] = {
    "digits": load_digits_dataset,
    "mnist": partial(load_idx_dataset, "mnist", class_names=DIGIT_CLASSES),
    "fashion-mnist": partial(load_idx_dataset, "fashion-mnist", class_names=FASHION_CLASSES),
    "cifar10": load_cifar10,
    "triple-mnist": load_triple,
    "npz": load_npz,  # your own arrays: --data-dir FILE.npz
    "folder": load_folder,  # your own images: --data-dir DIR holding train/<class>/<image> (and test/)
}
ALIASES = DATASET_ALIASES


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, **options) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion-mnist", "cifar10", "triple-mnist", "npz", "folder"}
        ``digits`` is scikit-learn's bundled 8x8 set (1,797 images, a fixed stratified 80/20
        split). ``mnist`` and ``fashion-mnist`` are read from the four standard idx files.
        ``cifar10`` (also ``cifar-10``) from its six batch files, the python pickles
        (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, ``batches.meta``) or the binary
        version (``data_batch_1.bin`` .. ``test_batch.bin``, ``batches.meta.txt``): 50,000 / 10,000
        RGB images ``(n, 3, 32, 32)``, the class names from the meta file. ``triple-mnist`` (also
        ``triplemnist``) from a folder of ``train/``, ``val/`` (optional) and ``test/`` with one
        folder per label (``042/``) of PNG images, as published or as ``hpsearch make-triple``
        writes it: labels ``(n, 3)``, the digit at each position; the training set is ``train/``
        plus ``val/`` (the search's k-fold cross-validation validates); see :func:`load_triple`.
        ``npz`` your arrays in one ``.npz`` file (:func:`hpsearch.data.npz.load_npz`); ``folder`` your
        images in ``train/<class>/`` (and ``test/<class>/``) folders (:func:`hpsearch.data.folder.load_folder`).
    data_dir : path, optional
        A folder holding the idx files (raw or gzipped), or the CIFAR-10 batches (the extracted
        ``cifar-10-batches-py`` folder or the folder holding it). Without it they are looked for in
        the cache (``$HPSEARCH_DATA`` or ``~/.cache/hpsearch/<name>``), then (Fashion-MNIST) in
        Debian's ``/usr/share/datasets/fashion-mnist``, then downloaded into the cache with checksums.
        Triple-MNIST is never downloaded: without ``data_dir`` it must be in the cache
        (``~/.cache/hpsearch/triple-mnist``), else build it with ``hpsearch make-triple``. ``npz``
        and ``folder`` need it: the file, the folder.
    **options
        A loader's own options: ``folder`` takes ``test_size``, ``image_size``, ``color``, ``seed``
        (its held-out split) and ``progress``. None means the loader's default; an option the
        loader does not take is refused (``seed`` and ``progress`` are passed where taken).

    Raises
    ------
    UsageError
        For an unknown name; ``IdxError`` (a ``UsageError``) when an idx file is missing or
        damaged or the four files do not fit together, ``CifarError`` (a ``UsageError``) when a
        CIFAR-10 batch is missing, damaged, unsafe or wrong, ``TripleError`` (a ``UsageError``) when
        a Triple-MNIST folder is, each in one line naming the file.
    """
    key = canonical_dataset(name)
    if key in DATASETS:
        loader = DATASETS[key]
        takes = inspect.signature(loader).parameters
        given = {k: v for k, v in options.items() if v is not None}
        for option in given:
            if option not in takes and option not in ("seed", "progress"):
                users = [n for n, f in DATASETS.items() if option in inspect.signature(f).parameters]
                if not users:  # no loader takes it: a misspelt option
                    bound = getattr(loader, "keywords", {})  # a functools.partial's own (an idx set's class names)
                    known = [k for k in takes if k != "data_dir" and k not in bound and not k.startswith("_")]
                    raise UsageError(f"{param('dataset')} {key} takes no option {option!r} (it takes "
                                     f"{', '.join(known) or 'none'}){did_you_mean(option, known)}")
                raise UsageError(f"{param(option)} applies only to {param('dataset')} {' or '.join(users)}; "
                                 f"{param('dataset')} {key} would ignore it: leave it out")
        return loader(data_dir, **{k: v for k, v in given.items() if k in takes})
    raise UsageError(f"{param('dataset')} must be one of {', '.join(DATASETS)}, got {name!r}"
                     + did_you_mean(key, DATASETS))

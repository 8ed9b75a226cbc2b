"""Triple-MNIST: images of three digits side by side, labelled by the three digits left to right.

:func:`hpsearch.data.make_triple.make_triple` builds the published layout from a grey source (``digits``, ``mnist``,
``fashion-mnist``); :func:`read_triple_arrays` and :func:`load_triple` read any folder in that
layout, the published download included::

    DIR/train/042/00017.png    one folder per label (the three digits), 8-bit grey PNG images
    DIR/val/...                optional; the loader adds it to the training set
    DIR/test/...
    DIR/meta.json              written by make-triple: source, seed, counts, pool sizes
    DIR/sources.csv            written by make-triple: the three source images of every file
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..errors import UsageError, param
from .dataset import DIGIT_CLASSES, Dataset
from .image_files import header_size, label_folders, listing_key, progress_bar, read_cache, write_cache
from .mnist import default_cache_dir
from .preprocess import high_depth_grey, scale

__all__ = ["TripleError", "read_triple_arrays", "load_triple", "TRIPLE_SPLITS", "MADE_BY"]

TRIPLE_SPLITS = ("train", "val", "test")
MADE_BY = "hpsearch make-triple"
META_FILE, SOURCES_FILE = "meta.json", "sources.csv"
CACHE_FILE = ".hpsearch-triple-cache.npz"  # hidden: the loader skips dot-files
CACHE_VERSION = 1  # bump when the cached arrays change meaning
MAX_IMAGE_PIXELS = 4096 * 4096  # a larger image in a Triple-MNIST folder is refused, never decoded
_LABEL = re.compile(r"[0-9]{3}")


class TripleError(UsageError):
    """A Triple-MNIST folder that cannot be built or read; the message names the file or folder and the fix."""


def _read_meta(folder: Path) -> dict | None:
    """meta.json as make-triple wrote it (an object), else None: missing, damaged or of another kind."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


def _label_name(name: str) -> str | None:
    return None if _LABEL.fullmatch(name) else (f"folder name {name!r} is not a label of three digits 0-9 "
                                                 "(such as 042); rename or remove it")


def _scan(root: Path) -> dict[str, list[tuple[str, list[os.DirEntry]]]]:
    """Per split present, its label folders and their image files, sorted by name (a stable order:
    a seed gives the same folds); every name is checked."""
    splits = {}
    for split in TRIPLE_SPLITS:
        folder = root / split
        if not folder.is_dir():
            if split == "val":
                continue
            raise TripleError(f"{folder}/ is missing: a Triple-MNIST folder holds train/ and test/ (val/ optional), "
                              f"each with one folder per label such as 042/; build one with "
                              "`hpsearch make-triple --from digits --out DIR`")
        labels = label_folders(folder, TripleError, _label_name)
        if not any(files for _, files in labels):
            raise TripleError(f"{folder}/ holds no images; put the images in label folders there (e.g. "
                              f"{split}/042/00000.png), rebuild with make-triple --overwrite"
                              + (", or remove the empty val/" if split == "val" else ""))
        splits[split] = labels
    return splits


def _listing_key(splits) -> str:
    """Every image's name, size and mtime: the cache is used only for the same files."""
    return listing_key(((f"{split}/{label}/{f.name}", f) for split, labels in splits.items()
                        for label, files in labels for f in files), CACHE_VERSION)


def _common_size(paths: list[str]) -> tuple[int, int]:
    """The size most images have; the first image of another size is named (the outlier, not the next
    normal file after it), before any pixel is decoded or memory reserved."""
    from collections import Counter

    sizes = {path: header_size(path, TripleError)[0] for path in paths}
    common, count = Counter(sizes.values()).most_common(1)[0]
    for path, size in sizes.items():
        if size != common:
            raise TripleError(f"{path}: a {size[0]}x{size[1]} image, but {count} of the {len(sizes)} images are "
                              f"{common[0]}x{common[1]}; every image needs one size: resize or remove it")
    return common


def _decode(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:  # a decompression bomb: refused on its header
                raise TripleError(f"{path}: a {img.size[0]}x{img.size[1]} image, more than {MAX_IMAGE_PIXELS:,} "
                                  "pixels; Triple-MNIST images are small: remove it")
            deep = high_depth_grey(img)  # 16-bit or float grey: scaled by its range, as predict and the page do
            if deep is not None:
                return np.round(deep * 255).astype(np.uint8)
            return np.asarray(img if img.mode == "L" else img.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # what Pillow raises for a damaged file
        if isinstance(exc, TripleError):
            raise
        raise TripleError(f"{path}: not a readable image ({type(exc).__name__}: {exc}); remove or replace it") from None


def read_triple_arrays(data_dir=None, progress: bool | None = None) -> dict[str, np.ndarray]:
    """Read a Triple-MNIST folder: ``train/`` and ``test/`` (required) and ``val/`` (optional).

    The training set is ``train/`` followed by ``val/``: hpsearch's k-fold cross-validation does
    the validation, so the published val split trains too. Images are read in sorted label folders
    and sorted file names. Colour, palette, 1-bit and transparent images are converted to 8-bit
    grey with Pillow's ``convert("L")`` (as the seed's loader did); 16-bit and float grey images are
    scaled by their range (``hpsearch.data.preprocess.high_depth_grey``), as ``predict`` and the page
    do. Files and folders whose names start with a dot are skipped. The decoded arrays are cached
    (``.hpsearch-triple-cache.npz`` in the folder, else in the hpsearch cache), keyed by every image's
    name, size and mtime, so a second load is fast and a changed folder is read again.

    Parameters
    ----------
    data_dir : path, optional
        Default: ``$HPSEARCH_DATA/triple-mnist`` (``~/.cache/hpsearch/triple-mnist``).
    progress : bool, optional
        A tqdm bar while decoding; None: on a terminal and for 5,000 images or more.

    Returns
    -------
    dict
        ``X_train``, ``X_test``: float32 ``(n, 1, H, W)`` in [0, 1] (pixel / 255); ``y_train``,
        ``y_test``: int64 ``(n, 3)``, the digit at each position, left to right; ``files_train``,
        ``files_test``: each image's path relative to the folder.

    Raises
    ------
    TripleError
        One line naming the folder or file at fault: a missing folder, a missing or empty split, a
        label folder not named by three digits, a stray file, an unreadable image, an image of
        another size than most, or an interrupted make-triple.
    """
    if data_dir is None:
        root = default_cache_dir() / "triple-mnist"
        if not root.is_dir():
            raise TripleError(f"no Triple-MNIST in the cache ({root}): build one with `hpsearch make-triple "
                              f"--from digits --out DIR` and pass {param('data_dir')} DIR")
    else:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise TripleError(f"{param('data_dir')} {root} does not exist: build it with `hpsearch make-triple "
                              f"--from digits "
                              f"--out {root}` (or --from mnist --data-dir MNIST_DIR), or pass the folder that holds "
                              "train/ and test/")
    meta = _read_meta(root)
    if meta and meta.get("made_by") == MADE_BY and not meta.get("complete"):
        raise TripleError(f"{root / META_FILE}: make-triple was interrupted while building {root}; run the same "
                          "make-triple command again to finish it (the images written are kept)")
    splits = _scan(root)
    key = _listing_key(splits)
    cached = read_cache(root, CACHE_FILE, "triple-mnist-cache", key)
    if cached is None:
        cached = _decode_all(root, splits, progress)
        write_cache(root, CACHE_FILE, "triple-mnist-cache", key, cached)
    out = {}
    for part in ("train", "test"):
        out[f"X_{part}"] = scale(cached[f"images_{part}"], 255.0)[:, None]
        out[f"y_{part}"] = cached[f"labels_{part}"].astype(np.int64)
        out[f"files_{part}"] = cached[f"files_{part}"]
    return out


def _decode_all(root: Path, splits, progress) -> dict[str, np.ndarray]:
    parts = {"train": [s for s in ("train", "val") if s in splits], "test": ["test"]}
    total = sum(len(files) for labels in splits.values() for _, files in labels)
    bar = progress_bar(total, f"reading {root.name}", progress)
    _common_size([f.path for split in splits for _, files in splits[split] for f in files])  # one size, or named
    arrays = {}
    for part, names in parts.items():
        entries = [(f"{split}/{label}/{f.name}", f.path, label) for split in names
                   for label, files in splits[split] for f in files]
        images, labels = None, np.empty((len(entries), 3), np.int64)
        for i, (_, path, label) in enumerate(entries):
            image = _decode(path)
            if images is None:
                images = np.empty((len(entries), *image.shape), np.uint8)
            images[i] = image
            labels[i] = [int(c) for c in label]
            bar.update(1)
        arrays[f"images_{part}"], arrays[f"labels_{part}"] = images, labels
        arrays[f"files_{part}"] = np.array([name for name, _, _ in entries])
    bar.close()
    return arrays


def load_triple(data_dir=None) -> Dataset:
    """Triple-MNIST as a :class:`Dataset`: labels ``(n, 3)``, class names the ten digits.

    See :func:`read_triple_arrays` for the layout, what trains (``train/`` + ``val/``) and the checks.
    """
    arrays = read_triple_arrays(data_dir)
    return Dataset("triple-mnist", arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"],
                   DIGIT_CLASSES)

"""Your images in folders: ``--dataset folder --data-dir DIR``, the layout of torchvision's ``ImageFolder``
and Keras' ``image_dataset_from_directory``::

    DIR/train/<class>/<image>    one folder per class; the class names are the folder names, sorted
    DIR/test/<class>/<image>     optional; without it a stratified, seeded share of train/ is held out

Images are PNG, JPEG, BMP, GIF (the first frame), WebP or TIFF, read through Pillow exactly as
``predict`` and the page read a picture (``hpsearch.data.preprocess``: EXIF orientation applied,
transparency composited over white, 16-bit and float grey scaled by their range, CMYK converted to
RGB by Pillow), then resized to one size with Pillow's antialiasing filter and stored as 8 bits.
Nothing is inverted or centred: the net learns the pictures as they are, and ``predict`` on a file
of the folder gives the net exactly the array it trained on.

Every file is checked before any pixel is decoded: a class folder with no images, a ``test/`` class
that ``train/`` lacks, a stray file, a FIFO or a link in a loop, a file that is no image, an image
too large to decode (a decompression bomb) each stop the load with one line naming the file and the
fix. The decoded arrays are cached (``.hpsearch-folder-cache.npz`` beside the images, else in the
hpsearch cache), keyed by every file's name, size, mtime, ctime and inode and by the size and colour asked
for.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import UsageError, param, plural
from .dataset import Dataset
from .image_files import header_size, label_folders, listing_key, progress_bar, read_cache, write_cache
from .preprocess import ImageRejected, _decoded, _resize, open_image, scale, too_large

__all__ = ["load_folder", "FolderError", "parse_image_size", "COLORS", "color_name"]

SPLITS = ("train", "test")
DEFAULT_TEST_SIZE = 0.2
COLORS = ("grey", "rgb")
COLOR_ALIASES = {"gray": "grey", "greyscale": "grey", "grayscale": "grey", "l": "grey", "color": "rgb",
                 "colour": "rgb"}
CACHE_FILE = ".hpsearch-folder-cache.npz"  # hidden: the loader skips dot-files
CACHE_VERSION = 2  # bump when the cached arrays change meaning (2: the default size is the upright one)
COLOUR_MODES = {"RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA"}  # may hold colour; looked at
GREY_TOLERANCE = 8  # channels this close (of 255) are one grey: JPEG's colour subsampling blurs R = G = B
MAX_SIDE = 4096
_SAID: set[tuple[str, str]] = set()
_SIZE = re.compile(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?")


class FolderError(UsageError):
    """An image folder that cannot be read; the message names the folder or file and the fix."""


def color_name(color):
    """``color`` as ``COLORS`` spell it (``Gray`` is ``grey``); anything else as given, for the check to name."""
    if not isinstance(color, str):
        return color
    key = color.strip().lower()
    return COLOR_ALIASES.get(key, key) if COLOR_ALIASES.get(key, key) in COLORS else color


def check_share(name: str, value) -> None:
    """A held-out share: a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise UsageError(f"{param(name)} must be a share between 0 and 1 (0.2 holds out a fifth), got {value!r}")


def parse_image_size(name: str, value) -> tuple[int, int] | None:
    """``"28"``, ``"32x24"`` (width x height) or ``(32, 24)`` as ``(width, height)``; None stays None."""
    if value is None:
        return None
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        value = f"{value[0]}x{value[1]}"  # the Python API's (width, height)
    match = _SIZE.fullmatch(str(value))
    if match:
        width = int(match.group(1))
        height = int(match.group(2) or width)
        if 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE:
            return width, height
    raise UsageError(f"{param(name)} must be a side (28) or WIDTHxHEIGHT (32x24) of 1 to {MAX_SIDE} pixels, "
                     f"got {value!r}")


def _scan(root: Path) -> dict[str, list[tuple[str, list[os.DirEntry]]]]:
    splits = {}
    for split in SPLITS:
        folder = root / split
        if split == "test" and (folder.exists() or folder.is_symlink()) and not folder.is_dir():
            raise FolderError(f"{folder} is a file where test/ holds the test images in class folders; move it out")
        if not folder.is_dir():
            if split == "test":
                continue
            hint = (f"; {root} looks like train/ itself: give its parent, {param('data_dir')} {root.parent}"
                    if root.name in SPLITS else "")
            raise FolderError(f"{param('data_dir')} {root}: {folder.name}/ is missing: {param('dataset')} folder reads "
                              f"{root}/train/<class>/<image> "
                              "(and optionally test/<class>/<image>); put each class's images in a folder named "
                              f"after it under train/{hint}")
        classes = label_folders(folder, FolderError)
        for name, files in classes:
            if not files:
                raise FolderError(f"{folder / name}/ holds no images; put the class's images there or remove "
                                  "the folder")
        if not classes and split == "test":
            raise FolderError(f"{folder}/ holds no class folders; put the test images in test/<class>/, or remove "
                              "the empty test/ to hold out a share of train/")
        if len(classes) < 2 and split == "train":
            raise FolderError(f"{folder}/ holds {len(classes)} class folder{'s' * (len(classes) != 1)}; a "
                              "classifier needs at least 2: one folder per class, named after it")
        splits[split] = classes
    if "test" in splits:
        known = {name for name, _ in splits["train"]}
        for name, _ in splits["test"]:
            if name not in known:
                raise FolderError(f"{root / 'test' / name}/ is a class that {root / 'train'}/ lacks (its classes: "
                                  f"{', '.join(sorted(known))}); rename it to one of them, or add train/{name}/")
    return splits


def _headers(splits) -> dict[str, tuple[tuple[int, int], str]]:
    """Every file's size and mode from its header; a decompression bomb is refused here, undecoded."""
    headers = {}
    for classes in splits.values():
        for _, files in classes:
            for f in files:
                size, mode = header_size(f.path, FolderError, upright=True)  # as it is decoded
                refusal = too_large(*size)
                if refusal:
                    raise FolderError(f"{f.path}: a {size[0]}x{size[1]} image, {refusal} are read (a decompression "
                                      "bomb, or a photo far larger than a small classifier reads); shrink or remove it")
                headers[f.path] = (size, mode)
    return headers


def _is_colour(path: str) -> bool:
    """Whether a picture in a colour mode holds colour (not a grey picture saved as RGB)."""
    x = _decoded(_open(path), 3)
    return float(np.abs(x - x.mean(axis=0)).max(initial=0.0)) * 255 > GREY_TOLERANCE


def _open(path: str):
    try:
        return open_image(Path(path).read_bytes())
    except ImageRejected as exc:
        raise FolderError(f"{path}: {exc}; remove or replace it") from None


def _choose_colour(headers) -> tuple[str, str]:
    """``(color, why)``: RGB as soon as one image holds colour, else grey."""
    candidates = [path for path, (_, mode) in headers.items() if mode in COLOUR_MODES]
    for path in candidates:
        if _is_colour(path):
            return "rgb", f"{Path(path).name} is in colour"
    why = f"{len(candidates)} RGB images hold grey pictures" if candidates else "every image is grey"
    return "grey", why


def _decode(path: str, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One file as uint8 ``(channels, height, width)``, decoded and resized as ``preprocess`` does."""
    try:
        x = _decoded(_open(path), channels)
    except ImageRejected as exc:  # a mode Pillow cannot convert
        raise FolderError(f"{path}: {exc}; remove or replace it") from None
    if x.shape[1:] != (size[1], size[0]):
        x = _resize(x, (size[1], size[0]))
    return np.round(x * 255).astype(np.uint8)


def _decode_all(root: Path, splits, channels: int, size, progress) -> dict[str, np.ndarray]:
    total = sum(len(files) for classes in splits.values() for _, files in classes)
    arrays = {}
    with progress_bar(total, f"reading {root.name}", progress) as bar:
        for split, classes in splits.items():
            entries = [(f"{name}/{f.name}", f.path, label) for label, (name, files) in enumerate(classes)
                       for f in files]
            images = np.empty((len(entries), channels, size[1], size[0]), np.uint8)
            for i, (_, path, _) in enumerate(entries):
                images[i] = _decode(path, channels, size)
                bar.update(1)
            arrays[f"images_{split}"] = images
            arrays[f"names_{split}"] = np.array([name for name, _, _ in entries])
    arrays["classes"] = np.array([name for name, _ in splits["train"]])
    return arrays


def _read_images(root: Path, splits, size, color, progress) -> dict[str, np.ndarray]:
    """Every image checked on its header, then decoded at one size and colour; with the counts to say."""
    headers = _headers(splits)
    common = (0, 0)
    if size is None:
        sizes = Counter(headers[f.path][0] for _, files in splits["train"] for f in files)
        size, count = sizes.most_common(1)[0]
        common = (count, sum(sizes.values()))
    _check_fits_memory(headers, size, color)
    chosen, why = (color, "") if color else _choose_colour(headers)
    arrays = _decode_all(root, splits, 3 if chosen == "rgb" else 1, size, progress)
    counts = {"size": np.array(size), "common": np.array(common), "color": np.array(chosen), "why": np.array(why),
              "resized": np.array(sum(1 for s, _ in headers.values() if s != size)),
              "cmyk": np.array(sum(1 for _, mode in headers.values() if mode == "CMYK"))}
    return {**arrays, **counts}


# bytes a pixel of a channel takes while loaded: 8 bits cached, then float32 images scaled and split
BYTES_PER_VALUE = 9
LARGE_SIDE = 256  # past this a side is large for the small classifiers hpsearch searches: --image-size is said


def _check_fits_memory(headers, size, color) -> None:
    """Refuse, before any pixel is decoded, images whose arrays at ``size`` need more than this machine's
    memory (a folder of phone photos at their own size: gigabytes each few hundred)."""
    from ..jobs.resources import physical_memory

    colour = color == "rgb" or (color is None and any(m in COLOUR_MODES for _, m in headers.values()))
    channels = 3 if colour else 1  # (asked for RGB, grey images are decoded to 3 channels too)
    need = len(headers) * channels * size[0] * size[1] * BYTES_PER_VALUE
    memory = physical_memory()
    if need > memory:
        raise FolderError(f"{len(headers):,} images at {size[0]}x{size[1]} need about {need / 2**30:,.1f} GiB to "
                          f"load, more than this machine's {memory / 2**30:,.1f} GiB; pass {param('image_size')} "
                          "(e.g. 64) to read them smaller")


def _said(cached: dict) -> list[str]:
    """What the load says about size and colour, from the counts ``_read_images`` kept."""
    width, height = (int(v) for v in cached["size"])
    count, total = (int(v) for v in cached["common"])
    size = f"{width}x{height}" + (f" (the most common size: {count:,} of {total:,} training images; "
                                  f"{param('image_size')} to choose)" if total else "")
    resized, cmyk = int(cached["resized"]), int(cached["cmyk"])
    size += f", {plural(f'{resized:,}', 'image')} resized" if resized else ""
    if total and max(width, height) > LARGE_SIDE:  # chosen by default: each epoch is slow at this size
        size += (f"; large for a small classifier: {param('image_size')} 64 (or so) trains many times faster")
    why = str(cached["why"]) or f"{param('color')} {cached['color']}"
    converted = f"; {cmyk} CMYK image{'s' * (cmyk != 1)} converted to RGB by Pillow" if cmyk else ""
    return [size, f"{cached['color']} ({why}{converted})"]


def _held_out(y: np.ndarray, classes, test_size: float, seed: int, root: Path):
    """Rows of a stratified, seeded test split of train/ (sorted), or a FolderError naming the class."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(classes))
    if counts.min() < 2:
        small = classes[int(counts.argmin())]
        raise FolderError(f"{root / 'train' / small}/ holds {counts.min()} image; holding out a test split needs "
                          f"at least 2 per class: add images, or give the test images in {root / 'test'}/")
    held = math.ceil(test_size * len(y))  # as scikit-learn's train_test_split counts the test rows
    if len(y) - held < len(classes):
        raise FolderError(f"{param('test_size')} {test_size} of {len(y)} images leaves {len(y) - held} to train on, "
                          f"fewer than the {len(classes)} classes; lower {param('test_size')} (e.g. 0.2), or give "
                          f"the test images in {root / 'test'}/")
    try:
        train, test = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed)
    except ValueError:  # fewer test images than classes
        raise FolderError(f"{param('test_size')} {test_size} of {len(y)} images holds out {held}, too few for one of "
                          f"each of {len(classes)} classes; raise {param('test_size')}, or give the test images in "
                          f"{root / 'test'}/") from None
    return np.sort(train), np.sort(test)


def load_folder(data_dir=None, *, test_size: float | None = None, image_size=None, color: str | None = None,
                seed: int = 0, progress: bool | None = None) -> Dataset:
    """The images of ``data_dir`` (see the module's text) as a :class:`Dataset`.

    Parameters
    ----------
    data_dir : path
        The folder holding ``train/`` (and optionally ``test/``), one folder per class in each.
    test_size : float, optional
        Without ``test/``: the share of each class held out as the test set (default 0.2), drawn
        stratified with ``seed`` and recorded in the run folder. Another share is refused when
        ``test/`` exists.
    image_size : int, str or (width, height), optional
        The size every image is resized to; default: the most common size in ``train/``.
    color : {"grey", "rgb"}, optional
        Default: RGB when any image holds colour (a grey picture saved as RGB is grey), else grey.
    seed : int
        Seeds the held-out split.
    progress : bool, optional
        A bar while decoding; None: on a terminal and for 5,000 images or more.
    """
    if data_dir is None:
        raise FolderError(f"{param('dataset')} folder reads your images: pass {param('data_dir')} DIR, the folder "
                          "holding train/<class>/<image> (and optionally test/)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        what = "a file, not a folder" if root.is_file() else "no such folder"
        raise FolderError(f"{param('data_dir')} {root}: {what}; pass the folder holding "
                          "train/<class>/<image> (and optionally test/)")
    size = parse_image_size("image_size", image_size)
    color = color_name(color)
    if color is not None and color not in COLORS:
        raise UsageError(f"{param('color')} must be one of {', '.join(COLORS)}, got {color!r}")
    if test_size is not None:
        check_share("test_size", test_size)
    splits = _scan(root)
    if "test" in splits and test_size not in (None, DEFAULT_TEST_SIZE):
        raise FolderError(f"{param('test_size')} {test_size} holds out part of train/, but {root / 'test'}/ "
                          f"already gives the test images; leave out {param('test_size')}, or remove test/")
    test_size = DEFAULT_TEST_SIZE if test_size is None else test_size
    entries = [(f"{split}/{name}/{f.name}", f) for split, classes in splits.items() for name, files in classes
               for f in files]
    key = listing_key(entries, CACHE_VERSION, size, color)  # the files, and what was asked of them
    cached = read_cache(root, CACHE_FILE, "folder-cache", key)
    if cached is None:
        cached = _read_images(root, splits, size, color, progress)
        write_cache(root, CACHE_FILE, "folder-cache", key, cached)
    chosen, said = str(cached["color"]), _said(cached)
    classes = [str(c) for c in cached["classes"]]
    index = {name: i for i, name in enumerate(classes)}
    labels = {split: np.array([index[str(n).split("/")[0]] for n in cached[f"names_{split}"]], np.int64)
              for split in SPLITS if f"names_{split}" in cached}
    X = {split: scale(cached[f"images_{split}"], 255.0) for split in labels}
    names = {split: cached[f"names_{split}"] for split in labels}
    if "test" in labels:
        test_from = "test/"
    else:
        train, test = _held_out(labels["train"], classes, test_size, seed, root)
        for part, rows in (("test", test), ("train", train)):
            X[part], labels[part], names[part] = X["train"][rows], labels["train"][rows], names["train"][rows]
        test_from = f"{test_size:g} of train/ held out (stratified, seed {seed})"
    missing = [c for i, c in enumerate(classes) if not np.any(labels["test"] == i)]
    if missing and test_from == "test/":
        said.append(f"no test images of {', '.join(missing)} (their test scores have support 0: add some to "
                    "test/, or leave test/ out to hold out a share of train/)")
    elif missing:  # a class of few images: the stratified share rounds its test images to none
        said.append(f"no test images of {', '.join(missing)} held out (too few images: their test scores have "
                    f"support 0; add images to train/, raise {param('test_size')}, or give test/)")
    said.append(f"test set: {test_from}")
    what = (f"{len(labels['train']):,} training and {len(labels['test']):,} test images of {len(classes)} classes; "
            + "; ".join(said))
    if (str(root.resolve()), what) not in _SAID:  # once per process: later steps load it again (by its full path)
        _SAID.add((str(root.resolve()), what))
        print(f"folder {root}: {what}", file=sys.stderr, flush=True)
    test_split = "test" if test_from == "test/" else "train"
    source = {"root": str(root.resolve()), "image_size": [int(v) for v in cached["size"]], "color": chosen,
              "test": test_from, "test_files": [f"{test_split}/{n}" for n in names["test"]]}
    return Dataset("folder", X["train"], labels["train"], X["test"], labels["test"], tuple(classes), source)

"""``hpsearch make-triple``: build the Triple-MNIST layout (``hpsearch.data.multidigit``) from a grey
digit set, deterministically: three source images side by side on a 3s x 3s canvas, each at a
random height; test triples from the source's test split, train and val from disjoint parts of its
training split, so no test (or val) source image is ever seen in training.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import check_whole, did_you_mean, param
from ..rundir.atomic import atomic_write_text
from .dataset import arrays_digest
from .multidigit import CACHE_FILE, MADE_BY, META_FILE, SOURCES_FILE, TRIPLE_SPLITS, TripleError, _read_meta

__all__ = ["make_triple", "TripleBuild", "TRIPLE_SOURCES"]

TRIPLE_SOURCES = ("digits", "mnist", "fashion-mnist")
PUBLISHED_COUNTS = {"train": 64_000, "val": 16_000, "test": 20_000}
MAX_COUNT = 1_000_000  # images per split make-triple writes at most
DIGITS_COUNTS = {"train": 3_000, "val": 600, "test": 600}  # digits has 1,437 / 360 source images
VAL_FRACTION = 0.2

@dataclass(frozen=True)
class TripleBuild:
    """What :func:`make_triple` wrote (as ``meta.json`` and ``sources.csv`` say), each a dict by split:
    ``files`` the paths relative to ``out`` in the order drawn, ``labels`` int64 ``(n, 3)`` the
    digits left to right, ``sources`` int64 ``(n, 3)`` the three source images' indices in the
    source's ``source_split[split]`` set (``"train"`` for train and val, ``"test"`` for test), and
    ``pools`` the indices each split drew from (train and val disjoint, test the whole test set)."""

    out: Path
    files: dict
    labels: dict
    sources: dict
    source_split: dict
    pools: dict


# ---------------------------------------------------------------------------------------- building

def _source(source: str, data_dir):
    """The source's grey images as uint8 ``(n, s, s)`` and labels, train and test."""
    key = str(source).lower().replace("_", "-")
    if key in ("cifar10", "cifar-10"):
        raise TripleError(f"{param('source')} {source}: CIFAR-10 is colour, Triple-MNIST is built from grey digits; "
                          f"use {param('source')} {' / '.join(TRIPLE_SOURCES)}")
    if key not in TRIPLE_SOURCES:
        raise TripleError(f"{param('source')} must be one of {', '.join(TRIPLE_SOURCES)}, got {source!r}"
                          + did_you_mean(key, TRIPLE_SOURCES))
    if key == "digits" and data_dir is not None:
        raise TripleError(f"{param('data_dir')} {data_dir}: digits is bundled with scikit-learn and reads no files; "
                          f"leave {param('data_dir')} out (it is for mnist and fashion-mnist)")
    from . import load_dataset  # here, not at the top: the package imports this module

    ds = load_dataset(key, data_dir)
    channels, h, w = ds.image_shape
    if channels != 1 or h != w:
        raise TripleError(f"{param('source')} {source}: images are {channels}x{h}x{w}, make-triple needs grey "
                          f"square images")

    def to_uint8(X):  # the loaders scaled to [0, 1]; back to 8 bits (digits' 0..16 rounds to k*255/16)
        return np.rint(np.asarray(X)[:, 0] * 255).clip(0, 255).astype(np.uint8)

    return key, to_uint8(ds.X_train), ds.y_train, to_uint8(ds.X_test), ds.y_test


def _draw_three(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """``n`` rows of three distinct positions in ``[0, size)``, uniform: no image twice in one
    triple, triples independent (an image may recur across triples)."""
    a = rng.integers(0, size, n)
    b = rng.integers(0, size - 1, n)
    b += b >= a
    c = rng.integers(0, size - 2, n)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    c += c >= lo  # skipping lo then hi (ascending) maps [0, size - 2) onto [0, size) without them
    c += c >= hi
    return np.stack([a, b, c], axis=1)


def _compose(images: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Three ``s x s`` images on a ``3s x 3s`` black canvas: image k in columns ``k*s..(k+1)*s``,
    rows ``offsets[k]..offsets[k]+s``."""
    s = images.shape[-1]
    canvas = np.zeros((3 * s, 3 * s), np.uint8)
    for k in range(3):
        canvas[offsets[k]:offsets[k] + s, k * s:(k + 1) * s] = images[k]
    return canvas




# what makes two builds the same files: an interrupted one with these goes on where it stopped
_SAME_BUILD = ("made_by", "source", "seed", "counts", "val_fraction", "image_size", "pools")


def _unfinished(out: Path, meta: dict, data_dir) -> bool:
    """Whether ``out`` holds this very build, interrupted (``complete: false``): the same command goes on.
    The same build from other source files (another ``data_dir``) is refused: its images would mix. One
    by an earlier version is not gone on with (the folder is refused unless ``overwrite``)."""
    found = _read_meta(out) if out.is_dir() else None
    if not found or found.get("complete") is not False or any(found.get(k) != meta[k] for k in _SAME_BUILD):
        return False
    if "source_digest" not in found:  # an older version's build: it wrote in place, so a file may be cut short
        return False
    if found["source_digest"] != meta["source_digest"]:
        raise TripleError(f"{param('out')} {out} holds this build, interrupted, from other {meta['source']} images "
                          f"than {param('data_dir')} {data_dir or '(the default)'} holds (digest "
                          f"{meta['source_digest'][:12]}, the build's {found['source_digest'][:12]}); run it with "
                          f"the {param('data_dir')} it was started with, or pass {param('overwrite')} to start over")
    return True


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.is_symlink() and not out.exists():
        raise TripleError(f"{param('out')} {out} is a link that leads nowhere (or in a loop); pass a new or "
                          "empty folder")
    if out.exists() and not out.is_dir():
        raise TripleError(f"{param('out')} {out} is a file; pass a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise TripleError(f"{param('out')} {out} exists and is not empty; pass {param('overwrite')} to replace the "
                              "Triple-MNIST built there, or choose a new folder")
        # --overwrite deletes only a folder make-triple wrote: a typo such as --out ~ must cost nothing
        meta = _read_meta(out)
        if not meta or meta.get("made_by") != MADE_BY:
            has = "an unreadable" if (out / META_FILE).exists() else "no"
            raise TripleError(f"{param('out')} {out} holds files make-triple did not write ({has} {META_FILE} of "
                              f"its own); {param('overwrite')} replaces only a make-triple folder: choose a new or "
                              "empty folder")
        # marked unfinished before anything goes: a Ctrl-C or kill while deleting left a cut-down
        # build that still said complete, and the loader read it without a word
        atomic_write_text(out / META_FILE, json.dumps({**meta, "complete": False}, indent=1) + "\n")
        for name in (*TRIPLE_SPLITS, SOURCES_FILE, CACHE_FILE, META_FILE):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a link loop, a link to nowhere, a read-only disk, a file in the way
        raise TripleError(f"{param('out')} {out}: cannot make the folder ({exc.strerror or exc}); choose a new "
                          "folder you can write to") from None


def make_triple(source: str, out, *, data_dir=None, n_train: int | None = None, n_val: int | None = None,
                n_test: int | None = None, seed: int = 0, val_fraction: float = VAL_FRACTION,
                overwrite: bool = False, progress: bool = False) -> TripleBuild:
    """Build Triple-MNIST from a grey source: ``out/{train,val,test}/<label>/<index>.png``.

    Each image puts three source images of ``s x s`` side by side on a black ``3s x 3s`` canvas
    (84x84 from MNIST, 24x24 from digits), image k in columns ``k*s..(k+1)*s`` at a random row
    offset in ``[0, 2s]``; its label folder is the three source labels (``"042"``). Test draws
    only from the source's test set; train and val from disjoint parts of its training set (val a
    seeded ``val_fraction``), so no source image of test or val appears in train. Each triple
    takes three distinct images of its pool; triples are drawn independently.

    Parameters
    ----------
    source : {"digits", "mnist", "fashion-mnist"}
        Loaded with :func:`hpsearch.data.load_dataset` (``data_dir`` for the idx files).
    out : path
        A new or empty folder (or, with ``overwrite``, one make-triple wrote before).
    n_train, n_val, n_test : int, optional
        Images per split; default the published 64,000 / 16,000 / 20,000, from the small
        ``digits`` 3,000 / 600 / 600. ``n_val=0`` writes no ``val/``.
    seed : int
        Same seed, same files byte for byte. Each split has its own stream, so changing one
        split's count leaves the other splits' images as they were.
    progress : bool
        A tqdm bar over the images written.

    Returns
    -------
    TripleBuild
        The files, labels and source indices written (also in ``meta.json`` and ``sources.csv``).
    """

    check_whole("seed", seed, 0)
    if not 0 < val_fraction < 1:
        raise TripleError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    defaults = DIGITS_COUNTS if str(source).lower() == "digits" else PUBLISHED_COUNTS
    counts = {split: defaults[split] if given is None else given
              for split, given in zip(TRIPLE_SPLITS, (n_train, n_val, n_test), strict=True)}
    for split, n in counts.items():
        check_whole(f"n_{split}", n, 0 if split == "val" else 1)
        if n > MAX_COUNT:  # one PNG file each: a typo of a few zeros must not fill the disk
            raise TripleError(f"{param(f'n_{split}')} {n:,}: at most {MAX_COUNT:,} images per split (one PNG file "
                              f"each; the published set has {PUBLISHED_COUNTS[split]:,})")
    key, X_src, y_src, X_src_test, y_src_test = _source(source, data_dir)
    order = np.random.default_rng([seed, 0]).permutation(len(X_src))
    n_holdout = int(round(len(X_src) * val_fraction))
    pools = {"train": np.sort(order[n_holdout:]), "val": np.sort(order[:n_holdout]), "test": np.arange(len(X_src_test))}
    source_split = {"train": "train", "val": "train", "test": "test"}
    for split, n in counts.items():
        if n and len(pools[split]) < 3:
            raise TripleError(f"{param(f'n_{split}')} {n}: the {split} pool of {key} holds {len(pools[split])} images, "
                              "at least 3 are needed; change val_fraction or the source")
    out = Path(out).expanduser()
    s = X_src.shape[-1]
    meta = {"made_by": MADE_BY, "complete": False, "source": key, "seed": seed, "counts": counts,
            "val_fraction": val_fraction, "image_size": [3 * s, 3 * s],
            "pools": {split: len(pool) for split, pool in pools.items()}, "source_split": source_split,
            "source_digest": arrays_digest(X_src, y_src, X_src_test, y_src_test),
            "layout": "SPLIT/LABEL/INDEX.png, LABEL the three digits left to right; sources.csv names the "
                      "source images (indices into the source's train or test split)"}
    resume = not overwrite and _unfinished(out, meta, data_dir)  # the same command after a Ctrl-C: keeps the files
    if not resume:
        _prepare_out(out, overwrite)
    try:
        return _write(out, meta, counts, pools, source_split, X_src, y_src, X_src_test, y_src_test, seed, progress,
                      resume)
    except OSError as exc:  # a full or read-only disk: the build stays marked incomplete
        raise TripleError(f"{param('out')} {out}: writing stopped ({exc.strerror or exc}); free space on that disk "
                          f"or choose another folder, then run again with {param('overwrite')}") from None


def _write(out, meta, counts, pools, source_split, X_src, y_src, X_src_test, y_src_test, seed, progress, resume):
    from PIL import Image
    from tqdm.auto import tqdm

    s = X_src.shape[-1]
    # Written first with complete=false: an interrupted build is recognised (by --overwrite and the loader).
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    result = {"files": {}, "labels": {}, "sources": {}}
    bar = tqdm(total=sum(counts.values()), desc="make-triple", unit="img", disable=not progress, dynamic_ncols=True)
    with open(out / SOURCES_FILE, "w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["split", "file", "label", "source_split", "source0", "source1", "source2"])
        for index, split in enumerate(TRIPLE_SPLITS):
            n, pool = counts[split], pools[split]
            width = max(5, len(str(n - 1)))  # per split: another split's count leaves these names as they are
            images, labels = (X_src, y_src) if source_split[split] == "train" else (X_src_test, y_src_test)
            rng = np.random.default_rng([seed, 1 + index])
            picks = pool[_draw_three(rng, len(pool), n)] if n else np.zeros((0, 3), np.int64)
            offsets = rng.integers(0, 2 * s + 1, (n, 3))
            digits = labels[picks].astype(np.int64)
            files, made = [], set()
            for i in range(n):
                label = "".join(str(int(d)) for d in digits[i])
                if label not in made:
                    (out / split / label).mkdir(parents=True, exist_ok=True)
                    made.add(label)
                name = f"{split}/{label}/{i:0{width}d}.png"
                if not (resume and (out / name).is_file()):  # each file whole or absent: written aside, then renamed
                    part = out / f"{name}.part"
                    Image.fromarray(_compose(images[picks[i]], offsets[i])).save(part, format="PNG")
                    os.replace(part, out / name)
                rows.writerow([split, name, label, source_split[split], *(int(p) for p in picks[i])])
                files.append(name)
                bar.update(1)
            result["files"][split], result["labels"][split] = files, digits
            result["sources"][split] = picks.astype(np.int64)
    bar.close()
    meta["complete"] = True
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return TripleBuild(out, result["files"], result["labels"], result["sources"], source_split, pools)


# ----------------------------------------------------------------------------------------- loading

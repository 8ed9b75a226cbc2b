"""Arrays of your own: ``--dataset npz --data-dir FILE.npz``.

The file holds ``X_train``, ``y_train``, ``X_test``, ``y_test`` and optionally ``class_names``
(``np.savez(path, X_train=..., ...)``). Images are ``(n, H, W)``, ``(n, C, H, W)`` or ``(n, H, W, C)``
with C = 1 or 3, uint8 (0..255) or float in [0, 1]; labels are whole numbers, one per image
``(n,)`` or one per position ``(n, k)``. The file is read with ``allow_pickle=False``: it holds data,
never code. Without ``class_names`` the classes are named by their numbers.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UsageError, brief, param
from .dataset import Dataset, check_splits

__all__ = ["load_npz", "NPZ_KEYS"]

NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test")


def load_npz(data_dir: str | os.PathLike | None = None) -> Dataset:
    """The dataset stored in the ``.npz`` file ``data_dir`` (see the module's text)."""
    if data_dir is None:
        raise UsageError(f"{param('dataset')} npz reads your arrays from a file: pass {param('data_dir')} FILE.npz "
                         f"holding {', '.join(NPZ_KEYS)} (np.savez)")
    path = Path(data_dir).expanduser()
    if not path.is_file():
        raise UsageError(f"{param('data_dir')} {path}: no such file; pass the .npz file holding "
                         f"{', '.join(NPZ_KEYS)}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise UsageError(f"{param('data_dir')} {path}: cannot be read ({exc.strerror}); check its permissions") \
            from None
    if not head.startswith(b"PK"):  # np.load would say any other file holds pickled data
        raise UsageError(f"{param('data_dir')} {path} is not an .npz file (not a zip archive); save "
                         f"{', '.join(NPZ_KEYS)} with np.savez")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                held = ", ".join(archive.files) or "nothing"
                raise UsageError(f"{path} lacks {', '.join(missing)} (it holds {held}); save {', '.join(NPZ_KEYS)} "
                                 "with np.savez, and optionally class_names")
            names = archive.zip.namelist()  # the member np.load reads for a key, as it picks it (the last wins)
            members = dict(zip([n.removesuffix(".npy") for n in names], names, strict=True)) | {n: n for n in names}
            for key in archive.files:  # each is read below, class_names too
                _check_stored_size(archive.zip.getinfo(members[key]), archive.zip, key, path)
            arrays = {key: archive[key] for key in NPZ_KEYS}
            names = archive["class_names"] if "class_names" in archive.files else None
    except UsageError:
        raise
    except ValueError as exc:  # an object array (pickled) under allow_pickle=False, or damaged contents
        raise UsageError(f"{path}: {str(exc).splitlines()[0][:120]}; save plain numeric arrays (and class_names as "
                         "strings): a pickled array is never loaded") from None
    except MemoryError:  # a header claiming more than this machine holds, that the check above could not read
        raise UsageError(f"{path}: an array claims more memory than this machine has: is the file damaged? save it "
                         "again with np.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}); save it with np.savez") \
            from None
    X_train, X_test = (_images(arrays[key], path, key) for key in ("X_train", "X_test"))
    y_train, y_test = (_labels(arrays[key], path, key) for key in ("y_train", "y_test"))
    n_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    check_splits({"train_images": X_train, "train_labels": y_train, "test_images": X_test, "test_labels": y_test},
                 n_classes, {"train_images": "X_train", "train_labels": "y_train", "test_images": "X_test",
                             "test_labels": "y_test"}, where=str(path))
    if not len(y_test):  # the winner is scored there: every retraining failed after the whole search
        raise UsageError(f"{path}: X_test holds no images; the winner is scored on the test set: keep some images "
                         "of each class for it")
    present = np.unique(y_train)
    if n_classes > len(present):  # the first 7 gaps lie below len(present) + 7: no range up to the largest label
        first = np.setdiff1d(np.arange(min(n_classes, len(present) + 7)), present)
        _refuse_gap(path, first, n_classes - len(present), present)
    if names is None:
        class_names = tuple(str(k) for k in range(n_classes))
    else:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise UsageError(f"{path}: class_names is {names.dtype} {names.shape}, expected a list of strings")
        class_names = tuple(str(n) for n in names)
        if len(class_names) < n_classes:
            raise UsageError(f"{path}: the labels reach {n_classes - 1} but class_names names {len(class_names)} "
                             "classes; give one name per class")
    return Dataset("npz", X_train, y_train, X_test, y_test, class_names)


def _refuse_gap(path: Path, missing: np.ndarray, n_missing: int, present: np.ndarray) -> None:
    """An output no image trains: labels 3 and 7 made an 8-class net scored below chance."""
    def listed(values, more):
        return ", ".join(str(int(c)) for c in values[:6]) + (", ..." if more > 6 else "")

    raise UsageError(f"{path}: y_train has no image of class {listed(missing, n_missing)} (its labels: "
                     f"{listed(present, len(present))}); "
                     f"labels are class indices 0..K-1, each with training images: renumber them with classes, "
                     "y_train = np.unique(y_train, return_inverse=True), then y_test = np.searchsorted(classes, "
                     "y_test)")


# 3.0 is 2.0's layout with a UTF-8 header: the shape reads the same
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
                   (3, 0): np.lib.format.read_array_header_2_0}


def _check_stored_size(info: zipfile.ZipInfo, archive: zipfile.ZipFile, key: str, path: Path) -> None:
    """Refuse ``key`` when its header claims more data than its member holds: numpy allocates the claimed
    shape before reading, so a few bytes claiming (2**31, 28, 28) failed on terabytes, with a traceback."""
    with archive.open(info) as member:
        try:
            reader = _HEADER_READERS.get(np.lib.format.read_magic(member))
            if reader is None:
                raise ValueError("an .npy format version numpy does not write")
            shape, _, dtype = reader(member)
        except ValueError as exc:
            raise UsageError(f"{path}: {key} is not a readable array ({brief(exc)}); save it again with "
                             "np.savez") from None
        held = info.file_size - member.tell()
    if dtype.hasobject:
        return  # refused unloaded by allow_pickle=False
    needed = math.prod(shape) * dtype.itemsize
    if needed > held:
        raise UsageError(f"{path}: {key} is damaged or cut short: its header says shape {shape} of {dtype} "
                         f"({needed} bytes) but it holds {held}; save it again with np.savez")


def _images(X: np.ndarray, path: Path, key: str) -> np.ndarray:
    """``X`` as float32 ``(n, C, H, W)`` in [0, 1]."""
    if X.ndim == 3:
        X = X[:, None]
    elif X.ndim == 4 and X.shape[1] not in (1, 3) and X.shape[3] in (1, 3):
        X = X.transpose(0, 3, 1, 2)  # channels last, as Keras and Pillow keep them
    if X.ndim != 4 or X.shape[1] not in (1, 3):
        raise UsageError(f"{path}: {key} has shape {X.shape}; expected (n, H, W), (n, C, H, W) or (n, H, W, C) "
                         "with C = 1 (grey) or 3 (RGB)")
    if X.dtype == np.uint8:
        return (X.astype(np.float32) / np.float32(255)).astype(np.float32)
    if X.dtype.kind != "f":
        raise UsageError(f"{path}: {key} is {X.dtype}; save images as uint8 (0..255) or float in [0, 1]")
    X = X.astype(np.float32)
    if np.isnan(X).any():
        raise UsageError(f"{path}: {key} holds NaN (at image {int(np.isnan(X).any(axis=(1, 2, 3)).argmax())}); "
                         "images are pixel values in [0, 1]: replace or drop those images")
    if X.min(initial=0.0) < 0 or X.max(initial=0.0) > 1:
        low, high = (np.format_float_positional(v) for v in (X.min(), X.max()))  # 1.0000001, not 1 as :g says
        raise UsageError(f"{path}: {key} holds values outside [0, 1] (from {low} to {high}); divide by 255 or "
                         "save as uint8 (np.clip(X, 0, 1) if only rounding put them outside)")
    return X


def _labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    if y.dtype.kind not in "iu" or y.ndim not in (1, 2):
        raise UsageError(f"{path}: {key} is {y.dtype} {y.shape}; expected whole-number labels, one per image (n,) "
                         "or one per position (n, k)")
    if y.size and y.min() < 0:
        raise UsageError(f"{path}: {key} holds {int(y.min())}; labels are class indices 0, 1, ...")
    return y.astype(np.int64)

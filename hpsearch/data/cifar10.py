"""CIFAR-10: its batches read safely (python pickles or the binary version), found or downloaded.

The python version (``cifar-10-batches-py``) holds ``data_batch_1`` .. ``data_batch_5``,
``test_batch`` and ``batches.meta``: Python-2 pickles of dicts with bytes keys, ``b"data"`` a uint8
array ``(n, 3072)`` (the R, G and B planes of a 32x32 image, row by row; 10,000 images per file in
the real set), ``b"labels"`` a list of ints 0..9; the meta file's ``b"label_names"`` names the
classes. The binary version (``cifar-10-batches-bin``) holds ``data_batch_1.bin`` ..
``test_batch.bin`` of 3,073-byte records (one label byte, then the 3,072 pixel bytes) and
``batches.meta.txt`` (one class name a line).

**A pickle can run code when it is loaded.** These are read with a restricted unpickler that builds
only what a CIFAR-10 batch holds, numpy arrays and plain containers: any other global a file names
(``os.system``, ``builtins.eval``, ...) is refused with a ``CifarError`` before anything runs
(``cifar10_pickle``).
Every file is checked (a damaged or truncated one, a wrong shape, a label outside 0..9, a batch
missing) and each defect is reported in one line naming the file.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import UsageError, param
from .cifar10_pickle import CifarError, unpickle
from .dataset import Dataset, check_splits
from .mnist import default_cache_dir, download_folder, file_md5
from .preprocess import scale

__all__ = ["CifarError", "CIFAR10_CLASSES", "CIFAR10_URL", "CIFAR10_MD5", "PYTHON_FILES", "BINARY_FILES",
           "load_cifar10", "read_batch", "download_cifar10"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the CIFAR page
PIXELS, SIDE = 3 * 32 * 32, 32
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
PYTHON_FILES = (*TRAIN, "test_batch")
BINARY_FILES = tuple(f"{name}.bin" for name in PYTHON_FILES)
META = {"python": "batches.meta", "binary": "batches.meta.txt"}
FOLDERS = ("cifar-10-batches-py", "cifar-10-batches-bin")  # what the archives unpack to
CACHE_NAME = "cifar10"


def _get(batch: dict, key: str):
    """``batch[b"key"]`` (the real files' bytes keys) or ``batch["key"]`` (a batch saved again in Python 3)."""
    return batch.get(key.encode(), batch.get(key))


def _labels(values, path: Path, n: int) -> np.ndarray:
    if isinstance(values, list | tuple):  # the real files' list of ints; looked at one level deep only, so that
        # a crafted nesting or a list shared a million times ("billion laughs") is refused, never expanded
        if len(values) != n:
            raise CifarError(f"{path} holds {n} images but {len(values)} labels; the counts must match: re-download it")
        odd = next((v for v in values if not isinstance(v, int | np.integer) or isinstance(v, bool)), None)
        if odd is not None:
            raise CifarError(f"{path}: b'labels' holds a {type(odd).__name__}, expected whole numbers 0..9; is it a "
                             "CIFAR-10 batch?")
        bad = [i for i, v in enumerate(values) if not 0 <= v <= 9]
        if bad:
            raise CifarError(f"{path}: label {int(values[bad[0]])} (image {bad[0]}; {len(bad)} in all) is outside "
                             "0..9 for CIFAR-10's 10 classes; is it CIFAR-100's, or damaged?")
        return np.array(values, dtype=np.int64)
    if not isinstance(values, np.ndarray):
        raise CifarError(f"{path}: b'labels' is a {type(values).__name__}, expected a list of whole numbers 0..9")
    labels = values
    if labels.ndim != 1:
        raise CifarError(f"{path}: b'labels' has shape {labels.shape}, expected ({n},), one label per image; is it a "
                         "CIFAR-10 batch?")
    if len(labels) != n:
        raise CifarError(f"{path} holds {n} images but {labels.size} labels; the counts must match: re-download it")
    if n and not np.issubdtype(labels.dtype, np.integer):
        raise CifarError(f"{path} holds {labels.dtype} labels, expected integers 0..9; is it a CIFAR-10 batch?")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if len(bad):
        raise CifarError(f"{path}: label {int(labels[bad[0]])} (image {int(bad[0])}; {len(bad)} in all) is outside "
                         "0..9 for CIFAR-10's 10 classes; is it CIFAR-100's, or damaged?")
    return labels.astype(np.int64)


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One batch file, python (``data_batch_1``) or binary (``data_batch_1.bin``), checked.

    Returns
    -------
    images : ndarray of uint8, shape (n, 3, 32, 32)
        ``images[i, c, y, x] == data[i, c * 1024 + y * 32 + x]`` (R, G, B planes, row by row).
    labels : ndarray of int64, shape (n,), in 0..9

    Raises
    ------
    CifarError
        Missing, empty, damaged or truncated; a pickle naming anything but numpy's array
        reconstruction; data not uint8 ``(n, 3072)``; counts that differ; a label outside 0..9.
    """
    path = Path(path)
    if not path.is_file():
        raise CifarError(f"CIFAR-10 batch not found: {path}")
    if path.suffix == ".bin":
        raw = path.read_bytes()
        if not raw or len(raw) % (PIXELS + 1):
            raise CifarError(f"{path} holds {len(raw)} bytes, not a whole number of {PIXELS + 1}-byte records "
                             "(1 label byte + 3072 pixel bytes); it is damaged or cut short: re-download it")
        records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, PIXELS + 1)
        data, labels = records[:, 1:], _labels(records[:, 0], path, len(records))
    else:
        batch = unpickle(path)
        if not isinstance(batch, dict) or _get(batch, "data") is None or _get(batch, "labels") is None:
            what = (f"a dict with keys {sorted(map(repr, batch))[:4]}" if isinstance(batch, dict)
                    else f"a {type(batch).__name__}")
            raise CifarError(f"{path} holds {what}, not a CIFAR-10 batch (a dict with b'data' and b'labels'); "
                             "is it the right file?")
        data = _get(batch, "data")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
            shape = data.shape if isinstance(data, np.ndarray) else type(data).__name__
            dtype = f" {data.dtype}" if isinstance(data, np.ndarray) else ""
            raise CifarError(f"{path}: b'data' is{dtype} {shape}, expected uint8 (n, {PIXELS}) (32x32 RGB images, "
                             "10000 per file); is it a CIFAR-10 batch?")
        labels = _labels(_get(batch, "labels"), path, len(data))
    if not len(data):
        raise CifarError(f"{path} holds no image; re-download it")
    return data.reshape(-1, 3, SIDE, SIDE), labels


def _class_names(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return CIFAR10_CLASSES  # the meta file only repeats these
    if path.suffix == ".txt":
        names = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    else:
        meta = unpickle(path)
        names = _get(meta, "label_names") if isinstance(meta, dict) else None
        if names is None:
            raise CifarError(f"{path} has no b'label_names'; is it CIFAR-10's batches.meta (CIFAR-100's has "
                             "fine_label_names)?")
        if not isinstance(names, list | tuple) or len(names) > 1000 or \
                not all(isinstance(n, bytes | str) and len(n) < 1000 for n in names):
            raise CifarError(f"{path}: b'label_names' is not a list of names; is it CIFAR-10's batches.meta?")
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    if len(names) != 10:
        raise CifarError(f"{path} names {len(names)} classes, CIFAR-10 has 10; is it another dataset's file?")
    return tuple(names)


def _batch_format(folder: Path) -> str | None:
    """``"python"`` or ``"binary"`` when ``folder`` holds any batch of that version, else None."""
    for kind, files in (("python", PYTHON_FILES), ("binary", BINARY_FILES)):
        if any((folder / name).is_file() for name in files):
            return kind
    return None


def _find_folder(directory: Path) -> tuple[Path, str] | None:
    """The folder holding batches: ``directory`` itself or the archives' ``cifar-10-batches-*`` in it."""
    for folder in (directory, *(directory / name for name in FOLDERS)):
        kind = _batch_format(folder) if folder.is_dir() else None
        if kind:
            return folder, kind
    return None


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10 as a ``Dataset``: images ``(n, 3, 32, 32)`` float32 in [0, 1], labels int64.

    Looked for in ``data_dir`` (the extracted ``cifar-10-batches-py`` or ``-bin`` folder, or the folder
    holding it), else in the cache (``$HPSEARCH_DATA/cifar10`` or ``~/.cache/hpsearch/cifar10``), else
    downloaded there (:func:`download_cifar10`, checksummed). The python version is preferred when a
    folder holds both. The training set is ``data_batch_1`` .. ``data_batch_5`` in order (any number
    of images per file; the real ones hold 10,000), the test set ``test_batch``; the class names come
    from ``batches.meta`` (``label_names``) or ``batches.meta.txt``, else the standard ten.

    Raises
    ------
    CifarError
        A batch missing or defective (see :func:`read_batch`), a meta file naming other than 10
        classes, the splits not fitting together (``check_splits``), a failed or corrupt download.
    """
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if not directory.is_dir():
            what = "is a file, not a folder" if directory.exists() else "does not exist"
            raise UsageError(f"{param('data_dir')} {directory} {what}; pass the folder that holds the CIFAR-10 "
                             "batches (cifar-10-batches-py, or the folder it is in)")
        found = _find_folder(directory)
        if found is None:
            raise CifarError(f"{param('data_dir')} {directory} holds no CIFAR-10 batches "
                             f"({', '.join(PYTHON_FILES)}, or "
                             "the .bin files); extract cifar-10-python.tar.gz and pass the folder")
    else:
        cache = default_cache_dir() / CACHE_NAME
        found = _find_folder(cache) if cache.is_dir() else None
        if found is None:
            found = (download_cifar10(cache), "python")
    folder, kind = found
    files = PYTHON_FILES if kind == "python" else BINARY_FILES
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        # a folder where a batch file should be (an archive extracted into itself) is not "missing"
        what = "is a folder, not a batch file" if (folder / missing[0]).is_dir() else "is missing"
        raise CifarError(f"{folder / missing[0]} {what}{more}: CIFAR-10 needs all five training batches "
                         f"({files[0]}..{files[4]}) and {files[5]}; re-extract the archive")
    parts = [read_batch(folder / name) for name in files]
    arrays = {"train_images": np.concatenate([p[0] for p in parts[:5]]),
              "train_labels": np.concatenate([p[1] for p in parts[:5]]),
              "test_images": parts[5][0], "test_labels": parts[5][1]}
    train, test = f"{files[0]}..{files[4]}", files[5]
    check_splits(arrays, 10, {"train_images": train, "train_labels": train, "test_images": test,
                              "test_labels": test}, where=str(folder), error=CifarError)
    return Dataset("cifar10", scale(arrays["train_images"], 255.0), arrays["train_labels"],
                   scale(arrays["test_images"], 255.0), arrays["test_labels"],
                   _class_names(folder / META[kind]))


def _extract(archive: Path, target: Path) -> Path:
    """The batch files of ``archive`` into ``target/cifar-10-batches-py``, nothing else: members are
    matched by name and copied as plain files (no path of the archive is ever followed, so neither
    ``../`` nor links can write outside), into a temporary folder renamed into place at the end."""
    wanted = set(PYTHON_FILES) | {META["python"]}
    final = target / FOLDERS[0]
    staging = Path(tempfile.mkdtemp(dir=target, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name.split("/")[-1]
                if member.isfile() and name in wanted and member.name.removeprefix("./") == f"{FOLDERS[0]}/{name}":
                    with tar.extractfile(member) as src, open(staging / name, "wb") as out:
                        shutil.copyfileobj(src, out)
        lacking = sorted(wanted - {p.name for p in staging.iterdir()})
        if lacking:
            raise CifarError(f"{archive} lacks {FOLDERS[0]}/{lacking[0]}; it is not the CIFAR-10 python archive")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CifarError(f"cannot extract {archive}: {exc}; the archive is damaged: delete it and retry") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def download_cifar10(target: str | os.PathLike, url: str | None = None, md5: str | None = None) -> Path:
    """Download ``cifar-10-python.tar.gz`` from ``url`` (default ``CIFAR10_URL``; any ``urllib``
    URL, ``file://`` too), check its MD5 (default ``CIFAR10_MD5``) and extract the batches into
    ``target/cifar-10-batches-py`` (see ``_extract``), which is returned; the archive is deleted.

    A download whose checksum does not match is deleted and reported; nothing unverified is unpacked.
    """
    url, md5 = url or CIFAR10_URL, md5 or CIFAR10_MD5
    target = Path(target)
    with download_folder(target):
        return _download_archive(url, md5, target)


def _download_archive(url: str, md5: str, target: Path) -> Path:
    archive = target / "cifar-10-python.tar.gz"
    fd, tmp = tempfile.mkstemp(dir=target, suffix=".part")
    os.close(fd)
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
        except OSError as exc:  # URLError and socket errors are OSErrors
            raise CifarError(f"could not download CIFAR-10 ({url}): {exc}. Without a network, fetch "
                             f"cifar-10-python.tar.gz elsewhere, extract it and pass {param('data_dir')} "
                             "cifar-10-batches-py") from None
        got = file_md5(Path(tmp))
        if got != md5:
            raise CifarError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; the download is corrupt "
                             f"or the mirror changed: retry, or pass {param('data_dir')}")
        os.replace(tmp, archive)
        return _extract(archive, target)
    finally:
        for leftover in (Path(tmp), archive):
            leftover.unlink(missing_ok=True)

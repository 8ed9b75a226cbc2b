"""Datasets: a small frozen container and the loaders that fill it.

Every loader returns images as float32 arrays of shape ``(n, channels, height, width)`` scaled to
[0, 1] and labels as int64, so MLPs (which flatten) and CNNs read the same arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UsageError

__all__ = ["Dataset", "load_dataset", "read_idx", "write_idx", "DATASETS", "IdxError"]

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_CLASSES = tuple(str(i) for i in range(10))

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Where each idx dataset can be downloaded, and the MD5 of each gzipped file there (the sums that
# the datasets' authors publish; a download that does not match is deleted, never used).
DOWNLOADS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}

# Debian's `dataset-fashion-mnist` package puts the four idx files here.
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

DATASETS = ("digits", "mnist", "fashion-mnist")


class IdxError(UsageError):
    """An idx file is missing, truncated or not an idx file."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images with their labels and what describes them.

    Attributes
    ----------
    name : str
        The dataset's name (``"digits"``, ``"mnist"``, ``"fashion-mnist"``).
    X_train, X_test : ndarray of float32, shape (n, channels, height, width)
        Pixel values in [0, 1].
    y_train, y_test : ndarray of int64, shape (n,)
    class_names : tuple of str
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = field(default=DIGIT_CLASSES)

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
            self.X_test[:n_test], self.y_test[:n_test], self.class_names,
        )

    def training_slice(self, max_train: int | None, seed: int = 0) -> Dataset:
        """At most ``max_train`` training images, a stratified sample seeded by ``seed`` (kept in
        their original order); the test set is untouched. ``None`` keeps every image."""
        if max_train is None or max_train >= len(self.y_train):
            return self
        from sklearn.model_selection import train_test_split

        rows = np.arange(len(self.y_train))
        try:
            kept, _ = train_test_split(rows, train_size=max_train, stratify=self.y_train, random_state=seed)
        except ValueError as exc:  # fewer images than classes
            raise UsageError(f"--max-train {max_train} is too small a slice of {self.name}'s "
                             f"{self.n_classes} classes ({exc}); use at least a few images per class") from None
        kept = np.sort(kept)
        return Dataset(self.name, self.X_train[kept], self.y_train[kept], self.X_test, self.y_test,
                       self.class_names)


# ----------------------------------------------------------------------------- idx format

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def _open(path: Path):
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one idx file (raw or gzipped) into an array, checking its header against its size.

    Raises
    ------
    IdxError
        When the file is missing, its magic number is wrong, or it holds fewer or more bytes than
        its header promises.
    """
    path = Path(path)
    if not path.is_file():
        raise IdxError(f"idx file not found: {path}")
    try:
        with _open(path) as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise IdxError(f"cannot read {path}: {exc}; the file is damaged, download it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise IdxError(
            f"{path} is not an idx file: magic number {raw[:4].hex() or 'missing'}, expected "
            "00 00 <type> <ndim> (e.g. 00000803 for images); is it the right file?"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path} is truncated: its header is cut short; download it again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxError(
            f"{path} is truncated or padded: header says shape {shape} ({expected} bytes of data), "
            f"file holds {len(raw) - header}; download it again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write a uint8/int8 array as an idx file (gzipped when ``compress`` or the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype not in _IDX_CODES:
        raise ValueError(f"write_idx supports uint8 and int8 arrays, got {array.dtype}")
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    compress = path.suffix == ".gz" if compress is None else compress
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array).tobytes())
    return path


# ----------------------------------------------------------------------------- locating files

def default_cache_dir() -> Path:
    """``$HPSEARCH_DATA``, else ``~/.cache/hpsearch``."""
    return Path(os.environ.get("HPSEARCH_DATA", Path.home() / ".cache" / "hpsearch"))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_dir_complete(directory: Path) -> bool:
    return all(_find_idx(directory, stem) for stem in IDX_FILES.values())


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_idx(name: str, target: Path, base_url: str | None = None,
                 checksums: dict[str, str] | None = None) -> Path:
    """Download the four gzipped idx files of ``name`` into ``target``, verifying each MD5.

    A file whose checksum does not match is removed and reported; nothing unverified is kept.
    """
    default_url, default_sums = DOWNLOADS[name]
    base_url = base_url or default_url
    checksums = checksums or default_sums
    target.mkdir(parents=True, exist_ok=True)
    for filename, md5 in checksums.items():
        final = target / filename
        if final.is_file() and _md5(final) == md5:
            continue
        fd, tmp = tempfile.mkstemp(dir=target, suffix=".part")
        os.close(fd)
        try:
            with urllib.request.urlopen(base_url + filename, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
            got = _md5(Path(tmp))
            if got != md5:
                raise IdxError(
                    f"checksum mismatch for {base_url + filename}: md5 {got}, expected {md5}; "
                    "the download is corrupt or the mirror changed: retry, or pass --data-dir"
                )
            os.replace(tmp, final)
        except OSError as exc:
            raise IdxError(
                f"could not download {name} ({base_url + filename}): {exc}. Without a network, put "
                f"the four idx files ({', '.join(IDX_FILES.values())}, raw or .gz) in a folder "
                "and pass --data-dir"
            ) from exc
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return target


def _locate(name: str, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise UsageError(f"--data-dir {data_dir} does not exist; pass a folder that holds "
                             f"the {name} idx files")
        if not _idx_dir_complete(data_dir):
            missing = [s for s in IDX_FILES.values() if not _find_idx(data_dir, s)]
            raise IdxError(
                f"--data-dir {data_dir} lacks the {name} idx files {missing} (raw or .gz); "
                "put the four standard files there or leave out --data-dir to use the cache"
            )
        return data_dir
    cache = default_cache_dir() / name
    for directory in (cache, SYSTEM_DIRS.get(name)):
        if directory is not None and directory.is_dir() and _idx_dir_complete(directory):
            return directory
    hint = " (or `apt-get install dataset-fashion-mnist`)" if name == "fashion-mnist" else ""
    try:
        return download_idx(name, cache)
    except IdxError as exc:
        raise IdxError(f"{exc}{hint}") from None


def _load_idx_dataset(name: str, data_dir, class_names) -> Dataset:
    directory = _locate(name, data_dir)
    arrays = {key: read_idx(_find_idx(directory, stem)) for key, stem in IDX_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise IdxError(
                f"{directory}: {split} images {images.shape} and labels {labels.shape} do not "
                "match (expected (n, rows, cols) images and n labels); are the files mixed up?"
            )

    def prepare(images):
        return (images.astype(np.float32) / 255.0)[:, None, :, :]

    return Dataset(
        name, prepare(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
        prepare(arrays["test_images"]), arrays["test_labels"].astype(np.int64), class_names,
    )


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    X = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
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
    """
    key = name.lower().replace("_", "-")
    if key == "digits":
        return _load_digits()
    if key == "mnist":
        return _load_idx_dataset("mnist", data_dir, DIGIT_CLASSES)
    if key in ("fashion-mnist", "fashionmnist"):
        return _load_idx_dataset("fashion-mnist", data_dir, FASHION_CLASSES)
    raise UsageError(f"--dataset must be one of {', '.join(DATASETS)}, got {name!r}")

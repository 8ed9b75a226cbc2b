"""MNIST and Fashion-MNIST: where their four idx files are found or downloaded, and how they load."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import UsageError, param
from .dataset import Dataset, check_splits
from .idx import IdxError, read_idx
from .preprocess import scale

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


def default_cache_dir() -> Path:
    """``$HPSEARCH_DATA``, else ``~/.cache/hpsearch``."""
    return Path(os.environ.get("HPSEARCH_DATA", Path.home() / ".cache" / "hpsearch"))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        try:
            if candidate.is_file():
                return candidate
        except OSError as exc:  # a folder without read or search permission
            raise IdxError(f"{directory}: cannot be read ({exc.strerror}); check its permissions") from None
    return None


def _readable_dir(directory: Path) -> bool:
    """Whether ``directory`` is a folder; one under a folder without permission is said in one line."""
    try:
        return directory.is_dir()
    except OSError as exc:  # Python 3.11's is_dir raises EACCES
        raise IdxError(f"{directory}: cannot be read ({exc.strerror}); set $HPSEARCH_DATA to a folder you can "
                       f"read and write, or pass {param('data_dir')}") from None


def _idx_dir_complete(directory: Path) -> bool:
    return all(_find_idx(directory, stem) for stem in IDX_FILES.values())


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def download_folder(target: Path):
    """``target`` made for a download. A download that fails takes back the folders it made while they
    are empty (the cache's ``mnist/``, ``hpsearch/``): verified files already there stay for a retry."""
    # deepest first (a file is not made, and a folder under one without permission is said: _readable_dir)
    made = [folder for folder in (target, *target.parents) if not _readable_dir(folder) and not folder.exists()]
    try:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, or a file where a folder goes
            raise IdxError(f"cannot make the download folder {target} ({exc.strerror}); set $HPSEARCH_DATA to a "
                           f"folder you can write, or put the files in a folder and pass {param('data_dir')}") \
                from None
        yield target
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty: kept, and so are the folders above it
                break
        raise


def download_idx(name: str, target: Path, base_url: str | None = None,
                 checksums: dict[str, str] | None = None) -> Path:
    """Download the four gzipped idx files of ``name`` into ``target``, verifying each MD5.

    A file whose checksum does not match is removed and reported; nothing unverified is kept.
    """
    default_url, default_sums = DOWNLOADS[name]
    base_url = base_url or default_url
    checksums = checksums or default_sums
    with download_folder(Path(target)):
        for filename, md5 in checksums.items():
            _download_file(base_url + filename, Path(target) / filename, md5, name)
    return target


def _download_file(url: str, final: Path, md5: str, name: str) -> None:
    """``url`` into ``final`` when ``final`` is not already that file, through a ``.part`` beside it."""
    if final.is_file() and file_md5(final) == md5:
        return
    fd, tmp = tempfile.mkstemp(dir=final.parent, suffix=".part")
    os.close(fd)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out)
        got = file_md5(Path(tmp))
        if got != md5:
            raise IdxError(
                f"checksum mismatch for {url}: md5 {got}, expected {md5}; "
                f"the download is corrupt or the mirror changed: retry, or pass {param('data_dir')}"
            )
        os.replace(tmp, final)
    except OSError as exc:
        raise IdxError(
            f"could not download {name} ({url}): {exc}. Without a network, put "
            f"the four idx files ({', '.join(IDX_FILES.values())}, raw or .gz) in a folder "
            f"and pass {param('data_dir')}"
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _locate(name: str, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            problem = "is not a folder" if data_dir.exists() else "does not exist"
            raise UsageError(f"{param('data_dir')} {data_dir} {problem}; pass a folder that holds "
                             f"the {name} idx files")
        if not _idx_dir_complete(data_dir):
            missing = [s for s in IDX_FILES.values() if not _find_idx(data_dir, s)]
            raise IdxError(
                f"{param('data_dir')} {data_dir} lacks the {name} idx files {missing} (raw or .gz); "
                f"put the four standard files there or leave out {param('data_dir')} to use the cache"
            )
        return data_dir
    cache = default_cache_dir() / name
    for directory in (cache, SYSTEM_DIRS.get(name)):
        if directory is not None and _readable_dir(directory) and _idx_dir_complete(directory):
            return directory
    hint = " (or `apt-get install dataset-fashion-mnist`)" if name == "fashion-mnist" else ""
    try:
        return download_idx(name, cache)
    except IdxError as exc:
        raise IdxError(f"{exc}{hint}") from None


def load_idx_dataset(name: str, data_dir, class_names: tuple[str, ...]) -> Dataset:
    """The four idx files of ``name``: uint8 images ``(n, rows, cols)`` and integer labels, checked
    file by file (:func:`read_idx`) and together (:func:`check_splits`, naming the files)."""
    directory = _locate(name, data_dir)
    paths = {key: _find_idx(directory, stem) for key, stem in IDX_FILES.items()}
    arrays = {key: read_idx(path, ndim=3, dtype=np.uint8) if key.endswith("images") else read_idx(path, ndim=1)
              for key, path in paths.items()}
    check_splits(arrays, len(class_names), {key: path.name for key, path in paths.items()},
                 where=str(directory), error=IdxError)
    if not len(arrays["test_labels"]):  # the winner is scored there: every retraining failed after the whole search
        raise IdxError(f"{directory}: {paths['test_images'].name} holds no images; the winner is scored on the test "
                       "set: is it the right file, or damaged? re-download it")

    def prepare(images):
        return scale(images, 255.0)[:, None, :, :]  # the conventions of hpsearch.data.preprocess

    return Dataset(
        name, prepare(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
        prepare(arrays["test_images"]), arrays["test_labels"].astype(np.int64), class_names,
    )

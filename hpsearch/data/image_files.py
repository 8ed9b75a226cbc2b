"""Folders of image files, read safely and once: what the Triple-MNIST and image-folder loaders share.

- ``label_folders`` lists a split's label folders and their files in sorted order, refusing anything
  that is not a regular file *before* it is opened (a FIFO would block the read, a device never end,
  a link in a loop raise), and skipping dot-files (``.DS_Store``);
- ``header_size`` reads an image's size from its header, nothing decoded (upright: as its EXIF
  orientation shows it);
- ``listing_key`` digests every file's name, size, mtime, ctime and inode, so a decoded cache
  (``read_cache`` / ``write_cache``: plain arrays, ``allow_pickle=False``, sealed with this user's key)
  is used only for the same files and a changed folder is read again, and only when written here;
- ``progress_bar`` is the bar large folders load with.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .mnist import default_cache_dir

__all__ = ["label_folders", "header_size", "listing_key", "read_cache", "write_cache", "progress_bar"]


def label_folders(split_dir: Path, error: type[UsageError], check_name: Callable[[str], str | None] | None = None
                  ) -> list[tuple[str, list[os.DirEntry]]]:
    """``[(label, files)]`` of ``split_dir``'s label folders, sorted by name, their files sorted too (a
    stable order: a seed gives the same folds). ``check_name(name)`` returns why a folder name is no
    label (None: fine). Raises ``error`` naming a stray file, a nested folder or a special file."""
    labels = []
    split = split_dir.name
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith("."):  # .DS_Store and the like
            continue
        if not entry.is_dir():
            raise error(f"{entry.path}: a file where {split}/ holds only class folders; move it out")
        if _undecodable(entry.name):
            shown = os.fsencode(entry.path).decode("utf-8", "backslashreplace")
            raise error(f"{shown}/: a class folder whose name is not UTF-8 text (the class name would be unreadable "
                        "in the pictures, the report and the page); rename it (convmv -f latin1 -t utf8 -r --notest "
                        "converts a whole tree)")
        why = check_name(entry.name) if check_name else None
        if why:
            raise error(f"{entry.path}/: {why}")
        files = sorted((e for e in os.scandir(entry.path) if not e.name.startswith(".")), key=lambda e: e.name)
        for f in files:
            try:
                kind = "folder" if f.is_dir() else "file" if f.is_file() else "other"
            except OSError:  # a link in a loop
                kind = "other"
            if kind == "folder":
                raise error(f"{f.path}: a folder inside class folder {split}/{entry.name}/, which holds only "
                            "images; move it out")
            if kind == "other":  # never opened: a FIFO would block the read, a device never end
                raise error(f"{f.path}: not a regular file (a FIFO, a device, or a link leading nowhere or in a "
                            "loop); remove it")
        labels.append((entry.name, files))
    return labels


def _undecodable(name: str) -> bool:
    """Whether the file system's bytes for ``name`` were not UTF-8 (Python keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# EXIF orientations that turn a picture a quarter: shown, its width is its stored height
_QUARTER_TURNS = {5, 6, 7, 8}


def header_size(path: str, error: type[UsageError], upright: bool = False) -> tuple[tuple[int, int], str]:
    """An image's ``((width, height), mode)`` from its header (nothing decoded), or ``error`` naming the file;
    ``upright``: the size once its EXIF orientation is applied (as ``preprocess`` decodes it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # only the header is read: the caller refuses a large image on its size, in its own words
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                (width, height), mode = img.size, img.mode
                if upright and _orientation(img, path) in _QUARTER_TURNS:
                    width, height = height, width
                return (width, height), mode
    except UnidentifiedImageError:
        raise error(f"{path}: not a readable image (no PNG, JPEG, BMP, GIF, WebP or TIFF); remove or replace "
                    "it") from None
    except Image.DecompressionBombError:  # past twice Pillow's cap: its words name a DOS attack, not the fix
        raise error(f"{path}: an image whose header declares over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, far more "
                    "than are read (a decompression bomb, or a photo far larger than a small classifier reads); "
                    "shrink or remove it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise error(f"{path}: not a readable image ({type(exc).__name__}: {exc}); remove or replace it") from None


def _orientation(img, path: str) -> int | None:
    """The EXIF orientation of an opened image, its pixels never decoded: Image's own getexif reads what
    the header holds (PNG's decodes the image to find an eXIf chunk after the pixels, which ``_late_png_exif``
    finds by walking the chunks instead)."""
    from PIL import Image

    found = Image.Image.getexif(img).get(0x0112)
    if found is None and img.format == "PNG":
        late = _late_png_exif(path)
        if late is not None:
            exif = Image.Exif()
            exif.load(late)
            found = exif.get(0x0112)
    return found


def _late_png_exif(path: str) -> bytes | None:
    """The data of a PNG's eXIf chunk, read by skipping from chunk to chunk (nothing decompressed), or None."""
    import struct

    with open(path, "rb") as fh:
        fh.seek(8)  # the signature
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                return fh.read(length)
            if kind == b"IEND":
                return None
            fh.seek(length + 4, os.SEEK_CUR)  # the data and its CRC


def listing_key(entries: Iterable[tuple[str, os.DirEntry]], *extra) -> str:
    """A digest of every ``(relative name, entry)``'s name, size, mtime, ctime and inode, and of ``extra`` (a
    cache's version and the options that change what it holds)."""
    digest = hashlib.sha256(repr(extra).encode())
    for name, entry in entries:
        st = entry.stat()
        # surrogateescape: a file name that is not UTF-8 is still its bytes
        # ctime and inode too: a file rewritten with its size and mtime put back (cp -p, rsync -t) is read again
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n"
                      .encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _cache_paths(root: Path, file_name: str, subdir: str) -> list[Path]:
    """Beside the images, else (a read-only folder) in the hpsearch cache, named by the folder's path."""
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return [root / file_name, default_cache_dir() / subdir / f"{tag}.npz"]


def _cache_secret() -> bytes:
    """This user's key for sealing caches (in hpsearch's state folder, never a data folder): a cache whose
    seal it does not open was not written here. Made once, whole (linked into place: two jobs starting at
    once settle on one); a state folder that cannot be written gives a key for this process alone (the
    caches are then read again, only slower)."""
    from ..training.models.trust import state_file

    path = state_file().parent / "cache_secret"
    for _ in range(2):
        try:
            secret = path.read_bytes()
            if len(secret) == 32:
                return secret
        except OSError:
            pass
        made = os.urandom(32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cache_secret.")  # 0600
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(made)
                try:
                    os.link(tmp, path)  # atomic, and never over another process's key
                except FileExistsError:
                    if path.stat().st_size != 32:  # a damaged key: replaced whole
                        os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        except OSError:
            return _SESSION_SECRET.setdefault("secret", made)
    return _SESSION_SECRET.setdefault("secret", os.urandom(32))


_SESSION_SECRET: dict[str, bytes] = {}


def _seal(key: str, arrays: dict) -> str:
    """An HMAC of the listing key and every array (name, dtype, shape, bytes) under this user's secret: a
    cache shipped in someone else's folder, its key matching the files (tar and rsync keep mtimes), could
    otherwise swap pixels or labels unseen."""
    mac = hmac.new(_cache_secret(), key.encode(), hashlib.sha256)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        mac.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        mac.update(array.tobytes())
    return mac.hexdigest()


def _sealed_here(path: Path) -> bool:
    """Whether the cache at ``path`` opens with this user's key (whatever files it is of)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files if name not in ("key", "seal")}
            return hmac.compare_digest(str(z["seal"]), _seal(str(z["key"]), arrays))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return True  # damaged or not a cache: ours to replace


def read_cache(root: Path, file_name: str, subdir: str, key: str) -> dict | None:
    """The arrays ``write_cache`` kept under ``key`` and sealed here, or None (absent, damaged, of other files
    or not written by this user: the images are read again)."""
    for path in _cache_paths(root, file_name, subdir):
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    arrays = {name: z[name] for name in z.files if name not in ("key", "seal")}
                    if hmac.compare_digest(str(z["seal"]), _seal(key, arrays)):
                        return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent or damaged: read again
            continue
    return None


def write_cache(root: Path, file_name: str, subdir: str, key: str, arrays: dict) -> None:
    """Keep ``arrays`` beside the images (else in the cache), whole or not at all; no cache is only slower."""
    for path in _cache_paths(root, file_name, subdir):
        if path.parent == root and path.is_file() and not _sealed_here(path):
            continue  # another user's cache in a shared folder: kept, ours goes to our own cache folder
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez_compressed(fh, key=np.array(key), seal=np.array(_seal(key, arrays)), **arrays)
                os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from the folder's other readers
                os.replace(tmp, path)  # a reader never sees half a cache
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            return
        except OSError:  # read-only: try the next place
            continue


def progress_bar(total: int, desc: str, progress: bool | None):
    """A tqdm bar; ``progress`` None: on a terminal and for 5,000 images or more."""
    from tqdm.auto import tqdm

    disable = (None if total >= 5000 else True) if progress is None else not progress
    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True, disable=disable)

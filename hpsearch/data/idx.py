"""The idx format of MNIST-like data: read (raw or gzipped, every defect named in one line) and write."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import UsageError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}  # what write_idx writes
_TYPE_CODES = {np.dtype(t).newbyteorder("="): code for code, t in _IDX_DTYPES.items()}
_KINDS = {3: "images", 1: "labels"}
MAX_NDIM = 16  # idx allows up to 255 axes; a larger count is a damaged header, not data
_GZIP_MAGIC = b"\x1f\x8b"


class IdxError(UsageError):
    """An idx file is missing, damaged or not an idx file, or the files of a dataset do not fit
    together (counts, labels, classes, image sizes)."""


_CHUNK = 64 << 20


def _read_at_most(fh, n: int) -> bytes:
    """Up to ``n`` bytes of ``fh``, read in chunks: one ``read(n)`` reserves ``n`` bytes first, so a
    header claiming terabytes failed on memory (or overflowed) before the file was seen to be short."""
    chunks, held = [], 0
    while held < n:
        chunk = fh.read(min(_CHUNK, n - held))
        if not chunk:
            break
        chunks.append(chunk)
        held += len(chunk)
    return b"".join(chunks)


def _decompress(path: Path) -> bytes:
    """The decompressed idx header and at most one byte more than the data it declares: a small file of
    gigabytes of padding (a crafted .gz) is said padded without being held in memory."""
    try:
        with gzip.open(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_DTYPES or not 1 <= head[3] <= MAX_NDIM:
                return head + fh.read(64)  # no idx header: enough to name what it is
            dims = fh.read(4 * head[3])
            if len(dims) < 4 * head[3]:
                return head + dims
            size = math.prod(struct.unpack(f">{head[3]}I", dims)) * np.dtype(_IDX_DTYPES[head[2]]).itemsize
            data = _read_at_most(fh, size + 1)
            if len(data) <= size:  # not padded: read to the end, where gzip checks its trailer (CRC, length)
                data += fh.read(1)
            return head + dims + data
    except EOFError:
        reason = "it ends before the compressed data do"
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        reason = str(exc).split(":")[0][:60] or type(exc).__name__
    raise IdxError(f"cannot decompress {path}: {reason}; the file is damaged or cut short: re-download it")


def _magic(raw: bytes) -> str:
    return raw[:4].hex()


def _axes(n: int) -> str:
    return f"{n} axis" if n == 1 else f"{n} axes"


def _describe_type(code: int) -> str:
    return f"0x{code:02x} ({np.dtype(_IDX_DTYPES[code]).name})"


def read_idx(path: str | os.PathLike, ndim: int | None = None, dtype=None) -> np.ndarray:
    """Read one idx file (raw or gzipped) into an array, checking its header against its size.

    Parameters
    ----------
    path : path
    ndim : int, optional
        The number of axes the file must have (3 for images, 1 for labels).
    dtype : numpy dtype, optional
        The element type the file must hold (``np.uint8`` for MNIST-like data).

    Raises
    ------
    IdxError
        When the file is missing, empty, not gzip although it starts like gzip, its magic number
        is wrong (or not the expected ``ndim``/``dtype``), or it holds fewer or more bytes than its
        header promises. The message is one line naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise IdxError(f"idx file not found: {path}") from None
    except OSError as exc:  # a folder, no permission
        raise IdxError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    if not raw:
        raise IdxError(f"{path} is empty (0 bytes); re-download it")
    gzipped = raw[:2] == _GZIP_MAGIC
    if gzipped:
        raw = _decompress(path)
    if len(raw) < 4:
        raise IdxError(f"{path} is truncated: {len(raw)} bytes, fewer than an idx magic number's 4; re-download it")
    if raw[0] != 0 or raw[1] != 0:
        what = "neither gzip nor an idx file" if path.suffix == ".gz" and not gzipped else "not an idx file"
        raise IdxError(f"{path} is {what}: it starts with {_magic(raw)}, not 00 00 <type> <ndim> as idx "
                       "files do (e.g. 00000803); is it the right file?")
    code, axes = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"{c:02x}" for c in _IDX_DTYPES)
        raise IdxError(f"{path}: idx magic {_magic(raw)} has unknown type code 0x{code:02x} (known: {known}); "
                       "the file is damaged: re-download it")
    expected = _KINDS.get(ndim, "the data")
    if ndim is not None and axes != ndim:
        raise IdxError(f"{path}: idx magic {_magic(raw)} says {_axes(axes)}, {expected} have {ndim} "
                       f"(magic 000008{ndim:02x}); is it the right file, or damaged?")
    if not 1 <= axes <= MAX_NDIM:
        raise IdxError(f"{path}: idx magic {_magic(raw)} says {_axes(axes)} (1 to {MAX_NDIM} expected); "
                       "the file is damaged: re-download it")
    found = np.dtype(_IDX_DTYPES[code])
    if dtype is not None and found.newbyteorder("=") != np.dtype(dtype):
        want = _TYPE_CODES[np.dtype(dtype)]  # KeyError: not an idx type, a caller's bug
        raise IdxError(f"{path}: idx type {_describe_type(code)}, but {expected} here must be type "
                       f"{_describe_type(want)} (magic 0000{want:02x}{axes:02x}); is it the right file?")
    header = 4 + 4 * axes
    if len(raw) < header:
        raise IdxError(f"{path} is truncated: its {axes}-axis header needs {header} bytes, the file "
                       f"holds {len(raw)}; re-download it")
    shape = struct.unpack(f">{axes}I", raw[4:header])
    size = math.prod(shape) * found.itemsize
    held = len(raw) - header
    if held != size:
        problem = "truncated" if held < size else "padded"
        holds = "more" if gzipped and held > size else held  # (decompressed only one byte past the data)
        raise IdxError(f"{path} is {problem}: header says shape {shape} ({size} bytes of data), file "
                       f"holds {holds}; re-download it")
    return np.frombuffer(raw, dtype=found, offset=header).reshape(shape).astype(found.newbyteorder("="))


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

"""A CIFAR-10 python batch read safely: **a pickle can run code when it is loaded**, so these are read with
a restricted unpickler that builds only what a CIFAR-10 batch holds, numpy arrays and plain containers
(and latin-1 bytes, as Python-2 pickles encode them); any other global a file names (``os.system``,
``builtins.eval``, ...) is refused with a ``CifarError`` before anything runs. A file whose memo references
would build a structure far larger than itself (a tuple nested 60 deep, each level holding the one below
twice: hashing it as a dict key takes 2^60 steps, in C, deaf to Ctrl-C) is refused before it is loaded."""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import UsageError, brief
from ..rundir.pickle_scan import Unfollowable, too_large

__all__ = ["CifarError", "unpickle", "MAX_PICKLE_BYTES"]


class CifarError(UsageError):
    """A CIFAR-10 file is missing, damaged, unsafe or not a CIFAR-10 batch (one line, naming it)."""


def _latin1(text, encoding="utf-8"):
    """``_codecs.encode`` as pickles of bytes (protocol < 3) call it: only to latin-1 bytes."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}, not latin-1")
    return codecs.encode(text, "latin-1")


def _no_bytes(*args):
    """``bytes()`` as protocol 2 pickles an empty bytes object (an empty batch's): with no argument only."""
    if args:
        raise pickle.UnpicklingError(f"bytes{args!r}, not the empty bytes()")
    return b""


def _allowed() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric  # numpy 2; the pickles may name numpy.core
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric

    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): _latin1, ("__builtin__", "bytes"): _no_bytes,
                                              ("builtins", "bytes"): _no_bytes}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    """Builds numpy arrays, dtypes and scalars (and latin-1 bytes); refuses every other global."""

    _ALLOWED = _allowed()

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it names {module}.{name}") from None


MAX_PICKLE_BYTES = 256 * 1024 * 1024  # a real python batch is 31 MB: a larger file is no CIFAR-10 batch
def unpickle(path: Path):
    """A python batch's dict, read with ``_SafeUnpickler``; a ``CifarError`` naming the file otherwise."""
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise CifarError(f"{path} holds {size:,} bytes, more than any CIFAR-10 batch (31 MB); is it the right "
                             "file?")
        raw = path.read_bytes()
    except OSError as exc:
        raise CifarError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw:
        raise CifarError(f"{path} is empty (0 bytes); re-download it")
    try:
        why = too_large(raw)
        if why:
            raise CifarError(f"{path} refused: {why}, which a CIFAR-10 batch never does (loading it would not "
                             "end); delete it and re-download")
        return _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except CifarError:
        raise
    except Unfollowable as exc:  # cut short, or made to get past the check: never loaded
        reason = str(exc)
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("it names "):
            raise CifarError(f"{path} refused: {exc}, which a CIFAR-10 batch never does (only numpy arrays "
                             "and lists); loading it could run code: delete it and re-download") from None
        reason = brief(exc)
    except Exception as exc:  # a damaged pickle can raise almost anything: EOFError, ValueError, ...
        reason = f"{type(exc).__name__}: {brief(exc)}" if str(exc).strip() else type(exc).__name__
    raise CifarError(f"cannot read {path}: not a CIFAR-10 python batch, or damaged or cut short "
                     f"({reason}); re-download it") from None

"""The training data resident in a job: put on the device once per job (this process) and reused by
every fold and config the job runs, and shared with joblib's workers as one memory-mapped file."""

from __future__ import annotations

import mmap
import os
import re
import shutil
import sys
import tempfile
import warnings
import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .workers import pid_alive

__all__ = ["resident", "release_resident", "shared_array", "data_moves", "sweep_stale_shared"]


# This process's copy of the training data as a tensor on the device: {"key", "ref", "X", "moves"}.
_RESIDENT: dict = {"key": None, "ref": None, "X": None, "moves": 0}


def _data_key(X: np.ndarray, device):
    """What identifies ``X``'s data across the tasks of one job: a whole memory-mapped file (as
    joblib ships an array: one file per array, a new memmap object per task) by its file; anything
    else, slices of a memmap included, by identity (checked through a weak reference: ids are
    reused)."""
    layout = (X.shape, X.strides, X.dtype.str, str(device))
    if isinstance(X, np.memmap) and isinstance(X.base, mmap.mmap) and getattr(X, "filename", None):
        return ("file", X.filename, X.offset, *layout), None
    return ("object", id(X), *layout), weakref.ref(X)


def resident(X, device) -> torch.Tensor:
    """``X`` as a tensor on ``device``, moved there once per job (this process) and reused by
    every fold and config the job runs, instead of once per fit. On the CPU it is a view of
    ``X``'s memory, not a copy (read only: the folds gather their rows out of it). Like joblib's
    own memmaps, it assumes ``X`` is not changed in place between calls. (Arrays under joblib's
    1 MB memmapping threshold, such as digits, reach each task as a new pickled copy; converting
    those costs next to nothing.)"""
    if isinstance(X, torch.Tensor):
        return X.to(device)
    key, ref = _data_key(X, device)
    cached = _RESIDENT
    if cached["key"] == key and (cached["ref"] is None or cached["ref"]() is X):
        return cached["X"]
    array = X if all(s >= 0 for s in X.strides) else np.ascontiguousarray(X)  # torch needs strides >= 0
    with warnings.catch_warnings():  # a joblib memmap is read-only; torch warns, we never write
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(np.asarray(array)).to(device)
    cached.update(key=key, ref=ref, X=tensor, moves=cached["moves"] + 1)
    return tensor


@contextmanager
def shared_array(X: np.ndarray):
    """``X`` as a read-only memmap of a temporary file (in /dev/shm when it can), for the duration
    of a search. joblib's workers map that file as it is; left to itself, joblib dumps ``X`` to a
    folder of its own and, at the end, waits up to 1 s for that folder to empty, which it cannot
    while the workers keep ``resident`` views of it. Arrays under joblib's 1 MB memmapping
    threshold are returned as they are (joblib pickles those)."""
    folder = SHM if os.access(SHM, os.W_OK) else None
    sweep_stale_shared(folder)  # joblib's own memmaps of small arrays too: swept whatever X's size
    if X.nbytes < 1_000_000 or isinstance(X, np.memmap):
        yield X
        return
    # the pid in the name lets a later search sweep what a killed one (kill -9) left behind
    with tempfile.TemporaryDirectory(prefix=f"hpsearch-{os.getpid()}-", dir=folder) as tmp:
        path = os.path.join(tmp, "X.npy")
        np.save(path, X)
        yield np.load(path, mmap_mode="r")


SHM = "/dev/shm"


# What a process killed before it could clean up leaves in the shared-memory folder, named with its pid:
# our shared training data, joblib's memmapped arrays, loky's semaphores. (glob, pid pattern, what it is)
_LEFT_BEHIND = (
    ("hpsearch-*-*", re.compile(r"hpsearch-(\d+)-"), "the shared training data of a search that was killed"),
    ("joblib_memmapping_folder_*", re.compile(r"joblib_memmapping_folder_(\d+)_"),
     "joblib's shared arrays of a process that was killed"),
    ("sem.loky-*", re.compile(r"sem\.loky-(\d+)-"), "a loky semaphore of a process that was killed"),
)


def sweep_stale_shared(folder: str | None = None) -> list[str]:
    """Remove what processes killed before they could clean up (kill -9) left in ``folder`` (default:
    the temporary folder): our shared arrays (``hpsearch-<pid>-*``), joblib's memmap folders and loky's
    semaphores, only those of a pid that no longer runs; saying so. Returns what was removed."""
    folder = folder or tempfile.gettempdir()
    removed = []
    for pattern, named, what in _LEFT_BEHIND:
        for path in sorted(Path(folder).glob(pattern)):
            match = named.match(path.name)
            if match is None or pid_alive(int(match.group(1))) or path.is_symlink():
                continue
            size = sum(f.stat().st_size for f in path.glob("*") if f.is_file()) if path.is_dir() else \
                path.stat().st_size
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(str(path))
            print(f"hpsearch: removed {path} ({size / 1e6:.0f} MB), {what} (pid {match.group(1)})", file=sys.stderr,
                  flush=True)
    return removed


def release_resident() -> None:
    """Forget this process's resident data (frees its device memory once nothing else holds it)."""
    _RESIDENT.update(key=None, ref=None, X=None)


def data_moves() -> int:
    """How many times this process has put training data on a device (once per job and dataset)."""
    return _RESIDENT["moves"]

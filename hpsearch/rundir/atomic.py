"""Writing a run's files so that a reader (or a killed process) never sees half of one."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import StorageError, brief

__all__ = ["atomic_write", "atomic_write_text", "remove_stale_temps"]

# the temporary files a write leaves when its process is killed (kill -9, a power cut): ours (below) and an
# export's staged files (``.model.onnx.<pid>.staged``)
_TEMP_NAME = re.compile(r"\..+\.(?:[0-9a-f]{8}\.tmp|[0-9]+\.staged)")
STALE_AFTER_S = 600  # no live write takes this long without touching its file


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``path``, created with mode 0666 less the umask, as
    ``open(path, "w")`` would (``tempfile.mkstemp`` makes it 0600 whatever the umask)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, write: Callable, binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``:
    readers see the old file or the new one, never half. The file's mode follows the umask, like
    any other file's."""
    path = Path(path)
    try:
        fd, tmp = _create_temp(path)
    except OSError as exc:
        raise _storage_error(path, exc) from None
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        # torch.save reports a failed write as a RuntimeError ("... failed writing file ...", or on a full disk
        # "unexpected pos ..." raised while the OSError of the write is handled)
        # (torch's own words only: a traceback a RuntimeError carries may name any function "..._write...")
        if isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and (
                "failed writing" in str(exc) or "write failed" in str(exc)
                or isinstance(exc.__context__ or exc.__cause__, OSError))):
            raise _storage_error(path, exc) from None
        raise


def _storage_error(path: Path, exc: BaseException) -> StorageError:
    reason = brief(exc)
    return StorageError(f"cannot write {path} ({reason}); free space on that disk or make {path.parent} "
                        "writable, then run the same command again: every finished result is kept")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``atomic_write``)."""
    atomic_write(path, lambda fh: fh.write(text))


def remove_stale_temps(folder: Path, recursive: bool = False) -> None:
    """Delete the temporary files killed writes left in ``folder`` (and below it, with ``recursive``):
    each kill left one (a state's of several MB) and nothing removed them. Only our names, and only
    those untouched for ``STALE_AFTER_S``: a write under way elsewhere (``hpsearch report``, which takes
    no lock) keeps its file. Called with the run's lock held; a file that cannot go is left."""
    now = time.time()
    for root, _, files in os.walk(folder) if recursive else [(folder, [], _files(folder))]:
        for name in filter(_TEMP_NAME.fullmatch, files):
            path = os.path.join(root, name)
            try:
                if not os.path.islink(path) and now - os.path.getmtime(path) > STALE_AFTER_S:
                    os.remove(path)
            except OSError:
                pass


def _files(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
    except OSError:
        return []

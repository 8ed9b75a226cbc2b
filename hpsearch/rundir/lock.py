"""The lock that lets one command at a time write to a run folder (a search, a retraining, a
comparison)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import StorageError, UsageError, brief, param
from .atomic import remove_stale_temps
from .names import CHECKPOINTS_DIR, LOCK_FILE, STATES_DIR, TRIALS_DB, WEIGHTS_DIR

__all__ = ["RunLock", "refuse_links_out"]

# what a command writes or deletes inside: a link there would take those writes and deletions out of the run
WRITTEN_INSIDE = (TRIALS_DB, STATES_DIR, CHECKPOINTS_DIR, WEIGHTS_DIR, "export")


def refuse_links_out(run_dir, names=WRITTEN_INSIDE) -> None:
    """Refuse a run folder (someone else's, shared) whose database or working folders are symbolic links:
    SQLite would create its tables in the link's target, a retraining delete and write files there."""
    for name in names:
        path = Path(run_dir) / name
        if path.is_symlink():
            raise UsageError(f"{path} is a symbolic link (to {os.readlink(path)}), not the run's own "
                             f"{'file' if name == TRIALS_DB else 'folder'}: hpsearch never writes through it; put "
                             "the real one in its place (cp -rL, or remove the link), then run the same command again")


class RunLock:
    """An exclusive lock on a run folder, so only one command writes to it at a time: a search, a
    retraining (``hpsearch retrain``, and a search's own retraining after it), a comparison, the winner's
    pictures (``hpsearch plot``) or an export into the run's ``export/``.

    The OS drops the lock when the process dies, even by ``kill -9``. ``flock`` locks an open file
    description: a second ``RunLock`` on the same folder in the same process is refused like another
    process's, so a command takes it once (the command line's search keeps it through its own
    retraining and pictures: ``run_search(hold=...)``).
    ``fix`` says what to do when the folder is in use (by default: wait and run again, or a new search
    in another ``out``).
    """

    def __init__(self, run_dir: Path, fix: str | None = None):
        self.path = Path(run_dir) / LOCK_FILE
        self.fix = fix
        self._fh = None

    def __enter__(self):
        refuse_links_out(self.path.parent)
        if self.path.is_symlink():  # a shared folder's .lock -> ~/.bashrc would be truncated below
            raise UsageError(f"{self.path} is a symbolic link (to {os.readlink(self.path)}), not the lock file "
                             f"hpsearch writes; remove it (it is made anew), then run the same command again")
        try:
            # O_NOFOLLOW: a link made between the check above and here is refused too, not followed
            self._fh = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644), "a+")
        except OSError as exc:  # a read-only run folder: one line, as any other file it cannot write
            raise StorageError(f"cannot write {self.path} ({brief(exc)}); make {self.path.parent} writable, then "
                               "run the same command again: every finished result is kept") from None
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            # (not "pass another --out": a --resume takes none; a new search beside it is another command)
            fix = self.fix or (f"wait for it to finish, then run the same command again (it goes on from what is "
                               f"stored); a new search beside it needs its own {param('out')}")
            raise UsageError(f"{self.path.parent} is in use by another hpsearch command ({holder}: a search, "
                             f"retraining, comparison, plot or export); {fix}") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()}")
        self._fh.flush()
        run_dir = self.path.parent  # no other command writes here now: what killed ones left can go
        remove_stale_temps(run_dir)
        for name in WRITTEN_INSIDE[1:]:
            remove_stale_temps(run_dir / name, recursive=True)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()

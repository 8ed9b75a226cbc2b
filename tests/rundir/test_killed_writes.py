"""What a killed write leaves: a temporary file beside its target, which the next command to take the
run's lock removes once nothing can still be writing it (untouched for ``STALE_AFTER_S``)."""

import os
import signal
import subprocess
import sys
import time

from hpsearch.rundir.atomic import STALE_AFTER_S
from hpsearch.rundir.lock import RunLock

WRITER = """
import sys, time
from pathlib import Path
from hpsearch.rundir.atomic import atomic_write
def write(fh):
    fh.write(b"half a state")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
atomic_write(Path(sys.argv[1]), write, binary=True)
"""


def _killed_write(target):
    """A real process killed with SIGKILL in the middle of ``atomic_write(target)``: its temporary file."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    left = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    assert len(left) == 1 and left[0].name.endswith(".tmp") and not target.exists()
    return left[0]


def test_a_killed_writes_temporary_is_removed_by_the_next_command_once_stale(tmp_path):
    run = tmp_path / "run"
    (run / "states" / "3").mkdir(parents=True)
    picture = _killed_write(run / "confusion_matrix.png")
    state = _killed_write(run / "states" / "3" / "fold0.pt")
    staged = run / "export" / ".model.onnx.4242.staged"  # an export killed before it put its files in place
    staged.parent.mkdir()
    staged.write_bytes(b"onnx")
    mine = run / ".notes.tmp"  # a name of the user's: never ours
    mine.write_text("keep")
    young = _killed_write(run / "report.html")  # as fresh as a write under way elsewhere: kept
    old = time.time() - STALE_AFTER_S - 60
    for path in (picture, state, staged, mine):
        os.utime(path, (old, old))
    with RunLock(run):
        pass
    assert not picture.exists() and not state.exists() and not staged.exists()
    assert mine.read_text() == "keep" and young.exists()
    assert (run / "states" / "3").is_dir()  # folders are left as they are

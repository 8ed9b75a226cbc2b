"""kill -9 of a retraining leaves no helper process behind: the progress queue's manager process
dies with the process that started it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from hpsearch.rundir.names import CHECKPOINTS_DIR
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings

SCRIPT = """
import glob, os, time
from hpsearch.retrain.progress import EpochBar, epoch_sink
with epoch_sink(EpochBar(10, 2, desc="retrain", enabled=False), cross_process=True):
    children = [pid for path in glob.glob(f"/proc/{os.getpid()}/task/*/children") for pid in open(path).read().split()]
    print(*children, flush=True)
    time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:  # a zombie (not yet reaped) is gone too
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in status)
    except FileNotFoundError:
        return True


def test_the_progress_manager_dies_with_a_killed_retraining():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    helpers = [int(pid) for pid in proc.stdout.readline().split()]
    assert helpers and not any(_gone(pid) for pid in helpers)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while not all(_gone(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in helpers), helpers


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state, ppid, ...); [] if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() else []
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest.mark.slow
def test_kill_9_of_a_retraining_leaves_no_process(tmp_path):
    """The whole process tree of `hpsearch retrain` with 2 jobs (loky workers, the progress manager, ...)
    is gone within seconds of a kill -9 of the command."""
    run = run_search(SearchSettings(dataset="digits", n=3, cv=2, max_epochs=1, patience=0, progress=False,
                                    out=str(tmp_path / "run")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", "retrain", str(run), "--top", "2",
                             "--retrain-epochs", "400", "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, tree = time.monotonic() + 60, set()
    while time.monotonic() < deadline and len(tree) < 3:  # the jobs and the manager are up
        time.sleep(0.2)
        tree = _descendants(proc.pid)
    assert len(tree) >= 3, tree
    # kill once both jobs train: each has checkpointed an epoch, so its task (and the watchdog the task
    # starts) runs. A fixed wait, or CPU time, raced the imports: a worker that had not begun its task
    # yet has no watchdog and outlived the 10 s below
    while time.monotonic() < deadline and len(list((run / CHECKPOINTS_DIR).glob("*.pt"))) < 2:
        time.sleep(0.2)
    tree |= _descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in tree if not _gone(pid)] == []

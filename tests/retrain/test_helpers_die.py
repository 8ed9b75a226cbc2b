"""kill -9 of a retraining leaves no helper process behind: the progress queue's manager process
dies with the process that started it."""

import os
import signal
import subprocess
import sys
import time

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

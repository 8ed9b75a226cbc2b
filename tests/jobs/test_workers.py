"""A job process ends with the process that started it, even when that one died before the job's
watchdog began; and a job started by a fork server (its parent) lives while its creator does."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")

SCRIPT = """
import multiprocessing as mp, os, sys, time
from hpsearch.jobs.workers import die_with_parent

def job(wait_s, hold_s):
    time.sleep(wait_s)  # for the orphan: its creator is gone by now
    die_with_parent()
    time.sleep(hold_s)  # the orphan's 60 s outlast the test; the watchdog polls every 0.5 s

if __name__ == "__main__":
    method = sys.argv[1]
    process = mp.get_context(method).Process(target=job, args=(1.0, 60) if method == "spawn" else (0.0, 1.5))
    process.start()
    if method == "spawn":
        print(process.pid, flush=True)
        os._exit(0)  # as a kill -9 would: before the job has started its watchdog
    process.join(60)
    print(process.exitcode, flush=True)
"""


def _run(tmp_path, method: str) -> int:
    script = tmp_path / "start_a_job.py"
    script.write_text(SCRIPT)
    said = tmp_path / f"{method}.out"
    with said.open("w") as out:  # a file, not a pipe: run() would wait for the orphan, which holds the pipe
        done = subprocess.run([sys.executable, str(script), method], stdout=out, stderr=subprocess.STDOUT, timeout=120)
    assert done.returncode == 0, said.read_text()
    return int(said.read_text().split()[-1])


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_job_whose_creator_died_before_its_watchdog_began_exits(tmp_path):
    pid = _run(tmp_path, "spawn")
    try:
        deadline = time.monotonic() + 10  # it sleeps 1 s, then should see its creator gone and exit
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(pid), "the orphaned job waited on for a parent that had died before it looked"
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_job_started_by_a_fork_server_lives_while_its_creator_does(tmp_path):
    assert _run(tmp_path, "forkserver") == 0  # 1: the watchdog took the fork server for a new parent

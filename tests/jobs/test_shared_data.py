"""The training data shared with the jobs (/dev/shm): a search killed with kill -9 leaves its copy
behind; the next search sweeps what dead searches left, and only that."""

import os
import subprocess
import sys

import numpy as np

from hpsearch.jobs.resident import shared_array, sweep_stale_shared


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_shared_data_of_a_dead_search_is_swept_and_a_live_ones_kept(tmp_path, capsys):
    stale = tmp_path / f"hpsearch-{_dead_pid()}-abc"
    stale.mkdir()
    (stale / "X.npy").write_bytes(b"\0" * 2_000_000)
    live = tmp_path / f"hpsearch-{os.getpid()}-def"
    live.mkdir()
    other = tmp_path / "hpsearch-notapid-x"
    other.mkdir()
    assert sweep_stale_shared(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()
    err = capsys.readouterr().err
    assert str(stale) in err and "(2 MB)" in err and "killed" in err


def test_joblibs_memmaps_and_lokys_semaphores_of_a_dead_process_are_swept_and_a_live_ones_kept(tmp_path, capsys):
    dead, alive = _dead_pid(), os.getpid()
    folders = [tmp_path / f"joblib_memmapping_folder_{pid}_0f3a_9b1c" for pid in (dead, alive)]
    semaphores = [tmp_path / f"sem.loky-{pid}-0ax3vxos" for pid in (dead, alive)]
    for folder in folders:
        folder.mkdir()
        (folder / "a.pkl").write_bytes(b"\0" * 3_000_000)
    for semaphore in semaphores:
        semaphore.write_bytes(b"\0" * 32)
    assert sweep_stale_shared(str(tmp_path)) == [str(folders[0]), str(semaphores[0])]
    assert not folders[0].exists() and not semaphores[0].exists() and folders[1].exists() and semaphores[1].exists()
    err = capsys.readouterr().err
    assert f"removed {folders[0]} (3 MB), joblib's shared arrays of a process that was killed (pid {dead})" in err
    assert f"removed {semaphores[0]} (0 MB), a loky semaphore of a process that was killed (pid {dead})" in err


def test_a_searchs_shared_copy_names_its_process_and_goes_away(tmp_path):
    X = np.ones((1000, 1, 16, 16), dtype=np.float32)  # over joblib's 1 MB threshold: shared as a file
    with shared_array(X) as shared:
        folder = os.path.dirname(shared.filename)
        assert os.path.basename(folder).startswith(f"hpsearch-{os.getpid()}-")
        assert np.array_equal(shared, X)
    assert not os.path.exists(folder)

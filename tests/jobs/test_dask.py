"""--backend dask on a real LocalCluster of worker processes: the same scores as loky (both engines
and halving), a worker killed mid-search loses nothing, a cluster left without workers stops the
search keeping every finished trial, and bad flags or a scheduler that does not answer exit 2."""

import json
import os
import signal
import threading
import time

import pandas as pd
import pytest
from joblib import delayed

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install -e '.[dask]'")

from hpsearch.cli import main  # noqa: E402
from hpsearch.jobs import dask_backend  # noqa: E402
from hpsearch.rundir.store import load_results  # noqa: E402
from hpsearch.search.interrupt import ClusterLost  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.settings import SearchSettings  # noqa: E402

TINY = dict(dataset="digits", cv=2, patience=0, progress=False)
SCORES = ["trial", "split0_test_score", "split1_test_score", "mean_test_score", "mean_test_accuracy"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster:
        yield cluster


def _scores(run) -> pd.DataFrame:
    return load_results(run)[SCORES].sort_values("trial").reset_index(drop=True)


def _pair(tmp_path, cluster, **settings):
    settings = {**TINY, **settings}
    loky = run_search(SearchSettings(out=str(tmp_path / "loky"), n_jobs=2, **settings))
    dask = run_search(SearchSettings(out=str(tmp_path / "dask"), backend="dask", scheduler=cluster.scheduler_address,
                                     **settings))
    return _scores(loky), _scores(dask)


KILLED = dict(n=6, max_epochs=8, **TINY)  # a search of several seconds: time to kill a worker in it


@pytest.fixture(scope="module")
def loky_reference(tmp_path_factory):
    return _scores(run_search(SearchSettings(out=str(tmp_path_factory.mktemp("loky") / "run"), n_jobs=2, **KILLED)))


@pytest.mark.slow
def test_dask_scores_equal_loky_scores(tmp_path, cluster):
    # 3 configs x 2 folds: more fold tasks than the cluster's 2 slots, taken in any order
    loky, dask = _pair(tmp_path, cluster, n=3, max_epochs=2)
    pd.testing.assert_frame_equal(loky, dask)


@pytest.mark.parametrize("settings", [dict(n=3, max_epochs=2, engine="batched"),
                                      dict(n=4, max_epochs=3, strategy="halving", min_epochs=1),
                                      dict(n=9, max_epochs=3, strategy="halving", min_epochs=1, cv=3)],
                         ids=["batched", "halving", "halving-raced"])
@pytest.mark.slow
def test_dask_scores_equal_loky_scores_batched_and_halving(tmp_path, cluster, settings):
    loky, dask = _pair(tmp_path, cluster, **settings)
    pd.testing.assert_frame_equal(loky, dask)
    if settings.get("cv") == 3:  # halving's default fold racing, on Dask as on loky: the same folds stopped
        stopped = [load_results(tmp_path / run)["split2_test_score"].isna().sum() for run in ("loky", "dask")]
        assert stopped[0] == stopped[1] > 0


@pytest.mark.slow
def test_a_worker_killed_mid_search_loses_nothing(tmp_path, cluster, loky_reference):
    settings = KILLED
    reference = loky_reference
    client = distributed.Client(cluster, set_as_default=False)
    pids = client.run(os.getpid)
    killed = []

    def kill_one():  # mid-search: once the first config is stored, 5 of 6 are still to train
        deadline = time.monotonic() + 60
        while not (tmp_path / "dask" / "trials.csv").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(time.monotonic())

    thread = threading.Thread(target=kill_one)
    thread.start()
    run = run_search(SearchSettings(out=str(tmp_path / "dask"), backend="dask", scheduler=cluster.scheduler_address,
                                    **settings))
    ended = time.monotonic()
    thread.join()
    assert killed and killed[0] < ended, "the worker was not killed while the search ran"
    frame = load_results(run)
    assert sorted(frame["trial"]) == list(range(6)) and (frame["state"] == "COMPLETE").all()  # each once
    pd.testing.assert_frame_equal(_scores(run), reference)  # the retried folds are the same seeded fits
    client.wait_for_workers(2, timeout=30)  # the nanny restarts the worker for the next tests
    client.close()


@pytest.mark.slow
def test_a_cluster_without_workers_stops_the_search_keeping_what_finished(tmp_path, monkeypatch):
    monkeypatch.setattr(dask_backend, "NO_WORKER_S", 1.0)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as lonely:
        backend = dask_backend.DaskBackend(lonely.scheduler_address)
        with backend.parallel(1, None) as (parallel, _):  # joblib runs one job in-process: not on a cluster
            pids = set(parallel(delayed(os.getpid)() for _ in range(3)))
        backend.close()
        assert pids and os.getpid() not in pids

        def retire():  # once a config is finished and stored
            deadline = time.monotonic() + 60
            while not (tmp_path / "run" / "trials.csv").is_file() and time.monotonic() < deadline:
                time.sleep(0.1)
            lonely.scale(0)

        threading.Thread(target=retire, daemon=True).start()
        with pytest.raises(ClusterLost, match=r"the search stopped; \d+ finished trials? .* run the same command again"):
            run_search(SearchSettings(out=str(tmp_path / "run"), n=40, max_epochs=10, backend="dask",
                                      scheduler=lonely.scheduler_address, **TINY))
    frame = load_results(tmp_path / "run")
    assert len(frame) >= 1 and (tmp_path / "run" / "trials.csv").is_file()  # what finished is kept


def test_the_watchdog_stops_a_search_whose_cluster_stays_empty(monkeypatch):
    """Dask would wait for a worker forever: after NO_WORKER_S without one the backend marks itself
    lost and sends this process SIGINT, which the search turns into ClusterLost."""
    monkeypatch.setattr(dask_backend, "NO_WORKER_S", 1.0)
    got = []
    previous = signal.signal(signal.SIGINT, lambda *a: got.append("SIGINT"))
    try:
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                      silence_logs=50) as lonely:
            backend = dask_backend.DaskBackend(lonely.scheduler_address)
            lonely.scale(0)
            deadline = time.monotonic() + 20
            while not got and time.monotonic() < deadline:
                time.sleep(0.1)
            assert got == ["SIGINT"] and backend.lost
            assert backend.failure(KeyboardInterrupt()) == "has had no worker for 1 s"
            backend.close()
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("flags, message", [
    (["--scheduler", "local:2"], "--scheduler local:2 only applies with --backend dask"),
    (["--backend", "dask", "--scheduler", "local:0"], "needs a whole number of workers N >= 1, got 'local:0'"),
    (["--backend", "dask", "--scheduler", "nowhere"], "must be a scheduler address (tcp://HOST:8786"),
    (["--backend", "dask", "--scheduler", "http://127.0.0.1:8787"], "the dashboard's http:// address is not the"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1"], "must be a scheduler address (tcp://HOST:8786"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1:99999"], "must be a scheduler address (tcp://HOST:8786"),
    (["--backend", "dask", "--scheduler", "tcp://:8786"], "must be a scheduler address (tcp://HOST:8786"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"], "no Dask scheduler answered within 1 s"),
    # the device is the workers' to have (a CPU laptop may drive GPU workers), checked on them, not here
    (["--backend", "dask", "--scheduler", "local:1", "--device", "cuda:1"],
     "--device cuda:1: 1 of 1 Dask worker cannot train on it (worker tcp://"),
])
def test_bad_backend_flags_exit_2(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 1.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    code = main(["search", "--n", "1", "--dataset", "digits", "--no-progress", "--no-retrain",
                 "--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    # a LocalCluster's nannies set an unset OMP_NUM_THREADS to 1 in this process too: the pictures after the
    # search drew on one thread
    assert "OMP_NUM_THREADS" not in os.environ


@pytest.mark.slow
def test_cli_search_on_its_own_local_cluster_then_retrain_on_another(tmp_path, capsys, cluster):
    out = tmp_path / "run"
    code = main(["search", "--n", "2", "--dataset", "digits", "--cv", "2", "--max-epochs", "2", "--patience", "0",
                 "--no-progress", "--no-retrain", "--backend", "dask", "--scheduler", "local:2", "--out", str(out)])
    assert code == 0 and "dask: 2 workers, 2 task slots at local:2" in capsys.readouterr().out
    code = main(["retrain", str(out), "--top", "2", "--retrain-epochs", "2", "--no-progress", "--backend", "dask",
                 "--scheduler", cluster.scheduler_address])
    assert code == 0 and "retrained 2 configs for 2 epochs" in capsys.readouterr().out
    retrained = pd.read_csv(out / "retrain.csv")
    assert len(retrained) == 2 and retrained["error"].isna().all() and (out / "winner.pt").is_file()
    assert retrained["test_accuracy"].min() > 0.2  # real fits on the workers (chance: 0.1), scored here


def test_a_server_that_is_no_scheduler_is_one_line_without_a_wait(tmp_path, capsys, monkeypatch):
    """Something that answers in another protocol (here: a real socket sending 0xff bytes, which Dask reads
    as an absurd frame length) is named in one line; the half-made client is closed at once (left alone,
    its __del__ waits 20 s and prints a traceback)."""
    import gc
    import socket

    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 2.0)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"\xff" * 64)
                time.sleep(0.5)

    threading.Thread(target=answer, daemon=True).start()
    try:
        code = main(["search", "--n", "1", "--dataset", "digits", "--no-progress", "--no-retrain",
                     "--out", str(tmp_path / "run"), "--backend", "dask", "--scheduler", f"tcp://127.0.0.1:{port}"])
    finally:
        server.close()
    gc.collect()  # a half-made client's __del__ would run here
    err = capsys.readouterr().err
    assert code == 2 and "not as a Dask scheduler" in err and "Traceback" not in err and "timed out" not in err
    assert not (tmp_path / "run").exists()


def test_a_port_that_never_answers_is_one_line_not_a_wait_without_end(tmp_path, capsys, monkeypatch):
    """A port that takes the connection and never says a word (a silent service; a dashboard's HTTP
    answers nothing Dask reads): Dask's client waited for the handshake without end. Now the handshake
    must come within the connect timeout: one line, exit 2."""
    import socket

    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()  # the kernel accepts into the backlog; nothing ever reads or writes
        port = server.getsockname()[1]
        done = []
        search = threading.Thread(target=lambda: done.append(main(
            ["search", "--n", "1", "--dataset", "digits", "--no-progress", "--no-retrain", "--out",
             str(tmp_path / "run"), "--backend", "dask", "--scheduler", f"tcp://127.0.0.1:{port}"])), daemon=True)
        search.start()
        search.join(timeout=120)  # a guard against the old endless wait, not a measure of speed
    assert done == [2], "the search still waits for a handshake"
    err = capsys.readouterr().err
    assert f"--scheduler tcp://127.0.0.1:{port}: no Dask scheduler answered within 1 s" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_scheduler_killed_mid_search_is_one_line_that_says_so(tmp_path, capfd):
    """kill -9 of the scheduler: Dask's client logged 40 lines of ConnectionRefusedError tracebacks before
    hpsearch's line, which told the user to start workers when the scheduler was what died."""
    import subprocess
    import sys

    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    info = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([*dask, "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(info)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def kill_the_scheduler():  # once a config is finished and stored
            while not (tmp_path / "run" / "trials.csv").is_file() and time.monotonic() < deadline + 60:
                time.sleep(0.1)
            scheduler.kill()

        threading.Thread(target=kill_the_scheduler, daemon=True).start()
        code = main(["search", "--dataset", "digits", "--cv", "2", "--n", "40", "--max-epochs", "10", "--patience", "0",
                     "--no-progress", "--no-retrain", "--backend", "dask", "--scheduler", address,
                     "--out", str(tmp_path / "run")])
    finally:
        for process in (scheduler, worker):
            if process is not None:
                process.kill()
                process.wait(timeout=30)
    err = capfd.readouterr().err
    assert code == 1 and f"the Dask cluster at {address} lost its scheduler" in err, err
    assert "start the scheduler again (dask scheduler)" in err and "Traceback" not in err, err
    assert len(load_results(tmp_path / "run")) >= 1  # what finished is kept


def test_the_handshake_is_read_beside_a_running_event_loop(monkeypatch):
    """A notebook runs an event loop: the handshake's own loop runs on a thread of its own (asyncio.run
    inside a running loop would be a RuntimeError, said as 'not a Dask scheduler')."""
    import asyncio
    import socket

    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        async def in_a_notebook():
            dask_backend._handshake(f"tcp://127.0.0.1:{port}")

        with pytest.raises(TimeoutError):
            asyncio.run(in_a_notebook())


@pytest.mark.slow
def test_a_ctrl_c_on_its_own_local_cluster_is_one_line_without_the_workers_tracebacks(tmp_path):
    """A terminal's Ctrl-C reaches every process of the group: each local worker printed a 30-line traceback
    (CancelledError, KeyboardInterrupt) before hpsearch's one line."""
    import subprocess
    import sys

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "hpsearch.cli", "search", "--dataset", "digits", "--n", "8", "--cv",
                             "2", "--max-epochs", "60", "--patience", "0", "--no-retrain", "--no-progress",
                             "--backend", "dask", "--scheduler", "local:2", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:  # until its first trial is stored
        if (run / "trials.csv").is_file() and len(pd.read_csv(run / "trials.csv")) > 0:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # the whole group, as a terminal does
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-1500:]
    assert "interrupted:" in stderr and "Traceback" not in stderr and "Dask Worker process" not in stderr, stderr

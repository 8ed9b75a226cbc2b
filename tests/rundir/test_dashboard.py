"""A run's ``trials.db`` opens in the real ``optuna-dashboard``: started as a subprocess on the run's
file, its JSON API shows the study hpsearch wrote (name, metric, trials, states, values, params,
intermediate values per rung, user attributes) and leaves the file as it was."""

import contextlib
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed: pip install -e '.[dashboard]'")

from hpsearch.rundir.store import STUDY  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.settings import SearchSettings  # noqa: E402

TINY = dict(dataset="digits", cv=2, patience=0, n_jobs=1, max_train=300, progress=False)
START_TIMEOUT = 30  # seconds for the dashboard to listen: it imports optuna and SQLAlchemy first


def _run(out: Path, **settings) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_search(SearchSettings(out=str(out), **TINY, **settings))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def random_run(tmp_path_factory, digits):
    return _run(tmp_path_factory.mktemp("dashboard") / "random", n=2, max_epochs=2)


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory, digits):
    """3 configs at 1 epoch; the best one continues to 3 epochs, the other two are PRUNED."""
    return _run(tmp_path_factory.mktemp("dashboard") / "halving", n=3, max_epochs=3, factor=3, strategy="halving")


def _command() -> list[str]:
    """The ``optuna-dashboard`` of this interpreter's environment (the package has no ``__main__``:
    ``python -m optuna_dashboard`` does not run, its CLI module does)."""
    script = Path(sys.executable).parent / "optuna-dashboard"
    if script.is_file():
        return [str(script)]
    found = shutil.which("optuna-dashboard")
    return [found] if found else [sys.executable, "-m", "optuna_dashboard._cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dashboard(run_dir: Path, tmp_path: Path):
    """``optuna-dashboard sqlite:///<run>/trials.db`` on a free port; yields its base URL and always
    ends the process."""
    port = _free_port()
    log = tmp_path / f"dashboard-{port}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([*_command(), f"sqlite:///{run_dir / 'trials.db'}", "--host", "127.0.0.1",
                                 "--port", str(port), "--server", "wsgiref"],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited with {proc.returncode} before listening; stderr:\n"
                            f"{log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"optuna-dashboard did not listen on port {port} within {START_TIMEOUT} s; stderr:\n"
                            f"{log.read_text()}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=20) as response:
        assert response.status == 200, url
        return json.loads(response.read())


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _study_as_dashboard_shows_it(run_dir: Path, tmp_path: Path) -> dict:
    """The study's detail from the dashboard's API, checked against the run's own study and
    trials.csv; the file is unchanged afterwards."""
    before = _digest(run_dir / "trials.db")
    with dashboard(run_dir, tmp_path) as url:
        studies = _get(f"{url}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == [STUDY]
        assert studies[0]["directions"] == ["maximize"]
        assert "fingerprint" in {a["key"] for a in studies[0]["user_attrs"]}
        detail = _get(f"{url}/api/studies/{studies[0]['study_id']}")
        with urllib.request.urlopen(f"{url}/dashboard", timeout=20) as page:  # the page itself is served
            assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    assert _digest(run_dir / "trials.db") == before

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run_dir / 'trials.db'}")
    csv = pd.read_csv(run_dir / "trials.csv").set_index("trial")
    settings = json.loads((run_dir / "settings.json").read_text())
    assert detail["name"] == STUDY
    assert detail["objective_names"] == [settings["scoring"]]
    shown = {t["number"]: t for t in detail["trials"]}
    assert sorted(shown) == [t.number for t in study.trials] == sorted(csv.index)
    for trial in study.trials:
        got = shown[trial.number]
        assert got["state"] == trial.state.name.capitalize() == csv.loc[trial.number, "state"].capitalize()
        assert got["values"] == pytest.approx([trial.value])
        assert got["values"] == pytest.approx([csv.loc[trial.number, "mean_test_score"]])
        assert {p["name"]: p["param_external_value"] for p in got["params"]} == {
            k: str(v) for k, v in trial.params.items()}
        assert {v["step"]: v["value"] for v in got["intermediate_values"]} == pytest.approx(trial.intermediate_values)
        attrs = {a["key"]: a["value"] for a in got["user_attrs"]}
        assert int(attrs["index"]) == trial.number
        assert json.loads(attrs["config"]) == trial.user_attrs["config"]
        rungs = sorted(k for k in attrs if k.startswith("rung"))
        assert [json.loads(attrs[k]) for k in rungs] == [trial.user_attrs[k] for k in rungs]
    best = csv["rank_test_score"].idxmin()
    assert [t["number"] for t in detail["best_trials"]] == [best]
    assert detail["has_intermediate_values"]
    return detail


def test_dashboard_opens_a_random_run(random_run, tmp_path):
    detail = _study_as_dashboard_shows_it(random_run, tmp_path)
    assert len(detail["trials"]) == 2
    for trial in detail["trials"]:  # one rung: the full budget, as one intermediate value at step = epochs
        assert trial["state"] == "Complete"
        assert [v["step"] for v in trial["intermediate_values"]] == [2]


def test_dashboard_shows_halving_rungs_and_pruned_trials(halving_run, tmp_path):
    detail = _study_as_dashboard_shows_it(halving_run, tmp_path)
    csv = pd.read_csv(halving_run / "trials.csv").set_index("trial")
    assert sorted(t["state"] for t in detail["trials"]) == ["Complete", "Pruned", "Pruned"]
    for trial in detail["trials"]:
        rungs = {v["step"]: v["value"] for v in trial["intermediate_values"]}
        assert list(rungs) == ([1, 3] if trial["state"] == "Complete" else [1])
        for step, value in rungs.items():  # each rung's score, as trials.csv's score_<k>ep column has it
            assert value == pytest.approx(csv.loc[trial["number"], f"score_{step}ep"])

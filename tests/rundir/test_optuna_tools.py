"""trials.db as Optuna's own tools leave it: trials added outside hpsearch (study.optimize, enqueue_trial)
and a file of another Optuna schema are one line naming the file and the fix, not a traceback, and the
run's trials are untouched."""

import shutil
import sqlite3

import optuna
import pytest

from hpsearch.cli import main

FLAGS = ["--cv", "2", "--max-epochs", "1", "--n-jobs", "1", "--patience", "0", "--no-progress", "--no-retrain"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    run = tmp_path_factory.mktemp("optuna") / "run"
    assert main(["search", "--n", "3", *FLAGS, "--out", str(run)]) == 0
    return run


def _study(run):
    return optuna.load_study(study_name="search", storage=f"sqlite:///{run / 'trials.db'}")


@pytest.mark.parametrize("added", ["optimize", "enqueue"])
def test_a_trial_added_outside_hpsearch_is_refused_naming_it(searched, tmp_path, capsys, added):
    run = tmp_path / "run"
    shutil.copytree(searched, run)
    study = _study(run)
    if added == "optimize":
        study.optimize(lambda trial: -trial.suggest_float("lr", 1e-4, 1e-1, log=True) / 1000, n_trials=1)
    else:
        study.enqueue_trial({"lr": 0.001, "dropout": 0.1})
    assert main(["search", "--resume", str(run), "--n", "5", "--no-progress", "--no-retrain"]) == 2
    err = capsys.readouterr().err
    state = "COMPLETE" if added == "optimize" else "WAITING"
    assert f"{run / 'trials.db'} holds 1 trial hpsearch did not make (Optuna's trial 3 ({state})" in err
    assert "put back a copy of trials.db from before, or search in a new --out" in err and "Traceback" not in err
    assert len(_study(run).trials) == 4  # nothing added or changed


@pytest.mark.parametrize("version, fix", [("v9.9.9.a", "open it with the Optuna that wrote it"),
                                          ("v3.0.0.d", "upgrade it with optuna storage upgrade --storage sqlite:///")])
def test_a_trials_db_of_another_optuna_schema_is_one_line(searched, tmp_path, capsys, version, fix):
    run = tmp_path / "run"
    shutil.copytree(searched, run)
    with sqlite3.connect(run / "trials.db") as db:
        db.execute("update alembic_version set version_num = ?", (version,))
    for command in (["search", "--resume", str(run), "--no-progress", "--no-retrain"], ["plot", "search", str(run)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"{run / 'trials.db'} was written by another Optuna than this environment's {optuna.__version__}" in err
        assert fix in err and "Traceback" not in err and err.count("\n") == 1, err

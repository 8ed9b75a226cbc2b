"""A shared run folder whose database or working folders are symbolic links leading out of it: nothing is
written, created or deleted at the link's target (a retraining deleted and wrote files there, a resume
cleared a linked states/, and even report made Optuna's tables in a linked trials.db's target); each
command says which link, in one line."""

import shutil
import sqlite3

import pytest
import torch

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.rundir.states import save_state


@pytest.fixture
def run(retrained_run, tmp_path):
    shutil.copytree(retrained_run, tmp_path / "run")
    return tmp_path / "run"


def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "7.pt").write_text("PRECIOUS")
    (victim / "3").mkdir()
    (victim / "3" / "keep.txt").write_text("PRECIOUS")
    return victim


def _untouched(victim):
    return sorted(p.relative_to(victim).as_posix() for p in victim.rglob("*")) == ["3", "3/keep.txt", "7.pt"]


@pytest.mark.parametrize("folder, command", [
    ("retrain_weights", ["retrain", "{run}", "--top", "1", "--retrain-epochs", "3", "--no-progress"]),
    ("retrain_states", ["retrain", "{run}", "--top", "1", "--retrain-epochs", "3", "--no-progress"]),
    ("states", ["search", "--resume", "{run}", "--n", "3", "--no-progress", "--no-retrain"]),
    ("export", ["export", "{run}"]),
])
def test_a_working_folder_linked_out_is_refused_and_its_target_left(run, tmp_path, capsys, folder, command):
    victim = _victim(tmp_path)
    shutil.rmtree(run / folder, ignore_errors=True)
    (run / folder).symlink_to(victim)
    assert main([part.format(run=run) for part in command]) == 2
    err = capsys.readouterr().err
    assert f"{run / folder} is a symbolic link (to {victim}), not the run's own folder" in err, err
    assert err.count("\n") == 1 and _untouched(victim)


def test_a_trials_db_linked_out_is_refused_by_every_command_and_its_target_left(run, tmp_path, capsys):
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as db:
        db.execute("create table notes (text)")
    (run / "trials.db").unlink()
    (run / "trials.db").symlink_to(other)
    for command in (["report", str(run)], ["search", "--resume", str(run), "--no-progress", "--no-retrain"],
                    ["plot", "search", str(run)]):
        assert main(command) == 2, command
        assert f"{run / 'trials.db'} is a symbolic link (to {other}), not the run's own file" in capsys.readouterr().err
    with sqlite3.connect(other) as db:
        assert [row[0] for row in db.execute("select name from sqlite_master")] == ["notes"]


def test_a_state_is_never_written_into_a_linked_config_folder(tmp_path):
    victim = _victim(tmp_path)
    (tmp_path / "states").mkdir()
    (tmp_path / "states" / "3").symlink_to(victim / "3")
    with pytest.raises(UsageError, match="is a symbolic link"):
        save_state(tmp_path / "states" / "3" / "fold0.pt", {"rng": torch.get_rng_state()}, owner={"trial": 3})
    assert _untouched(victim)

"""A run folder is data, never code: continuation states and retraining checkpoints are read with
``torch.load(weights_only=True)`` and must belong to their fit; a crafted, foreign or damaged one is
refused and that fit starts from scratch; the report inlines only files inside the run folder."""

import json
import os

import pandas as pd
import pytest
import torch

from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.report.winner_section import winner_figures
from hpsearch.retrain.top import retrain_top
from hpsearch.rundir.checkpoints import resume_state
from hpsearch.rundir.states import capture, load_state, owner_of, save_state, state_path
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.training.net import make_net

CONFIG = {"model": "mlp", "hidden": [8], "lr": 1e-2}


class Payload:
    """Pickles as a call that creates ``marker``: what a crafted .pt file would run on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def real_state(digits):
    net = make_net(CONFIG, digits, max_epochs=2, patience=0, random_state=0)
    net.fit(digits.X_train[:200], digits.y_train[:200])
    return capture(net)


def _crafted(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"owner": {}, "module": Payload(marker)}, path)  # what an attacker ships in a shared run


def test_a_crafted_state_runs_nothing_and_is_refused(tmp_path, capsys):
    path, marker = state_path(tmp_path, 0, 0), tmp_path / "pwned"
    _crafted(path, marker)
    assert load_state(path, owner_of("run", 0, 0, CONFIG)) is None
    assert not marker.exists()
    err = capsys.readouterr().err  # in our words: torch's own advice is to load it with weights_only=False
    assert "cannot be read as data (it holds objects, not only tensors and plain values: possibly crafted" in err
    assert "weights_only" not in err


def _nested_references(path, depth=60, pickled=None):
    """A torch.save archive whose pickle is a dict keyed by a tuple nested ``depth`` deep, each level
    holding the one below twice by reference (as torch's own unpickler takes it): a few hundred bytes,
    2**depth steps to hash. torch.load(weights_only=True) never came back from it, deaf to Ctrl-C."""
    import io
    import zipfile

    if pickled is None:
        pickled = b"\x80\x02}(X\x01\x00\x00\x00x\x85q\x00"
        for i in range(depth):
            pickled += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1])
        pickled += b"K\x01u."
    saved = io.BytesIO()
    torch.save({"owner": {}}, saved)
    real = zipfile.ZipFile(io.BytesIO(saved.getvalue()))
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name in real.namelist():
            archive.writestr(name, pickled if name.endswith("/data.pkl") else real.read(name))


def test_a_file_whose_references_never_end_is_refused_unloaded(tmp_path, retrained_run, capsys):
    """A state, a checkpoint or a winner.pt of nested references (a shared run folder's) hung every command
    that read it; each is refused as data that no file hpsearch writes holds."""
    import shutil

    from hpsearch.winner.bundle import load_winner

    _nested_references(tmp_path / "small.pt", depth=8)
    deepest = ("x",)
    for _ in range(8):
        deepest = (deepest, deepest)
    assert torch.load(tmp_path / "small.pt", weights_only=True)[deepest] == 1  # torch reads what it is
    path = state_path(tmp_path, 0, 0)
    _nested_references(path)
    assert load_state(path, owner_of("run", 0, 0, CONFIG)) is None
    said = "its references build more than 10,000,000 objects, which no file hpsearch writes does"
    assert said in capsys.readouterr().err
    _nested_references(tmp_path / "retrain_states" / "3.pt")
    assert resume_state(tmp_path / "retrain_states" / "3.pt", {"run": "r", "trial": 3}) is None
    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    _nested_references(run / "winner.pt")
    with pytest.raises(UsageError) as info:
        load_winner(run)
    assert str(info.value).startswith(f"{run / 'winner.pt'} is damaged ({said}")
    _nested_references(run / "winner.pt", pickled=b"\x80\x02}()" + b"\x85" * 1_000_000 + b"K\x01u.")
    with pytest.raises(UsageError) as info:  # a million deep: hashing it overflowed the C stack (a segfault)
        load_winner(run)
    assert str(info.value).startswith(f"{run / 'winner.pt'} is damaged (it nests more than 1,000 levels deep")


def test_what_torch_would_read_is_what_is_checked(tmp_path):
    """torch reads a file that does not start with a zip header as its legacy format (another pickle than
    the archive's), and finds data.pkl whatever its case: a harmless data.pkl beside a bomb got past the
    check. Such files are refused; a plain torch.save archive loads."""
    import io
    import pickle
    import zipfile

    from hpsearch.rundir.pickle_scan import load_torch_data

    saved = io.BytesIO()
    torch.save({"w": torch.ones(2)}, saved)
    (tmp_path / "plain.pt").write_bytes(saved.getvalue())
    assert torch.equal(load_torch_data(tmp_path / "plain.pt")["w"], torch.ones(2))
    (tmp_path / "prefixed.pt").write_bytes(b"\x80\x02N." + saved.getvalue())  # a legacy pickle, then the zip
    with pytest.raises(pickle.UnpicklingError, match=r"not a torch.save archive \(no zip header at its start\)"):
        load_torch_data(tmp_path / "prefixed.pt")
    real = zipfile.ZipFile(io.BytesIO(saved.getvalue()))
    with zipfile.ZipFile(tmp_path / "cased.pt", "w") as archive:
        for name in real.namelist():
            archive.writestr(name, real.read(name))
        archive.writestr(real.namelist()[0].split("/")[0] + "/Data.pkl", b"\x80\x02N.")
    with pytest.raises(pickle.UnpicklingError, match=r"not a torch.save archive \(2 data.pkl entries\)"):
        load_torch_data(tmp_path / "cased.pt")


def test_a_crafted_checkpoint_runs_nothing_and_is_refused(tmp_path, capsys):
    path, marker = tmp_path / "retrain_states" / "3.pt", tmp_path / "pwned"
    _crafted(path, marker)
    assert resume_state(path, {"run": "r", "trial": 3}) is None
    assert not marker.exists()
    assert "not used: that fit starts from scratch" in capsys.readouterr().err


def test_a_state_is_used_only_by_its_owner(tmp_path, real_state, capsys):
    owner = owner_of("run-a", 5, 1, CONFIG)
    path = state_path(tmp_path, 5, 1)
    save_state(path, real_state, owner)
    loaded = load_state(path, owner_of("run-a", 5, 1, {**CONFIG, "hidden": (8,)}))  # tuples read as lists
    assert loaded is not None and torch.equal(loaded["rng"], real_state["rng"])
    assert loaded["history"] == real_state["history"]
    for other, what in [(owner_of("run-b", 5, 1, CONFIG), "run"), (owner_of("run-a", 5, 0, CONFIG), "fold"),
                        (owner_of("run-a", 5, 1, {**CONFIG, "lr": 0.1}), "config")]:
        assert load_state(path, other) is None
        assert f"belongs to another {what}" in capsys.readouterr().err


def test_a_truncated_state_is_refused_not_fatal(tmp_path, real_state, capsys):
    owner = owner_of("run", 0, 0, CONFIG)
    path = state_path(tmp_path, 0, 0)
    save_state(path, real_state, owner)
    path.write_bytes(path.read_bytes()[:300])
    assert load_state(path, owner) is None
    assert "cannot be read as data" in capsys.readouterr().err


def test_a_checkpoint_of_another_fit_is_not_resumed(tmp_path, real_state):
    meta = {"run": "r", "trial": 1, "retrain_epochs": 10, "config": CONFIG}
    path = tmp_path / "retrain_states" / "1.pt"
    save_state(path, real_state, owner=meta)  # as EpochCheckpoint.save_model writes it
    assert resume_state(path, meta)["history"] == real_state["history"]
    assert resume_state(path, {**meta, "run": "other"}) is None
    assert resume_state(path, {**meta, "retrain_epochs": 20}) is None


def test_planted_states_change_nothing_in_a_halving_search(tmp_path, real_state):
    """States planted in a run folder before a halving search (a crafted one, another run's, a
    truncated one) are refused: the search scores exactly what a clean run scores, and runs nothing."""
    settings = dict(dataset="digits", cv=2, n=6, strategy="halving", max_epochs=4, min_epochs=2, patience=0,
                    n_jobs=2, progress=False, seed=2)
    clean = run_search(SearchSettings(out=str(tmp_path / "clean"), **settings))
    planted = tmp_path / "planted"
    marker = tmp_path / "pwned"
    _crafted(state_path(planted, 0, 0), marker)
    save_state(state_path(planted, 1, 0), real_state, owner_of("another-run", 1, 0, CONFIG))
    save_state(state_path(planted, 2, 1), real_state, owner_of("another-run", 2, 1, CONFIG))
    truncated = state_path(planted, 2, 1)
    truncated.write_bytes(truncated.read_bytes()[:200])
    run = run_search(SearchSettings(out=str(planted), **settings))
    assert not marker.exists()
    columns = ["trial", "split0_test_score", "split1_test_score", "state"]
    pd.testing.assert_frame_equal(pd.read_csv(run / "trials.csv")[columns], pd.read_csv(clean / "trials.csv")[columns])


def test_the_report_inlines_only_files_of_the_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "confusion_matrix.txt").write_text("ours")
    secret = tmp_path / "id_rsa.txt"
    secret.write_text("PRIVATE KEY")
    (run / "link.txt").symlink_to(secret)
    winner = {"trial": 1, "epochs": 5}
    names = ["confusion_matrix.txt", str(secret), "../id_rsa.txt", "link.txt", "", None, ".."]
    summary = {"winner": winner, "figures": {**winner, "methods": {"confusion-matrix": names}}}
    figures = winner_figures(run, json.loads(json.dumps(summary)))
    assert [path.name for _, _, path in figures] == ["confusion_matrix.txt"]


def test_halving_refuses_a_worst_class_loss(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text("hidden = [8]\nloss = 'worst_class'\n")
    with pytest.raises(UsageError, match="loss 'worst_class' trains rounds x round_epochs whatever the budget"):
        run_search(SearchSettings(dataset="digits", n=4, strategy="halving", space=str(space), out=str(tmp_path / "r"),
                                  progress=False))
    assert not (tmp_path / "r").exists()


def test_resume_with_another_out_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps({"n": 2, "dataset": "digits"}))
    assert main(["search", "--resume", str(run), "--out", str(tmp_path / "other"), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_retrain_refuses_a_settings_json_edited_to_other_data(tmp_path):
    run = run_search(SearchSettings(dataset="digits", n=2, cv=2, max_epochs=1, patience=0, progress=False,
                                    out=str(tmp_path / "run")))
    settings = json.loads((run / "settings.json").read_text())
    (run / "settings.json").write_text(json.dumps({**settings, "max_train": 500}))
    with pytest.raises(UsageError, match=r"its trials were made on digits \(1437 training images\), but its "
                                         r"settings.json now gives digits \(500\)"):
        retrain_top(run, top=1, retrain_epochs=1, progress=False)
    assert not (run / "retrain.csv").exists()


def test_damaged_json_files_are_named_or_written_anew(tmp_path, capsys):
    run = run_search(SearchSettings(dataset="digits", n=2, cv=2, max_epochs=1, patience=0, progress=False,
                                    out=str(tmp_path / "run")))
    settings = (run / "settings.json").read_text()
    (run / "settings.json").write_text(settings[:40])  # truncated
    assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "1", "--no-progress"]) == 2
    assert "settings.json is damaged" in capsys.readouterr().err
    assert main(["search", "--resume", str(run), "--no-progress"]) == 2
    assert "settings.json is damaged" in capsys.readouterr().err
    assert main(["report", str(run)]) == 2
    assert "settings.json is damaged" in capsys.readouterr().err
    (run / "settings.json").write_text(settings)
    (run / "summary.json").write_text('{"winner": {"trial"')  # a summary cut short
    retrain_top(run, top=1, retrain_epochs=1, progress=False)  # the writer replaces it, saying so
    assert "summary.json is damaged" in capsys.readouterr().err
    assert json.loads((run / "summary.json").read_text())["winner"]["trial"] in (0, 1)


def test_settings_json_values_of_the_wrong_kind_are_named_by_their_key(tmp_path, capsys):
    """A hand-edited settings.json: report, retrain and resume name the file and its key (the commands
    have no such flag to blame), and a settings.json copied in from another run on the same data is
    refused before any retraining starts (it would retrain with that run's seed and budget)."""
    run = run_search(SearchSettings(dataset="digits", n=2, cv=2, max_epochs=1, patience=0, progress=False,
                                    out=str(tmp_path / "run")))
    settings = json.loads((run / "settings.json").read_text())
    commands = (["report", str(run)], ["retrain", str(run), "--no-progress"],
                ["search", "--resume", str(run), "--no-progress"])
    for key, value, said in (("cv", "two", "its cv must be a whole number, got 'two'"),
                             ("top", 0, "its top must be a whole number >= 1, got 0"),
                             ("data_dir", 5, "its data_dir must be a string or null, got 5"),
                             ("extra", [], "its extra must be an object, got []")):
        (run / "settings.json").write_text(json.dumps({**settings, key: value}))
        for argv in commands:
            assert main(argv) == 2, (key, argv)
            err = capsys.readouterr().err
            assert f"{run / 'settings.json'} is damaged: {said}; put back a copy" in err, err
            assert err.count("\n") == 1 and f"--{key.replace('_', '-')}" not in err, err
    copied = {**settings, "cv": 3, "seed": 1, "top": 15, "retrain_epochs": 300}  # another run's, same data
    (run / "settings.json").write_text(json.dumps(copied))
    assert main(["retrain", str(run), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert "its trials were made with cv 2, seed 0, but its settings.json gives cv 3, seed 1" in err, err
    assert "retraining" not in out and not (run / "retrain.csv").exists()


def test_a_state_from_a_later_rung_is_not_a_fits_past(tmp_path, digits, capsys):
    """A state with more epochs than the rung asks for (another rung's, copied back) is refused on both
    engines: the fit trains from scratch and scores what a fresh fit scores."""
    from hpsearch.engines.batched_engine import evaluate_batched
    from hpsearch.engines.cv import _score_fold, make_folds
    from hpsearch.training.seeds import trial_seed

    X, y = digits.X_train, digits.y_train
    folds = make_folds(y, 2, 0)
    config = {**CONFIG, "optimizer": "adam"}

    def batched(epochs, states_dir=None, keep=False):
        chunks = evaluate_batched({3: config}, {3: trial_seed(0, 3)}, X, y, folds, 10, max_epochs=epochs, patience=0,
                                  states_dir=states_dir, keep_states=keep, run_id="run")
        return [result for chunk in chunks for _, result in chunk][0]

    batched(4, tmp_path, keep=True)  # leaves 4-epoch states
    again = batched(2, tmp_path)
    assert again.epochs == [2, 2] and again.test_scores == batched(2).test_scores
    assert "more than this rung's 2" in capsys.readouterr().err

    make = lambda epochs: (lambda: make_net(config, digits, max_epochs=epochs, patience=0, random_state=0))  # noqa: E731
    state = (state_path(tmp_path / "skorch", 3, 0), True, owner_of("run", 3, 0, config))
    _score_fold(make(4), X, y, *folds[0], "neg_log_loss", 1, state)
    refused = _score_fold(make(2), X, y, *folds[0], "neg_log_loss", 1, state)
    fresh = _score_fold(make(2), X, y, *folds[0], "neg_log_loss", 1)
    assert refused["epochs"] == 2 and refused["score"] == fresh["score"]
    assert "more than this rung's 2" in capsys.readouterr().err


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_left_alone(retrained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    victim = tmp_path / "precious.txt"
    victim.write_text("PRECIOUS")
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "2", "--no-progress"]) == 2
    assert f"{run / '.lock'} is a symbolic link (to {victim})" in capsys.readouterr().err
    assert victim.read_text() == "PRECIOUS"


@pytest.mark.parametrize("name, damage, fix", [
    ("summary.json", lambda s: {**s, "winner": {**s["winner"], "test_accuracy": "abc"}}, "hpsearch retrain"),
    ("summary.json", lambda s: {**s, "winner": [1]}, "hpsearch retrain"),
    ("retrain.csv", None, "hpsearch retrain"),
])
def test_a_file_with_values_of_the_wrong_kind_is_one_line_naming_it(retrained_run, tmp_path, capsys, name, damage,
                                                                     fix):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    if damage is None:  # bytes that are no text at all
        (run / name).write_bytes(bytes(range(128, 256)) * 8)
    else:
        (run / name).write_text(json.dumps(damage(json.loads((run / name).read_text()))))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hpsearch: error: {run / name} is damaged (") and f"; {fix} {run}" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err

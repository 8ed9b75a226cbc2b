"""Run files damaged or crafted: a cache of finished rows (retrain.csv, compare.csv) that cannot be read is
said and trained again, trials.csv read from the study instead; a JSON or TOML file nested past Python's
recursion limit, a card or meta.json of another kind, each one line naming the file; never a traceback,
least of all from the command that would write the file again."""

import json
import shutil

import pytest

from hpsearch.cli import main

DEEP = "[" * 100_000 + "]" * 100_000
JUNK = bytes(range(256)) * 12


@pytest.fixture
def run(retrained_run, tmp_path):
    shutil.copytree(retrained_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("damage", [JUNK, b"trial,cv_score\n1,0.5\n"], ids=["bytes", "columns"])
def test_a_damaged_retrain_csv_is_said_and_its_configs_trained_again(run, capsys, damage):
    (run / "retrain.csv").write_bytes(damage)
    assert main(["retrain", str(run), "--top", "1", "--retrain-epochs", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"hpsearch: warning: {run / 'retrain.csv'} is damaged (" in err and "its configs are trained again" in err
    assert "trial" in (run / "retrain.csv").read_text()  # written anew


def test_a_damaged_compare_csv_and_trials_csv_are_said_and_read_around(run, capsys):
    (run / "compare.csv").write_bytes(JUNK)
    assert main(["compare", str(run), "--by", "optimizer", "--retrain-epochs", "1", "--no-progress"]) == 0
    assert f"{run / 'compare.csv'} is damaged (" in capsys.readouterr().err
    (run / "trials.csv").write_bytes(JUNK)  # the report refused the run; it is read from trials.db now
    for command in (["plot", "search", str(run)], ["report", str(run)]):
        assert main(command) == 0, command
        err = capsys.readouterr().err
        assert f"{run / 'trials.csv'} is damaged (" in err and f"hpsearch search --resume {run} writes it again" in err
    assert (run / "search_history.png").is_file() and (run / "report.html").is_file()


@pytest.mark.parametrize("column, value", [("test_accuracy", "abc"), ("test_accuracy", "1.7"), ("trial", "9x")])
def test_a_compare_csv_value_that_does_not_read_is_said_and_its_group_trained_again(run, capsys, column, value):
    """A compare.csv edited by hand (text where a number belongs, an accuracy of 1.7) gave a traceback or
    printed 170.00%; its row is said and its group trained again."""
    import pandas as pd

    command = ["compare", str(run), "--by", "optimizer", "--retrain-epochs", "1", "--no-progress"]
    assert main(command) == 0
    table = pd.read_csv(run / "compare.csv", dtype=str)
    table.loc[0, column] = value
    table.to_csv(run / "compare.csv", index=False)
    capsys.readouterr()
    assert main(command) == 0
    out, err = capsys.readouterr()
    assert f"hpsearch: warning: {run / 'compare.csv'}: 1 row(s) hold values that are not what compare writes" in err
    assert "170.00%" not in out and "nan%" not in out
    again = pd.read_csv(run / "compare.csv")
    assert again["test_accuracy"].between(0, 1).all() and again["trial"].dtype.kind == "i"


def test_nesting_past_the_recursion_limit_is_one_line(run, capsys):
    (run / "settings.json").write_text(DEEP)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'settings.json'} is damaged (nested too deeply)" in err and err.count("\n") == 1
    space = run.parent / "space.toml"
    space.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert main(["search", "--space", str(space), "--n", "1", "--no-progress", "--out", str(run.parent / "new")]) == 2
    assert "not valid TOML: nested too deeply" in capsys.readouterr().err


def test_a_card_or_meta_json_of_another_kind_is_one_line(run, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out), "--no-check"]) == 0
    for card in ([1], {"preprocess": "x", "class_names": []}):
        (out / "model.json").write_text(json.dumps(card))
        assert main(["predict", "--model", str(out / "model.onnx"), str(out / "model.json")]) == 2
        err = capsys.readouterr().err
        assert f"{out / 'model.json'}: the card beside model.onnx cannot be read (not the card" in err, err
    triple = tmp_path / "triple"
    triple.mkdir()
    (triple / "meta.json").write_text("[1]")
    assert main(["make-triple", "--from", "digits", "--out", str(triple), "--overwrite", "--no-progress"]) == 2
    assert "holds files make-triple did not write" in capsys.readouterr().err


@pytest.mark.parametrize("change, said", [
    ({"config": [1, 2]}, "its config is list, not a dict"),
    ({"image_shape": "abc"}, "image_shape 'abc' is not [channels, height, width]"),
    ({"image_shape": [1, 100_000, 100_000]}, "image_shape [1, 100000, 100000] is not [channels, height, width] of"),
    ({"history": 5}, "its history is int, not a list"),
    ({"preprocess": {"image_shape": [1, 100_000, 100_000]}}, "its preprocess is not the settings a retraining"),
    ({"class_names": ["zero"]}, "its class_names are not 10 names, one per class"),
    ({"n_classes": -3}, "its n_classes -3 is not a whole number"),
])
def test_a_winner_bundle_of_the_wrong_kind_is_damaged_in_one_line(run, tmp_path, capsys, change, said):
    """weights_only keeps a crafted winner.pt from running code, but its values went unchecked: tracebacks,
    or a preprocess image size that took all the memory."""
    import numpy as np
    import torch
    from PIL import Image

    bundle = torch.load(run / "winner.pt", map_location="cpu", weights_only=True)
    torch.save({**bundle, **change}, run / "winner.pt")
    picture = tmp_path / "digit.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(picture)
    for command in (["predict", str(run), str(picture)], ["plot", "learning-curves", str(run)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"{run / 'winner.pt'} is damaged ({said}" in err and "hpsearch retrain" in err, err
        assert err.count("\n") == 1


def test_trials_db_attributes_of_another_kind_are_the_files_damage(run, capsys):
    """A fingerprint or a trial's config of another kind gave AttributeError tracebacks; a chance level
    that is no number was blamed on trials.csv, whose rewriting could not fix it."""
    import optuna

    storage = f"sqlite:///{run / 'trials.db'}"
    study = optuna.load_study(study_name="search", storage=storage)
    made = study.user_attrs["fingerprint"]
    study.set_user_attr("fingerprint", [1, 2])
    for command in (["retrain", str(run), "--top", "1", "--no-progress"],
                    ["search", "--resume", str(run), "--no-progress", "--no-retrain"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"{run / 'trials.db'} is damaged (its fingerprint is a list, not an object)" in err, err
    study.set_user_attr("fingerprint", made)
    import sqlite3

    with sqlite3.connect(run / "trials.db") as db:  # a finished trial: Optuna's API no longer writes it
        row, kept = db.execute("select trial_user_attribute_id, value_json from trial_user_attributes where key = "
                               "'config' order by trial_id").fetchone()
        db.execute("update trial_user_attributes set value_json = '[1]' where trial_user_attribute_id = ?", (row,))
    assert main(["retrain", str(run), "--top", "1", "--no-progress"]) == 2
    assert "is damaged (Optuna's trial 0 holds attributes of another kind" in capsys.readouterr().err
    with sqlite3.connect(run / "trials.db") as db:
        db.execute("update trial_user_attributes set value_json = ? where trial_user_attribute_id = ?", (kept, row))
    settings = json.loads((run / "settings.json").read_text())
    (run / "settings.json").write_text(json.dumps({**settings, "chance": {"accuracy": "x"}}))
    assert main(["report", str(run)]) == 2
    assert f"{run / 'settings.json'} is damaged: its chance must hold numbers" in capsys.readouterr().err


@pytest.mark.parametrize("change", [{"positions": 70}, {"image_shape": [1, 1, 5000], "n_features": 5000},
                                    {"image_shape": [3, 32, 32], "epochs": 0}])
def test_what_a_search_makes_is_never_called_damaged(run, change):
    """A bound on each side (4096) and on positions (64) refused winners a search had made (70 labels per
    image, a 1 x 5000 signal) and their retraining again; only the values an input allocates are bounded."""
    import torch

    from hpsearch.winner.bundle import _malformed

    bundle = torch.load(run / "winner.pt", map_location="cpu", weights_only=True)
    assert _malformed({**bundle, **change}) is None

"""Retraining the top configs of a real (tiny) search on digits, crowning and reloading the winner."""

import json

import numpy as np
import pandas as pd
import pytest

from hpsearch import load_winner
from hpsearch.cli import main
from hpsearch.errors import UsageError
from hpsearch.retrain.top import retrain_top, top_configs
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.training.net import make_net
from hpsearch.training.seeds import trial_seed

FAST = ["--dataset", "digits", "--cv", "2", "--max-epochs", "4", "--patience", "0", "--n-jobs", "1",
        "--no-progress"]


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, digits):
    run = run_search(SearchSettings(n=4, dataset="digits", cv=2, max_epochs=4, patience=0, n_jobs=1,
                                    out=str(tmp_path_factory.mktemp("run")), progress=False), digits)
    return retrain_top(run, top=3, retrain_epochs=8, dataset=digits, progress=False)


def test_retraining_chooses_by_search_rank_and_keeps_the_best(retrained, digits):
    table, run = retrained.table, retrained.run_dir
    # the search's three best configs, each retrained; by default the winner is the best search rank
    assert sorted(table["trial"]) == sorted(c["trial"] for c in top_configs(run, 3))
    assert list(table["search_rank"]) == [1, 2, 3] and list(table["retrain_rank"]) == [1, 2, 3]
    assert list(table["winner"]) == [True, False, False] and table["error"].fillna("").eq("").all()
    assert set(table["chosen_by"]) == {"cv"}
    assert (table["epochs"] == 8).all()  # no early stopping: every epoch is trained
    best = table.iloc[0]
    assert retrained.winner["trial"] == best["trial"] and best["test_accuracy"] > 0.9
    on_disk = pd.read_csv(run / "retrain.csv")
    np.testing.assert_array_equal(on_disk["trial"], table["trial"])
    np.testing.assert_allclose(on_disk["test_accuracy"], table["test_accuracy"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["winner"]["trial"] == best["trial"] and summary["winner"]["chosen_by"] == "cv"
    assert "the test set was read only after the choice" in summary["winner"]["chosen_how"]
    assert summary["winner"]["test_accuracy"] == pytest.approx(best["test_accuracy"])
    # The recorded accuracy is real: the same config, seed and epochs trained on its own (without
    # the per-epoch test monitor, which never touches the weights) gives exactly the same score.
    again = make_net({**retrained.winner["config"], "max_epochs": 8}, digits.n_features, digits.n_classes,
                     patience=0, random_state=trial_seed(0, int(best["trial"])))
    again.fit(digits.X_train, digits.y_train)
    assert again.score(digits.X_test, digits.y_test) == best["test_accuracy"]


def test_save_then_load_gives_identical_predictions(retrained, digits):
    net = load_winner(retrained.run_dir)
    np.testing.assert_array_equal(net.predict_proba(digits.X_test), retrained.net.predict_proba(digits.X_test))
    np.testing.assert_array_equal(net.predict(digits.X_test), retrained.net.predict(digits.X_test))
    info = net.winner_
    assert info["dataset"] == "digits" and tuple(info["image_shape"]) == (1, 8, 8)
    assert info["class_names"] == list(digits.class_names)
    assert info["config"] == retrained.winner["config"]
    assert info["test_accuracy"] == net.score(digits.X_test, digits.y_test) == retrained.winner["test_accuracy"]
    assert len(net.history) == info["epochs"] == 8
    np.testing.assert_allclose(net.history[:, "train_loss"], retrained.net.history[:, "train_loss"])


def test_retrain_errors_name_the_fix(retrained, tmp_path, digits):
    with pytest.raises(UsageError, match="holds no winner.pt; retrain the search's best configs first"):
        load_winner(tmp_path)
    with pytest.raises(UsageError, match="retrain_epochs must be a whole number >= 1, got 0"):
        retrain_top(retrained.run_dir, top=1, retrain_epochs=0, dataset=digits)


@pytest.mark.slow
def test_cli_runs_search_retrain_and_pictures_by_default(tmp_path, capsys, short_ascents):
    out = tmp_path / "run"
    assert main(["search", "--n", "2", "--out", str(out), *FAST, "--top", "1", "--retrain-epochs", "3",
                 "--images", "4", "--units", "4"]) == 0
    printed = capsys.readouterr().out
    assert "winner: trial" in printed and "skipped" not in printed.split("receptive-fields")[0]
    assert len(pd.read_csv(out / "retrain.csv")) == 1
    for name in ("winner.pt", "summary.json", "receptive_fields_layer1.png", "receptive_fields_output.png",
                 "maximizers_layer1_box.png", "confusion_matrix.png", "class_report.csv", "misclassified.png",
                 "learning_curves.png"):
        assert (out / name).is_file(), name
    # the subcommands on the same run
    assert main(["retrain", str(out), "--top", "2", "--retrain-epochs", "2", "--no-progress"]) == 0
    assert len(pd.read_csv(out / "retrain.csv")) == 2
    (out / "confusion_matrix.png").unlink()
    assert main(["plot", "confusion-matrix", str(out)]) == 0
    assert (out / "confusion_matrix.png").is_file()
    assert main(["plot", "receptive-feilds", str(out)]) == 2
    assert "did you mean 'receptive-fields'?" in capsys.readouterr().err
    # --no-retrain stops after the ranking
    bare = tmp_path / "bare"
    assert main(["search", "--n", "1", "--out", str(bare), *FAST, "--no-retrain"]) == 0
    assert (bare / "sorted_scores.dat").is_file() and not (bare / "winner.pt").exists()


def _copy(run, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("retrain.csv", "winner.pt", "summary.json"))
    return tmp_path / "run"


def test_the_test_labels_play_no_part_in_the_default_choice(retrained, digits, tmp_path):
    """Retrained against test labels that are noise, the default rule crowns the same config."""
    from hpsearch import Dataset

    rng = np.random.default_rng(0)
    noise = Dataset("digits", digits.X_train, digits.y_train, digits.X_test, rng.permutation(digits.y_test),
                    digits.class_names)
    again = retrain_top(_copy(retrained.run_dir, tmp_path), top=3, retrain_epochs=8, dataset=noise, progress=False)
    assert again.winner["trial"] == retrained.winner["trial"] and again.winner["test_accuracy"] < 0.3


def test_winner_by_test_is_the_seeds_rule_and_says_so(retrained, digits, tmp_path):
    result = retrain_top(_copy(retrained.run_dir, tmp_path), top=3, retrain_epochs=8, dataset=digits, progress=False,
                         winner_by="test")
    table = result.table
    assert np.all(np.diff(table["test_accuracy"]) <= 0) and set(table["chosen_by"]) == {"test"}
    assert result.winner["test_accuracy"] == table["test_accuracy"].max()
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["winner"]["chosen_by"] == "test" and "selected on the test set" in summary["winner"]["chosen_how"]


@pytest.mark.slow
def test_the_command_line_says_how_the_winner_was_chosen(retrained, tmp_path, capsys):
    run = _copy(retrained.run_dir, tmp_path)
    assert main(["retrain", str(run), "--top", "3", "--retrain-epochs", "8", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "chosen by search rank; test set read after the choice" in printed
    assert "the other 2 retrained configs: test accuracy" in printed and "not used for the choice" in printed
    (run / "retrain.csv").unlink()
    assert main(["retrain", str(run), "--top", "3", "--retrain-epochs", "8", "--winner-by", "test",
                 "--no-progress"]) == 0
    assert "SELECTED ON THE TEST SET: optimistic" in capsys.readouterr().out
    report = main(["report", str(run)]) == 0 and (run / "report.html").read_text()
    assert "<b>selected on the test set</b>" in report


def test_a_retraining_s_flags_are_kept_so_a_plain_retrain_goes_on_with_them(retrained, tmp_path, capsys):
    run = _copy(retrained.run_dir, tmp_path)
    assert main(["retrain", str(run), "--top", "2", "--retrain-epochs", "3", "--no-progress"]) == 0
    first = (run / "retrain.csv").read_text()
    stored = json.loads((run / "settings.json").read_text())
    assert (stored["top"], stored["retrain_epochs"]) == (2, 3)
    capsys.readouterr()
    assert main(["retrain", str(run), "--no-progress"]) == 0  # nothing new to train, nothing replaced
    assert "retraining the best 2 for 3 epochs each" in capsys.readouterr().out
    assert (run / "retrain.csv").read_text() == first
    assert main(["retrain", str(run), "--top", "0"]) == 2  # refused, and not kept
    assert json.loads((run / "settings.json").read_text())["top"] == 2


def test_another_rule_or_top_chooses_again_from_the_rows_without_training(retrained, digits, tmp_path, capsys):
    """Only the choice changes: the winner is chosen again among the rows there, its weights kept beside
    its row; rows beyond a smaller top are kept (never chosen) and serve a larger top again."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(retrained.run_dir, run)
    first = retrained.table  # trials by search rank, retrained for 8 epochs, the winner by CV rank
    by_test = first.sort_values(["test_accuracy", "search_rank"], ascending=[False, True]).iloc[0]
    assert by_test["trial"] != first["trial"].iloc[0]  # on this data the test rule crowns another config
    assert main(["retrain", str(run), "--top", "3", "--retrain-epochs", "8", "--winner-by", "test",
                 "--no-progress"]) == 0
    assert "retraining already done (retrain.csv: 3 configs, 8 epochs); nothing to train" in capsys.readouterr().out
    net = load_winner(run)  # that config's own weights, not the former winner's
    assert net.winner_["trial"] == by_test["trial"] and net.winner_["winner_by"] == "test"
    assert net.score(digits.X_test, digits.y_test) == by_test["test_accuracy"]
    table = pd.read_csv(run / "retrain.csv")
    assert table["trial"].iloc[0] == by_test["trial"] and set(table["chosen_by"]) == {"test"}
    assert json.loads((run / "summary.json").read_text())["winner"]["trial"] == by_test["trial"]
    # a smaller top: chosen among its configs alone; the other rows stay, after them
    fewer = retrain_top(run, top=1, retrain_epochs=8, dataset=digits, progress=False, winner_by="test")
    assert fewer.trained == 0 and list(fewer.table["trial"]) == [first["trial"].iloc[0]]
    assert load_winner(run).winner_["trial"] == first["trial"].iloc[0]
    table = pd.read_csv(run / "retrain.csv")
    assert sorted(table["trial"]) == sorted(first["trial"]) and list(table["in_top"]) == [True, False, False]
    assert list(table["winner"]) == [True, False, False] and list(table["retrain_rank"]) == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["retrain"]["top"] == 1
    from hpsearch.report.content import retrain_section  # the report shows this retraining's rows alone

    assert "The best 1 config of the search" in retrain_section(run, {})
    # the top as large again: nothing trained, the first retraining's table and winner
    again = retrain_top(run, top=3, retrain_epochs=8, dataset=digits, progress=False)
    assert again.trained == 0 and again.winner["trial"] == retrained.winner["trial"]
    cols = ["trial", "search_rank", "test_accuracy", "test_loss", "epochs", "winner", "in_top"]
    pd.testing.assert_frame_equal(again.table[cols], pd.read_csv(run / "retrain.csv")[cols])
    np.testing.assert_array_equal(again.table["test_accuracy"], first["test_accuracy"])
    np.testing.assert_array_equal(again.net.predict_proba(digits.X_test), retrained.net.predict_proba(digits.X_test))
    # other epochs are another retraining: the top is trained again, the rows of the former one dropped
    other = retrain_top(run, top=1, retrain_epochs=2, dataset=digits, progress=False)
    assert other.trained == 1 and len(pd.read_csv(run / "retrain.csv")) == 1
    assert sorted(p.name for p in (run / "retrain_weights").iterdir()) == [f"{first['trial'].iloc[0]}.pt"]


@pytest.mark.slow
def test_parallel_retraining_of_large_arrays_is_quiet_about_their_read_only_maps(digits, tmp_path, capfd):
    """Arrays past joblib's 1 MB threshold reach the retraining jobs as read-only memory maps, and
    torch warned on each fit that it cannot write into them (it never does)."""
    import dataclasses

    big = dataclasses.replace(digits, X_train=np.repeat(np.repeat(digits.X_train, 2, axis=2), 2, axis=3),
                              X_test=np.repeat(np.repeat(digits.X_test, 2, axis=2), 2, axis=3))
    assert big.X_train.nbytes > 1_000_000
    run = run_search(SearchSettings(n=2, dataset="digits", cv=2, max_epochs=1, patience=0, n_jobs=1,
                                    out=str(tmp_path / "run"), progress=False), big)
    capfd.readouterr()
    result = retrain_top(run, top=2, retrain_epochs=1, dataset=big, progress=False, n_jobs=2)
    assert result.trained == 2 and "not writable" not in capfd.readouterr().err

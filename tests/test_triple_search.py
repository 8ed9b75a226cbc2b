"""A search, its retraining, the winner and the head x loss comparison on real Triple-MNIST files
(built from digits by make_triple in a temporary folder)."""

import numpy as np
import pandas as pd
import pytest

from hpsearch import load_winner
from hpsearch.data import load_dataset
from hpsearch.data.make_triple import make_triple
from hpsearch.errors import UsageError
from hpsearch.retrain.compare import compare_groups, markdown_table
from hpsearch.retrain.top import retrain_top
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings

SPACE = """
model = "cnn"
block_size = 1
dense = [32]
batch_size = 32
lr = 3e-3
[filters]
distribution = "int_list"
layers = 2
low = 8
high = 16
step = 8
[head]
distribution = "categorical"
choices = ["softmax", "sigmoid"]
[loss]
distribution = "categorical"
choices = ["ce", "bce"]
"""


@pytest.fixture(scope="module")
def triple_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("triple")
    data = make_triple("digits", root / "data", n_train=300, n_val=100, n_test=100, seed=0).out
    (root / "space.toml").write_text(SPACE)
    settings = dict(n=4, dataset="triple-mnist", data_dir=str(data), space=str(root / "space.toml"), cv=2,
                    max_epochs=2, patience=0, n_jobs=1, progress=False)
    run = run_search(SearchSettings(**settings, out=str(root / "run")))
    return run, data, settings, root


def test_the_search_records_accuracy_per_position_and_exact_match(triple_run):
    run, *_ = triple_run
    frame = pd.read_csv(run / "trials.csv")
    digits = frame[[f"mean_test_digit_{k}_accuracy" for k in range(3)]].to_numpy()
    assert len(frame) == 4 and frame["error"].isna().all()
    # the accuracy ranked and printed is the mean over positions; exact match never exceeds any position
    assert np.allclose(frame["mean_test_accuracy"], digits.mean(axis=1))
    assert (frame["mean_test_exact_match"] <= digits.min(axis=1) + 1e-12).all()
    assert set(frame["param_head"]) <= {"softmax", "sigmoid"} and set(frame["param_loss"]) <= {"ce", "bce"}


def test_the_batched_engine_hands_labels_per_position_to_skorch(triple_run, capfd):
    run, _, settings, root = triple_run
    batched = run_search(SearchSettings(**settings, engine="batched", out=str(root / "batched")))
    assert "every config trains on the skorch engine" in capfd.readouterr().err
    cols = ["trial", "mean_test_score", "mean_test_exact_match"]
    pd.testing.assert_frame_equal(pd.read_csv(batched / "trials.csv")[cols], pd.read_csv(run / "trials.csv")[cols])


def test_retraining_scores_each_position_and_the_winner_reloads(triple_run):
    run, data, *_ = triple_run
    result = retrain_top(run, top=2, retrain_epochs=2, progress=False, n_jobs=1)
    table = pd.read_csv(run / "retrain.csv")
    assert {f"test_digit_{k}_accuracy" for k in range(3)} | {"test_exact_match"} <= set(table)
    net = load_winner(run)
    test = load_dataset("triple-mnist", data)
    predicted = net.predict(test.X_test)
    assert predicted.shape == (100, 3) and net.winner_["positions"] == 3
    best = table.iloc[0]
    assert best["test_exact_match"] == pytest.approx(np.mean((predicted == test.y_test).all(axis=1)))
    for k in range(3):
        assert best[f"test_digit_{k}_accuracy"] == pytest.approx(np.mean(predicted[:, k] == test.y_test[:, k]))
    assert np.array_equal(predicted, result.net.predict(test.X_test))


def test_compare_retrains_the_best_config_with_every_head_and_loss(triple_run):
    run, *_ = triple_run
    table = compare_groups(run, ["head", "loss"], 2, same_config=True, progress=False, n_jobs=1)
    assert sorted(zip(table["head"], table["loss"], strict=True)) == [
        ("sigmoid", "bce"), ("sigmoid", "ce"), ("softmax", "bce"), ("softmax", "ce")]
    assert table["trial"].nunique() == 1  # one config, four heads x losses
    assert (table["error"] == "").all() and table["test_exact_match"].between(0, 1).all()
    printed = markdown_table(table, ["head", "loss"])
    assert "| softmax | bce |" in printed  # positions counted from 1, as every printed line counts them
    assert printed.startswith("| head | loss | trial | test acc. | digit 1 (left) | digit 2 (middle) | digit 3 (right) "
                              "| exact match |")
    assert not (run / "compare_states").exists()
    again = compare_groups(run, ["head", "loss"], 2, same_config=True, progress=False, n_jobs=1)
    cols = ["group", "trial", "test_accuracy", "test_exact_match", "fit_time"]
    pd.testing.assert_frame_equal(again[cols], table[cols])  # read back, nothing retrained (same fit times)


def test_compare_by_a_key_no_config_has_is_refused(triple_run):
    run, *_ = triple_run
    with pytest.raises(UsageError, match="no config of .* has 'nosuch'"):
        compare_groups(run, ["nosuch"], 2, progress=False)


def test_compare_by_a_key_every_config_shares_is_refused_before_training(triple_run):
    run, *_ = triple_run
    with pytest.raises(UsageError, match=r"by model: every config of .* has cnn, so there is nothing to compare; "
                                         r"the space allows no other; group by a key the search drew several"):
        compare_groups(run, ["model"], 2, progress=False)
    # where the space allows more than the search drew, --same-config is the way; where not, it is not offered
    with pytest.raises(UsageError, match=r"by model: the run's space allows only cnn, so there is nothing to compare"):
        compare_groups(run, ["model"], 2, progress=False, same_config=True)
    with pytest.raises(UsageError, match=r"by model,model names model twice; name each key once"):
        compare_groups(run, ["model", "model"], 2, progress=False)


def test_compare_by_a_list_valued_parameter_is_refused(triple_run):
    run, *_ = triple_run
    with pytest.raises(UsageError, match="by filters: a list-valued parameter"):
        compare_groups(run, ["filters"], 2, progress=False)


@pytest.mark.slow
def test_a_cnn_learns_every_position_of_a_built_set(tmp_path):
    from hpsearch.training.net import make_net

    data = load_dataset("triple-mnist", make_triple("digits", tmp_path / "d", n_train=1500, n_val=0, n_test=300,
                                                    seed=0).out)
    net = make_net({"model": "cnn", "filters": [16, 32], "dense": [64], "lr": 3e-3}, data, max_epochs=8, patience=0)
    metrics = data.task.test_metrics(data.y_test, net.fit(data.X_train, data.y_train).predict_proba(data.X_test))
    assert all(metrics[f"test_digit_{k}_accuracy"] > 0.5 for k in range(3)), metrics  # chance: 0.1

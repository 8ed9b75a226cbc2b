"""Configs no better than chance are counted, named and described (CLI, trials.csv, the report), on a
real digits search whose space makes some of them learn nothing."""

import html
import json
import math

import numpy as np
import pandas as pd

from hpsearch.cli import main
from hpsearch.rundir.chance import at_chance, chance_levels, chance_summary, common_traits


def test_chance_levels_are_guessing_from_the_class_frequencies():
    balanced = chance_levels(np.repeat(np.arange(10), 5), "neg_log_loss")
    assert balanced["accuracy"] == 0.1 and math.isclose(balanced["neg_log_loss"], -math.log(10))
    skewed = chance_levels(np.array([0, 0, 0, 1]), "accuracy")
    assert skewed["accuracy"] == 0.75 and chance_levels(np.zeros((4, 3), int), "accuracy") is None


def test_at_chance_and_the_traits_they_share():
    frame = pd.DataFrame({"trial": range(8), "mean_test_score": [-0.1, -0.2, -2.5, -3.0, -0.3, -2.4, -0.2, np.nan],
                          "mean_test_accuracy": [0.97, 0.95, 0.12, 0.1, 0.93, 0.11, 0.96, np.nan],
                          "param_optimizer": ["adam", "adam", "rmsprop", "rmsprop", "adam", "rmsprop", "sgd", "adam"],
                          "param_lr": [1e-3, 2e-3, 0.05, 0.08, 3e-3, 0.04, 1e-3, 1e-3]})
    mask = at_chance(frame, chance_levels(np.repeat(np.arange(10), 5), "neg_log_loss"))
    assert list(frame["trial"][mask]) == [2, 3, 5]  # a failed (NaN) config is a failure, not at chance
    traits = common_traits(frame, mask)
    assert traits == ["optimizer=rmsprop: 3 of 3, 0% of the rest", "lr >= 0.045: 2 of 3, 0% of the rest"]
    # one of two is no trait common to them, however rare it is elsewhere
    two = frame.assign(param_optimizer=["adam", "adam", "rmsprop", "sgd", "adam", "adam", "adam", "adam"])
    pair = pd.Series([False, False, True, True, False, False, False, False])
    assert common_traits(two, pair) == [] and common_traits(frame, pair & (frame["trial"] == 2)) == []
    # no config learned: nothing sets them apart (it said "model=mlp: 4 of 4, 0% of the rest" of no rest)
    nothing = frame.assign(param_model="mlp", mean_test_accuracy=0.1, mean_test_score=-2.5).iloc[:7]
    assert common_traits(nothing, at_chance(nothing, chance_levels(np.repeat(np.arange(10), 5), "neg_log_loss"))) == []


def test_a_trait_holds_as_printed_among_the_configs_that_scored_and_a_short_rung_is_said():
    """The range's bound is rounded down (16.5769 shows as 16.5, not 16.6, which it is below); the rest
    are the configs that scored (a failed one is neither at chance nor the rest); halving's configs at
    chance that were scored at a short rung are counted as such."""
    frame = pd.DataFrame({"trial": range(7), "mean_test_score": [-9.0, -9.5, -8.0, -0.2, -0.3, -0.25, np.nan],
                          "mean_test_accuracy": [0.1, 0.1, 0.1, 0.9, 0.9, 0.9, np.nan],
                          "param_lr": [16.5769, 16.5769, 40.0, 0.01, 0.02, 0.03, 900.0],
                          "param_optimizer": ["sgd", "sgd", "sgd", "adam", "adam", "adam", "sgd"],
                          "n_epochs": [1, 1, 6, 6, 6, 6, 1]})
    chance = chance_levels(np.repeat(np.arange(10), 5), "neg_log_loss")
    frame["at_chance"] = at_chance(frame, chance)
    assert common_traits(frame, frame["at_chance"]) == ["optimizer=sgd: 3 of 3, 0% of the rest",
                                                        "lr >= 16.5: 3 of 3, 0% of the rest"]
    said = chance_summary(frame, chance)
    assert said.startswith("3 of 7 configs scored no better than chance (") and said.count("of the rest") == 2
    assert "(2 of them scored at a rung of fewer than 6 epochs): trials 0, 1, 2" in said


def test_a_search_with_configs_that_learn_nothing_says_so(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text('hidden = [32]\noptimizer = "sgd"\nlr = { distribution = "categorical", choices = [0.05, 1e-7] }\n')
    run = tmp_path / "run"
    assert main(["search", "--dataset", "digits", "--space", str(space), "--n", "6", "--cv", "2", "--max-epochs", "3",
                 "--patience", "0", "--no-progress", "--no-retrain", "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    trials = pd.read_csv(run / "trials.csv")
    slow = trials["param_lr"].astype(float) < 1e-6
    assert slow.any() and (~slow).any()
    assert list(trials["at_chance"]) == list(slow)  # the ones with lr 1e-7, and only those
    assert f"{int(slow.sum())} of 6 configs scored no better than chance" in printed
    assert f"common to them: lr=1e-07: {int(slow.sum())} of {int(slow.sum())}, 0% of the rest" in printed
    report = (run / "report.html").read_text()
    assert "configs scored no better than chance" in report and "no config failed or diverged" in report
    # the search plots scale to the configs that learned; the others sit on the lower edge, counted
    from hpsearch.viz.search_plots import draw_search_plots, learned_floor

    floor = learned_floor(trials)
    assert floor == trials.loc[~slow, "mean_test_score"].min()
    figures = draw_search_plots(run)
    ax = figures["search_history"].axes[0]
    assert trials["mean_test_score"].min() < ax.get_ylim()[0] < floor
    assert f"{int(slow.sum())} below the axis (on the edge)" in [t.get_text() for t in ax.texts]


def test_a_winner_that_scored_at_chance_in_the_search_is_said(tmp_path, capsys):
    """The winner was crowned, on the console and in the report, without a word that the search scored it no
    better than chance (every config learned nothing there)."""
    space = tmp_path / "space.toml"
    space.write_text('hidden = [16]\noptimizer = "sgd"\nlr = { distribution = "categorical", choices = [1e-7, 2e-7] }\n')
    run = tmp_path / "run"
    assert main(["search", "--dataset", "digits", "--space", str(space), "--n", "2", "--cv", "2", "--max-epochs", "1",
                 "--patience", "0", "--no-progress", "--top", "1", "--retrain-epochs", "1", "--images", "2",
                 "--units", "2", "--out", str(run)]) == 0
    winner = json.loads((run / "summary.json").read_text())["winner"]["trial"]
    assert pd.read_csv(run / "trials.csv").set_index("trial")["at_chance"][winner]
    said = f"trial {winner} scored no better than chance in the search (trials.csv, at_chance)"
    assert f"note: {said}" in capsys.readouterr().out
    assert said in html.unescape((run / "report.html").read_text())

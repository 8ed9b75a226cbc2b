"""Search plots on small real digits runs (random and halving): the pure data functions give
trials.csv's numbers and Optuna's importances; ``hpsearch plot search`` needs no winner."""

import io
import shutil

import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hpsearch.cli import main
from hpsearch.rundir.store import open_study
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.space.search_space import load_space
from hpsearch.viz.search_plots import (
    Skipped,
    draw_search_plots,
    first_rung_study,
    fold_spread,
    history,
    importances,
    plot_score_vs_params,
    run_importances,
    rungs,
    score_vs_params,
)

TINY = dict(dataset="digits", cv=2, n=6, patience=0, n_jobs=1, progress=False)


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    return run_search(SearchSettings(out=str(tmp_path_factory.mktemp("random") / "run"), max_epochs=2, **TINY))


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory):
    return run_search(SearchSettings(out=str(tmp_path_factory.mktemp("halving") / "run"), strategy="halving",
                                     min_epochs=1, max_epochs=3, **TINY))


def _csv(run):
    return pd.read_csv(run / "trials.csv")


def test_score_vs_params_points_are_trials_csv(random_run):
    frame = _csv(random_run)
    panels = {p.name: p for p in score_vs_params(frame, load_space(random_run / "space.toml"))}
    assert set(panels) == {"hidden[1]", "hidden[2]", "dropout", "lr", "weight_decay", "optimizer"}  # no constants
    assert panels["lr"].log and panels["weight_decay"].log and not panels["dropout"].log
    assert panels["optimizer"].kind == "categorical" and panels["optimizer"].categories == ["adam", "rmsprop"]
    by_trial = frame.set_index("trial")
    for name in ("dropout", "lr", "weight_decay", "optimizer"):
        p = panels[name]
        np.testing.assert_array_equal(p.x, by_trial.loc[p.trial, f"param_{name}"].tolist())
        np.testing.assert_array_equal(p.score, by_trial.loc[p.trial, "mean_test_score"])
    widths = [[int(w) for w in v.split("-")] for v in by_trial.loc[panels["hidden[1]"].trial, "param_hidden"]]
    assert panels["hidden[1]"].x == [w[0] for w in widths] and panels["hidden[2]"].x == [w[1] for w in widths]


def test_history_running_best_is_monotone(random_run):
    data = history(_csv(random_run))
    assert list(data["trial"]) == sorted(data["trial"]) and len(data["trial"]) == 6
    assert np.all(np.diff(data["best"]) >= 0) and np.all(data["best"] >= data["score"])
    assert data["best"][-1] == _csv(random_run)["mean_test_score"].max()


def test_halving_history_and_folds_say_each_configs_budget(halving_run):
    """Halving scores configs at 1 and 3 epochs: the history's running best is over the 3-epoch scores
    alone (a 1-epoch score is no rival to them), and both plots colour each config by its budget."""
    frame = _csv(halving_run)
    data = history(frame)
    scored = frame[frame["mean_test_score"].notna()].sort_values("trial")
    at_top = (scored["n_epochs"] == 3).to_numpy()
    assert data["best_epochs"] == 3 and at_top.any() and not at_top.all()
    np.testing.assert_array_equal(data["epochs"], scored["n_epochs"])
    first = int(np.argmax(at_top))
    assert np.isnan(data["best"][:first]).all()
    assert data["best"][-1] == scored.loc[scored["n_epochs"] == 3, "mean_test_score"].max()
    assert history(_csv(halving_run).assign(n_epochs=3))["best_epochs"] is None  # one budget: every score counts
    figures = draw_search_plots(halving_run)
    for stem in ("search_history", "search_folds"):
        assert [t.get_text() for t in figures[stem].legends[0].get_texts()] == ["1 epoch", "3 epochs"], stem
    labels = [t.get_text() for t in figures["search_history"].axes[0].get_legend().get_texts()]
    assert labels == ["best so far at 3 epochs"]


def test_importances_are_optunas_and_sum_to_one(random_run):
    study = open_study(random_run)
    result = importances(study)
    assert not isinstance(result, Skipped)
    assert set(result) == set(study.trials[0].params)
    assert sum(result.values()) == pytest.approx(1.0)
    # each trial kept hidden_2 under its own range ([51, hidden_1 - 1]): Optuna compared it across none, 0.0
    assert result["hidden_2"] > 0


def test_halving_importances_see_every_config_at_the_first_rung(halving_run):
    study, frame = open_study(halving_run), _csv(halving_run)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2  # Optuna's own importances would see only the survivors
    copy, epochs = first_rung_study(study, frame)
    assert epochs == 1 and len(copy.trials) == 6
    by_trial = frame.set_index("trial")["score_1ep"]
    originals = {t.params["lr"]: t.user_attrs["index"] for t in study.trials}
    for t in copy.trials:
        assert t.value == by_trial[originals[t.params["lr"]]]
    data = run_importances(study, frame)
    assert data["basis"] == "score at 1 epoch, the first rung, 6 configs"
    # layer widths named as the parameter plot names them: Optuna's hidden_1 is the first layer, hidden[1]
    assert {"hidden[1]", "lr"} <= set(data["values"]) and not any("_" in name for name in data["values"]
                                                                  if name.startswith("hidden"))
    assert sum(data["values"].values()) == pytest.approx(1.0) and data["values"]["hidden[2]"] > 0
    assert first_rung_study(open_study(halving_run), frame.drop(columns=["score_3ep"])) is None


def test_importances_skip_with_a_reason():
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert "at least 2 complete trials" in importances(study).reason
    constant = optuna.create_study(direction="maximize")
    constant.optimize(lambda t: t.suggest_float("x", 1, 1), n_trials=3)
    assert "constant" in importances(constant).reason


def test_fold_spread_equals_split_columns(random_run):
    frame = _csv(random_run)
    data = fold_spread(frame)
    by_trial = frame.set_index("trial")
    assert list(data["trial"]) == list(frame.sort_values("rank_test_score")["trial"])
    np.testing.assert_array_equal(data["splits"], by_trial.loc[data["trial"], ["split0_test_score", "split1_test_score"]])
    np.testing.assert_allclose(data["mean"], data["splits"].mean(axis=1))


def test_rungs_count_configs_per_rung(random_run, halving_run):
    assert "this run gave every config one budget" in rungs(_csv(random_run), "random").reason
    # a hyperband run still in its first rung has no rung columns yet: it is not a one-budget run
    first = _csv(random_run).drop(columns=[c for c in _csv(random_run) if c.startswith("score_")])
    assert rungs(first, "hyperband").reason == ("no config of this hyperband run has passed its first rung yet; "
                                                "resume it to draw the rungs")
    frame = _csv(halving_run)
    data = rungs(frame)
    assert list(data["epochs"]) == [1, 3]
    assert list(data["configs"]) == [6, 2]
    assert data["configs"][1] == (frame["rung"] == 1).sum()
    top = frame.set_index("trial").loc[data["trials"][1], "score_3ep"]
    np.testing.assert_array_equal(data["scores"][1], top)


def test_plot_search_needs_no_winner(halving_run, capsys):
    assert not (halving_run / "winner.pt").exists()
    figures = draw_search_plots(halving_run)
    assert all(isinstance(f, Figure) for f in figures.values())
    assert main(["plot", "search", str(halving_run)]) == 0
    out = capsys.readouterr().out
    for stem in ("search_params", "search_history", "search_importances", "search_folds", "search_rungs"):
        assert (halving_run / f"{stem}.png").stat().st_size > 0 and f"{stem}.png" in out


def test_plot_search_on_a_damaged_trials_csv_says_it_in_one_line(random_run, tmp_path, capsys):
    """A word where a score belongs was a ValueError traceback (the report said it in one line)."""
    run = tmp_path / "run"
    shutil.copytree(random_run, run)
    frame = _csv(run)
    frame["mean_test_score"] = frame["mean_test_score"].astype(object)
    frame.loc[0, "mean_test_score"] = "abc"
    frame.to_csv(run / "trials.csv", index=False)
    assert main(["plot", "search", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hpsearch: error: {run / 'trials.csv'} is damaged (ValueError: could not convert string "
                          "to float: 'abc'); hpsearch search --resume") and len(err.splitlines()) == 1
    frame["mean_test_score"] = [np.inf, -np.inf, np.nan] * (len(frame) // 3) + [np.nan] * (len(frame) % 3)
    frame.to_csv(run / "trials.csv", index=False)  # inf counted as scored: four pictures of empty axes
    assert main(["plot", "search", str(run)]) == 2 and not list(run.glob("search_*.png"))
    assert "no search picture could be drawn: no config scored" in capsys.readouterr().err


def test_plot_search_says_what_it_skipped(random_run, capsys):
    assert main(["plot", "search", str(random_run)]) == 0
    out = capsys.readouterr().out
    assert "skipped search_rungs: rungs apply to halving" in out
    assert (random_run / "search_history.png").is_file() and not (random_run / "search_rungs.png").exists()


def test_rungs_count_the_configs_that_failed_there_and_every_plot_keeps_chance_on_its_edge(tmp_path):
    """lr 1e6 diverges at the first rung (trained there, no score), 1e-7 learns nothing (at chance): the
    rung's bar counts every config trained, and the fold and rung plots scale to the configs that learned."""
    space = tmp_path / "space.toml"
    space.write_text('optimizer = "sgd"\nhidden = { distribution = "categorical", choices = [[32], [16, 8]] }\n'
                     'lr = { distribution = "categorical", choices = [0.05, 1e-7, 1e6] }\n')
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="failed"):
        assert main(["search", "--dataset", "digits", "--space", str(space), "--strategy", "halving", "--n", "9",
                     "--cv", "2", "--min-epochs", "1", "--max-epochs", "3", "--patience", "0", "--n-jobs", "1",
                     "--no-progress", "--no-retrain", "--out", str(run)]) == 0
    frame = pd.read_csv(run / "trials.csv")
    failed = int((frame["state"] == "FAIL").sum())
    assert failed > 0 and frame["at_chance"].any()
    data = rungs(frame, "halving")
    assert data["configs"][0] == 9 and data["failed"][0] == failed  # every config trained the first rung
    figures = draw_search_plots(run)
    learned = frame.loc[~frame["at_chance"] & frame["mean_test_score"].notna(), "mean_test_score"]
    low = figures["search_folds"].axes[0].get_ylim()[0]
    assert learned.min() > low > frame["mean_test_score"].min()  # chance's scores below, on the edge
    spread = figures["search_rungs"].axes[1]
    assert spread.get_ylim()[0] > np.nanmin(np.concatenate(data["scores"]))
    # a list choice's strip is named as trials.csv writes it ("16-8", not "(16, 8)"): every point on a
    # labelled strip, both strips on the axis; the rungs' colours are named in a legend
    panel = next(p for p in score_vs_params(frame, load_space(run / "space.toml")) if p.name == "hidden")
    assert panel.categories == ["32", "16-8"] and set(panel.x) <= set(panel.categories)
    params = figures["search_params"]
    hidden = next(ax for ax in params.axes if ax.get_xlabel() == "hidden")
    assert [t.get_text() for t in hidden.get_xticklabels()] == ["32", "16-8"] and hidden.get_xlim() == (-0.5, 1.5)
    assert [t.get_text() for t in params.legends[0].get_texts()] == ["1 epoch", "3 epochs"]


def test_a_search_where_every_config_failed_draws_no_empty_axes(tmp_path, capsys):
    """Every config diverged: plot search wrote three pictures of empty axes (an lr axis of 1 to 10 for lrs of
    1e6), and report.html showed them; they are skipped, saying why. plot search refuses flags as every method."""
    space = tmp_path / "space.toml"
    space.write_text('optimizer = "sgd"\nhidden = { distribution = "categorical", choices = [[16]] }\n'
                     'lr = { distribution = "categorical", choices = [1e6, 1e7] }\n')
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="2 of 2 configs failed"):
        assert main(["search", "--dataset", "digits", "--space", str(space), "--n", "2", "--cv", "2", "--max-epochs",
                     "1", "--patience", "0", "--n-jobs", "1", "--no-progress", "--no-retrain", "--out", str(run)]) == 1
    capsys.readouterr()
    assert main(["plot", "search", str(run)]) == 2  # it said "search: wrote " (nothing) and exit 0
    assert capsys.readouterr().err == (f"hpsearch: error: {run}: no search picture could be drawn: no config scored: "
                                       "all 2 failed (trials.csv, column 'error')\n")
    assert not list(run.glob("search_*.png"))
    assert main(["plot", "search", str(run), "--units", "99999"]) == 2
    assert main(["plot", "search", str(run), "--layer", "features.0"]) == 2
    assert "--layer applies only to" in capsys.readouterr().err
    assert main(["plot", "all", str(run)]) == 2  # it sent you to hpsearch retrain, which refuses the run
    assert f"{run} holds no scored trial: each of its 2 configs failed" in capsys.readouterr().err


def test_a_categorical_of_thousands_of_choices_labels_thirty_and_draws_at_once():
    """A space listing batch sizes 1..10000 held the report for minutes: constrained layout measured
    10,000 tick labels. Thirty are labelled, spread evenly, both ends kept."""
    from hpsearch.viz.search_data import ParamPoints

    panel = ParamPoints("batch_size", "categorical", x=["17", "9000"], score=np.array([-0.3, -0.2]),
                        trial=np.array([0, 1]), epochs=np.array([2, 2]), categories=[str(i) for i in range(1, 10001)])
    fig = plot_score_vs_params([panel])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) == 30 and labels[0] == "1" and labels[-1] == "10000"
    fig.savefig(io.BytesIO(), format="png")
    small = ParamPoints("optimizer", "categorical", x=["adam"], score=np.array([-0.3]), trial=np.array([0]),
                        epochs=np.array([2]), categories=["adam", "sgd", "rmsprop"])
    assert [t.get_text() for t in plot_score_vs_params([small]).axes[0].get_xticklabels()] == ["adam", "sgd", "rmsprop"]

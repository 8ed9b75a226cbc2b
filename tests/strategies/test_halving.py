"""Successive halving, Hyperband and TPE for real, on digits with tiny budgets: rung bookkeeping,
exact continuation, the Optuna study, resume mid-rung, and random search unchanged."""

import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from joblib import Parallel

from hpsearch.engines.batched_engine import evaluate_batched
from hpsearch.engines.cv import evaluate_configs, make_folds
from hpsearch.jobs.resources import threads_per_job
from hpsearch.rundir.states import load_state, owner_of, state_path
from hpsearch.rundir.store import TrialStore, load_results
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.strategies import STRATEGIES
from hpsearch.training.net import make_net
from hpsearch.training.seeds import trial_seed

DATA = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = DATA.parents[1]
TINY = dict(dataset="digits", cv=2, n_jobs=2, progress=False, seed=1)
HALVING = dict(TINY, strategy="halving", n=9, factor=3, min_epochs=1, max_epochs=9, patience=0)


@pytest.fixture(scope="module")
def halving_run(tmp_path_factory):
    return run_search(SearchSettings(out=str(tmp_path_factory.mktemp("halving") / "run"), **HALVING))


@pytest.fixture(scope="module")
def batched_halving_run(tmp_path_factory):
    return run_search(SearchSettings(out=str(tmp_path_factory.mktemp("batched") / "run"),
                                     **{**HALVING, "engine": "batched"}))


def _fold_scores(config, index, X, y, folds, epochs, patience, states=None):
    make = partial(make_net, config, X.shape[1] if X.ndim == 2 else int(np.prod(X.shape[1:])), 10,
                   max_epochs=epochs, patience=patience, random_state=trial_seed(1, index))
    with Parallel(n_jobs=2, return_as="generator_unordered") as parallel:
        [(_, result)] = evaluate_configs({index: make}, X, y, folds, parallel=parallel, threads=1,
                                         states={index: states} if states else None)
    return result


@pytest.mark.parametrize("patience", [0, 2])
def test_continued_fit_equals_a_straight_one(digits, tmp_path, patience):
    """A fold brought to 3 epochs, saved, and continued to 8 has the weights and scores of a fold
    trained straight for 8 (early stopping's counters carried over too)."""
    config = {"model": "mlp", "hidden": [48, 20], "dropout": 0.2, "lr": 3e-3, "optimizer": "adam",
              "weight_decay": 1e-4}
    X, y = digits.X_train, digits.y_train
    folds = make_folds(y, 2, 1)
    states = [(state_path(tmp_path, 4, k), True, owner_of("run", 4, k, config)) for k in range(2)]
    _fold_scores(config, 4, X, y, folds, 3, patience, states)
    assert load_state(states[0][0], states[0][2])["history"][-1]["epoch"] == 3
    continued = _fold_scores(config, 4, X, y, folds, 8, patience, states)
    straight = _fold_scores(config, 4, X, y, folds, 8, patience)
    assert continued.error is None and continued.test_scores == straight.test_scores
    assert continued.epochs == straight.epochs
    # the state after the continued fit holds exactly the straight fit's weights
    net = make_net(config, 64, 10, max_epochs=8, patience=patience, random_state=trial_seed(1, 4))
    net.fit(X[folds[0][0]], y[folds[0][0]])
    saved = load_state(states[0][0], states[0][2])["module"]
    assert all(torch.equal(saved[k], v) for k, v in net.module_.state_dict().items())


def test_halving_rungs_ranking_and_files(halving_run):
    frame = load_results(halving_run)
    assert len(frame) == 9
    counts = frame["n_epochs"].value_counts().to_dict()
    assert counts == {1: 6, 3: 2, 9: 1}  # 9 configs, 3 go on to 3 epochs, 1 to 9
    assert list(frame["rung"]) == [2, 1, 1, 0, 0, 0, 0, 0, 0]
    # a config that reached a higher rung ranks first, then by score
    assert list(frame["rank_test_score"]) == list(range(1, 10))
    assert frame["n_epochs"].is_monotonic_decreasing
    # the survivors of rung 0 are its top third by mean CV score
    rung0 = frame.set_index("trial")["score_1ep"]
    assert set(frame.loc[frame["n_epochs"] > 1, "trial"]) == set(rung0.nlargest(3).index)
    assert frame["state"].tolist() == ["COMPLETE"] + ["PRUNED"] * 8
    assert not any((halving_run / "states").iterdir())  # states are gone once pruned or final
    scores = np.loadtxt(halving_run / "sorted_scores.dat", skiprows=1)
    np.testing.assert_array_equal(scores[:, 1].astype(int), frame["trial"])


def test_halving_winner_scores_as_if_trained_straight(halving_run, digits):
    frame = load_results(halving_run)
    best = frame.iloc[0]
    config = _config(halving_run, best["trial"])
    straight = _fold_scores(config, int(best["trial"]), digits.X_train, digits.y_train,
                            make_folds(digits.y_train, 2, 1), 9, 0)
    assert [best["split0_test_score"], best["split1_test_score"]] == straight.test_scores


def _config(run, trial):
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run}/trials.db")
    return study.trials[int(trial)].user_attrs["config"]


def test_the_study_numbers_times_and_values(halving_run):
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{halving_run}/trials.db")
    assert study.metric_names == ["neg_log_loss"]
    frame = load_results(halving_run).set_index("trial")
    for trial in study.trials:
        assert trial.number == trial.user_attrs["index"]  # the dashboard names hpsearch's trial
        assert trial.duration.total_seconds() > 0
        row = frame.loc[trial.number]
        assert trial.value == pytest.approx(row["mean_test_score"], abs=1e-12)
        assert sorted(trial.intermediate_values) == [e for e in (1, 3, 9) if e <= row["n_epochs"]]
        h1, h2 = trial.params["hidden_1"], trial.params["hidden_2"]
        assert trial.distributions["hidden_2"].high == h1 - 1 and h2 < h1
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["skorch", "batched"])
def test_resume_mid_rung_stores_what_an_uninterrupted_run_stores(engine, request, tmp_path, monkeypatch):
    uninterrupted = request.getfixturevalue({"skorch": "halving_run", "batched": "batched_halving_run"}[engine])
    settings = {**HALVING, "engine": engine}
    out = tmp_path / "run"
    calls = {"n": 0}
    original = TrialStore.add_rung

    def add_then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 10:  # all 9 of rung 0 and 1 of rung 1's 3 are stored: Ctrl-C mid-rung
            raise KeyboardInterrupt

    monkeypatch.setattr(TrialStore, "add_rung", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_search(SearchSettings(out=str(out), **settings))
    monkeypatch.setattr(TrialStore, "add_rung", original)
    partial_frame = load_results(out)
    assert len(partial_frame) == 9 and (partial_frame["n_epochs"] == 3).sum() == 1
    assert (out / "states").is_dir()  # the rung in progress left its continuation states
    run_search(SearchSettings(out=str(out), **settings))
    cols = [c for c in load_results(uninterrupted) if "fit_time" not in c]
    pd.testing.assert_frame_equal(load_results(out)[cols], load_results(uninterrupted)[cols])


def _has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _has_avx2(), reason="the stored trials were computed with torch's AVX2 kernels")
def test_random_strategy_is_unchanged(tmp_path, starting_environ, digits):
    """``--strategy random`` is the search as it was before strategies existed: the same configs,
    trials and columns as the trials.csv that search wrote (tests/fixtures, made by commit 3375cb2 with
    these settings), and every score, accuracy and epoch count that of a from-scratch 14-epoch fit of
    that config on that fold, bit for bit.

    The scores are checked against fits made here, not against the stored file's: the file came from
    an AMD CPU's kernels, and an Intel CPU's (MKL blocks its products differently, even on the same
    AVX2 path) round differently in the last digits, which a chaotically training config amplifies
    (measured: trial 4's fold 0 scored -0.1992 there and -0.1590 here)."""
    run = tmp_path / "run"  # the run's threads as ever (starting_environ), not conftest's cap
    subprocess.run([sys.executable, str(ROOT / "run_search.py"), "--n", "5", "--dataset", "digits", "--cv", "3",
                    "--max-epochs", "14", "--patience", "2", "--n-jobs", "2", "--seed", "1", "--no-retrain",
                    "--no-progress", "--out", str(run)], check=True, env=starting_environ, capture_output=True)
    before = pd.read_csv(DATA / "random_digits_trials.csv").sort_values("trial", ignore_index=True)
    now = pd.read_csv(run / "trials.csv")
    assert set(before) <= set(now)
    fixed = [c for c in before if c.startswith("param_")] + ["error"]
    pd.testing.assert_frame_equal(before[["trial", *fixed]], now.sort_values("trial", ignore_index=True)[
        ["trial", *fixed]])
    folds = make_folds(digits.y_train, 3, 1)
    for row in now.itertuples():
        straight = _fold_scores(_config(run, row.trial), row.trial, digits.X_train, digits.y_train, folds, 14, 2)
        assert [getattr(row, f"split{k}_test_score") for k in range(3)] == straight.test_scores
        assert [getattr(row, f"split{k}_test_accuracy") for k in range(3)] == straight.test_accuracies
        assert row.mean_epochs == np.mean(straight.epochs)
    assert now["mean_test_score"].is_monotonic_decreasing and now["rank_test_score"].tolist() == [1, 2, 3, 4, 5]
    assert (now["n_epochs"] == 14).all() and (now["rung"] == 0).all() and (now["state"] == "COMPLETE").all()
    assert not (run / "states").exists()


@pytest.mark.slow
def test_hyperband_and_tpe_runs(tmp_path):
    hb_settings = SearchSettings(out=str(tmp_path / "hb"), strategy="hyperband", n=8, min_epochs=1, max_epochs=3,
                                 patience=0, **TINY)
    hb = load_results(run_search(hb_settings))
    assert len(hb) == 8 and hb.iloc[0]["n_epochs"] == 3
    assert set(hb["n_epochs"]) == {1, 3}
    # the same command again opens the same run (its stored fingerprint matches) and trains nothing
    cols = [c for c in hb if "fit_time" not in c]
    pd.testing.assert_frame_equal(load_results(run_search(hb_settings))[cols], hb[cols])
    tpe_run = run_search(SearchSettings(out=str(tmp_path / "tpe"), strategy="tpe", n=5, n_startup=3, max_epochs=2,
                                        patience=0, **TINY))
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tpe_run}/trials.db")
    assert [t.number for t in study.trials] == [t.user_attrs["index"] for t in study.trials] == list(range(5))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        h = t.user_attrs["config"]["hidden"]
        assert h[0] > h[1] >= 50
    # the same seed proposes the same configs and scores them the same
    again = run_search(SearchSettings(out=str(tmp_path / "tpe2"), strategy="tpe", n=5, n_startup=3, max_epochs=2,
                                      patience=0, **TINY))
    cols = [c for c in load_results(tpe_run) if "fit_time" not in c]
    pd.testing.assert_frame_equal(load_results(tpe_run)[cols], load_results(again)[cols])


@pytest.mark.slow
@pytest.mark.parametrize("put_back", [False, True], ids=["asked", "put-back"])
def test_a_tpe_run_cut_off_or_grown_asks_what_a_straight_run_asks(tmp_path, put_back):
    """A TPE run stopped after 5 configs, with a sixth asked of the sampler but cut off before it was
    stored (Ctrl-C or kill -9 inside ``study.ask``), then resumed to 8: the same trial numbers and the
    same configs and scores as one straight run of 8. Also when a resume had put that trial back in the
    queue (WAITING) and was cut off before its own ask: every later resume failed with a traceback."""
    def tpe(out, n):
        return SearchSettings(out=str(tmp_path / out), strategy="tpe", n=n, n_startup=3, max_epochs=2, patience=0,
                              **TINY)

    straight = load_results(run_search(tpe("straight", 8)))
    cut = run_search(tpe("cut", 5))
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{cut}/trials.db")
    orphan = study.ask()  # the orphan: trial 5
    if put_back:
        study._storage.set_trial_state_values(orphan._trial_id, optuna.trial.TrialState.WAITING)
    resumed = load_results(run_search(tpe("cut", 8)))
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{cut}/trials.db")
    assert [t.number for t in study.trials] == [t.user_attrs["index"] for t in study.trials] == list(range(8))
    cols = [c for c in straight if "fit_time" not in c]
    pd.testing.assert_frame_equal(resumed[cols], straight[cols])


def test_tpe_halving_run_prunes_as_it_goes_and_resumes_to_the_same_store(tmp_path):
    settings = SearchSettings(out=str(tmp_path / "th"), **{**TINY, "n_jobs": 1}, strategy="tpe-halving", n=6,
                              n_startup=3, min_epochs=1, max_epochs=3, patience=0)  # one job: batches of one
    run = run_search(settings)
    frame = load_results(run).set_index("trial")
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run}/trials.db")
    assert [t.number for t in study.trials] == [t.user_attrs["index"] for t in study.trials] == list(range(6))
    reached = frame["n_epochs"].to_dict()
    first = frame["score_1ep"].to_dict()
    # the random start (0-2) halves among itself: ceil(3/3) = 1 goes on to 3 epochs
    assert sorted(reached[i] for i in range(3)) == [1, 1, 3]
    # each TPE proposal goes on iff it is in the top ceil(m/3) of the m configs scored at 1 epoch by then
    for i in range(3, 6):
        best = sorted(range(i + 1), key=lambda j: -first[j])[: -(-(i + 1) // 3)]
        assert (reached[i] == 3) == (i in best), (i, first)
    assert {t.state.name for t in study.trials if reached[t.number] == 1} == {"PRUNED"}
    assert {t.state.name for t in study.trials if reached[t.number] == 3} == {"COMPLETE"}
    assert not any((run / "states").iterdir())
    # the same command again opens the same run and trains nothing: the same store
    cols = [c for c in frame if "fit_time" not in c]
    pd.testing.assert_frame_equal(load_results(run_search(settings)).set_index("trial")[cols], frame[cols])


def test_halving_on_the_batched_engine(batched_halving_run, digits):
    """The same rungs as on the skorch engine, and the winner, continued 1 -> 3 -> 9 epochs, scores
    exactly what its straight 9-epoch fits score (one-model chunks carry their dropout state)."""
    frame = load_results(batched_halving_run)
    assert frame["n_epochs"].value_counts().to_dict() == {1: 6, 3: 2, 9: 1}
    assert frame["state"].tolist() == ["COMPLETE"] + ["PRUNED"] * 8
    assert frame.iloc[0]["mean_test_accuracy"] > 0.9
    assert not any((batched_halving_run / "states").iterdir())
    best = int(frame.iloc[0]["trial"])
    config = _config(batched_halving_run, best)
    assert config["dropout"] > 0  # the masks are part of what continues
    chunks = evaluate_batched({best: config}, {best: trial_seed(1, best)}, digits.X_train, digits.y_train,
                              make_folds(digits.y_train, 2, 1), 10, max_epochs=9, patience=0, threads=threads_per_job(2))
    [(_, straight)] = [result for chunk in chunks for result in chunk]
    assert straight.epochs == [9, 9]
    assert [frame.iloc[0]["split0_test_score"], frame.iloc[0]["split1_test_score"]] == straight.test_scores


def test_a_fold_early_stopping_ended_is_scored_as_it_is_when_promoted(digits, tmp_path):
    """Early stopping ends a fold inside rung 1; continuing its config to a longer rung leaves that
    fold as it was and gives what a straight fit gives (no failure, no retraining)."""
    config = {"model": "mlp", "hidden": [48, 20], "dropout": 0.0, "lr": 0.05, "optimizer": "adam",
              "weight_decay": 0.0}
    X, y = digits.X_train, digits.y_train
    folds = make_folds(y, 2, 1)
    states = [(state_path(tmp_path, 2, k), True, owner_of("run", 2, k, config)) for k in range(2)]
    first = _fold_scores(config, 2, X, y, folds, 12, 1, states)
    stopped = [load_state(path, owner)["stopped"] for path, _, owner in states]
    assert any(stopped) and min(first.epochs) < 12, first.epochs
    continued = _fold_scores(config, 2, X, y, folds, 30, 1, states)
    straight = _fold_scores(config, 2, X, y, folds, 30, 1)
    assert continued.error is None, continued.error
    assert continued.test_scores == straight.test_scores and continued.epochs == straight.epochs
    for k, was_stopped in enumerate(stopped):
        if was_stopped:
            assert continued.epochs[k] == first.epochs[k] and continued.test_scores[k] == first.test_scores[k]


def test_the_plan_line_says_the_rungs_and_whether_folds_race():
    halving = STRATEGIES["halving"](9, 9, 0, 3, None, 10)
    assert halving.plan_line(3) == "halving: configs x epochs per rung: 9 x 1, 3 x 3, 1 x 9 (x 3 folds)"
    halving.fold_racing = 0.02
    assert halving.plan_line(3) == ("halving: configs x epochs per rung: 9 x 1, 3 x 3, 1 x 9 (x up to 3 folds: "
                                    "racing stops some configs sooner)")
    assert STRATEGIES["random"](9, 9, 0, 3, None, 10).plan_line(3) is None  # one budget: nothing to plan


def test_a_kill_between_a_rungs_writes_leaves_optuna_every_rung_after_the_resume(tmp_path, monkeypatch):
    """A rung is written to the trials database in separate commits; a kill after the rung but before its
    intermediate value left the resume taking the rung as done, and Optuna (the dashboard, tpe-halving's
    ranking of pruned trials) without that step for good."""
    from optuna.storages import RDBStorage

    out, calls = tmp_path / "run", {"n": 0}
    original = RDBStorage.set_trial_intermediate_value

    def dies_at_the_fourth(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the process dies at this write (as under a kill -9: nothing after it runs)
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    settings = dict(HALVING, n=4, max_epochs=3)
    monkeypatch.setattr(RDBStorage, "set_trial_intermediate_value", dies_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_search(SearchSettings(out=str(out), **settings))
    monkeypatch.setattr(RDBStorage, "set_trial_intermediate_value", original)
    run_search(SearchSettings(out=str(out), **settings))
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out}/trials.db")
    for trial in study.trials:
        rungs = [v["epochs"] for k, v in sorted(trial.user_attrs.items()) if k.startswith("rung")]
        assert sorted(trial.intermediate_values) == rungs, (trial.number, trial.intermediate_values, rungs)


def test_a_fold_trained_before_an_interrupt_keeps_its_fit_time_after_the_resume(tmp_path, monkeypatch):
    """The resume scores a fold trained before the Ctrl-C from its state: its fit time was the reload's
    (0.02 s for a 0.08 s fit), so mean_fit_time understated the run's compute after every resume."""
    import torch

    out, calls, cut = tmp_path / "run", {"n": 0}, {}
    original = TrialStore.add_rung

    def dies_before_the_fifth(self, index, epochs, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # rung 1's first config (of 2; rungs 1, 2, 4): its folds kept, its rung not stored
            cut.update(index=index, epochs=epochs)
            raise KeyboardInterrupt
        return original(self, index, epochs, *args, **kwargs)

    settings = dict(HALVING, n=4, factor=2, max_epochs=4)
    monkeypatch.setattr(TrialStore, "add_rung", dies_before_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        run_search(SearchSettings(out=str(out), **settings))
    monkeypatch.setattr(TrialStore, "add_rung", original)
    states = sorted((out / "states" / str(cut["index"])).glob("fold*.pt"))
    kept = [torch.load(p, weights_only=True) for p in states]
    assert len(kept) == 2 and all(s["budget"] == cut["epochs"] == 2 for s in kept)
    run_search(SearchSettings(out=str(out), **settings))
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out}/trials.db")
    rung = study.trials[cut["index"]].user_attrs["rung1"]
    assert rung["epochs"] == 2 and rung["split_fit_times"] == [s["fit_time"] for s in kept]

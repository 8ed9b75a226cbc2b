"""The tabulated benchmark and its replay (bench/_tables.py, bench/_replay.py) against a real run: a
small table of digits replays hpsearch's halving exactly as run_search runs it (the same scores, bit
for bit, the same configs at every rung, the same winner, the same fold-epochs), and scikit-learn's
own HalvingRandomSearchCV replays on the same table."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _replay import draw_configs, replay_sklearn_halving, replay_strategy  # noqa: E402
from _tables import build_table, load_table  # noqa: E402

from hpsearch.data import load_dataset  # noqa: E402
from hpsearch.rundir.store import load_results  # noqa: E402
from hpsearch.search.run import run_search  # noqa: E402
from hpsearch.settings import SearchSettings  # noqa: E402

N, EPOCHS, CV = 9, 9, 2


@pytest.fixture(scope="module", params=["batched", pytest.param("skorch", marks=pytest.mark.slow)])
def table(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "digits.npz"
    build_table(load_dataset("digits"), N, EPOCHS, cv=CV, seed=0, jobs=2, engine=request.param, out=path,
                provenance={"engine": request.param})
    return load_table(path)


def test_the_table_is_data_with_its_configs_and_provenance(table):
    assert table.score.shape == (N, CV, EPOCHS) and table.score.dtype == np.float64
    assert set(table.provenance) == {"engine"} and len(table.configs) == N
    assert np.all(table.correct <= table.held.reshape(1, -1, 1)) and table.n_test == 360
    assert table.cv_accuracy(0, EPOCHS) > 0.5 or np.isnan(table.mean_score(0, EPOCHS))


def test_halving_replayed_on_the_table_is_the_real_run(table, tmp_path):
    """Halving with its rungs after the first ranked by the trend (``--trend 0.5``: the replay runs the
    same ranking code), factor 3 so that 9 configs make three rungs."""
    settings = SearchSettings(n=N, dataset="digits", cv=CV, max_epochs=EPOCHS, patience=0, seed=0, n_jobs=2,
                              strategy="halving", factor=3, trend=0.5, engine=table.provenance["engine"],
                              out=str(tmp_path / "run"), progress=False)
    run = run_search(settings)
    assert json.loads((run / "settings.json").read_text())["trend"] == 0.5
    frame = load_results(run).set_index("trial")
    replay = replay_strategy(table, list(range(N)), "halving", EPOCHS, seed=0, trend=0.5)
    reached = {int(t): int(e) for t, e in frame["n_epochs"].items()}
    assert reached == replay.reached  # the same configs at every rung: 9 at 1 epoch, 3 at 3, 1 at 9
    assert sorted(reached.values()) == [1] * 6 + [3] * 2 + [9]
    for trial, epochs in reached.items():  # each trial's last rung: the table's score, bit for bit
        assert frame.loc[trial, "mean_test_score"] == table.mean_score(trial, epochs)
    assert replay.chosen == int(frame.index[0])  # the same winner
    fold_epochs = float((frame["mean_epochs"] * CV).sum())
    assert fold_epochs == CV * sum(replay.reached.values())
    assert replay.compute == sum(CV * e * table.macs[t] for t, e in reached.items())


def test_scikit_learns_halving_restarts_and_racing_saves_folds(table):
    drawn = draw_configs(table, N, seed=1)
    assert sorted(drawn) == list(range(N))
    ours = replay_strategy(table, drawn, "halving", EPOCHS, seed=1)
    theirs = replay_sklearn_halving(table, drawn, EPOCHS, seed=1)
    # scikit-learn: rungs 1, 3, 9 epochs from scratch (9 x 1 + 3 x 3 + 1 x 9 per fold); ours continue
    assert sorted(theirs.reached.values()) == [1] * 6 + [3] * 2 + [9]
    restart = sum(CV * e * table.macs[drawn[p]] for p, e in theirs.reached.items())
    survivors = [p for p, e in theirs.reached.items() if e > 1]
    assert theirs.compute == restart + sum(CV * table.macs[drawn[p]] for p in survivors) + sum(
        CV * 3 * table.macs[drawn[p]] for p, e in theirs.reached.items() if e == 9)
    assert theirs.compute > ours.compute
    raced = replay_strategy(table, drawn, "halving", EPOCHS, seed=1, fold_racing=0.0)  # 2 folds: none to save
    assert raced.compute == ours.compute and raced.chosen == ours.chosen


def test_a_table_grows_from_a_smaller_one_to_what_a_fresh_build_gives(tmp_path):
    digits = load_dataset("digits")
    kw = dict(cv=CV, seed=3, jobs=2, engine="batched")
    build_table(digits, 3, 2, out=tmp_path / "grown.npz", provenance={"machine": "first"}, **kw)
    totals = []
    build_table(digits, 5, 2, out=tmp_path / "grown.npz", provenance={"machine": "second"},
                progress=lambda done, total: totals.append(total), **kw)
    assert set(totals) == {2 * CV}  # only configs 3 and 4 were fitted: 0-2 came from the smaller table
    # the rows kept say where they were fitted
    assert load_table(tmp_path / "grown.npz").provenance == {"machine": "second", "grown_from": {"machine": "first"}}
    build_table(digits, 5, 2, out=tmp_path / "fresh.npz", provenance={}, **kw)
    grown, fresh = load_table(tmp_path / "grown.npz"), load_table(tmp_path / "fresh.npz")
    assert grown.configs == fresh.configs and np.array_equal(grown.score, fresh.score, equal_nan=True)
    assert np.array_equal(grown.test_correct, fresh.test_correct) and not (tmp_path / "grown.partial.npz").exists()


def test_fits_of_another_engine_or_other_data_are_not_kept(tmp_path, capsys):
    """A rebuild with --engine skorch (or --images 60000 on a GPU) into the same file kept the batched
    fits under the new provenance: 1,437-image counts over 200 held-out images gave a CV accuracy of 161%."""
    digits = load_dataset("digits")
    kw = dict(cv=CV, seed=3, jobs=1, out=tmp_path / "t.npz")
    build_table(digits, 2, 2, provenance={"engine": "batched", "train_images": 1437}, engine="batched", **kw)
    totals = []
    build_table(digits, 2, 2, provenance={"engine": "skorch", "train_images": 1437}, engine="skorch",
                progress=lambda done, total: totals.append(total), **kw)
    assert set(totals) == {2 * CV}  # every fit made anew
    assert "t.npz: not kept (its engine batched differs); every fit is made anew" in capsys.readouterr().err
    assert load_table(tmp_path / "t.npz").provenance == {"engine": "skorch", "train_images": 1437}


@pytest.mark.parametrize("engine", ["batched", "skorch"])
def test_a_table_scoring_the_test_set_at_named_epochs_only_keeps_the_fits(engine, tmp_path):
    digits = load_dataset("digits")
    kw = dict(cv=CV, seed=3, jobs=1, engine=engine, provenance={})
    build_table(digits, 2, 3, out=tmp_path / "every.npz", **kw)
    build_table(digits, 2, 3, out=tmp_path / "sparse.npz", test_epochs=[3, 1], **kw)
    every, sparse = load_table(tmp_path / "every.npz"), load_table(tmp_path / "sparse.npz")
    # skipping the test set's scoring leaves every fit as it was: the held-out scores bit for bit
    assert np.array_equal(every.score, sparse.score, equal_nan=True)
    assert np.array_equal(every.correct, sparse.correct)
    assert np.array_equal(sparse.test_correct[:, :, [0, 2]], every.test_correct[:, :, [0, 2]])
    assert not sparse.test_correct[:, :, 1].any() and every.test_correct[:, :, 1].all()
    assert sparse.test_accuracy(0, 3) == every.test_accuracy(0, 3) > 0.5
    with pytest.raises(ValueError, match=r"after epochs \[1, 3\] only, not 2: replay with --max-epochs one of"):
        sparse.test_accuracy(0, 2)
    # a build naming other test epochs does not take these fits: it would mix what the test columns mean
    totals = []
    build_table(digits, 2, 3, out=tmp_path / "sparse.npz", progress=lambda d, t: totals.append(t), **kw)
    assert set(totals) == {2 * CV} and load_table(tmp_path / "sparse.npz").test_epochs is None


def test_versus_compares_two_strategies_on_the_same_draws(table):
    from _replay_report import versus_line

    results = {"random": {}, "halving": {}}
    for seed in range(3):
        drawn = draw_configs(table, N, seed)
        results["random"][seed] = replay_strategy(table, drawn, "random", EPOCHS, seed)
        results["halving"][seed] = replay_strategy(table, drawn, "halving", EPOCHS, seed)
    itself = versus_line(table, {"a": results["halving"], "b": results["halving"]}, "a", "b", EPOCHS)
    assert "CV accuracy median +0.00 pts (mean +0.00; higher on 0, lower on 0 of 3 seeds)" in itself
    assert "the same config on 3; b spends 1/1.00 of a's compute" in itself
    cv = [100 * (table.cv_accuracy(results["halving"][s].chosen, EPOCHS)
                 - table.cv_accuracy(results["random"][s].chosen, EPOCHS)) for s in range(3)]
    line = versus_line(table, results, "random", "halving", EPOCHS)
    assert f"CV accuracy median {np.median(cv):+.2f} pts" in line
    assert f"higher on {sum(c > 0 for c in cv)}, lower on {sum(c < 0 for c in cv)} of 3 seeds" in line
    ratio = np.median([results["random"][s].compute / results["halving"][s].compute for s in range(3)])
    assert ratio > 1 and f"halving spends 1/{ratio:.2f} of random's compute" in line


def test_the_summary_gives_the_gaps_median_tail_and_worst(table):
    from _replay_report import summarize

    results = {"random": {}, "halving": {}}
    for seed in range(5):
        drawn = draw_configs(table, N, seed)
        for name in results:
            results[name][seed] = replay_strategy(table, drawn, name, EPOCHS, seed)
    gaps = [100 * (table.cv_accuracy(results["random"][s].chosen, EPOCHS)
                   - table.cv_accuracy(results["halving"][s].chosen, EPOCHS)) for s in range(5)]
    halving = summarize(table, results, EPOCHS)["halving"]
    assert halving["gap"][0] == pytest.approx(np.median(gaps)) and halving["worst_gap"] == pytest.approx(max(gaps))
    assert halving["p90_gap"] == pytest.approx(np.percentile(gaps, 90))
    assert halving["gap"][0] <= halving["p90_gap"] <= halving["worst_gap"]
    assert summarize(table, results, EPOCHS)["random"]["p90_gap"] == 0  # random against itself


def test_a_seed_draws_from_the_rows_named_and_otherwise_as_before(table):
    drawn = draw_configs(table, 4, seed=2, rows=range(5, N))
    assert len(set(drawn)) == 4 and set(drawn) <= set(range(5, N))
    # the whole table without rows: the draws every figure in BENCHMARKS.md was made with
    assert draw_configs(table, 6, seed=2) == [int(i) for i in np.random.default_rng(2).choice(N, 6, replace=False)]
    # and a grown table's first rows draw as the smaller table did: its figures stay reproducible (--rows 0:300)
    assert draw_configs(table, 6, seed=2, rows=range(N - 1)) == [
        int(i) for i in np.random.default_rng(2).choice(N - 1, 6, replace=False)]

"""Halving's ranking by the trend (``--trend``): a rung after the first ranks by each config's score
extrapolated along its curve since the previous rung, so a slow starter still climbing goes on where
the plain score would prune it; the first rung, a diverged config and the stored scores are as without.
And halving's defaults: factor 3 ranked by the score for a new run (factor 4 with the trend at 0.5 from
the eighth session to the tenth); a run made with either resumes as it began."""

import json
import math

import pytest

from hpsearch.rundir.store import load_records, run_fingerprint
from hpsearch.settings import SearchSettings
from hpsearch.strategies import make_strategy
from hpsearch.strategies.halving import DEFAULT_FACTOR, DEFAULT_TREND, SuccessiveHalving, halve
from hpsearch.strategies.trend import extrapolate


def test_the_extrapolation_is_the_weighted_gain_per_log_epoch_times_the_log_epochs_left():
    now = {0: -0.5, 1: -0.4, 2: math.nan, 3: -0.6, 4: -0.45}
    before = {0: -1.0, 1: -0.45, 2: -0.3, 3: math.nan}  # 4: not scored before
    # 1 -> 4 epochs, and 4 -> 16 left: as many log-epochs, so the gain carries on once, weighted
    keys = extrapolate(now, before, epochs=4, before_epochs=1, max_epochs=16, weight=0.5)
    assert keys[0] == -0.5 + 0.5 * 0.5 and keys[1] == -0.4 + 0.5 * 0.05
    assert math.isnan(keys[2])  # diverged now: ranks last whatever it was
    assert keys[3] == -0.6 and keys[4] == -0.45  # no earlier score to draw a trend from: the score
    assert extrapolate(now, before, 4, 1, 64, 0.5)[0] == -0.5 + 0.5 * 2 * 0.5  # twice the log-epochs left
    assert all(extrapolate(now, before, 4, 1, 16, 0.0)[i] == now[i] for i in (0, 1, 3, 4))  # weight 0: the score


class Curves:
    """An evaluate whose configs follow fixed curves (score per epochs); records each rung's candidates."""

    def __init__(self, curves: dict[int, dict[int, float]]):
        self.curves, self.rungs = curves, []

    def __call__(self, candidates, epochs):
        self.rungs.append((epochs, sorted(candidates)))
        return {i: self.curves[i][epochs] for i in candidates}

    def prune(self, indices):
        pass


# rungs 1 / 3 / 9, factor 3 (the trend's reach at 3 epochs: log(9/3) / log(3/1) = 1)
CURVES = {i: {1: -2.0 - 0.1 * i, 3: -2.0 - 0.1 * i, 9: -2.0} for i in range(6)}  # flat losers
CURVES[6] = {1: -0.5, 3: -0.45, 9: -0.4}  # a fast starter that has nearly stopped climbing
CURVES[7] = {1: -0.6, 3: math.nan, 9: math.nan}  # diverges
CURVES[8] = {1: -0.9, 3: -0.5, 9: -0.2}  # a slow starter, still climbing: the best at 9 epochs


def test_the_trend_keeps_a_slow_starter_that_the_score_prunes():
    plain, trended = Curves(CURVES), Curves(CURVES)
    halve(plain, {i: {} for i in CURVES}, [1, 3, 9], 3)
    halve(trended, {i: {} for i in CURVES}, [1, 3, 9], 3, trend=0.5)
    assert plain.rungs[1] == trended.rungs[1] == (3, [6, 7, 8])  # the first rung ranks by the score alone
    assert plain.rungs[2] == (9, [6])  # -0.45 against -0.5: the fast starter
    assert trended.rungs[2] == (9, [8])  # -0.5 + 0.5 * 0.4 = -0.3 against -0.45 + 0.5 * 0.05 = -0.425
    # a weight too small for the gain to close the gap keeps the fast starter
    tiny = Curves(CURVES)
    halve(tiny, {i: {} for i in CURVES}, [1, 3, 9], 3, trend=0.1)
    assert tiny.rungs[2] == (9, [6])  # -0.46 against -0.445


def _settled(**given):
    settings = SearchSettings(**given)
    return type(make_strategy(settings)).settle(settings, None)


def test_halving_settles_factor_3_and_no_trend_and_a_run_made_with_factor_4_and_the_trend_keeps_them():
    new = _settled(strategy="halving")
    assert (new.factor, new.trend, new.fold_racing) == (DEFAULT_FACTOR, "off", 0.02) == (3, "off", 0.02)
    assert DEFAULT_TREND is None and make_strategy(new).trend is None
    assert make_strategy(new).fingerprint() == {"name": "halving", "n": 150, "factor": 3,
                                                "budgets": [1, 4, 11, 33, 100], "fold_racing": 0.02}
    for strategy in ("hyperband", "tpe-halving"):
        settled = _settled(strategy=strategy)
        assert (settled.factor, settled.trend) == (3, None), strategy
    assert _settled(strategy="random").factor is None  # random search halves nothing
    given = _settled(strategy="halving", factor=4, trend=0.5)
    assert (given.factor, given.trend) == (4, 0.5) and make_strategy(given).trend == 0.5
    # a run made with the eighth to tenth sessions' defaults (factor 4, trend 0.5) resumes as it began
    made = {"name": "halving", "n": 150, "factor": 4, "budgets": [2, 6, 25, 100], "fold_racing": 0.02, "trend": 0.5}
    kept = SuccessiveHalving.settle(SearchSettings(strategy="halving"), made)
    assert (kept.factor, kept.trend, kept.fold_racing) == (4, 0.5, 0.02)
    assert make_strategy(kept).fingerprint() == made
    # and one made before the fifth session (no racing, no trend in its fingerprint) as it began
    made = {"name": "halving", "n": 150, "factor": 3, "budgets": [1, 4, 11, 33, 100]}
    old = SuccessiveHalving.settle(SearchSettings(strategy="halving"), made)
    assert (old.factor, old.trend, old.fold_racing) == (3, "off", "off")
    assert make_strategy(old).fingerprint() == made


def _search(main, out, *flags):
    return main(["search", "--dataset", "digits", "--strategy", "halving", "--n", "9", "--max-epochs", "3",
                 "--cv", "2", "--engine", "batched", "--no-retrain", "--no-progress", "--out", str(out), *flags])


@pytest.mark.slow
def test_a_run_made_with_the_trend_resumes_with_it_and_another_trend_is_refused(tmp_path, capsys):
    """The command line: a run made with factor 4 and the trend at 0.5 (halving's defaults from the eighth
    session to the tenth) resumes by the same command without those flags and trains nothing; another
    --trend is refused by name."""
    from hpsearch.cli import main

    assert _search(main, tmp_path / "run", "--factor", "4", "--trend", "0.5") == 0
    assert "trend since the previous rung (--trend 0.5;" in capsys.readouterr().out
    assert run_fingerprint(tmp_path / "run")["strategy"]["trend"] == 0.5
    records = load_records(tmp_path / "run")
    assert _search(main, tmp_path / "run") == 0  # the defaults now are factor 3 and no trend: the run keeps its own
    assert "(--trend 0.5" in capsys.readouterr().out
    assert load_records(tmp_path / "run") == records  # nothing trained again
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert (settings["factor"], settings["trend"]) == (4, 0.5)
    assert _search(main, tmp_path / "run", "--trend", "off") == 2
    assert "holds a search with other settings (--trend: stored 0.5, now off)" in capsys.readouterr().err


def test_a_new_run_ranks_by_the_score_and_a_weight_of_0_is_off(tmp_path, capsys):
    """A new run takes factor 3 and no trend, and a run made before the flag existed (no trend in its
    settings.json) resumes without it; --trend 0 is the same run as off."""
    from hpsearch.cli import main

    assert _search(main, tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "configs x epochs per rung: 9 x 1, 3 x 3 (x 2 folds)" in out
    assert "halving: every rung ranks by the score (--trend off)" in out
    assert "trend" not in run_fingerprint(tmp_path / "run")["strategy"]
    records = load_records(tmp_path / "run")
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert (settings["factor"], settings["trend"]) == (3, "off")
    del settings["trend"]  # as a version before the flag wrote it: --resume goes on without the trend too
    (tmp_path / "run" / "settings.json").write_text(json.dumps(settings))
    assert main(["search", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "halving: every rung ranks by the score (--trend off)" in capsys.readouterr().out
    assert load_records(tmp_path / "run") == records

    assert json.loads((tmp_path / "run" / "settings.json").read_text())["trend"] == "off"
    # weight 0 ranks by the score, as off does: --resume takes it (it refused: "--trend 0.0, but the run was
    # searched with --trend off"), and so does the same command again
    assert main(["search", "--resume", str(tmp_path / "run"), "--trend", "0", "--no-progress"]) == 0
    assert load_records(tmp_path / "run") == records
    assert _search(main, tmp_path / "run", "--trend", "0") == 0
    assert "halving: every rung ranks by the score (--trend off)" in capsys.readouterr().out
    assert load_records(tmp_path / "run") == records

    assert _search(main, tmp_path / "run", "--trend", "0.5") == 2
    assert "holds a search with other settings (--trend: stored off, now 0.5)" in capsys.readouterr().err


def test_trials_csv_shows_what_ranked_each_rung_and_the_promoted_lead_it(tmp_path):
    """A real run with --trend: ``trend_{E}ep`` is the extrapolated score that ranked the rung, and the
    configs that went on are that rung's best by it (not necessarily by its score)."""
    import numpy as np
    import pandas as pd

    from hpsearch.cli import main

    out = tmp_path / "run"
    assert main(["search", "--dataset", "digits", "--strategy", "halving", "--n", "9", "--max-epochs", "9", "--cv",
                 "2", "--factor", "3", "--trend", "0.5", "--engine", "batched", "--no-retrain", "--no-progress",
                 "--out", str(out)]) == 0
    frame = pd.read_csv(out / "trials.csv")
    assert "trend_3ep" in frame and "trend_1ep" not in frame and "trend_9ep" not in frame
    at3 = frame[frame["n_epochs"] >= 3]
    expected = at3["score_3ep"] + 0.5 * (np.log(9 / 3) / np.log(3 / 1)) * (at3["score_3ep"] - at3["score_1ep"])
    np.testing.assert_array_equal(at3["trend_3ep"], expected)
    went_on = set(frame.loc[frame["n_epochs"] == 9, "trial"])
    assert went_on == set(at3.nlargest(len(went_on), "trend_3ep")["trial"])
    assert frame.loc[frame["n_epochs"] == 1, "trend_3ep"].isna().all()  # pruned at the first rung: no trend

"""Fold racing on made-up fold scores: the true best is kept when the evidence is clear, and a config
stops only on the stated rule (below the rung's cut-off on every fold seen, each time by more than the
margin, after at least min_folds folds)."""

import math

from hpsearch.strategies.racing import race


def _scores(table):
    asked = []

    def score_fold(live, k):
        asked.extend((i, k) for i in live)
        return {i: table[i][k] for i in live}

    return score_fold, asked


def test_clear_losers_stop_after_two_folds_and_the_best_survives():
    table = {0: [-0.10, -0.12, -0.11, -0.10], 1: [-0.20, -0.21, -0.19, -0.22], 2: [-0.9, -0.8, -0.85, -0.9],
             3: [-1.2, -1.1, -1.3, -1.2], 4: [-0.50, -0.55, -0.52, -0.51], 5: [-2.0, -2.1, -2.2, -2.0]}
    score_fold, asked = _scores(table)
    scores, ran = race(score_fold, list(table), n_folds=4, keep=2, margin=0.05)
    assert ran == {0: 4, 1: 4, 2: 2, 3: 2, 4: 2, 5: 2}  # the cut-off is config 1 (2nd best after 2 folds)
    assert scores[0] == sum(table[0]) / 4 and scores[1] == sum(table[1]) / 4
    assert all(math.isnan(scores[i]) for i in (2, 3, 4, 5))
    assert len(asked) == 2 * 6 + 2 * 2  # two folds of everyone, the last two of the two survivors


def test_a_config_that_wins_one_fold_or_loses_by_less_than_the_margin_runs_on():
    table = {0: [-0.10, -0.10, -0.10, -0.10], 1: [-0.20, -0.20, -0.20, -0.20],
             2: [-0.50, -0.15, -0.60, -0.70],   # beats the cut-off (config 1) on fold 2: not stopped
             3: [-0.24, -0.24, -0.24, -0.24],   # loses on every fold, by 0.04 < margin 0.05: not stopped
             4: [-0.26, -0.26, -0.9, -0.9]}     # loses by 0.06 > margin on the first two folds: stopped
    scores, ran = race(_scores(table)[0], list(table), n_folds=4, keep=2, margin=0.05)
    assert ran == {0: 4, 1: 4, 2: 4, 3: 4, 4: 2}
    assert sorted((i for i in scores if not math.isnan(scores[i])), key=lambda i: -scores[i])[:2] == [0, 1]


def test_no_stop_before_min_folds_and_a_failed_fold_stops_at_once():
    table = {0: [-0.1, -0.1, -0.1], 1: [-0.2, math.nan, -0.2], 2: [-3.0, -3.0, -3.0], 3: [-0.15, -0.15, -0.15]}
    scores, ran = race(_scores(table)[0], list(table), n_folds=3, keep=2, margin=0.0, min_folds=3)
    assert ran == {0: 3, 1: 2, 2: 3, 3: 3}  # min_folds=3 = every fold: only the failure stops early
    assert math.isnan(scores[1]) and scores[2] == -3.0


def test_the_best_is_never_stopped_however_bad_the_others():
    table = {i: [-(i + 1) * 0.3] * 4 for i in range(9)}
    scores, ran = race(_scores(table)[0], list(table), n_folds=4, keep=3, margin=0.0)
    assert [i for i in range(9) if ran[i] == 4] == [0, 1, 2] and scores[0] == -0.3

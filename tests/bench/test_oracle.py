"""The keep-the-winner bound (bench/_oracle.py) on made-up tables whose answer is known exactly."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _oracle import cheapest_cuts, winner_ranks  # noqa: E402
from _tables import Table  # noqa: E402

N, FOLDS, EPOCHS = 10, 2, 9


def made_up(score: np.ndarray, correct: np.ndarray | None = None) -> Table:
    """A table of N configs of equal size whose mean score after each epoch is ``score`` (N, EPOCHS),
    each fold of 5 held-out images getting ``correct`` (N, EPOCHS) of them right (default none)."""
    shape = (N, FOLDS, EPOCHS)
    correct = np.zeros((N, EPOCHS)) if correct is None else correct
    return Table({"score": np.repeat(score[:, None, :], FOLDS, axis=1),
                  "correct": np.repeat(correct[:, None, :], FOLDS, axis=1).astype(np.uint16),
                  "test_correct": np.zeros(shape, np.uint16), "held": np.array([5, 5]), "n_test": np.array(10),
                  "epoch_s": np.zeros((N, FOLDS), np.float32), "macs": np.ones(N),
                  "configs": np.array(json.dumps([{}] * N)), "provenance": np.array("{}")})


def test_a_ranking_that_never_changes_keeps_the_winner_with_one_epoch_and_one_survivor():
    table = made_up(np.tile(-np.arange(N, dtype=float)[:, None], (1, EPOCHS)))  # config 0 best from epoch 1
    best = cheapest_cuts(table, N, seeds=3, max_epochs=EPOCHS, budget=0.25)
    # every config 1 epoch, then config 0 alone to 9: (10 x 1 + 1 x 8) / (10 x 9)
    assert best["cheapest"].cuts == ((1, 1),) and best["cheapest"].share == pytest.approx(18 / 90)
    assert best["cheapest"].kept == 1.0 and best["within"].kept == 1.0
    assert best["near"].cuts == ((1, 1),) and (best["near"].gap, best["near"].worst_gap) == (0.0, 0.0)


def test_a_winner_last_until_the_full_budget_is_kept_by_no_rule():
    score = np.tile(-np.arange(N, dtype=float)[:, None], (1, EPOCHS))
    score[N - 1, EPOCHS - 1] = 1.0  # the worst config at every cut wins at the full budget
    best = cheapest_cuts(table := made_up(score), N, seeds=3, max_epochs=EPOCHS, budget=0.5)
    assert best["cheapest"] is None and best["within"].kept == 0.0
    # scored at a shorter full budget, the ranking never changes again
    assert cheapest_cuts(table, N, seeds=3, max_epochs=EPOCHS - 1)["cheapest"].cuts == ((1, 1),)


def test_winner_ranks_read_where_the_winner_stood_and_how_well_each_budget_ranks_the_full_one():
    score = np.tile(-np.arange(N, dtype=float)[:, None], (1, EPOCHS))
    assert winner_ranks(made_up(score), N, seeds=3, max_epochs=EPOCHS, budgets=[1, 3]) == {
        e: {"median": 1.0, "p90": 1.0, "spearman": pytest.approx(1.0)} for e in (1, 3)}
    score[N - 1, EPOCHS - 1] = 1.0  # the worst config until the full budget wins there
    score[N - 1, 2] = -4.5  # after 3 epochs it has climbed to 6th of 10
    ranks = winner_ranks(made_up(score), N, seeds=3, max_epochs=EPOCHS, budgets=[1, 3])
    assert (ranks[1]["median"], ranks[1]["p90"], ranks[3]["median"]) == (10.0, 10.0, 6.0)
    # the final ranking is 9, 0, 1, ..., 8: after 1 epoch Spearman's rho = 1 - 6 * sum(d^2) / (n (n^2 - 1))
    d = np.array([1] * (N - 1) + [-(N - 1)])
    assert ranks[1]["spearman"] == pytest.approx(1 - 6 * np.sum(d**2) / (N * (N**2 - 1)))


def test_the_gap_target_is_met_only_by_rules_that_keep_a_config_as_accurate_as_the_winner():
    score = np.tile(-np.arange(N, dtype=float)[:, None], (1, EPOCHS))
    score[N - 1, EPOCHS - 1] = 1.0  # the worst config at every cut wins at the full budget
    correct = np.full((N, EPOCHS), 4.0)
    correct[N - 1, EPOCHS - 1] = 5  # 100% against everyone else's 80%: losing it costs 20 points
    table = made_up(score, correct)
    assert cheapest_cuts(table, N, seeds=3, max_epochs=EPOCHS)["near"] is None
    near = cheapest_cuts(table, N, seeds=3, max_epochs=EPOCHS, gap=20)["near"]
    assert near.cuts == ((1, 1),) and near.gap == pytest.approx(20) and near.worst_gap == pytest.approx(20)
    # config 1, second after 1 epoch, ends second and as accurate as the winner: a rule choosing it is near
    score[1, EPOCHS - 1], correct[1, EPOCHS - 1] = 0.5, 5
    near = cheapest_cuts(made_up(score, correct), N, seeds=3, max_epochs=EPOCHS)["near"]
    # the two best after 1 epoch go on (10 x 1 + 2 x 8 of 10 x 9); a second cut before 9 keeps config 0
    assert near.cuts == ((1, 2),) and near.share == pytest.approx(26 / 90) and near.gap == 0.0

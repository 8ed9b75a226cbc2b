"""Halving with a transferred prior (bench/_prior.py) on made-up tables whose answer is known: the
slow starters win, and one hyperparameter says who they are."""

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _prior import _plan, fit_prior, replay_prior, undrawn  # noqa: E402
from _replay import draw_configs, replay_strategy  # noqa: E402
from _tables import Table  # noqa: E402

FOLDS, EPOCHS, N = 2, 9, 30


def slow_starters_win(configs: int, seed: int) -> Table:
    """Configs whose dropout d ranks them backwards: -d after 1 epoch, +d at the full budget."""
    rng = np.random.default_rng(seed)
    dropout = rng.permutation(configs) / configs
    share = (np.arange(1, EPOCHS + 1) / EPOCHS) ** 3  # the late climb of a slow starter
    score = -dropout[:, None] + 2 * dropout[:, None] * share[None, :]
    config = [{"lr": 1e-3, "optimizer": "adam", "dropout": float(d), "hidden": [64]} for d in dropout]
    shape = (configs, FOLDS, EPOCHS)
    return Table({"score": np.repeat(score[:, None, :], FOLDS, axis=1), "correct": np.zeros(shape, np.uint16),
                  "test_correct": np.zeros(shape, np.uint16), "held": np.array([5, 5]), "n_test": np.array(10),
                  "epoch_s": np.zeros((configs, FOLDS), np.float32), "macs": np.ones(configs),
                  "configs": np.array(json.dumps(config)), "provenance": np.array("{}")})


def test_a_prior_learned_on_another_table_keeps_the_slow_starter_plain_halving_prunes():
    source, target = slow_starters_win(2 * N, seed=1), slow_starters_win(N, seed=2)
    drawn = draw_configs(target, N, seed=0)
    winner = int(np.argmax(target.score[:, 0, -1]))
    models = fit_prior(source, N, EPOCHS, draws=10)
    assert sorted(models) == [epochs for _, epochs in _plan(N, EPOCHS, 3)[:-1]]  # one forecast per shorter rung
    plain = replay_strategy(target, drawn, "halving", EPOCHS, seed=0)
    prior = replay_prior(target, drawn, 0, models, EPOCHS)
    assert plain.chosen != winner and plain.reached[drawn.index(winner)] == 1  # ranked last after one epoch
    assert prior.chosen == winner
    assert prior.compute == plain.compute  # the same rungs, the same number kept at each


def test_a_diverged_config_ranks_last_whatever_its_forecast():
    target = slow_starters_win(N, seed=2)
    winner = int(np.argmax(target.score[:, 0, -1]))
    target.score[winner] = np.nan  # the would-be winner diverged from its first epoch
    drawn = draw_configs(target, N, seed=0)
    prior = replay_prior(target, drawn, 0, fit_prior(slow_starters_win(N, seed=1), N, EPOCHS, draws=10), EPOCHS)
    assert prior.reached[drawn.index(winner)] == 1 and prior.chosen != winner
    assert not math.isnan(target.mean_score(prior.chosen, EPOCHS))


def test_the_undrawn_configs_are_the_rest_of_the_table():
    table = slow_starters_win(N, seed=3)
    drawn = draw_configs(table, 10, seed=0)
    rest = undrawn(table, drawn)
    others = [i for i in range(N) if i not in drawn]
    assert rest.n_configs == N - 10 and rest.configs == [table.configs[i] for i in others]
    assert np.array_equal(rest.score, table.score[others])

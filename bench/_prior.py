"""Halving with a transferred prior, replayed: a rung ranks its configs not by their score but by a
forecast of their rank at the full budget, learned on *another* table from each config's
hyperparameters and its rank at that rung.

Why try it: on both tables random search's winner is a slow starter (Adam at a small learning rate,
high dropout), ranked far down after one epoch (``replay.py --bound``), so any rule that ranks by the
early score prunes it. The configs' own hyperparameters say who starts slowly. A prior learned on one
table and replayed on the other is the honest test of whether they say it beyond one dataset
(measured: BENCHMARKS.md, issue 38; it is not a default). Learned instead on the configs of the same
table that a seed did not draw (``undrawn``: fully trained configs of the same task, which no real run
has before it starts), it shows the most such a forecast could give.

The forecast: for each of halving's shorter rungs, a random forest from (log10 lr, Adam or not,
dropout, log10 weight decay, log2 first width, layers, the config's rank among the rung's candidates
as a quantile) to its full-budget rank among them, fitted on the source table's candidates of that
rung over ``draws`` plain halving runs. Rungs map between tables by their share of the full budget
(Fashion's 1 of 27 epochs is digits' 4 of 100). The full budget's rung ranks by the score, as always.
"""

from __future__ import annotations

import json
import math

import numpy as np
from _replay import Replay, TableEvaluate, draw_configs
from _tables import Table
from scipy.stats import rankdata
from sklearn.ensemble import RandomForestRegressor

from hpsearch.strategies import STRATEGIES

__all__ = ["features", "fit_prior", "replay_prior", "undrawn"]


def features(configs: list[dict]) -> np.ndarray:
    """The hyperparameters a forecast reads (the Lab 3 MLP space's), one row per config."""
    return np.array([[math.log10(c["lr"]), c["optimizer"] == "adam", c["dropout"],
                      math.log10(c.get("weight_decay", 0.0) + 1e-8), math.log2(c["hidden"][0]), len(c["hidden"])]
                     for c in configs], dtype=float)


def quantiles(scores) -> np.ndarray:
    """Each score's rank among ``scores`` as a share in (0, 1], higher better; a NaN ranks last."""
    scores = np.asarray(scores, dtype=float)
    return rankdata(np.where(np.isfinite(scores), scores, -np.inf)) / len(scores)


def undrawn(table: Table, drawn: list[int]) -> Table:
    """The table's configs a seed did not draw, as a table of their own."""
    rest = np.setdiff1d(np.arange(table.n_configs), drawn)
    return Table({"score": table.score[rest], "correct": table.correct[rest], "test_correct": table.test_correct[rest],
                  "held": table.held, "n_test": np.array(table.n_test), "epoch_s": table.epoch_s[rest],
                  "macs": table.macs[rest], "configs": np.array(json.dumps([table.configs[i] for i in rest])),
                  "provenance": np.array(json.dumps(table.provenance))})


def _plan(n: int, max_epochs: int, factor: int) -> list[tuple[int, int]]:
    return STRATEGIES["halving"](n, max_epochs, 0, factor, None, 10).plan()  # [(configs, epochs)] per rung


def fit_prior(source: Table, n: int, max_epochs: int, factor: int = 3, draws: int = 40,
              first_seed: int = 1000) -> dict[int, RandomForestRegressor]:
    """A forecast per shorter rung (its epochs on the target -> the forest), fitted on ``source``'s
    candidates of that rung over ``draws`` draws of ``n`` configs."""
    if source.n_configs < n:
        raise ValueError(f"a prior for n={n} needs a source of at least {n} configs, not {source.n_configs}")
    scores = np.array([[source.mean_score(i, e) for e in range(1, source.max_epochs + 1)]
                       for i in range(source.n_configs)])
    known = features(source.configs)
    plan = _plan(n, max_epochs, factor)

    def at(epochs: int) -> np.ndarray:  # the source's scores at the same share of its full budget
        return scores[:, max(1, round(epochs / max_epochs * source.max_epochs)) - 1]

    models = {}
    for rung, (_, epochs) in enumerate(plan[:-1]):
        rows, targets = [], []
        for seed in range(first_seed, first_seed + draws):
            candidates = np.array(draw_configs(source, n, seed))
            for (_, earlier), (kept, _) in zip(plan[:rung], plan[1:rung + 1], strict=True):
                order = np.argsort(-quantiles(at(earlier)[candidates]), kind="stable")  # plain halving's cut
                candidates = candidates[order[:kept]]
            rows.append(np.c_[known[candidates], quantiles(at(epochs)[candidates])])
            targets.append(quantiles(scores[candidates, -1]))
        forest = RandomForestRegressor(200, min_samples_leaf=5, random_state=0, n_jobs=1)
        models[epochs] = forest.fit(np.vstack(rows), np.concatenate(targets))
    return models


class PriorEvaluate(TableEvaluate):
    """The table's evaluate whose shorter rungs return the forecast in place of the score (a diverged
    config stays NaN: it ranks last either way)."""

    def __init__(self, replay: Replay, models: dict, max_epochs: int):
        super().__init__(replay, max_epochs=max_epochs)
        self.models = models

    def __call__(self, candidates: dict[int, dict], epochs: int) -> dict[int, float]:
        scores = super().__call__(candidates, epochs)
        if epochs >= self.max_epochs:
            return scores
        positions = list(candidates)
        configs = [self.replay.table.configs[self.replay.drawn[p]] for p in positions]
        forecast = self.models[epochs].predict(
            np.c_[features(configs), quantiles([scores[p] for p in positions])])
        return {p: float(f) if math.isfinite(scores[p]) else math.nan for p, f in zip(positions, forecast,
                                                                                       strict=True)}


def replay_prior(table: Table, drawn: list[int], seed: int, models: dict, max_epochs: int,
                 factor: int = 3) -> Replay:
    """hpsearch's halving (every fold, no racing) on the table, its shorter rungs ranked by ``models``."""
    replay = Replay(table, drawn)
    strategy = STRATEGIES["halving"](len(drawn), max_epochs, seed, factor, None, 10)
    strategy.fold_racing = None
    strategy.check()
    strategy.run(PriorEvaluate(replay, models, max_epochs))
    return replay

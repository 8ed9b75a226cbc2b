"""Search strategies replayed on a table (``_tables``): hpsearch's own strategy classes run unchanged
through an evaluate seam that looks scores up instead of training, scikit-learn's own
``HalvingRandomSearchCV`` runs on an estimator whose fits are look-ups (restarting survivors,
counted); halving's fold racing (``--fold-racing``) races on the table's folds.

Per seed, the seed draws the ``n`` configs from the table (``default_rng(seed).choice(N, n)``, their
order breaking ties); every strategy then sees the same ``n``. Compute is counted as a real run
would spend it: epochs x folds x the config's multiply-adds per image, a survivor's later rungs
adding only the epochs it lacks (scikit-learn's restart from 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from _tables import Table
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import HalvingRandomSearchCV

from hpsearch.strategies import STRATEGIES
from hpsearch.strategies.racing import race

__all__ = ["Replay", "replay_strategy", "replay_sklearn_halving", "draw_configs", "trained"]


def trained(records: list[dict], weight=None) -> float:
    """What a real run trained, from its stored records: each rung's new epochs x the folds it ran
    (fold racing runs fewer), times ``weight[trial]`` (a config's multiply-adds) when given: what a
    ``Replay`` counts as ``fold_epochs`` (no weight) or ``compute``."""
    total = 0.0
    for rec in records:
        before = 0
        for rung in rec["rungs"]:
            scale = 1.0 if weight is None else weight[rec["index"]]
            total += (rung["epochs"] - before) * len(rung["split_test_scores"] or []) * scale
            before = rung["epochs"]
    return total


def draw_configs(table: Table, n: int, seed: int, rows: range | None = None) -> list[int]:
    """The ``n`` table rows a seed's search sees, in its order (drawn from ``rows`` only, if given)."""
    pool = table.n_configs if rows is None else np.asarray(rows)
    return [int(i) for i in np.random.default_rng(seed).choice(pool, n, replace=False)]


@dataclass
class Replay:
    """What one strategy did on one seed's configs: compute spent, the chosen config, and the anytime
    curve (compute so far, the incumbent's table row) after every (config, budget) scored."""

    table: Table
    drawn: list[int]
    compute: float = 0.0
    reached: dict = field(default_factory=dict)  # draw position -> epochs trained (per fold)
    best: dict = field(default_factory=dict)  # epochs -> (score, -position) of the best so far
    curve: list = field(default_factory=list)
    chosen: int | None = None  # a table row
    fold_epochs: int = 0  # the epochs trained, summed over (config, fold) fits

    def spend(self, position: int, epochs: int, folds: int | None = None, restart: bool = False) -> None:
        folds = self.table.n_folds if folds is None else folds
        start = 0 if restart else self.reached.get(position, 0)
        self.fold_epochs += max(0, epochs - start) * folds
        self.compute += max(0, epochs - start) * folds * self.table.macs[self.drawn[position]]
        self.reached[position] = max(epochs, self.reached.get(position, 0))

    def scored(self, position: int, epochs: int, score: float) -> None:
        if not math.isnan(score) and (epochs not in self.best or (score, -position) > self.best[epochs]):
            self.best[epochs] = (score, -position)
        top = max(self.best) if self.best else None
        if top is not None:  # the incumbent: the best config at the largest budget scored so far
            self.chosen = self.drawn[-self.best[top][1]]
            self.curve.append((self.compute, self.chosen))


class TableEvaluate:
    """hpsearch's evaluate seam on a table: ``draw`` hands out the seed's configs by position, a call
    brings candidates to ``epochs`` (continuing: only the epochs they lack are counted)."""

    concurrency = 1

    def __init__(self, replay: Replay, rank_by_bound: bool = False, max_epochs: int = 0):
        self.replay, self.next = replay, 0
        self.rank_by_bound, self.max_epochs = rank_by_bound, max_epochs

    def draw(self, k: int, sampler=None) -> dict[int, dict]:
        if sampler is not None:
            raise ValueError("a model-based sampler cannot replay on a finite table")
        drawn = {p: {"row": self.replay.drawn[p]} for p in range(self.next, self.next + k)}
        self.next += k
        return drawn

    def __call__(self, candidates: dict[int, dict], epochs: int) -> dict[int, float]:
        scores = {}
        table = self.replay.table
        for position in candidates:
            self.replay.spend(position, epochs)
            row = self.replay.drawn[position]
            scores[position] = table.mean_score(row, epochs)
            self.replay.scored(position, epochs, scores[position])
            if self.rank_by_bound and epochs < self.max_epochs:  # a rung's cut by mean - sd / sqrt(folds)
                folds = table.score[row, :, epochs - 1]
                scores[position] -= float(folds.std(ddof=1) / math.sqrt(len(folds)))
        return scores

    def race(self, candidates: dict[int, dict], epochs: int, keep: int, margin: float) -> dict[int, float]:
        """Fold racing on the table: each fold a config ran is counted, from the epochs it had reached."""
        table, drawn = self.replay.table, self.replay.drawn
        scores, ran = race(lambda live, k: {p: float(table.score[drawn[p], k, epochs - 1]) for p in live},
                           list(candidates), table.n_folds, keep, margin)
        for position in candidates:
            self.replay.spend(position, epochs, folds=ran[position])
            self.replay.scored(position, epochs, scores[position])
        return scores

    def prune(self, indices) -> None:
        pass


def replay_strategy(table: Table, drawn: list[int], name: str, max_epochs: int, seed: int, factor: int = 3,
                    min_epochs: int | None = None, rank_by_bound: bool = False,
                    fold_racing: float | None = None, trend: float | None = None) -> Replay:
    """hpsearch's strategy ``name`` (random, halving, hyperband) as the command line builds it (halving
    with ``--fold-racing off`` unless ``fold_racing`` is given); with
    ``rank_by_bound`` a rung ranks by the fold-wise lower bound (mean - sd / sqrt(folds)) instead;
    ``fold_racing``: halving's ``--fold-racing`` margin."""
    replay = Replay(table, drawn)
    strategy = STRATEGIES[name](len(drawn), max_epochs, seed, factor, min_epochs, 10)
    strategy.fold_racing = fold_racing
    strategy.trend = trend
    strategy.check()
    strategy.run(TableEvaluate(replay, rank_by_bound, max_epochs))
    return replay


class _TableNet(ClassifierMixin, BaseEstimator):
    """A table row as a scikit-learn estimator: ``fit`` trains nothing (the replay counts its epochs,
    from 0: scikit-learn's halving restarts every fit), the scorer looks the fold's score up."""

    def __init__(self, row=0, max_epochs=1):
        self.row = row
        self.max_epochs = max_epochs

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        raise NotImplementedError("scored from the table only")


def replay_sklearn_halving(table: Table, drawn: list[int], max_epochs: int, seed: int, factor: int = 3,
                           folds=None) -> Replay:
    """scikit-learn's ``HalvingRandomSearchCV(resource="max_epochs")`` on the seed's configs, its own
    defaults otherwise (``min_resources="smallest"``: 1 epoch; rungs ``factor**k``), scored from the table."""
    replay = Replay(table, drawn)
    position = {row: p for p, row in enumerate(drawn)}
    rows = np.arange(int(table.held.sum())).reshape(-1, 1)  # one row per image; folds by row blocks
    bounds = np.cumsum([0, *table.held.astype(int)])
    splits = [(np.setdiff1d(rows[:, 0], np.arange(a, b)), np.arange(a, b)) for a, b in zip(bounds, bounds[1:],
                                                                                               strict=False)]

    folds_in: dict = {}

    def scorer(net, X, y):
        k = int(np.searchsorted(bounds, X[0, 0], side="right") - 1)
        replay.spend(position[net.row], net.max_epochs, folds=1, restart=True)
        score = float(table.score[net.row, k, net.max_epochs - 1])
        scores = folds_in.setdefault((net.row, net.max_epochs), [])
        scores.append(score)
        if len(scores) == table.n_folds:  # the candidate's last fold: it counts for the anytime curve
            replay.scored(position[net.row], net.max_epochs, float(np.mean(scores)))
        return score

    search = HalvingRandomSearchCV(_TableNet(), {"row": list(drawn)}, n_candidates=len(drawn), factor=factor,
                                   resource="max_epochs", max_resources=max_epochs, cv=splits, scoring=scorer,
                                   refit=False, random_state=seed, error_score=np.nan, return_train_score=False)
    search.fit(rows, np.zeros(len(rows), dtype=int))
    replay.chosen = int(search.cv_results_["params"][search.best_index_]["row"])
    return replay

"""What keeping random search's winner costs, whatever the strategy: a bound read off a table.

A strategy that stops configs early keeps random search's winner only if the winner ranks inside
every cut it makes. Given the table, the cheapest rule of one cut (train all ``n`` configs ``e``
epochs, the best ``k`` go on to the full budget) or two cuts (``e1, k1`` then ``e2, k2`` among the
survivors) that keeps the winner on at least ``share`` of the seeds is found by trying every such
rule, with the epochs and keeps chosen in hindsight on these very seeds: no real strategy can know
them ahead, so no real strategy of that shape keeps the winner as often for less. Compute is counted
as the replay counts it (epochs x folds x multiply-adds, survivors continuing), as a share of random
search's on the same seed, the median over the seeds.

``"near"`` asks the gap target instead: the cheapest rule whose chosen config (its finalists' best
at the full budget) lands within ``gap`` points of the winner's CV accuracy, the median over the
seeds; its worst seed shows what the median hides.

``winner_ranks`` says why a rule misses: where random search's winner ranks among the seed's ``n``
after each shorter budget, and how well the scores after that budget rank the table's configs at the
full budget (Spearman): the short-horizon bias a first rung of few epochs meets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from _replay import draw_configs
from _tables import Table

__all__ = ["Cut", "cheapest_cuts", "winner_ranks"]


@dataclass(frozen=True)
class Cut:
    share: float                   # median compute over random search's
    cuts: tuple                    # ((epochs, keep), ...)
    kept: float                    # the share of seeds on which the winner survived every cut
    gap: float = 0.0               # median points of CV accuracy, random search's winner minus the rule's choice
    worst_gap: float = 0.0         # the same, the worst seed


def _epoch_grid(max_epochs: int) -> list[int]:
    grid = {1, 2, 3, 4, 5, 6, 8, 9, 11, 13, 15, 18, 20, 25, 27, 30, 33, 40, 50, 60, 75}
    return sorted(e for e in grid | {max_epochs // 3, max_epochs // 9} if 1 <= e < max_epochs)


def _keep_grid(n: int) -> list[int]:
    return sorted({max(1, round(n / f)) for f in (1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75)}
                  | {1, 2, 3})


def _mean_scores(table: Table, max_epochs: int) -> np.ndarray:
    """(N, max_epochs) mean score over the folds; a diverged config -inf, so it ranks last."""
    mean = table.score[:, :, :max_epochs].mean(1)
    return np.where(np.isfinite(mean), mean, -np.inf)


def winner_ranks(table: Table, n: int, seeds: int, max_epochs: int, budgets: list[int]) -> dict[int, dict]:
    """Per budget ``e``: random search's winner's rank (1 = best) among the seed's ``n`` by the mean
    score after ``e`` epochs, its median and 90th percentile over the seeds, and the Spearman rank
    correlation between the table's scores after ``e`` epochs and after ``max_epochs`` (every config
    that scored both)."""
    from scipy.stats import spearmanr

    mean = _mean_scores(table, max_epochs)
    ranks: dict[int, list[int]] = {e: [] for e in budgets}
    for seed in range(seeds):
        scores = mean[np.array(draw_configs(table, n, seed))]
        winner = int(np.argmax(scores[:, max_epochs - 1]))  # the first of equals, as random search takes it
        for e in budgets:
            ranks[e].append(1 + int(np.sum(scores[:, e - 1] > scores[winner, e - 1])))
    final = mean[:, max_epochs - 1]
    out = {}
    for e in budgets:
        both = np.isfinite(mean[:, e - 1]) & np.isfinite(final)
        out[e] = {"median": float(np.median(ranks[e])), "p90": float(np.percentile(ranks[e], 90)),
                  "spearman": float(spearmanr(mean[both, e - 1], final[both]).statistic)}
    return out


class _Seed(NamedTuple):
    """One seed's draw, as every rule reads it."""

    scores: np.ndarray    # (n, epochs) mean score
    macs: np.ndarray      # (n,) multiply-adds per image
    winner: int           # random search's: the best at the full budget (the first of equals: draw order)
    order: np.ndarray     # (n, epochs): who ranks where after each epoch
    full: float           # random search's compute
    accuracy: np.ndarray  # (n,) CV accuracy at the full budget, in points

    def gap(self, finalists, max_epochs: int) -> float:
        """The winner's CV accuracy minus that of the finalists' best at the full budget."""
        chosen = finalists[np.argmax(self.scores[finalists, max_epochs - 1])]
        return float(self.accuracy[self.winner] - self.accuracy[chosen])


def _rules(table: Table, n: int, seeds: int, max_epochs: int):
    """Every one- and two-cut rule on the grid: ``(cuts, median compute share, seeds keeping the winner,
    the rule's choice's CV accuracy gaps (points) per seed)``; a rule chooses the best of its finalists
    at the full budget."""
    mean = _mean_scores(table, max_epochs)
    accuracy = 100 * np.mean(table.correct[:, :, max_epochs - 1] / table.held, axis=1)
    runs = []
    for seed in range(seeds):
        rows = np.array(draw_configs(table, n, seed))
        scores, macs = mean[rows], table.macs[rows]
        runs.append(_Seed(scores, macs, int(np.argmax(scores[:, max_epochs - 1])),
                          np.argsort(-scores, axis=0, kind="stable"), max_epochs * macs.sum(), accuracy[rows]))
    epochs, keeps = _epoch_grid(max_epochs), [k for k in _keep_grid(n) if k < n]
    for e, k in itertools.product(epochs, keeps):
        shares, kept, gaps = [], 0, []
        for run in runs:
            top = run.order[:k, e - 1]
            kept += run.winner in top
            shares.append((e * run.macs.sum() + (max_epochs - e) * run.macs[top].sum()) / run.full)
            gaps.append(run.gap(top, max_epochs))
        yield ((e, k),), float(np.median(shares)), kept, gaps
    for (e1, e2), k1 in itertools.product(itertools.combinations(epochs, 2), keeps):
        survivors = [run.order[:k1, e1 - 1] for run in runs]
        ranked = [s[np.argsort(-run.scores[s, e2 - 1], kind="stable")] for s, run in zip(survivors, runs, strict=True)]
        for k2 in (k for k in keeps if k < k1):
            shares, kept, gaps = [], 0, []
            for run, s, r in zip(runs, survivors, ranked, strict=True):
                macs = run.macs
                kept += run.winner in r[:k2]
                shares.append((e1 * macs.sum() + (e2 - e1) * macs[s].sum() + (max_epochs - e2) * macs[r[:k2]].sum())
                              / run.full)
                gaps.append(run.gap(r[:k2], max_epochs))
            yield ((e1, k1), (e2, k2)), float(np.median(shares)), kept, gaps


def cheapest_cuts(table: Table, n: int, seeds: int, max_epochs: int, share: float = 0.9,
                  budget: float = 0.1, gap: float = 0.3) -> dict[str, Cut | None]:
    """Over the one- and two-cut rules: ``"cheapest"``, the cheapest keeping random search's winner
    (the best mean score at ``max_epochs`` among the seed's ``n``) on at least ``share`` of the seeds;
    ``"within"``, the one keeping it most often within ``budget`` of random search's compute; and
    ``"near"``, the cheapest whose choice is within ``gap`` points of the winner's CV accuracy (median
    over the seeds). None where no rule on the grid qualifies."""
    best: dict[str, Cut | None] = {"cheapest": None, "within": None, "near": None}
    for cuts, median, kept, gaps in _rules(table, n, seeds, max_epochs):
        cut = Cut(median, cuts, kept / seeds, float(np.median(gaps)), float(np.max(gaps)))
        if cut.kept >= share and (best["cheapest"] is None or median < best["cheapest"].share):
            best["cheapest"] = cut
        if median <= budget and (best["within"] is None or (cut.kept, -median) > (best["within"].kept,
                                                                                   -best["within"].share)):
            best["within"] = cut
        if cut.gap <= gap and (best["near"] is None or median < best["near"].share):
            best["near"] = cut
    return best

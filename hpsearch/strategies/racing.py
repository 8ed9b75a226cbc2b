"""Fold racing: at a rung, score a config's folds one at a time and stop a config whose evidence
already puts it out, before its remaining folds train.

The rule (``race``), after each fold ``k >= min_folds``: rank the configs still running by their
mean over the folds seen; call ``ref`` the one ranked ``keep``-th (the rung's cut-off: ``keep``
configs go on). A config ranked below ``ref`` stops when it scored below ``ref`` on **every** fold
seen, each time by more than ``margin``. A stopped config takes no further folds at this rung and
cannot survive it. Only configs ranked below the cut-off are ever stopped, so at least ``keep``
configs run every fold, and the survivors are the best ``keep`` of those by their full mean.

The risk: ``ref`` and the stopped config are compared on the folds seen only; a config that loses
on the first folds by more than ``margin`` each time but would win on the rest (an unusual fold) is
lost. SMAC races configs over instances the same way, and Optuna's ``WilcoxonPruner`` over a
trial's instances with a signed-rank test; with 4 folds no test reaches significance after two, so
the rule is a margin on every fold seen, its risk measured on the tabulated benchmarks
(``bench/replay.py``) before it goes into a default.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["race"]


def race(score_fold: Callable[[list[int], int], dict[int, float]], candidates: list[int], n_folds: int, keep: int,
         margin: float, min_folds: int = 2) -> tuple[dict[int, float], dict[int, int]]:
    """Race ``candidates`` over ``n_folds`` folds; ``score_fold(live, k)`` trains and scores the configs
    ``live`` on fold ``k`` (all at once: a run trains them in parallel) and returns ``{config: score}``
    (higher is better; NaN: failed, which stops it at once).

    Returns ``(scores, folds_run)``: the mean over every fold for the configs that ran them all, NaN
    for a stopped or failed one (so it never survives the rung), and how many folds each config ran.
    """
    seen: dict[int, list[float]] = {i: [] for i in candidates}
    live = list(candidates)
    for k in range(n_folds):
        scores = score_fold(list(live), k)
        for i in live:
            seen[i].append(float(scores[i]))
        live = [i for i in live if not math.isnan(seen[i][-1])]
        if k + 1 < min_folds or k + 1 == n_folds or len(live) <= keep:
            continue
        ranked = sorted(live, key=lambda i: (-sum(seen[i]) / len(seen[i]), candidates.index(i)))
        ref = ranked[keep - 1]
        out = {i for i in ranked[keep:] if all(s < r - margin for s, r in zip(seen[i], seen[ref], strict=True))}
        live = [i for i in live if i not in out]
    scores = {i: (sum(seen[i]) / n_folds if i in live else math.nan) for i in candidates}
    return scores, {i: len(seen[i]) for i in candidates}

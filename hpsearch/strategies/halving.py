"""Successive halving over epochs, with k-fold CV, whose survivors continue training.

Rung ``k`` trains every candidate on every fold up to ``budgets[k]`` epochs; the best
``ceil(candidates / factor)`` by mean CV score go on to the next rung *from where they stopped*
(weights, optimizer state, batch-order RNG and early stopping's counters: ``hpsearch.rundir.states``);
the others are pruned. The last rung is always ``max_epochs``, so the winner's score is a
full-budget one.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..errors import UsageError, param
from ._base import Strategy, check_halving, top_fraction
from .seam import Evaluate
from .trend import extrapolate

__all__ = ["SuccessiveHalving", "rung_budgets", "halve", "DEFAULT_FOLD_RACING", "DEFAULT_FACTOR", "DEFAULT_TREND"]

# Measured on both tabulated benchmarks (BENCHMARKS.md, 20 seeds each): the same chosen config as
# halving without racing on every seed, for 12% (digits) and 15% (Fashion-MNIST) less compute.
DEFAULT_FOLD_RACING = 0.02
# Factor 3, rungs ranked by the score (BENCHMARKS.md, "Back to factor 3"): from the eighth session to the
# tenth the default was factor 4 with the trend at 0.5: about half the compute on the Fashion-MNIST table and
# choices as good there (450 configs, 80 seeds), but worse on digits (40 seeds) and in nine real runs.
DEFAULT_FACTOR = 3
DEFAULT_TREND: float | None = None  # None: rank by the score (--trend off)


def rung_budgets(n: int, max_epochs: int, factor: int, min_epochs: int | None = None) -> list[int]:
    """The epochs of each rung, ending at ``max_epochs``.

    With ``min_epochs``: ``min, min*factor, min*factor**2, ...`` below ``max_epochs``, then
    ``max_epochs`` (Hyperband's grid). Without: as many rungs as ``n`` configs can be halved
    (``1 + floor(log_factor n)``, so the last rung has at most ``factor`` configs), each ``factor``
    times shorter than the next: ``round(max / factor**j)`` (scikit-learn's ``min_resources="exhaust"``);
    rungs that would round to the same epochs merge.
    """
    if min_epochs is not None:
        budgets, epochs = [], min_epochs
        while epochs < max_epochs:
            budgets.append(epochs)
            epochs *= factor
        return budgets + [max_epochs]
    rungs = 1 + int(math.floor(math.log(n, factor) + 1e-9))
    budgets = [max(1, round(max_epochs / factor**j)) for j in range(rungs - 1, -1, -1)]
    return sorted(set(budgets))


def halve(evaluate: Evaluate, candidates: dict[int, dict], budgets: list[int], factor: int,
          scored: dict[int, dict] | None = None, margin: float | None = None, trend: float | None = None) -> None:
    """One successive-halving bracket over ``budgets`` (shared by halving, Hyperband and tpe-halving).

    With ``scored`` (``{epochs: {index: score}}``, kept across brackets) a candidate is ranked against
    every config scored at that rung so far, not its bracket alone: asynchronous successive halving.
    With ``margin`` every rung but the last races its folds (``evaluate.race``). With ``trend`` (a
    weight; not with ``scored``) every rung after the first ranks by the configs' extrapolated scores
    (``trend.extrapolate``) rather than their scores; the scores stored stay the scores.
    """
    before: dict[int, float] = {}
    for k, epochs in enumerate(budgets):
        last = k == len(budgets) - 1
        if margin is not None and not last:
            scores = evaluate.race(candidates, epochs, math.ceil(len(candidates) / factor), margin)
        else:
            scores = evaluate(candidates, epochs)
        if last:
            return
        if scored is not None:
            scored[epochs] = scores = {**scored.get(epochs, {}), **scores}
        ranking = scores if trend is None or k == 0 else extrapolate(scores, before, epochs, budgets[k - 1],
                                                                     budgets[-1], trend)
        before = scores
        survivors = [i for i in top_fraction(ranking, factor) if i in candidates]
        evaluate.prune([i for i in candidates if i not in survivors])
        candidates = {i: candidates[i] for i in survivors}
        if not candidates:
            return


class SuccessiveHalving(Strategy):
    """``--strategy halving``: ``n`` configs, rungs from ``rung_budgets``, the top 1/factor continue;
    with ``fold_racing`` (a margin) every rung but the last races its folds (``racing``); with ``trend``
    (a weight) every rung after the first ranks by the configs' trends (``trend``)."""

    name = "halving"
    default_factor = DEFAULT_FACTOR
    continues = True
    fold_racing: float | None = None
    trend: float | None = None

    @classmethod
    def from_settings(cls, settings) -> SuccessiveHalving:
        strategy = super().from_settings(settings)
        margin = getattr(settings, "fold_racing", None)  # None: not settled yet (``settle``), raced by no one
        strategy.fold_racing = None if margin in (None, "off") else float(margin)
        trend = getattr(settings, "trend", None)
        # weight 0 ranks by the score, as off does: one fingerprint, so a resume may swap them
        strategy.trend = None if trend in (None, "off") or float(trend) == 0 else float(trend)
        if strategy.fold_racing is not None and settings.cv < 3:
            raise UsageError(f"{param('fold_racing')} needs {param('cv')} >= 3, got {settings.cv}: racing decides "
                             f"after 2 folds, and with {settings.cv} none is left to save; raise {param('cv')} or "
                             f"leave {param('fold_racing')} out")
        return strategy

    @classmethod
    def settle(cls, settings, made: dict | None):
        """Halving's automatic defaults: a new run takes factor ``DEFAULT_FACTOR``, races its folds at
        ``DEFAULT_FOLD_RACING`` (with ``cv`` >= 3) and ranks by ``DEFAULT_TREND`` (None: the score); a run
        made with other defaults (factor 4 and the trend at 0.5 from the eighth session to the tenth), or
        without racing, resumes as it began."""
        settings = super().settle(settings, made)  # the factor
        halving = SuccessiveHalving.name  # not cls.name: tpe-halving inherits this and neither races nor trends
        if settings.strategy != halving:
            return settings
        began = made if made is not None and made.get("name") == halving else None
        # older runs' fingerprints have neither: they ran without
        if settings.fold_racing is None:
            if settings.cv < 3:  # nothing to race (a resume with another cv is refused by its fingerprint)
                settings = replace(settings, fold_racing="off")
            else:
                settings = replace(settings, fold_racing=began.get("fold_racing", "off") if began is not None
                                   else DEFAULT_FOLD_RACING)
        if settings.trend is None:
            new = "off" if DEFAULT_TREND is None else DEFAULT_TREND
            settings = replace(settings, trend=began.get("trend", "off") if began is not None else new)
        return settings

    def describe(self) -> str | None:
        if self.name != SuccessiveHalving.name:  # tpe-halving neither races nor trends
            return None
        if self.fold_racing is None:
            racing = "halving: every fold of every config trains (no fold racing: --fold-racing off, or --cv below 3)"
        else:
            racing = (f"halving: folds raced (--fold-racing {self.fold_racing:g}): at every rung but the last, a "
                      "config below the cut-off on every fold so far by more than the margin stops, from the 2nd "
                      "fold on (--fold-racing off: every fold)")
        if self.trend is None:
            return f"{racing}\nhalving: every rung ranks by the score (--trend off)"
        return (f"{racing}\nhalving: rungs after the first rank by the score extrapolated along each config's "
                f"trend since the previous rung (--trend {self.trend:g}; --trend off: by the score)")

    def check(self) -> None:
        check_halving(self.n, self.max_epochs, self.factor, self.min_epochs)

    def budgets(self) -> list[int]:
        return rung_budgets(self.n, self.max_epochs, self.factor, self.min_epochs)

    def fingerprint(self) -> dict:
        # older runs (without racing or the trend) resume
        racing = {} if self.fold_racing is None else {"fold_racing": self.fold_racing}
        trend = {} if self.trend is None else {"trend": self.trend}
        return {"name": self.name, "n": self.n, "factor": self.factor, "budgets": self.budgets(), **racing, **trend}

    def plan(self) -> list[tuple[int, int]]:
        return _bracket_plan(self.n, self.budgets(), self.factor)

    def folds_said(self, folds: int) -> str:
        if self.fold_racing is None:
            return super().folds_said(folds)
        return f"up to {folds} folds: racing stops some configs sooner"

    def run(self, evaluate: Evaluate) -> None:
        halve(evaluate, evaluate.draw(self.n), self.budgets(), self.factor, margin=self.fold_racing, trend=self.trend)


def _bracket_plan(n: int, budgets: list[int], factor: int) -> list[tuple[int, int]]:
    plan = []
    for epochs in budgets:
        plan.append((n, epochs))
        n = math.ceil(n / factor)
    return plan

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

__all__ = ["SuccessiveHalving", "rung_budgets", "halve", "DEFAULT_FOLD_RACING"]

# Measured on both tabulated benchmarks (BENCHMARKS.md, 20 seeds each): the same chosen config as
# halving without racing on every seed, for 12% (digits) and 15% (Fashion-MNIST) less compute.
DEFAULT_FOLD_RACING = 0.02


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
          scored: dict[int, dict] | None = None, margin: float | None = None) -> None:
    """One successive-halving bracket over ``budgets`` (shared by halving, Hyperband and tpe-halving).

    With ``scored`` (``{epochs: {index: score}}``, kept across brackets) a candidate is ranked against
    every config scored at that rung so far, not its bracket alone: asynchronous successive halving.
    With ``margin`` every rung but the last races its folds (``evaluate.race``).
    """
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
        survivors = [i for i in top_fraction(scores, factor) if i in candidates]
        evaluate.prune([i for i in candidates if i not in survivors])
        candidates = {i: candidates[i] for i in survivors}
        if not candidates:
            return


class SuccessiveHalving(Strategy):
    """``--strategy halving``: ``n`` configs, rungs from ``rung_budgets``, the top 1/factor continue;
    with ``fold_racing`` (a margin) every rung but the last races its folds (``racing``)."""

    name = "halving"
    continues = True
    fold_racing: float | None = None

    @classmethod
    def from_settings(cls, settings) -> SuccessiveHalving:
        strategy = super().from_settings(settings)
        margin = getattr(settings, "fold_racing", None)  # None: not settled yet (``settle``), raced by no one
        strategy.fold_racing = None if margin in (None, "off") else float(margin)
        if strategy.fold_racing is not None and settings.cv < 3:
            raise UsageError(f"{param('fold_racing')} needs {param('cv')} >= 3, got {settings.cv}: racing decides "
                             f"after 2 folds, and with {settings.cv} none is left to save; raise {param('cv')} or "
                             f"leave {param('fold_racing')} out")
        return strategy

    @classmethod
    def settle(cls, settings, made: dict | None):
        """Fold racing's automatic default: a new run races at ``DEFAULT_FOLD_RACING`` (with ``cv`` >= 3);
        a run made before that default, or without racing, resumes without it."""
        halving = SuccessiveHalving.name  # not cls.name: tpe-halving inherits this and never races
        if settings.fold_racing is not None or settings.strategy != halving:
            return settings
        if settings.cv < 3:  # nothing to race (a resume with another cv is refused by its fingerprint)
            margin = "off"
        elif made is not None and made.get("name") == halving:
            margin = made.get("fold_racing", "off")  # older runs' fingerprints have no racing: they ran without
        else:
            margin = DEFAULT_FOLD_RACING
        return replace(settings, fold_racing=margin)

    def describe(self) -> str | None:
        if self.fold_racing is None and self.name == SuccessiveHalving.name:  # (tpe-halving never races)
            return "halving: every fold of every config trains (no fold racing: --fold-racing off, or --cv below 3)"
        if self.fold_racing is None:
            return None
        return (f"halving: folds raced (--fold-racing {self.fold_racing:g}): at every rung but the last, a config "
                "below the cut-off on every fold so far by more than the margin stops, from the 2nd fold on "
                "(--fold-racing off: every fold)")

    def check(self) -> None:
        check_halving(self.n, self.max_epochs, self.factor, self.min_epochs)

    def budgets(self) -> list[int]:
        return rung_budgets(self.n, self.max_epochs, self.factor, self.min_epochs)

    def fingerprint(self) -> dict:
        racing = {} if self.fold_racing is None else {"fold_racing": self.fold_racing}  # older runs resume
        return {"name": self.name, "n": self.n, "factor": self.factor, "budgets": self.budgets(), **racing}

    def plan(self) -> list[tuple[int, int]]:
        return _bracket_plan(self.n, self.budgets(), self.factor)

    def folds_said(self, folds: int) -> str:
        if self.fold_racing is None:
            return super().folds_said(folds)
        return f"up to {folds} folds: racing stops some configs sooner"

    def run(self, evaluate: Evaluate) -> None:
        halve(evaluate, evaluate.draw(self.n), self.budgets(), self.factor, margin=self.fold_racing)


def _bracket_plan(n: int, budgets: list[int], factor: int) -> list[tuple[int, int]]:
    plan = []
    for epochs in budgets:
        plan.append((n, epochs))
        n = math.ceil(n / factor)
    return plan

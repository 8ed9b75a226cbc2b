"""Hyperband (Li et al., 2018): several successive-halving brackets that start at different
budgets, so a config that learns slowly but well is not judged only after the shortest rung.

With the epochs grid ``g_0 < g_1 < ... < g_S = max_epochs`` (``rung_budgets``), bracket ``s``
(``s = S .. 0``) starts at ``g_{S-s}`` and halves over the last ``s + 1`` budgets; its share of the
``n`` configs is Li et al.'s ``ceil((S + 1) / (s + 1) * factor**s)``, scaled to ``n`` (each bracket
at least one config). Brackets run one after another on contiguous trial indices, in one trial store.
"""

from __future__ import annotations

import math

from ..errors import UsageError, param
from ._base import Strategy, check_halving
from .halving import _bracket_plan, halve, rung_budgets
from .seam import Evaluate

__all__ = ["Hyperband", "bracket_sizes"]


def bracket_sizes(n: int, brackets: int, factor: int) -> list[int]:
    """Configs per bracket, most-explorative first, summing to ``n`` (largest remainders)."""
    top = brackets - 1
    weights = [math.ceil((top + 1) / (s + 1) * factor**s) for s in range(top, -1, -1)]
    if n < brackets:
        raise ValueError("fewer configs than brackets")
    exact = [n * w / sum(weights) for w in weights]
    sizes = [max(1, math.floor(x)) for x in exact]
    order = sorted(range(brackets), key=lambda b: exact[b] - sizes[b], reverse=True)  # the most short-changed first
    for b in (order * n)[: max(0, n - sum(sizes))]:
        sizes[b] += 1
    while sum(sizes) > n:  # the floor of 1 overshot: take from the largest
        sizes[sizes.index(max(sizes))] -= 1
    return sizes


class Hyperband(Strategy):
    """``--strategy hyperband``: brackets of successive halving over one epochs grid."""

    name = "hyperband"
    continues = True
    default_factor = 3

    def check(self) -> None:
        check_halving(self.n, self.max_epochs, self.factor, self.min_epochs)
        brackets = len(self.grid())
        if self.n < brackets:
            raise UsageError(f"{param('n')} ({self.n}) must be >= the number of Hyperband brackets ({brackets}, "
                             f"one per "
                             f"rung of {self.grid()} epochs); raise {param('n')} or {param('min_epochs')}")

    def grid(self) -> list[int]:
        return rung_budgets(self.n, self.max_epochs, self.factor, self.min_epochs)

    def brackets(self) -> list[list]:
        """``[[configs, budgets], ...]``, the bracket starting lowest first (lists: they are stored as JSON)."""
        grid = self.grid()
        sizes = bracket_sizes(self.n, len(grid), self.factor)
        return [[size, grid[start:]] for start, size in enumerate(sizes)]

    def fingerprint(self) -> dict:
        return {"name": self.name, "n": self.n, "factor": self.factor, "brackets": self.brackets()}

    def bracket_plans(self) -> list[list[tuple[int, int]]]:
        """``plan()`` bracket by bracket (the command line says each on its own)."""
        return [_bracket_plan(size, budgets, self.factor) for size, budgets in self.brackets()]

    def plan(self) -> list[tuple[int, int]]:
        return [step for plan in self.bracket_plans() for step in plan]

    def plan_line(self, folds: int) -> str:  # one halving per bracket, each said on its own
        said = "; ".join(f"bracket {b + 1}: " + ", ".join(f"{n} x {e}" for n, e in plan)
                         for b, plan in enumerate(self.bracket_plans()))
        return f"{self.name}: configs x epochs per rung, {said} (x {self.folds_said(folds)})"

    def run(self, evaluate: Evaluate) -> None:
        for size, budgets in self.brackets():
            halve(evaluate, evaluate.draw(size), budgets, self.factor)

"""Random search with full budgets: the Lab 3 seed's search, the strategy that asks once."""

from __future__ import annotations

from ._base import Strategy
from .seam import Evaluate

__all__ = ["RandomSearch"]

# Configs drawn per call of evaluate: a huge --n is drawn as it is trained, not all before the first
# fit; the jobs wait for the slowest fold once per chunk, a small price at this size.
CHUNK = 256


class RandomSearch(Strategy):
    """Draw ``n`` configs from the space and give each the whole budget (``max_epochs``)."""

    name = "random"

    def run(self, evaluate: Evaluate) -> None:
        for start in range(0, self.n, CHUNK):
            evaluate(evaluate.draw(min(CHUNK, self.n - start)), self.max_epochs)

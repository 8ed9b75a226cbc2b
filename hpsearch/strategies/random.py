"""Random search with full budgets: the Lab 3 seed's search, the strategy that asks once."""

from __future__ import annotations

from ._base import Strategy

__all__ = ["RandomSearch"]


class RandomSearch(Strategy):
    """Draw ``n`` configs from the space and give each the whole budget (``max_epochs``)."""

    name = "random"

    def run(self, evaluate) -> None:
        evaluate(evaluate.draw(self.n), self.max_epochs)

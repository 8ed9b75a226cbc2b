"""TPE + successive halving (``--strategy tpe-halving``): TPE proposes, halving's rungs prune.

The configs come as ``tpe`` draws them (the first ``n_startup`` the random strategy's, then
Optuna's ``TPESampler`` one batch per job at a time); each batch climbs halving's rungs
(``rung_budgets``), and a config continues past a rung only while it ranks in the top ``1/factor``
of every config scored at that rung so far, this batch's and all earlier ones' — asynchronous
successive halving (Li et al.'s ASHA), the rule of Optuna's ``SuccessiveHalvingPruner`` — its
folds continuing from where they stopped. TPE learns from each finished batch: a complete config's
last score, a pruned one's last rung (Optuna's TPE ranks pruned trials by the rung they reached,
then by score). How many configs reach each rung is known only as the run goes, so ``plan`` is
synchronous halving's, an estimate.
"""

from __future__ import annotations

from ._base import check_halving, top_fraction
from .halving import _bracket_plan, rung_budgets
from .tpe import TPE

__all__ = ["TPEHalving"]


class TPEHalving(TPE):
    """``--strategy tpe-halving``: TPE's proposals, pruned by asynchronous successive halving."""

    name = "tpe-halving"
    continues = True
    exact_plan = False

    def check(self) -> None:
        super().check()
        check_halving(self.n, self.max_epochs, self.factor, self.min_epochs)

    def budgets(self) -> list[int]:
        return rung_budgets(self.n, self.max_epochs, self.factor, self.min_epochs)

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "factor": self.factor, "budgets": self.budgets()}

    def plan(self) -> list[tuple[int, int]]:
        return _bracket_plan(self.n, self.budgets(), self.factor)

    def run(self, evaluate) -> None:
        self.scored = [{} for _ in self.budgets()]  # every config's score at each rung, all batches so far
        super().run(evaluate)

    def train(self, evaluate, candidates: dict[int, dict]) -> None:
        budgets = self.budgets()
        for k, epochs in enumerate(budgets):
            scores = evaluate(candidates, epochs)
            if k == len(budgets) - 1:
                return
            self.scored[k].update(scores)
            promoted = set(top_fraction(self.scored[k], self.factor))
            evaluate.prune([i for i in candidates if i not in promoted])
            candidates = {i: config for i, config in candidates.items() if i in promoted}
            if not candidates:
                return

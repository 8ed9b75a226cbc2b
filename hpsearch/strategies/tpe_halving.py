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

from .halving import SuccessiveHalving, halve
from .seam import Evaluate
from .tpe import TPE

__all__ = ["TPEHalving"]


class TPEHalving(TPE, SuccessiveHalving):
    """``--strategy tpe-halving``: TPE's draws (``run``), halving's rungs (``budgets``, ``plan``), each
    batch pruned against every config scored at the rung so far."""

    name = "tpe-halving"
    continues = True
    exact_plan = False
    default_factor = 3

    def check(self) -> None:
        TPE.check(self)
        SuccessiveHalving.check(self)

    def fingerprint(self) -> dict:  # without halving's --n: TPE's batches may grow a resumed run
        return {**TPE.fingerprint(self), "factor": self.factor, "budgets": self.budgets()}

    def run(self, evaluate: Evaluate) -> None:
        self.scored: dict[int, dict] = {}  # {epochs: {index: score}} over all batches so far
        TPE.run(self, evaluate)

    def train(self, evaluate: Evaluate, candidates: dict[int, dict]) -> None:
        halve(evaluate, candidates, self.budgets(), self.factor, scored=self.scored)

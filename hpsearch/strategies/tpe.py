"""TPE: configs proposed by Optuna's ``TPESampler`` from the scores so far, each given the whole budget.

The first ``n_startup`` configs are the random strategy's (drawn from the space with its weights,
e.g. the seed's 0.8/0.2 optimizer choice); after that TPE proposes from the same space compiled to
Optuna distributions (``hpsearch.space.optuna_bridge``: widths stay strictly decreasing). It asks for
``evaluate.concurrency`` configs at a time (one per job, with Optuna's constant liar when more than
one), so the jobs stay busy. The asks happen one after another in the search's process, each batch
after the previous one's scores are stored, so on the CPU the proposals are reproducible for a seed.
"""

from __future__ import annotations

import warnings

import optuna

from ..errors import check_whole
from ..training.seeds import trial_seed
from ._base import Strategy
from .seam import Evaluate

__all__ = ["TPE", "tpe_sampler"]


def tpe_sampler(seed: int, batch: int) -> optuna.samplers.BaseSampler:
    """Optuna's TPE, asked ``batch`` configs at a time (with the constant liar when more than one)."""
    with warnings.catch_warnings():  # constant_liar is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, constant_liar=batch > 1)


class TPE(Strategy):
    """``--strategy tpe``: Optuna's TPE sampler after ``n_startup`` random configs."""

    name = "tpe"
    proposes_in_batches = True  # one config per job at a time: other jobs, other configs

    def check(self) -> None:
        check_whole("n_startup", self.n_startup, 1)

    def fingerprint(self) -> dict:
        return {"name": self.name, "n_startup": self.n_startup}

    def run(self, evaluate: Evaluate) -> None:
        startup = min(self.n, self.n_startup)
        self.train(evaluate, evaluate.draw(startup))
        batch = max(1, evaluate.concurrency)
        done, left = startup, self.n - startup
        while left > 0:
            step = min(batch, left)
            # a sampler per batch, seeded by its first trial: a resumed run (or one whose --n grew) asks
            # what a straight run asks, where one sampler's random state would have started afresh
            sampler = tpe_sampler(trial_seed(self.seed, done), batch)
            self.train(evaluate, evaluate.draw(step, sampler=sampler))
            done, left = done + step, left - step

    def train(self, evaluate: Evaluate, candidates: dict[int, dict]) -> None:
        """Give one batch of configs its epochs (here the full budget) before the next is proposed."""
        evaluate(candidates, self.max_epochs)

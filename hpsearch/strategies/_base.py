"""What every strategy shares: the seam it works through, and how it is built from the settings.

A strategy decides which configs get how many epochs, and nothing else, the way scikit-learn's
searches differ only in ``_run_search(evaluate_candidates)``. It works through an ``evaluate``
object that the search builds once per run:

``evaluate.draw(k, sampler=None) -> {index: config}``
    the next ``k`` configs: from the space's ``ParamGenerator`` (config ``i`` drawn from
    ``default_rng([seed, i])``), or proposed by an Optuna ``sampler`` (TPE) from the trials so far;
    a config already stored (a resumed run) comes back as it was stored.
``evaluate(candidates, epochs) -> {index: mean CV score}``
    brings every candidate to ``epochs`` on every fold (continuing from where it stopped) and
    returns its mean score, NaN for a failed config. A (config, epochs) already stored is not
    trained again: resume lives in the seam, no strategy handles it.
``evaluate.prune(indices)``
    these configs go no further (Optuna PRUNED; their continuation states are removed).
``evaluate.concurrency``
    how many configs to ask for at once (one per job): a sequential sampler asks for that many.

The search loop keeps the store, the progress bar, Ctrl-C and the exports; an engine trains.
"""

from __future__ import annotations

import math

from ..errors import UsageError, check_whole

__all__ = ["Strategy", "top_fraction"]


class Strategy:
    """The base of the strategies: ``run(evaluate)`` is the one method they differ in.

    Parameters (all strategies take them; each uses what it needs)
    ----------
    n : int
        Configs to draw.
    max_epochs : int
        The full budget of one fit (epochs).
    seed : int
    factor, min_epochs, n_startup
        The halving factor, the first rung's epochs (None: automatic) and TPE's random start.
    """

    name = ""
    continues = False  # whether survivors continue across rungs (then fold states are kept)
    exact_plan = True  # whether plan() is what run() asks for, or an estimate (configs per rung unknown ahead)

    def __init__(self, n: int, max_epochs: int, seed: int = 0, factor: int = 3, min_epochs: int | None = None,
                 n_startup: int = 10):
        self.n = n
        self.max_epochs = max_epochs
        self.seed = seed
        self.factor = factor
        self.min_epochs = min_epochs
        self.n_startup = n_startup

    @classmethod
    def from_settings(cls, settings) -> Strategy:
        strategy = cls(settings.n, settings.max_epochs, settings.seed, settings.factor, settings.min_epochs,
                       settings.n_startup)
        strategy.check()
        return strategy

    def check(self) -> None:
        """Raise ``UsageError`` for settings this strategy cannot run."""

    def fingerprint(self) -> dict:
        """The settings a resume of this strategy must keep (``--n`` may grow unless listed)."""
        return {"name": self.name}

    def plan(self) -> list[tuple[int, int]]:
        """``[(configs, epochs), ...]``: what the strategy will ask for, for the progress bar."""
        return [(self.n, self.max_epochs)]

    def run(self, evaluate) -> None:
        raise NotImplementedError


def top_fraction(scores: dict[int, float], factor: int) -> list[int]:
    """The best ``ceil(len / factor)`` indices by score (ties: lower index), failed (NaN) ones never."""
    keep = math.ceil(len(scores) / factor)
    ranked = sorted((i for i, s in scores.items() if not math.isnan(s)), key=lambda i: (-scores[i], i))
    return ranked[:keep]


def check_halving(n: int, max_epochs: int, factor: int, min_epochs: int | None) -> None:
    """The flags successive halving needs: a factor >= 2, rungs that fit in --max-epochs, and
    more configs than the factor (else nothing is ever halved)."""
    check_whole("--factor", factor, 2)
    if min_epochs is not None:
        check_whole("--min-epochs", min_epochs, 1)
        if min_epochs > max_epochs:
            raise UsageError(f"--min-epochs ({min_epochs}) must be <= --max-epochs ({max_epochs}): the first "
                             "rung cannot train longer than the last; lower --min-epochs or raise --max-epochs")
    if n < factor:
        raise UsageError(f"--n ({n}) must be >= --factor ({factor}) for successive halving: with fewer configs "
                         "than the factor no rung keeps fewer than it trained; raise --n or lower --factor")

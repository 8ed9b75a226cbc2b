"""What every strategy shares: how it is built from the settings, and the one method it differs in.

A strategy decides which configs get how many epochs, and nothing else: ``run(evaluate)`` works
through the evaluate seam (``hpsearch.strategies.seam.Evaluate``: ``draw``, ``__call__``, ``prune``,
``concurrency``). A new strategy: one file with a ``Strategy`` subclass plus one line in
``hpsearch.strategies.STRATEGIES``.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..errors import UsageError, check_whole, param
from .seam import Evaluate

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
    default_factor: int | None = None  # the strategies that halve: the factor when --factor is left out
    proposes_in_batches = False  # whether its configs depend on how many jobs ask at once (TPE's)

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
        factor = settings.factor if settings.factor is not None else cls.default_factor  # (not settled yet)
        strategy = cls(settings.n, settings.max_epochs, settings.seed, factor, settings.min_epochs,
                       settings.n_startup)
        strategy.check()
        return strategy

    def check(self) -> None:
        """Raise ``UsageError`` for settings this strategy cannot run."""

    @classmethod
    def settle(cls, settings, made: dict | None):
        """``settings`` with this strategy's automatic settings decided, for a new run (``made`` None) or
        for the run whose store holds the strategy fingerprint ``made``, so that it resumes as it began.
        The base settles the factor of a strategy that halves: the one the run began with (a halving run
        made while its default was 4 resumes with 4), else ``default_factor``."""
        if settings.factor is not None or cls.default_factor is None:
            return settings
        began = made.get("factor") if made is not None and made.get("name") == cls.name else None
        return replace(settings, factor=began or cls.default_factor)

    def describe(self) -> str | None:
        """A line the run prints before it starts, for what the plan line does not say (None: nothing)."""
        return None

    def plan_line(self, folds: int) -> str | None:
        """What a search says it will train, once its run folder has accepted it (None: one budget)."""
        plan = self.plan()
        if len(plan) < 2:
            return None
        about = "" if self.exact_plan else "about "
        return (f"{self.name}: configs x epochs per rung: {about}{', '.join(f'{n} x {e}' for n, e in plan)} "
                f"(x {self.folds_said(folds)})")

    def folds_said(self, folds: int) -> str:
        """How many folds each (config, rung) trains, as the plan line says it."""
        return f"{folds} folds"

    def fingerprint(self) -> dict:
        """The settings a resume of this strategy must keep (``--n`` may grow unless listed)."""
        return {"name": self.name}

    def plan(self) -> list[tuple[int, int]]:
        """``[(configs, epochs), ...]``: what the strategy will ask for, for the progress bar."""
        return [(self.n, self.max_epochs)]

    def run(self, evaluate: Evaluate) -> None:
        raise NotImplementedError


def top_fraction(scores: dict[int, float], factor: int) -> list[int]:
    """The best ``ceil(len / factor)`` indices by score (ties: lower index), failed (NaN) ones never."""
    keep = math.ceil(len(scores) / factor)
    ranked = sorted((i for i, s in scores.items() if not math.isnan(s)), key=lambda i: (-scores[i], i))
    return ranked[:keep]


def check_halving(n: int, max_epochs: int, factor: int, min_epochs: int | None) -> None:
    """The flags successive halving needs: a factor >= 2, rungs that fit in --max-epochs, and
    more configs than the factor (else nothing is ever halved)."""
    check_whole("factor", factor, 2)
    if min_epochs is not None:
        check_whole("min_epochs", min_epochs, 1)
        if min_epochs > max_epochs:
            raise UsageError(f"{param('min_epochs')} ({min_epochs}) must be <= {param('max_epochs')} "
                             f"({max_epochs}): the first "
                             f"rung cannot train longer than the last; lower {param('min_epochs')} or raise "
                             f"{param('max_epochs')}")
    if n < factor:
        raise UsageError(f"{param('n')} ({n}) must be >= {param('factor')} ({factor}) for successive halving: "
                         f"with fewer configs "
                         f"than the factor no rung keeps fewer than it trained; raise {param('n')} or lower "
                         f"{param('factor')}")

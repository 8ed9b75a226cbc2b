"""The evaluate seam: what a strategy may ask of the run, as one typed definition.

A strategy decides which configs get how many epochs, and nothing else, the way scikit-learn's
searches differ only in ``_run_search(evaluate_candidates)``. It works through an ``Evaluate``
that the search builds once per run (``hpsearch.search.evaluator.Evaluator``); tests drive a
strategy with a fake one that satisfies the same protocol. The search keeps the store, the
progress bar, Ctrl-C and the exports; an engine (``hpsearch.engines.seam.Engine``) trains.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Evaluate", "Config"]

Config = dict[str, Any]  # one configuration: parameter name -> value


@runtime_checkable
class Evaluate(Protocol):
    """The run as a strategy sees it."""

    concurrency: int
    """How many configs to ask for at once (one per job): a sequential sampler asks for that many."""

    def draw(self, k: int, sampler: Any = None) -> dict[int, Config]:
        """The next ``k`` configs by trial index: from the space's ``ParamGenerator`` (config ``i``
        drawn from ``default_rng([seed, i])``), or proposed by an Optuna ``sampler`` (TPE) from the
        trials so far; a config already stored (a resumed run) comes back as it was stored."""
        ...

    def __call__(self, candidates: dict[int, Config], epochs: int) -> dict[int, float]:
        """Bring every candidate to ``epochs`` on every fold (continuing from where it stopped) and
        return its mean CV score, NaN for a failed config. A (config, epochs) already stored is not
        trained again: resume lives in the seam, no strategy handles it."""
        ...

    def race(self, candidates: dict[int, Config], epochs: int, keep: int, margin: float) -> dict[int, float]:
        """``__call__`` with fold racing (``hpsearch.strategies.racing.race``): the candidates' folds
        train in turn, and a config whose folds so far put it below the ``keep``-th by more than
        ``margin`` on every one stops there (NaN: it cannot survive the rung)."""
        ...

    def prune(self, indices: Any) -> None:
        """These configs go no further (Optuna PRUNED; their continuation states are removed)."""
        ...

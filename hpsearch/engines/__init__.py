"""Engines: train (config, fold) fits up to an epoch and score them (the seam: ``seam.Engine``).

``cv`` is k-fold cross-validation with skorch nets; ``skorch_engine`` runs it for a search;
``batched_engine`` trains many MLP configs x folds at once as one stack (``stack``, ``stack_fit``),
falling back to skorch for what it cannot batch. A new engine: one file plus one line in ``ENGINES``.
"""

from __future__ import annotations

from .batched_engine import BatchedEngine
from .seam import Engine, RunContext
from .skorch_engine import SkorchEngine

__all__ = ["ENGINES", "make_engine"]

ENGINES: dict[str, type[Engine]] = {
    "skorch": SkorchEngine,  # one skorch net per (config, fold): the faithful reference
    "batched": BatchedEngine,  # many MLP configs x folds at once; other model kinds fall back to skorch
}


def make_engine(name: str, context: RunContext) -> Engine:
    """The engine ``name`` names, built for this run."""
    return ENGINES[name](context)

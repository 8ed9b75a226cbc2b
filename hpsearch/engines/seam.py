"""The engine seam: "train these configs on every fold up to epoch E and score them", as one typed
definition, and the ``RunContext`` every engine of a run shares.

An engine is built once per run from a ``RunContext`` and has one method, ``train``, yielding
``(index, CVResult)`` as each config's folds are done (in any order). With ``context.continues``
(a halving strategy) a fit goes on from its stored state and, with ``keep_states``, leaves its own
state for the next rung. A new engine is one file with a class satisfying ``Engine`` plus one line
in ``hpsearch.engines.ENGINES``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .cv import CVResult

if TYPE_CHECKING:
    from ..data.dataset import Dataset
    from ..jobs.backends import LokyBackend

__all__ = ["Engine", "RunContext"]


@dataclass
class RunContext:
    """What every engine of a run shares."""

    settings: Any  # the run's hpsearch.settings.SearchSettings (a layer above: not imported here)
    dataset: Dataset
    X: np.ndarray  # the training images, shared with the jobs (``hpsearch.jobs.resident.shared_array``)
    folds: list[tuple[np.ndarray, np.ndarray]]
    parallel: Any  # a running joblib Parallel(return_as="generator_unordered")
    jobs: int
    run_dir: Path
    continues: bool  # survivors continue across rungs: fold states are read and kept
    stop: Callable[[], bool]  # Ctrl-C was pressed
    backend: LokyBackend | Any = None  # where the jobs run (hpsearch.jobs.backends): jobs, threads, the data's way
    run_id: str = ""  # the run's digest (hpsearch.rundir.states.run_digest): the owner its states carry
    module_code: dict | None = None  # your network's code as the run recorded it: each rung is built from it


@runtime_checkable
class Engine(Protocol):
    """Trains and scores configs for a run."""

    context: RunContext

    def train(self, configs: dict[int, dict], epochs: int, keep_states: bool,
              on_start: Callable[[int], None] | None = None,
              folds: list[int] | None = None) -> Iterator[tuple[int, CVResult]]:
        """Train every config on every fold (or on the folds ``folds`` names: fold racing trains them
        in turn) up to ``epochs`` and yield ``(index, CVResult)`` as each config's folds are done, its
        lists in the order of ``folds``; ``on_start(index)`` when its first fold starts. A failed config
        comes back with NaN scores and its reason (``CVResult.error``), never as an exception."""
        ...

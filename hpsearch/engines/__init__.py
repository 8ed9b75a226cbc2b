"""Engines: "train these (config, fold) fits up to epoch E and score them".

An engine is built once per run from a ``RunContext`` and has one method,
``train(configs, epochs, keep_states, on_start)``, yielding ``(index, CVResult)`` as each config's
folds are done (in any order). With ``context.continues`` (a halving strategy) a fit goes on from
its stored state and, with ``keep_states``, leaves its own state for the next rung.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunContext", "make_engine"]


@dataclass
class RunContext:
    """What every engine of a run shares."""

    settings: object  # SearchSettings
    dataset: object  # Dataset
    X: object  # the training images, shared with the jobs (``evaluate.shared_array``)
    folds: list
    parallel: object  # a running joblib Parallel(return_as="generator_unordered")
    jobs: int
    run_dir: Path
    continues: bool
    stop: object  # callable: Ctrl-C was pressed
    backend: object = None  # where the jobs run (hpsearch.jobs.backends): jobs, threads, the data's way there


def make_engine(name: str, context: RunContext):
    from .batched_engine import BatchedEngine
    from .skorch_engine import SkorchEngine

    return {"skorch": SkorchEngine, "batched": BatchedEngine}[name](context)

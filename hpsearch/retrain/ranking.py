"""A run's scored trials as a retraining takes them: best first, with the CV figures and epochs each
score is of (``top_configs``), and how many configs failed (``scored_counts``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..rundir.exports import unscored
from ..rundir.store import load_records, load_results
from ..training.losses import fit_epochs

__all__ = ["ranking", "top_configs", "scored_counts"]


def ranking(run_dir) -> tuple[list[dict], int]:
    """Every scored trial of a run, best first (as ``top_configs`` gives them), and how many configs failed;
    a UsageError naming the fix when none is scored (the search stopped before its first trial, or all failed)."""
    run_dir = Path(run_dir)
    frame = load_results(run_dir)
    why = unscored(run_dir, frame)
    if why is not None:
        raise UsageError(why)
    scored = frame[frame["mean_test_score"].notna()]
    configs = {record["index"]: record["config"] for record in load_records(run_dir)}
    ranked = [{"trial": int(row.trial), "search_rank": int(row.rank_test_score),
               "cv_score": float(row.mean_test_score), "cv_accuracy": float(row.mean_test_accuracy),
               # the epochs the CV score is of: a halving config pruned at a short rung scored there, a
               # worst-class one (or one whose space set max_epochs) trained its own
               "cv_epochs": (fit_epochs(configs[int(row.trial)], int(row.n_epochs)) if "n_epochs" in scored
                             else None),
               "config": configs[int(row.trial)]}
              for row in scored.itertuples()]
    return ranked, len(frame) - len(scored)


def top_configs(run_dir, top: int) -> list[dict]:
    """The ``top`` best finished trials of a run, best first: dicts with ``trial`` (the config's
    index), ``search_rank``, ``cv_score`` and ``config`` (the config dict as sampled).

    Failed trials (NaN score) are never chosen; a run without a scored trial is a UsageError naming the fix.
    """
    return ranking(run_dir)[0][:top]


def scored_counts(run_dir) -> tuple[int, int]:
    """How many configs of a run are scored (the most a retraining can take) and how many failed."""
    ranked, failed = ranking(run_dir)
    return len(ranked), failed

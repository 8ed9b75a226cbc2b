"""The run: its folder and lock, the trial store, the ``evaluate`` seam a strategy works through,
the progress bar, Ctrl-C and the exports.

The loop names no strategy and no engine: ``make_strategy(settings).run(evaluate)`` decides which
configs get how many epochs; ``Evaluator`` brings them there with the run's engine, skips what is
already stored (so a resumed run continues the rung in progress without re-training a finished
(config, rung)), streams each result to the store and keeps the ranking files current.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .backends import open_backend
from .data import Dataset, load_dataset
from .engines import RunContext, make_engine
from .errors import UsageError
from .evaluate import make_folds, release_resident
from .optuna_space import stored_params, suggest_config
from .results import results_frame, write_exports
from .seeds import trial_seed
from .settings import ENGINES, SearchSettings, fingerprint
from .space import ParamGenerator, SearchSpace, check_space_for_data, load_space
from .states import remove_states
from .store import RunLock, TrialStore, atomic_write_text
from .strategies import make_strategy

__all__ = ["SearchSettings", "run_search", "SearchInterrupted", "ClusterLost", "default_run_dir", "ENGINES",
           "InterruptFlag", "trial_seed", "Evaluator"]

EXPORT_EVERY_S = 2.0  # the ranking files follow the store at most this stale (and exactly at each rung's end)


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: every finished trial is stored; rerun to resume."""


class ClusterLost(SearchInterrupted):
    """The Dask cluster had no worker left for ``NO_WORKER_S``: every finished trial is stored."""


def default_run_dir(settings: SearchSettings, space: SearchSpace) -> Path:
    """``results/<dataset>_<space>_seed<seed>`` (plus the strategy unless random): the same
    command finds (and resumes) its run."""
    strategy = "" if settings.strategy == "random" else f"_{settings.strategy}"
    return Path("results") / f"{settings.dataset}_{space.name}{strategy}_seed{settings.seed}"


def _prepare_run_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {path} is not writable ({exc.strerror}); choose a folder you can "
                         "write to") from None
    return path


class InterruptFlag:
    """Turns SIGINT into a flag plus KeyboardInterrupt. skorch's ``fit`` swallows
    KeyboardInterrupt and returns a half-trained net; the flag tells us to discard that result."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        self.raised = True
        raise KeyboardInterrupt

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


class Evaluator:
    """The seam between a strategy and the run (see ``hpsearch.strategies._base``): ``draw``,
    ``__call__(candidates, epochs)``, ``prune`` and ``concurrency``."""

    def __init__(self, context: RunContext, space: SearchSpace, store: TrialStore, bar):
        self.context, self.space, self.store, self.bar = context, space, store, bar
        self.engine = make_engine(context.settings.engine, context)
        self.generator = ParamGenerator(space, context.settings.seed)
        # a sequential sampler asks for one config per job: fewer leave jobs idle at each batch's end
        self.concurrency = max(1, context.jobs)
        self._next = 0  # the next trial index draw() hands out
        self._started: dict[int, datetime] = {}
        self._exported = 0.0
        self.best = math.nan

    # -- the seam ------------------------------------------------------------------------------
    def draw(self, k: int, sampler=None) -> dict[int, dict]:
        drawn = {}
        for index in range(self._next, self._next + k):
            if index in self.store:
                drawn[index] = self.store.config(index)
            elif sampler is None:
                drawn[index] = self.generator.sample(index)
            else:
                drawn[index] = self._ask(index, sampler)
        self._next += k
        return drawn

    def __call__(self, candidates: dict[int, dict], epochs: int) -> dict[int, float]:
        final = epochs >= self.context.settings.max_epochs
        if self.bar.n + len(candidates) > self.bar.total:  # the strategy's plan was an estimate
            self.bar.total = self.bar.n + len(candidates)
            self.bar.refresh()
        scores, todo = {}, {}
        for index, config in candidates.items():
            stored = self.store.rung_result(index, epochs)
            if stored is not None:  # a resumed run: this (config, rung) is done
                scores[index] = _mean_score(stored)
                if final:
                    self._finish(index)
                self.bar.update()
            elif index in self.store and self.store.state(index) == "FAIL":
                scores[index] = math.nan  # failed at an earlier rung
                remove_states(self.context.run_dir, index)
            else:
                todo[index] = config
        for index, result in self.engine.train(todo, epochs, keep_states=not final, on_start=self._on_start):
            self._create_up_to(index, candidates)
            self.store.add_rung(index, epochs, result, final)
            if final or result.error is not None:
                remove_states(self.context.run_dir, index)
            scores[index] = result.mean_test_score
            self._progress(result.mean_test_score, epochs)
        self.export(force=True)
        return scores

    def prune(self, indices) -> None:
        for index in indices:
            if index in self.store:
                self.store.prune(index)
            remove_states(self.context.run_dir, index)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _ask(self, index: int, sampler) -> dict:
        if len(self.store) != index:
            raise RuntimeError(f"a sampler's trial {len(self.store)} would not be trial {index}")
        self.store.study.sampler = sampler
        trial = self.store.study.ask()
        config = suggest_config(self.space, trial)
        self.store.adopt(trial, config)
        return config

    def _on_start(self, index: int) -> None:  # maybe joblib's dispatch thread: only note the time
        self._started.setdefault(index, datetime.now())

    def _create_up_to(self, index: int, candidates: dict) -> None:
        """Create the trials of ``index`` and of every lower candidate not stored yet, in index order
        (their folds were handed out first), so Optuna's trial numbers are hpsearch's indices."""
        if index in self.store:
            return
        for lower in sorted(i for i in candidates if i <= index and i not in self.store):
            params, dists = stored_params(self.space, candidates[lower])
            self.store.create(lower, candidates[lower], params, dists, self._started.get(lower, datetime.now()))

    def _finish(self, index: int) -> None:
        if self.store.state(index) == "RUNNING":
            self.store.complete(index)
        remove_states(self.context.run_dir, index)

    def _progress(self, score: float, epochs: int) -> None:
        if not math.isnan(score) and not score <= self.best:
            self.best = score
        self.bar.set_postfix(best=f"{self.best:.4f}", epochs=epochs)
        self.bar.update()
        self.export()

    def export(self, force: bool = False) -> None:
        """Rewrite the ranking files (at most every ``EXPORT_EVERY_S``, unless ``force``)."""
        if force or time.monotonic() - self._exported >= EXPORT_EVERY_S:
            write_exports(self.context.run_dir, results_frame(self.store.records()))
            self._exported = time.monotonic()

    def close(self) -> None:
        """The strategy is done: a trial it left open (none, for the built-in ones) is complete."""
        for record in self.store.records():
            if record["state"] == "RUNNING":
                self._finish(record["index"])
        self.export(force=True)
        if not self.bar.disable:  # an estimated plan (tpe-halving) ends at what was trained
            self.bar.total = self.bar.n
            self.bar.refresh()


def _mean_score(rung: dict) -> float:
    scores = rung["split_test_scores"]
    return float(np.mean(scores)) if rung["error"] is None and scores else math.nan


def _check_space_for(strategy, space: SearchSpace) -> None:
    if strategy.continues and "max_epochs" in space.params:
        raise UsageError(f"--strategy {strategy.name} gives each rung its epochs, but the space {space.name!r} "
                         "sets max_epochs; remove it from the space and pass --max-epochs")
    schedules = set(space.params["schedule"].support()) - {"none"} if "schedule" in space.params else set()
    if strategy.continues and schedules:
        raise UsageError(f"--strategy {strategy.name} continues each survivor at a longer budget, which would change "
                         f"its learning-rate schedule ({', '.join(sorted(schedules))}) midway; use --strategy random "
                         "or tpe with a schedule, or schedule = \"none\" in the space (retrain with --schedule)")


def run_search(settings: SearchSettings, dataset: Dataset | None = None, backend=None) -> Path:
    """Run (or resume) a search and return its run folder.

    Every finished (config, rung) is committed to ``<run>/trials.db`` and the ranking files are
    kept current. Raises ``SearchInterrupted`` on Ctrl-C with all finished work kept (``ClusterLost``
    when a Dask cluster was left without workers). ``backend``: an open ``hpsearch.backends``
    backend to run the jobs on (default: the one ``settings.backend`` names, opened and closed here).
    """
    settings.validate()
    strategy = make_strategy(settings)
    space = load_space(settings.space)
    _check_space_for(strategy, space)
    dataset = (dataset or load_dataset(settings.dataset, settings.data_dir)).training_slice(
        settings.max_train, settings.seed)
    check_space_for_data(space, dataset)  # a net too deep for the images: refused before the first fit
    folds = make_folds(dataset.y_train, settings.cv, settings.seed)
    if settings.engine == "batched" and dataset.task.batched_engine_reason:
        print(f"--engine batched: {dataset.name} has {dataset.task.batched_engine_reason}; "
              "every config trains on the skorch engine", file=sys.stderr)
    # only now, with every setting, the space and the data checked, does the run folder appear
    run_dir = _prepare_run_dir(Path(settings.out) if settings.out else default_run_dir(settings, space))
    with RunLock(run_dir):
        store = TrialStore(run_dir, fingerprint(settings, space, dataset), metric=settings.scoring)
        atomic_write_text(run_dir / "space.toml", space.source)
        atomic_write_text(run_dir / "settings.json", json.dumps(
            {**asdict(settings), "argv": sys.argv, "dataset_name": dataset.name}, indent=2) + "\n")
        own = backend is None
        backend = open_backend(settings.backend, settings.scheduler) if own else backend
        try:
            if strategy.continues and not backend.sees(run_dir):
                raise UsageError(f"--strategy {settings.strategy} keeps each (config, fold)'s state in "
                                 f"{run_dir}/states between rungs, and some Dask workers do not see that folder; "
                                 "put the run folder (--out) on a filesystem every worker mounts at the same path, "
                                 "or use --strategy random or tpe")
            _run_strategy(settings, dataset, space, store, strategy, folds, run_dir, backend)
        finally:
            if own:
                backend.close()
        _warn_failures(results_frame(store.records()))
    return run_dir


def _run_strategy(settings, dataset, space, store, strategy, folds, run_dir, backend):
    # On the CPU the jobs take fold tasks of any config (one stream), so up to one job per core
    # even when there are fewer folds than cores; on a GPU, at most one job per fold shares it.
    on_gpu = str(settings.device).startswith("cuda") and backend.name == "loky"
    jobs = backend.jobs(settings.n_jobs, len(folds) if on_gpu else settings.n * len(folds))
    plan = strategy.plan()
    single = len(plan) == 1
    bar = tqdm(total=sum(n for n, _ in plan), desc="configs" if single else "rungs", unit="cfg",
               disable=not settings.progress, dynamic_ncols=True)
    try:
        shared = [dataset.y_train, *(rows for fold in folds for rows in fold)]
        with InterruptFlag() as flag, backend.parallel(jobs, dataset.X_train, shared) as (parallel, X):
            context = RunContext(settings, dataset, X, folds, parallel, jobs, run_dir, strategy.continues,
                                 stop=lambda: flag.raised, backend=backend)
            evaluate = Evaluator(context, space, store, bar)
            strategy.run(evaluate)
            evaluate.close()
    except (KeyboardInterrupt, Exception) as exc:
        lost = backend.failure(exc)  # the cluster's own failure (workers gone), or None
        if not isinstance(exc, KeyboardInterrupt) and lost is None:
            raise
        write_exports(run_dir, results_frame(store.records()))  # the throttled exports catch up with the store
        done = sum(1 for r in store.records() if r["state"] != "RUNNING")
        if lost is not None:
            raise ClusterLost(
                f"the Dask cluster at {backend.scheduler} {lost}: the search stopped; {done} finished trials (and "
                f"every finished rung) are stored in {run_dir}; start workers (dask worker {backend.scheduler}) "
                "and run the same command again to continue") from None
        raise SearchInterrupted(
            f"interrupted: {done} finished trials (and every finished rung) are stored in {run_dir}; "
            f"run the same command again (or add --resume {run_dir}) to continue"
        ) from None
    finally:
        bar.close()
        release_resident()  # this process's copy of the data (on a GPU: device memory)


def _warn_failures(frame) -> None:
    if frame.empty:
        return
    errors = frame.loc[frame["error"] != "", "error"]
    if len(errors):
        kinds = Counter(e.split(":")[0] for e in errors)
        summary = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        warnings.warn(
            f"{len(errors)} of {len(frame)} configs failed ({summary}); they score NaN and rank "
            "last; their reasons are in trials.csv, column 'error'",
            RuntimeWarning, stacklevel=2,
        )

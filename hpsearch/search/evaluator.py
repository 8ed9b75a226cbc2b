"""The run's side of the evaluate seam (``hpsearch.strategies.seam.Evaluate``): ``Evaluator`` draws
configs, brings them to a budget with the run's engine (``hpsearch.engines.seam.Engine``), skips what
is already stored, streams each result to the store and keeps the ranking files current."""

from __future__ import annotations

import math
import time
from datetime import datetime

import numpy as np

from ..engines import make_engine
from ..engines.cv import CVResult
from ..engines.seam import Engine, RunContext
from ..rundir.chance import chance_levels
from ..rundir.exports import results_frame, trend_of, write_exports
from ..rundir.states import remove_states
from ..rundir.store import TrialStore
from ..space.optuna_bridge import stored_params, suggest_config
from ..space.search_space import ParamGenerator, SearchSpace
from ..strategies.racing import race
from ..strategies.seam import Config

__all__ = ["Evaluator"]


EXPORT_EVERY_S = 2.0  # the ranking files follow the store at most this stale (and exactly at each rung's end)


class Evaluator:
    """The run as a strategy sees it: satisfies ``hpsearch.strategies.seam.Evaluate`` (``draw``,
    ``__call__(candidates, epochs)``, ``race``, ``prune`` and ``concurrency``)."""

    def __init__(self, context: RunContext, space: SearchSpace, store: TrialStore, bar):
        self.context, self.space, self.store, self.bar = context, space, store, bar
        self.engine: Engine = make_engine(context.settings.engine, context)
        self.generator = ParamGenerator(space, context.settings.seed)
        self.chance = chance_levels(context.dataset.y_train, context.settings.scoring)
        # a sequential sampler asks for one config per job: fewer leave jobs idle at each batch's end
        self.concurrency = max(1, context.jobs)
        self._next = 0  # the next trial index draw() hands out
        self._started: dict[int, datetime] = {}
        self._exported = 0.0
        self.best = math.nan

    # -- the seam ------------------------------------------------------------------------------
    def draw(self, k: int, sampler=None) -> dict[int, Config]:
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

    def __call__(self, candidates: dict[int, Config], epochs: int) -> dict[int, float]:
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

    def race(self, candidates: dict[int, Config], epochs: int, keep: int, margin: float) -> dict[int, float]:
        if epochs >= self.context.settings.max_epochs:  # the last rung keeps everyone: nothing to race
            return self(candidates, epochs)
        stored = {i: r for i in candidates if (r := self.store.rung_result(i, epochs)) is not None}
        failed = [i for i in candidates if i not in stored and i in self.store and self.store.state(i) == "FAIL"]
        for index in failed:
            remove_states(self.context.run_dir, index)
        todo = {i: c for i, c in candidates.items() if i not in stored and i not in failed}
        if not todo:  # a resumed run past this rung: its decisions as stored (a failed config's folds are not)
            self.bar.update(len(stored))
            return {**{i: math.nan for i in failed}, **{i: _mean_score(r) for i, r in stored.items()}}
        n_folds = len(self.context.folds)
        ran: dict[int, list[CVResult]] = {i: [] for i in todo}

        def score_fold(live: list[int], k: int) -> dict[int, float]:
            # a run cut short while storing this rung: the configs stored answer from the store
            scores = {i: _fold_score(stored[i], k) for i in live if i in stored}
            train = {i: todo[i] for i in live if i in todo}
            self.bar.set_postfix(best=f"{self.best:.4f}", epochs=epochs, fold=f"{k + 1}/{n_folds}")
            for index, result in self.engine.train(train, epochs, keep_states=True, on_start=self._on_start,
                                                   folds=[k]):
                self._create_up_to(index, candidates)
                ran[index].append(result)
                scores[index] = result.mean_test_score
            return scores

        scores, folds_run = race(score_fold, [i for i in candidates if i not in failed], n_folds, keep, margin)
        for index in sorted(todo):  # the rung is stored once its race is decided (Ctrl-C before: states remain)
            result = _merged(ran[index])
            if result.error is None and folds_run[index] < n_folds:
                result.stopped = (f"fold racing: after {folds_run[index]} of {n_folds} folds below the rung's "
                                  f"cut-off on every one by more than {margin:g}")
            self.store.add_rung(index, epochs, result, final=False)
            if result.error is not None or result.stopped:
                remove_states(self.context.run_dir, index)
            self._progress(scores[index], epochs)
        self.bar.update(len(stored))
        self.export(force=True)
        return {**{i: math.nan for i in failed}, **scores}

    def prune(self, indices) -> None:
        for index in indices:
            if index in self.store:
                self.store.prune(index)
            remove_states(self.context.run_dir, index)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _ask(self, index: int, sampler) -> dict:
        reopened = self.store.reopen_orphan(index)  # asked, then cut off (Ctrl-C, kill -9) before it was stored
        if len(self.store) != index + reopened:
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
            write_exports(self.context.run_dir, results_frame(self.store.records(), self.chance,
                                                              trend_of(self.context.settings)))
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
    """A stored rung's score as a strategy ranks it: NaN for a failed config or one fold racing stopped."""
    scores = rung["split_test_scores"]
    return float(np.mean(scores)) if rung["error"] is None and scores and not rung.get("stopped") else math.nan


def _fold_score(rung: dict, k: int) -> float:
    """A stored rung's score on fold ``k`` (NaN: failed, or a fold racing did not run)."""
    scores = rung["split_test_scores"] or []
    return float(scores[k]) if rung["error"] is None and k < len(scores) else math.nan


def _merged(folds: list[CVResult]) -> CVResult:
    """One config's folds, trained one call each, as one ``CVResult`` (its first error, if any)."""
    errors = [r.error for r in folds if r.error is not None]
    if errors:
        return CVResult(error=errors[0])
    return CVResult(test_scores=[s for r in folds for s in r.test_scores],
                    test_accuracies=[a for r in folds for a in r.test_accuracies],
                    fit_times=[t for r in folds for t in r.fit_times], epochs=[e for r in folds for e in r.epochs],
                    metrics=[m for r in folds for m in r.metrics])

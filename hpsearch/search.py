"""The search loop: draw the configs, cross-validate them, store each one and export the ranking
as soon as its last fold is back.

Configs come from ``ParamGenerator(space, seed)``, so a resumed search evaluates exactly the
configs an uninterrupted one would have, skipping those already stored. Their folds run as one
stream of tasks on the jobs (``evaluate_configs``), so configs finish, and are stored, in any order;
the store and the exports are ordered by trial index and rank, not by finishing time.
"""

from __future__ import annotations

import json
import signal
import sys
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from joblib import Parallel
from tqdm.auto import tqdm

from .data import Dataset, load_dataset
from .errors import UsageError, check_whole
from .estimator import DEFAULT_BATCH_SIZE, DEFAULT_MAX_EPOCHS, DEFAULT_PATIENCE, make_net
from .evaluate import (
    SCORINGS,
    effective_jobs,
    evaluate_configs,
    make_folds,
    release_resident,
    shared_array,
    threads_per_job,
)
from .space import ParamGenerator, SearchSpace, load_space
from .store import RunLock, TrialStore, atomic_write_text, results_frame, write_exports

__all__ = ["SearchSettings", "run_search", "SearchInterrupted", "default_run_dir", "ENGINES", "InterruptFlag",
           "trial_seed"]

# "skorch": one skorch net per config x fold, the faithful reference; "batched": many MLP configs x
# folds at once (hpsearch.engines.batched), other model kinds falling back to skorch.
ENGINES = ("skorch", "batched")


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: every finished trial is stored; rerun to resume."""


@dataclass
class SearchSettings:
    """Everything that defines a search. The CLI flags map one to one onto these fields."""

    n: int = 150
    dataset: str = "digits"
    data_dir: str | None = None
    space: str = "mlp_mnist"
    cv: int = 4
    n_jobs: int = -1
    max_epochs: int = DEFAULT_MAX_EPOCHS
    patience: int = DEFAULT_PATIENCE
    batch_size: int = DEFAULT_BATCH_SIZE
    scoring: str = "neg_log_loss"
    seed: int = 0
    out: str | None = None
    device: str = "cpu"
    progress: bool = True
    engine: str = "skorch"
    max_models_per_chunk: int | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        check_whole("--n", self.n, 1)
        check_whole("--cv", self.cv, 2)
        check_whole("--max-epochs", self.max_epochs, 1)
        check_whole("--patience", self.patience, 0)
        check_whole("--batch-size", self.batch_size, 1)
        check_whole("--seed", self.seed, 0)
        effective_jobs(self.n_jobs, 1)
        if self.scoring not in SCORINGS:
            raise UsageError(f"--scoring must be one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        if self.engine not in ENGINES:
            raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.max_models_per_chunk is not None:
            check_whole("--max-models-per-chunk", self.max_models_per_chunk, 1)


def default_run_dir(settings: SearchSettings, space: SearchSpace) -> Path:
    """``results/<dataset>_<space>_seed<seed>``: the same command finds (and resumes) its run."""
    return Path("results") / f"{settings.dataset}_{space.name}_seed{settings.seed}"


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


def _fingerprint(settings: SearchSettings, space: SearchSpace, dataset: Dataset) -> dict:
    return {
        "dataset": dataset.name,
        "n_train": int(len(dataset.y_train)),
        "space": space.source or json.dumps({k: repr(v) for k, v in space.params.items()}),
        "cv": settings.cv,
        "seed": settings.seed,
        "max_epochs": settings.max_epochs,
        "patience": settings.patience,
        "batch_size": settings.batch_size,
        "scoring": settings.scoring,
        # the engines agree statistically, not bit for bit: one run's trials come from one engine
        "engine": settings.engine,
    }


def trial_seed(seed: int, index: int) -> int:
    """The torch seed of trial ``index``: independent of how many trials run or in what order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


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


def run_search(settings: SearchSettings, dataset: Dataset | None = None) -> Path:
    """Run (or resume) a search and return its run folder.

    Every finished trial is committed to ``<run>/trials.db`` and the ranking files are rewritten
    after each one. Raises ``SearchInterrupted`` on Ctrl-C with all finished trials kept.
    """
    settings.validate()
    space = load_space(settings.space)
    dataset = dataset or load_dataset(settings.dataset, settings.data_dir)
    run_dir = _prepare_run_dir(Path(settings.out) if settings.out else default_run_dir(settings, space))
    folds = make_folds(dataset.y_train, settings.cv, settings.seed)
    with RunLock(run_dir):
        store = TrialStore(run_dir, _fingerprint(settings, space, dataset))
        atomic_write_text(run_dir / "space.toml", space.source)
        atomic_write_text(run_dir / "settings.json", json.dumps(
            {**asdict(settings), "argv": sys.argv, "dataset_name": dataset.name}, indent=2) + "\n")
        configs = ParamGenerator(space, settings.seed).gen_values(settings.n)
        done = store.finished_indices()
        todo = [i for i in range(settings.n) if i not in done]
        _search_loop(settings, dataset, space, store, configs, todo, folds, run_dir)
        frame = results_frame(store.records())
        write_exports(run_dir, frame)
        _warn_failures(frame)
    return run_dir


def _search_loop(settings, dataset, space, store, configs, todo, folds, run_dir):
    # On the CPU the jobs take fold tasks of any config (one stream), so up to one job per core
    # even when there are fewer folds than cores; on a GPU, at most one job per fold shares it.
    on_gpu = str(settings.device).startswith("cuda")
    jobs = effective_jobs(settings.n_jobs, len(folds) if on_gpu else len(todo) * len(folds))
    frame = results_frame(store.records())
    best = frame["mean_test_score"].max() if not frame.empty else float("nan")
    bar = tqdm(total=settings.n, initial=settings.n - len(todo), desc="configs", unit="cfg",
               disable=not settings.progress, dynamic_ncols=True)
    if not np.isnan(best):
        bar.set_postfix(best=f"{best:.4f}")
    y = dataset.y_train

    def record(index, result):
        nonlocal best
        store.add(index, configs[index], space, result)
        write_exports(run_dir, results_frame(store.records()))
        if result.error is None and not (result.mean_test_score <= best):
            best = result.mean_test_score
            bar.set_postfix(best=f"{best:.4f}")
        bar.update()

    try:
        with InterruptFlag() as flag, shared_array(dataset.X_train) as X, \
                Parallel(n_jobs=jobs, return_as="generator_unordered") as parallel:
            if settings.engine == "batched":
                todo = _batched_loop(settings, dataset, X, configs, todo, folds, parallel, jobs, flag, record)
            makers = {index: partial(
                make_net, configs[index], dataset.n_features, dataset.n_classes, image_shape=dataset.image_shape,
                device=settings.device, max_epochs=settings.max_epochs, batch_size=settings.batch_size,
                patience=settings.patience, random_state=trial_seed(settings.seed, index),
            ) for index in todo}
            # a fit cut short by Ctrl-C (skorch swallows it) must not be scored: stop() drops it
            threads = threads_per_job(min(jobs, len(makers) * len(folds)))  # jobs that will be busy
            for index, result in evaluate_configs(makers, X, y, folds, parallel=parallel, scoring=settings.scoring,
                                                  threads=threads, stop=lambda: flag.raised):
                record(index, result)
    except KeyboardInterrupt:
        raise SearchInterrupted(
            f"interrupted: {len(store.finished_indices())} of {settings.n} trials are stored in "
            f"{run_dir}; run the same command again (or add --resume {run_dir}) to continue"
        ) from None
    finally:
        bar.close()
        release_resident()  # this process's copy of the data (on a GPU: device memory)


def _batched_loop(settings, dataset, X, configs, todo, folds, parallel, jobs, flag, record) -> list[int]:
    """Train the batchable configs of ``todo`` chunk by chunk, storing each chunk's trials as soon
    as it finishes; returns the rest (non-MLP configs) for the skorch engine."""
    from .engines.batched import batchable, evaluate_batched

    batched = {i: configs[i] for i in todo if batchable(configs[i])}
    chunks = evaluate_batched(
        batched, {i: trial_seed(settings.seed, i) for i in batched}, X, dataset.y_train,
        folds, dataset.n_classes, device=settings.device, max_epochs=settings.max_epochs,
        batch_size=settings.batch_size, patience=settings.patience, scoring=settings.scoring,
        max_models_per_chunk=settings.max_models_per_chunk, parallel=parallel, n_jobs=jobs)
    for results in chunks:
        if flag.raised:
            raise KeyboardInterrupt
        for index, result in results:
            record(index, result)
    return [i for i in todo if i not in batched]


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

"""The batched engine as a run sees it: MLP (config, fold) models planned into chunks, each chunk
trained as one stack (``batched.train_stack``) in a job, the folds of a config gathered into its
``CVResult``, and every config it cannot train handed to the skorch engine. With a halving strategy
each (config, fold) continues from its state file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from joblib import delayed

from ..errors import DivergedError, UsageError, param
from ..jobs.resources import import_before_timing, threads_per_job, torch_threads
from ..jobs.workers import die_with_parent
from ..rundir.states import load_state, owner_of, refuse_state, save_state, state_path
from ..training.net import resolve_device
from ..training.seeds import trial_seed
from .cv import CVResult, FoldGather, score_probabilities
from .seam import RunContext
from .skorch_engine import SkorchEngine
from .stack_fit import FitSpec, batchable, initial_module, train_stack, unbatchable_reason, valid_split

__all__ = ["BatchedEngine", "evaluate_batched", "plan_chunks", "auto_models_per_chunk"]


class BatchedEngine:
    def __init__(self, context: RunContext):
        self.context = context
        self.fallback = SkorchEngine(context)

    def train(self, configs: dict[int, dict], epochs: int, keep_states: bool,
              on_start: Callable[[int], None] | None = None,
              folds: list[int] | None = None) -> Iterator[tuple[int, CVResult]]:
        c = self.context
        s = c.settings
        batched = {}
        if c.dataset.task.batched_engine_reason is None:  # else every config goes to skorch
            batched = {i: config for i, config in configs.items() if batchable(config)}
        if batched:
            chunks = evaluate_batched(
                batched, {i: trial_seed(s.seed, i) for i in batched}, c.X, c.dataset.y_train, c.folds,
                c.dataset.n_classes, device=s.device, max_epochs=epochs, batch_size=s.batch_size,
                patience=s.patience, scoring=s.scoring, max_models_per_chunk=s.max_models_per_chunk,
                parallel=c.parallel, n_jobs=c.jobs, on_start=on_start,
                states_dir=c.run_dir if c.continues else None, keep_states=keep_states, run_id=c.run_id,
                threads=c.backend.threads(c.jobs) if c.backend.name != "loky" else None,
                remote=c.backend.name != "loky", fold_ids=folds)
            for results in chunks:
                if c.stop():
                    raise KeyboardInterrupt
                yield from results
        rest = {i: config for i, config in configs.items() if i not in batched}
        if rest:
            yield from self.fallback.train(rest, epochs, keep_states, on_start, folds)


def plan_chunks(configs: dict[int, dict], n_folds: int | list[int], batch_size: int,
                max_models: int) -> list[list[tuple[int, int]]]:
    """Group the ``(config index, fold)`` models into chunks of at most ``max_models`` (``n_folds``:
    how many folds, or which).

    A chunk holds one depth and one batch size; models are sorted by widths (then config, then
    fold) so that neighbours, and so a chunk's padding, are alike, and a config's folds sit side
    by side: with ``max_models`` a multiple of ``n_folds`` every config's folds share one chunk.
    """
    groups: dict[tuple, list[int]] = {}
    for index, config in configs.items():
        hidden = tuple(config.get("hidden", (100,)))
        groups.setdefault((len(hidden), int(config.get("batch_size", batch_size))), []).append(index)
    chunks = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda i: (tuple(configs[i].get("hidden", (100,))), i))
        fold_ids = range(n_folds) if isinstance(n_folds, int) else n_folds
        models = [(i, k) for i in members for k in fold_ids]
        chunks += [models[m:m + max_models] for m in range(0, len(models), max_models)]
    return chunks


def auto_models_per_chunk(configs: dict[int, dict], n_features: int, n_classes: int, batch_size: int,
                          device: str, n_folds: int, eval_batch: int) -> int:
    """Models per chunk: on the CPU one (a stack of four folds trains no faster per model there, and
    one-model chunks keep every job busy when a halving rung has few configs: ``bench/chunks.py``);
    on a GPU as many whole configs as half its free memory holds, at most 256 models (more pads
    more: widths differ); with ``auto`` one config's folds."""
    if str(device) == "cpu":
        return 1
    if not str(device).startswith("cuda"):  # "auto": each job resolves it; whole configs as before
        return n_folds
    hidden = [tuple(c.get("hidden", (100,))) for c in configs.values()]
    widest = [n_features, *[max(max(h) for h in hidden)] * max(len(h) for h in hidden), n_classes]
    params = sum(a * b + b for a, b in zip(widest[:-1], widest[1:], strict=False))
    batch_size = max(int(c.get("batch_size", batch_size)) for c in configs.values())  # a config's own, as it trains
    activations = (batch_size * 4 + eval_batch) * sum(widest)
    per_model = 4 * (6 * params + 2 * activations)
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    fits = int(min(256, free // 2 // per_model))
    return max(n_folds, fits // n_folds * n_folds)  # whole configs: a config's folds share one chunk


# a chunk's dropout generator is seeded from its first model: trial seed + stride * fold, so the
# folds of one config in chunks of their own draw other masks (fold 0 keeps the trial seed)
DROPOUT_FOLD_STRIDE = 1_000_003


def _run_chunk(models, configs, seeds, X, y, folds, n_classes, settings, threads=None):
    """Train one chunk of ``(index, fold)`` models as one stack and score each on its held-out
    fold; returns ``[(index, fold, outcome)]``."""
    die_with_parent()  # a kill -9 of the search must not leave this job training
    with torch_threads(threads or threads_per_job(1)):  # in the caller's process: the cores, not its count
        import_before_timing()
        start = time.perf_counter()
        specs = []
        n_features = int(np.prod(X.shape[1:]))
        states_dir = settings["states_dir"]
        modules, splits = {}, {}  # per config and per fold, shared by the chunk's models
        for index, k in models:
            train, test = folds[k]
            if k not in splits:
                splits[k] = valid_split(train, y) if settings["patience"] > 0 else (train, None)
            inner, valid = splits[k]
            if index not in modules:
                modules[index] = initial_module(configs[index], seeds[index], n_features, n_classes)
            owner = owner_of(settings["run_id"], index, k, configs[index])
            resume = load_state(state_path(states_dir, index, k), owner) if states_dir is not None else None
            if resume is not None and resume.get("epochs", 0) > settings["max_epochs"]:  # a later rung's, not its past
                resume = refuse_state(state_path(states_dir, index, k),
                                      f"has {resume['epochs']} epochs, more than this rung's {settings['max_epochs']}")
            specs.append(FitSpec(configs[index], seeds[index], (seeds[index], k), inner, valid, test,
                                 modules[index], resume))
        first, first_fold = models[0]
        device = resolve_device(settings["device"])  # "auto" resolves here, on the job's machine
        # a chunk holds one batch size (plan_chunks): the config's own, as the skorch engine trains it
        batch_size = int(configs[first].get("batch_size", settings["batch_size"]))
        outcomes = train_stack(specs, X, y, n_classes, device=device,
                               max_epochs=settings["max_epochs"], batch_size=batch_size,
                               patience=settings["patience"], eval_batch=settings["eval_batch"],
                               dropout_seed=seeds[first] + DROPOUT_FOLD_STRIDE * first_fold,
                               continuation=states_dir is not None)
        if states_dir is not None and settings["keep_states"]:
            for (index, k), out in zip(models, outcomes, strict=True):
                if out.error is None:
                    save_state(state_path(states_dir, index, k), out.continuation,
                               owner_of(settings["run_id"], index, k, configs[index]))
        per_model = (time.perf_counter() - start) / len(specs)
        return [(index, k, _fold_score(out, y[folds[k][1]], n_classes, settings["scoring"], per_model))
                for (index, k), out in zip(models, outcomes, strict=True)]


def _fold_score(out, y_test, n_classes, scoring, fit_time) -> dict:
    """One model's outcome as the skorch engine's folds give it (``FoldGather`` takes both)."""
    if out.error is not None:
        return dict(error=out.error)
    try:
        score, accuracy = score_probabilities(y_test, out.proba, np.arange(n_classes), scoring)
    except DivergedError as exc:
        return dict(error=f"diverged: {exc}")
    return dict(score=score, accuracy=accuracy, fit_time=fit_time, epochs=out.epochs, error=None)


def evaluate_batched(configs: dict[int, dict], seeds: dict[int, int], X, y, folds, n_classes: int, *,
                     device="cpu", max_epochs=100, batch_size=128, patience=15, scoring="neg_log_loss",
                     max_models_per_chunk: int | None = None, parallel=None, n_jobs: int = 1,
                     eval_batch: int | None = None, on_start=None, states_dir=None, keep_states: bool = False,
                     threads=None, remote: bool = False, run_id: str = "", fold_ids=None):
    """Cross-validate many MLP configs at once; yields ``[(index, CVResult), ...]`` as chunks come
    back: the configs whose last fold the chunk held (maybe none).

    Parameters
    ----------
    configs : dict
        ``{trial index: config}``, every one ``batchable``.
    seeds : dict
        ``{trial index: torch seed}`` (the skorch engine's ``random_state``).
    folds : list of (train_idx, test_idx)
        As ``make_folds`` gives them.
    max_models_per_chunk : int, optional
        (config, fold) models trained together; default: ``auto_models_per_chunk``.
    parallel : joblib.Parallel, optional
        On the CPU, chunks run in it on ``n_jobs`` jobs, each with cores // jobs threads; with
        ``return_as="generator_unordered"`` (as the search uses) each chunk is yielded as soon as
        it is done, with a list-returning ``Parallel`` all at the end. On a GPU chunks run one
        after another in this process.
    threads : int or dict, optional
        Torch threads per chunk (``Backend.threads``); default ``threads_per_job`` of the busy jobs.
    remote : bool
        The jobs are a cluster's workers (``--backend dask``): every chunk goes to ``parallel``,
        also on a GPU or with one job.
    run_id : str
        With ``states_dir``: the run's digest, part of the owner each continuation state carries.
    fold_ids : list of int, optional
        Train only these folds (fold racing); each keeps its own index, so with one model per chunk
        (the CPU's) its fit is the one a run of every fold makes; a chunk of several models then
        groups one fold of several configs, whose dropout masks are other draws.
    """
    bad = [i for i, c in configs.items() if not batchable(c)]
    if bad:
        raise UsageError(f"the batched engine trains MLPs with adam or rmsprop (no momentum) and plain "
                         f"cross-entropy; trials {bad[:5]} are not (trial {bad[0]}: "
                         f"{unbatchable_reason(configs[bad[0]])}); run them with {param('engine')} skorch")
    if not configs:
        return
    if not remote:  # this machine's device, checked before a chunk starts (a worker's is checked there)
        device = resolve_device(device)
    on_gpu = str(device).startswith("cuda")
    eval_batch = eval_batch or (4096 if on_gpu else 1024)
    if max_models_per_chunk is None:
        max_models_per_chunk = auto_models_per_chunk(configs, int(np.prod(X.shape[1:])), n_classes,
                                                     batch_size, device, len(folds), eval_batch)
    settings = dict(device=device, max_epochs=max_epochs, batch_size=batch_size, patience=patience,
                    scoring=scoring, eval_batch=eval_batch, states_dir=states_dir, keep_states=keep_states,
                    run_id=run_id)
    fold_ids = list(range(len(folds))) if fold_ids is None else list(fold_ids)
    chunks = plan_chunks(configs, fold_ids, batch_size, max_models_per_chunk)

    handed_out: set[int] = set()
    gather = FoldGather(fold_ids)

    def collect(results):  # the configs whose last fold these results held
        return [(i, r) for i, k, outcome in results if (r := gather.add(i, k, outcome)) is not None]

    def started(chunk):  # the chunk's configs are handed out now (on_start once per config)
        for index, _ in chunk:
            if index not in handed_out:
                handed_out.add(index)
                if on_start is not None:
                    on_start(index)
        return chunk

    if parallel is None or (not remote and (on_gpu or n_jobs <= 1)):
        for chunk in chunks:
            yield collect(_run_chunk(started(chunk), _configs_of(chunk, configs), seeds, X, y, folds, n_classes,
                                     settings, threads))
        gather.check_empty()
        return
    # with a Parallel(return_as="generator_unordered") each chunk comes back as soon as it is done
    # and its job takes the next one (no wave waits for its slowest chunk)
    if threads is None:
        threads = threads_per_job(min(n_jobs, len(chunks)))  # the jobs that will be busy
    for results in parallel(delayed(_run_chunk)(started(chunk), _configs_of(chunk, configs), seeds, X, y, folds,
                                                n_classes, settings, threads) for chunk in chunks):
        yield collect(results)
    gather.check_empty()


def _configs_of(chunk, configs):
    """The configs a chunk's models need (a job gets these, not all the run's)."""
    return {i: configs[i] for i, _ in chunk}

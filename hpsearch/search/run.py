"""The run: its folder and lock, the trial store, the strategy and its ``evaluate`` seam
(``hpsearch.search.evaluator``), the progress bar, Ctrl-C and the exports.

The loop names no strategy and no engine: ``make_strategy(settings).run(evaluate)`` decides which
configs get how many epochs; ``Evaluator`` brings them there with the run's engine, skips what is
already stored (so a resumed run continues the rung in progress without re-training a finished
(config, rung)), streams each result to the store and keeps the ranking files current.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data import load_dataset
from ..data.dataset import Dataset
from ..engines.cv import make_folds
from ..engines.seam import RunContext
from ..engines.stack_fit import unbatchable_reason
from ..errors import UsageError, param, plural, shell
from ..jobs.backends import open_backend
from ..jobs.resident import release_resident
from ..jobs.resources import keeps_rng, physical_memory
from ..rundir.atomic import atomic_write_text
from ..rundir.chance import chance_levels
from ..rundir.exports import results_frame, trend_of, write_exports
from ..rundir.lock import RunLock
from ..rundir.names import DATASET_FILE, SETTINGS_FILE, SPACE_FILE, STATES_DIR
from ..rundir.run_info import check_source, read_json, record_source, write_dataset_file
from ..rundir.store import TrialStore, stored_fingerprint
from ..settings import SearchSettings, fingerprint
from ..space.checks import check_modules_for_data, check_space_fits_memory, check_space_for_data
from ..space.search_space import SearchSpace, load_space, module_folder
from ..strategies import make_strategy
from ..tasks import VALID_SPLITS
from ..training.models import is_user_model
from ..training.net import resolve_device
from .evaluator import Evaluator
from .interrupt import ClusterLost, InterruptFlag, SearchInterrupted

__all__ = ["run_search", "default_run_dir"]


def default_run_dir(settings: SearchSettings, space: SearchSpace) -> Path:
    """``results/<dataset>_<space>_seed<seed>`` (plus the strategy unless random): the same
    command finds (and resumes) its run."""
    strategy = "" if settings.strategy == "random" else f"_{settings.strategy}"
    return Path("results") / f"{settings.dataset}_{space.name}{strategy}_seed{settings.seed}"


def _prepare_run_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{param('out')} {path} is a file, not a folder; name a new folder, or a run folder to "
                         "resume")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{param('out')} {path} is not writable ({exc.strerror}); choose a folder you can "
                         "write to") from None
    return path


def _check_space_for(strategy, space: SearchSpace) -> None:
    if strategy.continues and "max_epochs" in space.params:
        raise UsageError(f"{param('strategy')} {strategy.name} gives each rung its epochs, but the space "
                         f"{space.name!r} sets max_epochs; remove it from the space and pass {param('max_epochs')}")
    schedules = set(space.params["schedule"].support()) - {"none"} if "schedule" in space.params else set()
    if strategy.continues and schedules:
        raise UsageError(f"{param('strategy')} {strategy.name} continues each survivor at a longer budget, which "
                         f"would change its learning-rate schedule ({', '.join(sorted(schedules))}) midway; use "
                         f"{param('strategy')} random or tpe with a schedule, or schedule = \"none\" in the space "
                         f"(retrain with {param('schedule')})")
    if strategy.continues and "loss" in space.params and "worst_class" in space.params["loss"].support():
        # its rounds x round_epochs are the whole fit at every rung: each rung would score the last one's net
        raise UsageError(f"{param('strategy')} {strategy.name} gives each rung its epochs, but loss 'worst_class' "
                         "trains rounds x round_epochs whatever the budget, so every rung would score the same "
                         f"fit; use {param('strategy')} random or tpe with loss = \"worst_class\"")


def _check_early_stopping_room(settings: SearchSettings, folds, dataset: Dataset) -> None:
    """Refused before the first fit: a training fold too small for early stopping's split would fail
    every config (a stratified split needs some class with a member in each of its parts)."""
    if settings.patience <= 0:
        return
    smallest = min(len(train) for train, _ in folds)
    fix = f"pass {param('patience')} 0, fewer folds ({param('cv')}), or more images"
    if smallest < VALID_SPLITS:
        raise UsageError(f"{param('patience')} {settings.patience}: early stopping holds out a fifth of each "
                         f"training fold ({VALID_SPLITS} splits), but a fold trains on only {smallest} images; {fix}")
    if not dataset.task.valid_split().stratified:
        return
    counts = [np.bincount(dataset.y_train[train], minlength=dataset.n_classes) for train, _ in folds]
    largest = min(c.max() for c in counts)
    if largest < VALID_SPLITS:
        raise UsageError(f"{param('patience')} {settings.patience}: early stopping holds out a fifth of each "
                         f"training fold, stratified ({VALID_SPLITS} splits), but in a fold no class has more "
                         f"than {largest} images; {fix}")
    few = np.min(counts, axis=0)
    if few.min() < VALID_SPLITS:  # said once here, where scikit-learn would warn on every fit
        names = [str(dataset.class_names[c]) for c in np.flatnonzero(few < VALID_SPLITS)]
        said = f"class {names[0]} has" if len(names) == 1 else \
            f"{len(names)} classes ({', '.join(names[:5])}{', ...' * (len(names) > 5)}) have"
        print(f"early stopping: {said} "
              f"as few as {few.min()} images in a training fold, fewer than "
              f"its {VALID_SPLITS} splits, so some of its validation parts hold none; more images of "
              f"{'it' if len(names) == 1 else 'them'} steady it ({param('patience')} 0: no early stopping)",
              file=sys.stderr)


def _check_out_beside_code(out: Path, module_dir: Path) -> None:
    """A run folder never holds code (hpsearch never imports from one), so it must not hold your module:
    the search would run, and every later step would refuse the module."""
    out, module_dir = out.expanduser().resolve(), module_dir.resolve()
    if out == module_dir or out in module_dir.parents:
        raise UsageError(f"{param('out')} {out} holds your module's folder {module_dir}; a run folder never holds "
                         f"code, so later steps could not import it: pass {param('out')} {out / 'run'} or another "
                         "folder")


def _commands(earlier: dict) -> dict:
    """settings.json's ``argv``, the command that began the run (a resume keeps it, so the report shows
    what made the trials), and ``resumed_argv``, this command when it is another (``--resume RUN``)."""
    began = earlier.get("argv")
    if not began or began == sys.argv:
        return {"argv": sys.argv}
    return {"argv": began, "resumed_argv": sys.argv}


def _kept_words(records: list[dict], run_dir: Path | None = None) -> str:
    """What an interrupted search keeps, counted: ``"3 finished trials are"``, the rungs that configs
    still in the search finished (halving's first rung: no trial is finished yet, and its work is kept),
    and the folds trained of configs with no rung yet (their states in ``run_dir``: a resume goes on
    from them; a raced rung is stored only once its race is decided)."""
    done = sum(1 for r in records if r["state"] != "RUNNING")
    rungs = sum(len(r.get("rungs") or ()) for r in records if r["state"] == "RUNNING")
    stored = {r.get("index") for r in records if r.get("rungs")}  # (the store lists only trials with a rung)
    folds = 0 if run_dir is None else sum(
        len(list(folder.glob("fold*.pt"))) for folder in (run_dir / STATES_DIR).glob("*")
        if folder.name.isdigit() and int(folder.name) not in stored)
    parts = [plural(rungs, "finished rung") if rungs else "", plural(folds, "trained fold") if folds else ""]
    still = " and ".join(p for p in parts if p)
    said = plural(done, "finished trial") + (f" and {still} of configs still in the search" if still else "")
    return said + (" is" if done == 1 and not still else " are")


def _keep_proposal_batch(run_dir: Path, stored: dict, jobs: int, unfinished: bool) -> None:
    """TPE proposes one config per job at a time, so its configs depend on how many jobs ask: a resume
    with another number says so (its configs from here are not a straight run's), and the number is
    kept in settings.json (``proposal_batch``) for the next resume."""
    before = stored.get("proposal_batch")
    if unfinished and before is not None and before != jobs:
        print(f"hpsearch: note: this run's TPE proposed {plural(before, 'config')} at a time and now proposes {jobs} "
              f"({param('n_jobs')} {stored.get('n_jobs')}), so the configs it proposes from here differ from an "
              f"uninterrupted run's; {param('n_jobs')} {before} proposes as it did", file=sys.stderr)
    atomic_write_text(run_dir / SETTINGS_FILE, json.dumps({**stored, "proposal_batch": jobs}, indent=2) + "\n")


def _unbatched_choices(space) -> list[str]:
    """Why the space's choices (a CNN model, an SGD optimizer, a schedule) or the ends of its ranges (a
    momentum or negative_slope range) cannot be batched, one reason each: a built-in CNN fell back to
    skorch without a word, as if the flag had done its work."""
    reasons = []
    for name, dist in space.params.items():
        for value in dist.support():
            reason = unbatchable_reason({name: value})
            if reason is not None and reason not in reasons:
                reasons.append(reason)
    return reasons


def _check_n_keeps_stored(store: TrialStore, n: int, run_dir: Path) -> None:
    """A resume may grow ``--n`` or shrink it to the trials not yet scored, never below those stored:
    settings.json would then say n configs while trials.csv ranks more."""
    beyond = [rec["index"] for rec in store.records() if rec["index"] >= n]
    if beyond:
        last = max(beyond)
        raise UsageError(f"{run_dir} already holds {len(beyond)} scored trial{'s' * (len(beyond) > 1)} numbered "
                         f"{n} or above (up to {last}), beyond {param('n')} {n}; resume with {param('n')} "
                         f"{last + 1} or more, or pass a different {param('out')} for a new search of {n}")


@keeps_rng
def run_search(settings: SearchSettings, dataset: Dataset | None = None, backend=None,
               hold: contextlib.ExitStack | None = None) -> Path:
    """Run (or resume) a search and return its run folder.

    Every finished (config, rung) is committed to ``<run>/trials.db`` and the ranking files are
    kept current. Raises ``SearchInterrupted`` on Ctrl-C with all finished work kept (``ClusterLost``
    when a Dask cluster was left without workers). ``backend``: an open ``hpsearch.jobs.backends``
    backend to run the jobs on (default: the one ``settings.backend`` names, opened and closed here).
    ``hold``: the run folder's lock goes into it and stays held after the search, so that what the
    caller does next there (the command line's retraining and pictures) follows with no gap for
    another command to write in. The caller's torch random state is put back (``keeps_rng``), and it runs
    from any thread (Ctrl-C is then the main thread's to handle).
    """
    settings.validate()
    asked = settings.device  # stored as given: a run searched with auto resumes on whatever this machine has
    if settings.backend != "dask":  # on Dask the workers have the device (checked there), not this machine
        settings = replace(settings, device=resolve_device(settings.device))
    strategy = make_strategy(settings)
    space = load_space(settings.space, settings.module_path)
    own_module = any(is_user_model(kind) for kind in space.params["model"].support())
    if settings.module_path is not None and not own_module:
        raise UsageError(f"{param('module_path')} {settings.module_path} says where your network's module is, but the "
                         f"space {space.name!r} names none (model = \"module:Class\"); leave it out")
    _check_space_for(strategy, space)
    given = dataset  # a Dataset object of the caller's: kept in the run folder, so later steps find it
    if dataset is None:
        dataset = load_dataset(settings.dataset, settings.data_dir, **settings.dataset_options(),
                               progress=None if settings.progress else False)
    if settings.max_train is not None and settings.max_train >= len(dataset.y_train):
        # the whole set, stored as such: a later step or resume without the flag is the same run
        print(f"{param('max_train')} {settings.max_train} is no fewer than the {len(dataset.y_train):,} training "
              f"images of {dataset.name}: all of them are used", file=sys.stderr)
        settings = replace(settings, max_train=None)
    dataset = dataset.training_slice(settings.max_train, settings.seed)
    check_space_for_data(space, dataset)  # a net too deep for the images: refused before the first fit
    if settings.backend != "dask" and settings.device == "cpu":  # (a Dask worker has its own memory)
        check_space_fits_memory(space, dataset, physical_memory())
    check_modules_for_data(space, dataset, settings.space, settings.seed)  # your module: run once on blank images
    try:
        folds = make_folds(dataset.y_train, settings.cv, settings.seed, dataset.class_names)
    except UsageError as exc:
        if settings.max_train is None:
            raise
        raise UsageError(f"{exc}: the training images are a {param('max_train')} {settings.max_train} slice; raise "
                         f"{param('max_train')} or lower {param('cv')}") from None
    _check_early_stopping_room(settings, folds, dataset)
    if settings.engine == "batched" and dataset.task.batched_engine_reason:
        print(f"{param('engine')} batched: {dataset.name} has {dataset.task.batched_engine_reason}; "
              "every config trains on the skorch engine", file=sys.stderr)
    elif settings.engine == "batched":
        for reason in _unbatched_choices(space):  # said once here, not per config
            print(f"{param('engine')} batched: {reason}; its configs train on the skorch engine", file=sys.stderr)
    out = Path(settings.out) if settings.out else default_run_dir(settings, space)
    if own_module:
        _check_out_beside_code(out, Path(module_folder(settings.space, settings.module_path)))
    # only now, with every setting, the space and the data checked, does the run folder appear
    run_dir = _prepare_run_dir(out)
    lock = RunLock(run_dir)
    if hold is not None:
        hold.enter_context(lock)
    with contextlib.nullcontext() if hold is not None else lock:
        made = (stored_fingerprint(run_dir) or {}).get("strategy")
        settings = type(strategy).settle(settings, made)  # automatic defaults: as the run began, else today's
        strategy = make_strategy(settings)
        made_with = fingerprint(settings, space, dataset)
        store = TrialStore(run_dir, made_with, metric=settings.scoring)
        source = check_source(run_dir, dataset)  # the same settings on changed data: refused, not re-split
        _check_n_keeps_stored(store, settings.n, run_dir)
        # said once the run folder has accepted the search (a refused resume says only why)
        for said in (strategy.plan_line(settings.cv), strategy.describe()):
            if said is not None:
                print(said)
        if space.draws_one_config() and settings.n > 1 and not len(store):  # (a resume's run said it at its start)
            print(f"hpsearch: note: the space {space.name!r} draws one config: {param('n')} {settings.n} trains it "
                  f"{settings.n} times, with only the initial weights differing (a spread over seeds, not a search); "
                  f"{param('n')} 1 trains it once", file=sys.stderr)
        atomic_write_text(run_dir / SPACE_FILE, space.source)
        earlier = read_json(run_dir / SETTINGS_FILE, replace_damaged=True)
        stored = {**asdict(settings), **_commands(earlier), "dataset_name": dataset.name, "device": asked,
                  "chance": chance_levels(dataset.y_train, settings.scoring)}
        if earlier.get("space") and Path(settings.space).resolve() == (run_dir / SPACE_FILE).resolve():
            stored["space"] = earlier["space"]  # a --resume reads the stored copy: the run keeps its space's name
        if settings.data_dir is not None:  # later steps may run from another folder
            stored["data_dir"] = str(Path(settings.data_dir).expanduser().resolve())
        if own_module:
            stored["module_path"] = module_folder(settings.space, settings.module_path)  # resume, retrain, winner
        if given is not None:
            write_dataset_file(run_dir / DATASET_FILE, given)
            stored["dataset_file"] = DATASET_FILE
        record_source(run_dir, dataset, source)
        if "proposal_batch" in earlier:
            stored["proposal_batch"] = earlier["proposal_batch"]  # (compared once the jobs are known)
        atomic_write_text(run_dir / SETTINGS_FILE, json.dumps(stored, indent=2) + "\n")
        own = backend is None
        backend = open_backend(settings.backend, settings.scheduler) if own else backend
        try:
            if strategy.continues and not backend.sees(run_dir):
                raise UsageError(f"{param('strategy')} {settings.strategy} keeps each (config, fold)'s state in "
                                 f"{run_dir}/states between rungs, and some Dask workers do not see that folder; "
                                 f"put the run folder ({param('out')}) on a filesystem every worker mounts at "
                                 f"the same path, "
                                 f"or use {param('strategy')} random or tpe")
            _run_strategy(settings, dataset, space, store, strategy, folds, run_dir, backend, stored,
                          made_with.get("module_code"))
        finally:
            if own:
                backend.close()
        _warn_failures(results_frame(store.records()))
    return run_dir


def _run_strategy(settings, dataset, space, store, strategy, folds, run_dir, backend, stored, module_code):
    # On the CPU the jobs take fold tasks of any config (one stream), so up to one job per core
    # even when there are fewer folds than cores; on a GPU, at most one job per fold shares it.
    on_gpu = str(settings.device).startswith("cuda") and backend.name == "loky"
    jobs = backend.jobs(settings.n_jobs, len(folds) if on_gpu else settings.n * len(folds))
    if strategy.proposes_in_batches:
        unfinished = sum(1 for r in store.records() if r["state"] != "RUNNING") < settings.n
        _keep_proposal_batch(run_dir, stored, jobs, unfinished)
    plan = strategy.plan()
    single = len(plan) == 1
    bar = tqdm(total=sum(n for n, _ in plan), desc="configs" if single else "rungs", unit="cfg",
               disable=not settings.progress, dynamic_ncols=True)
    try:
        shared = [dataset.y_train, *(rows for fold in folds for rows in fold)]
        with InterruptFlag() as flag, backend.parallel(jobs, dataset.X_train, shared) as (parallel, X):
            context = RunContext(settings, dataset, X, folds, parallel, jobs, run_dir, strategy.continues,
                                 stop=lambda: flag.raised, backend=backend, run_id=store.digest,
                                 module_code=module_code)
            evaluate = Evaluator(context, space, store, bar)
            strategy.run(evaluate)
            evaluate.close()
    except (KeyboardInterrupt, Exception) as exc:
        lost = backend.failure(exc)  # the cluster's own failure (workers gone), or None
        if not isinstance(exc, KeyboardInterrupt) and lost is None:
            raise
        # the throttled exports catch up with the store
        write_exports(run_dir, results_frame(store.records(), chance_levels(dataset.y_train, settings.scoring),
                                             trend_of(settings)))
        kept = _kept_words(store.records(), run_dir)
        if lost is not None:
            raise ClusterLost(
                f"the Dask cluster at {backend.scheduler} {lost}: the search stopped; {kept} stored in {run_dir}; "
                f"{backend.restart_advice()} and run the same command again to continue") from None
        raise SearchInterrupted(
            f"interrupted: {kept} stored in {run_dir}; run the same command again (or add --resume "
            f"{shell(run_dir)}) to continue") from None
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

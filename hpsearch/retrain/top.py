"""Retrain the best configs of a search on the whole training set, crown a winner, save it.

This is section 4.4 of the Lab 3 seed: the top ``k`` configs of the ranking are each trained
again on the *whole* training set (no cross-validation, no early stopping) for a fixed number of
epochs, then scored on the test set, which the search never saw. The winner is the one with the best
search (CV) rank that retrained without failing (``winner_by="cv"``, the default): the test set plays
no part in the choice, so its accuracy is an honest estimate. ``winner_by="test"`` is the seed's rule,
the most accurate on the test set, which makes that number optimistic (labelled so). As in the seed,
each new best is saved the moment it appears, so an interrupted retraining still leaves the best net
so far.

Learning curves: the net trains on every training image, so no validation split exists. The test
set's loss and accuracy are *recorded* after each epoch (skorch's ``valid_loss``/``valid_acc``
columns) so the learning curves have a held-out curve, but nothing reads them during training:
no early stopping, no best-epoch checkpoint, no epoch choice (the checkpoints save each epoch's
state to resume, whatever its test loss), so the weights are exactly those a run without the monitor
would give. Pass ``monitor_test=False`` to keep the test set out of training entirely.

Files written into the run folder:

``retrain.csv``
    One row per retrained config, the winner first (then by the rule's order); ``chosen_by`` names the rule.
    ``in_top`` is False for a row kept from an earlier, larger ``top``: listed after the others, never
    chosen, and reused when ``top`` grows again.
``retrain_weights/<trial>.pt``
    Each retrained config's weights, optimizer state and history, so that another ``winner_by`` or a
    smaller ``top`` crowns its winner from the rows already there, without training.
``winner.pt``
    The winner's bundle: weights, config, dataset name, image shape, class names, test accuracy,
    epochs and training history. ``load_winner(run_dir)`` rebuilds the fitted skorch net.
``summary.json``
    The run's summary: search settings, the retraining and the winner.

Threads and jobs: on the CPU the configs retrain in parallel joblib jobs (at most one per core),
each with ``cores // jobs`` torch threads, as the search places them (on a machine shared with other
work, more OpenMP threads than cores make every fit many times slower); on a GPU one at a time.
One progress bar counts the epochs of every config in flight.

Resume: each finished config's row is in ``retrain.csv`` (with its ``retrain_epochs`` and
``schedule``) the moment it finishes; running the same retraining again trains only the configs that
have no row yet, so a finished retraining is never redone. Another ``winner_by`` or ``top`` trains only
the configs of the new top without a row, and chooses the winner again among the top's rows; rows with
other ``retrain_epochs`` or another ``schedule`` are another retraining: those configs are trained again
(and such rows of configs beyond the top are dropped). A config cut short goes on from its last
checkpoint (``<run>/retrain_states/<trial>.pt``, every ``checkpoint_every`` epochs: weights,
optimizer, schedule, history, random state; ``hpsearch.rundir.checkpoints``), not from epoch 0, and ends with
the weights of an uninterrupted fit.

Lock: the retraining holds the run's lock (``hpsearch.rundir.lock.RunLock``), so it is refused while a
search or another retraining writes the run, and a search is refused while it retrains.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import delayed

from ..data.dataset import Dataset
from ..errors import UsageError, check_whole, param, shell
from ..jobs.backends import LokyBackend
from ..jobs.resources import keeps_rng
from ..jobs.workers import check_missing
from ..rundir.checkpoints import remove_checkpoint
from ..rundir.lock import RunLock
from ..rundir.names import RETRAIN_FILE, WINNER_FILE
from ..rundir.run_info import check_code_of, check_settings_of, read_settings, run_dataset
from ..rundir.states import run_digest
from ..rundir.store import run_fingerprint
from ..search.interrupt import InterruptFlag, SearchInterrupted
from ..settings import WINNER_RULES, retrain_defaults
from ..training.models.shipping import shipped
from ..training.net import DEFAULT_BATCH_SIZE, resolve_device
from ..training.schedules import check_schedule_name
from ..winner.bundle import load_winner, save_winner
from .files import write_summary, write_table
from .job import checkpoint_meta, retrain_one, say_resumed
from .progress import EpochBar, fit_sink
from .ranking import ranking, scored_counts, top_configs
from .reuse import crowned, drop_weights, keep_weights, stored_rows, stored_weights, winner_bundle

__all__ = ["retrain_top", "RetrainResult", "top_configs", "scored_counts", "LOCK_FIX"]

LOCK_FIX = "wait for it to finish (or stop it), then run this command again"  # RunLock's advice here

TEST_MONITOR_LABEL = "test loss (recorded each epoch; never used to train, stop or choose)"


_DEFAULTS = retrain_defaults()  # the Lab 3 seed's 15 configs x 300 epochs, declared in hpsearch.settings


@dataclass
class RetrainResult:
    """What ``retrain_top`` did.

    Attributes
    ----------
    table : DataFrame
        The rows of this ``top`` (``retrain.csv`` also keeps rows beyond it), the winner first.
    winner : dict
        The winner's row of ``table`` as a dict (``trial``, ``config``, ``test_accuracy`` ...).
    net : skorch net
        The fitted winning net (as saved in ``winner.pt``).
    run_dir : Path
    trained : int
        How many configs this call trained (the others were retrained before: resume).
    """

    table: pd.DataFrame
    winner: dict
    net: object
    run_dir: Path
    trained: int = 0


def _key(row: dict, winner_by: str) -> tuple:
    """How rows rank for the winner: by the search's (CV) rank alone (``cv``: the test set plays no part), or
    by test accuracy and then search rank (``test``, the seed's rule); either way the winner does not
    depend on which job finished first."""
    return (-row["search_rank"],) if winner_by == "cv" else (row["test_accuracy"], -row["search_rank"])


def _better(row: dict, best: dict | None, winner_by: str) -> bool:
    if row["error"] or np.isnan(row["test_accuracy"]):
        return False
    return best is None or _key(row, winner_by) > _key(best, winner_by)


def _best(rows: list[dict], winner_by: str) -> dict | None:
    best = None
    for row in rows:
        best = row if _better(row, best, winner_by) else best
    return best


def _winner_extra(row: dict, epochs: int, monitor_test: bool, winner_by: str) -> dict:
    """What winner.pt says of the winner beyond its bundle (read back by ``read_winner_info``)."""
    return {"trial": row["trial"], "search_rank": row["search_rank"], "cv_score": row["cv_score"],
            "retrain_epochs": epochs, "valid_label": TEST_MONITOR_LABEL if monitor_test else None,
            "winner_by": winner_by}


@keeps_rng
def retrain_top(run_dir, top: int = _DEFAULTS["top"], retrain_epochs: int = _DEFAULTS["retrain_epochs"], *,
                device: str = "cpu", dataset: Dataset | None = None, monitor_test: bool = True,
                progress: bool = True, n_jobs: int = -1, backend=None, schedule: str | None = None,
                checkpoint_every: int = _DEFAULTS["checkpoint_every"],
                winner_by: str = _DEFAULTS["winner_by"], lock: bool = True) -> RetrainResult:
    """Retrain the ``top`` best configs of a search on the whole training set and crown a winner.

    Parameters
    ----------
    run_dir : path
        A run folder made by ``run_search`` (``trials.db``, ``settings.json``).
    top : int
        How many configs of the ranking to retrain (fewer if fewer finished).
    retrain_epochs : int
        Epochs of each retraining; no early stopping (the seed's 300).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    dataset : Dataset, optional
        The data to use; by default the run's dataset is loaded again. Its name must match.
    monitor_test : bool
        Record the test loss after each epoch for the learning curves (see the module notes).
    progress : bool
        Show a progress bar over the epochs of every config.
    n_jobs : int
        Configs retrained at once on the CPU (``-1``: one per core); each job gets
        ``cores // jobs`` torch threads. On a GPU one at a time.
    schedule : str, optional
        A learning-rate schedule for every config (``hpsearch.training.schedules``: none, cosine, step,
        plateau, onecycle), over the ``retrain_epochs``; default: each config's own (none unless
        the space searched one).
    checkpoint_every : int
        Save each config's whole training state every this many epochs (``0``: never), so that the
        same call after an interruption goes on from there (``hpsearch.rundir.checkpoints``).
    winner_by : {"cv", "test"}
        ``"cv"`` (default): the winner is the retrained config with the best search rank (its CV score),
        so its test accuracy, read after the choice, is an unbiased estimate; every other config's test
        accuracy is reported too, not used for the choice. ``"test"``: the Lab 3 seed's rule, the best
        test accuracy, which makes the winner's test accuracy optimistic (it is labelled so).
    backend : hpsearch.jobs.backends backend, optional
        Where the configs retrain: loky processes here (default), or an open ``DaskBackend``
        (one config per worker task slot, the data scattered once; progress per config, not per epoch).
    lock : bool
        Hold the run's lock (``RunLock``) while retraining, refused while a search or another retraining
        holds it; ``False`` only where the caller holds it already (one process cannot take it twice).

    Returns
    -------
    RetrainResult
        The table of the ``top`` configs (``retrain.csv`` also keeps rows beyond them), the winner and
        its fitted net. The winner is saved to ``winner.pt`` and named in ``summary.json``.
    """
    run_dir = Path(run_dir)
    check_whole("top", top, 1)
    check_whole("retrain_epochs", retrain_epochs, 1)
    check_whole("checkpoint_every", checkpoint_every, 0)
    if backend is None or backend.name == "loky":  # this machine's (a Dask worker's is checked there)
        device = resolve_device(device)  # before anything is written: one not here failed every row of retrain.csv
    if winner_by not in WINNER_RULES:
        raise UsageError(f"{param('winner_by')} must be one of {', '.join(WINNER_RULES)}, got {winner_by!r}")
    if schedule is not None:
        check_schedule_name(schedule)
    settings = read_settings(run_dir)
    check_settings_of(run_dir, settings)
    check_code_of(run_dir)
    name = settings.get("dataset_name", settings.get("dataset"))
    if dataset is not None and dataset.name != name:
        raise UsageError(f"dataset {dataset.name!r} is not the run's dataset {name!r}; pass the "
                         "dataset the search used (or none, to load it)")
    with RunLock(run_dir, fix=LOCK_FIX) if lock else contextlib.nullcontext():
        return _retrain_top(run_dir, settings, top, retrain_epochs, device=device, dataset=dataset,
                            monitor_test=monitor_test, progress=progress, n_jobs=n_jobs, backend=backend,
                            schedule=schedule, checkpoint_every=checkpoint_every, winner_by=winner_by)


def _retrain_top(run_dir: Path, settings: dict, top: int, retrain_epochs: int, *, device, dataset, monitor_test,
                 progress, n_jobs, backend, schedule, checkpoint_every, winner_by) -> RetrainResult:
    """``retrain_top``'s work, its arguments checked and the run locked."""
    if dataset is None:
        dataset = run_dataset(run_dir)
    if not len(dataset.y_test):  # each retraining would fail on it, after its training
        raise UsageError(f"dataset {dataset.name!r} holds no test images; the retrained configs are scored on them: "
                         "pass a dataset with a test set")
    batch_size = int(settings.get("batch_size", DEFAULT_BATCH_SIZE))
    seed = int(settings.get("seed", 0))
    ranked, _ = ranking(run_dir)
    if schedule is not None:  # --schedule beats the config's own
        ranked = [{**c, "config": {**c["config"], "schedule": schedule}} for c in ranked]
    candidates = ranked[:top]
    chosen = {c["trial"] for c in candidates}
    made = run_fingerprint(run_dir)
    run_id = run_digest(made)
    recorded = made.get("module_code") if isinstance(made.get("module_code"), dict) else None

    def owner(cand: dict) -> dict:
        return checkpoint_meta(run_id, cand, retrain_epochs, monitor_test, batch_size, seed)

    def summarize(complete: bool = False) -> tuple:  # beside every new winner.pt (files.write_summary)
        return write_summary(run_dir, settings, rows, {c["trial"]: c["config"] for c in candidates}, retrain_epochs,
                             device, monitor_test, winner_by, complete)

    def extra(row: dict) -> dict:
        return _winner_extra(row, retrain_epochs, monitor_test, winner_by)

    stored = stored_rows(run_dir, ranked, retrain_epochs)
    rows = [stored[c["trial"]] for c in candidates if c["trial"] in stored]
    beyond = [row for trial, row in stored.items() if trial not in chosen]  # kept for a larger top, never chosen
    # The winner among the rows already there, chosen again (this top, this rule) from the weights kept
    # beside them: no training. A row whose weights are not kept (a retraining from before they were)
    # cannot be crowned: that config is retrained (the same seed gives the same row).
    bundle = winner_bundle(run_dir)
    while (best := _best(rows, winner_by)) is not None:
        cand = _candidate(candidates, best["trial"])
        if crowned(bundle, cand, extra(best)):
            break
        payload = stored_weights(run_dir, bundle, cand, owner(cand), extra(best))
        if payload is not None:
            save_winner(payload, run_dir, dataset, config=cand["config"], test_accuracy=best["test_accuracy"],
                        extra=extra(best))
            summarize()
            break
        rows = [r for r in rows if r["trial"] != best["trial"]]
    todo = [c for c in candidates if c["trial"] not in {r["trial"] for r in rows}]
    if rows:  # the rows as this call ranks them, at once: winner.pt may have changed above
        write_table(run_dir, rows, beyond, winner_by)

    # said with the bars off too (logs, CI): which finished epochs a checkpoint saves is part of the record
    say_resumed(run_dir, todo, retrain_epochs, monitor_test, batch_size, seed, checkpoint_every)
    backend = backend or LokyBackend()
    remote = backend.name != "loky"
    on_gpu = str(device).startswith("cuda") and not remote
    jobs = 1 if on_gpu else backend.jobs(n_jobs, max(1, len(todo)))
    threads = backend.threads(jobs)
    checkpoints = run_dir if backend.sees(run_dir) else None  # a worker elsewhere cannot write them here
    bar = EpochBar(len(todo) * retrain_epochs, len(todo), desc="retrain", enabled=progress and bool(todo))
    try:
        # on a cluster the dataset is scattered once to every worker, not sent with each config
        with InterruptFlag() as flag, fit_sink(bar, jobs, remote) as sink, \
                backend.parallel(jobs, dataset) as (parallel, dataset):
            results = parallel(delayed(retrain_one)(
                cand, dataset, device=device, epochs=retrain_epochs, batch_size=batch_size, seed=seed,
                monitor_test=monitor_test, threads=threads, sink=sink, run_dir=checkpoints,
                checkpoint_every=checkpoint_every, run_id=run_id,
                **shipped(cand["config"], recorded)) for cand in todo)
            for row, payload in results:
                if flag.raised or row["error"] == "interrupted":
                    raise KeyboardInterrupt
                check_missing(row)  # a job's machine without a module this process has: stop
                rows.append(row)
                cand = _candidate(candidates, row["trial"])
                if payload is not None:  # kept before its row is written: a row always has its weights
                    keep_weights(run_dir, owner(cand), payload)
                if _better(row, best, winner_by):  # each new best is saved the moment it appears
                    best = row
                    save_winner(payload, run_dir, dataset, config=cand["config"],
                                test_accuracy=row["test_accuracy"], extra=extra(row))
                    summarize()
                bar.finished(best["test_accuracy"] if best else None)
                write_table(run_dir, rows, beyond, winner_by)
                remove_checkpoint(run_dir, row["trial"])  # its row is kept: the checkpoint has served
    except KeyboardInterrupt:
        said = (f"{len(rows)} of {len(candidates)} configs are retrained ({RETRAIN_FILE})" if rows else
                "no config is retrained yet")
        if best is not None:  # a winner.pt is named only where there is one
            said += f" and the best so far is in {run_dir / WINNER_FILE}"
        raise SearchInterrupted(
            f"retraining interrupted: {said}; run the same command again (or hpsearch retrain {shell(run_dir)} --top "
            f"{top} --retrain-epochs {retrain_epochs}{f' --schedule {schedule}' if schedule else ''} --winner-by "
            f"{winner_by}) to retrain {'the rest' if rows else 'them'}") from None
    finally:
        bar.close()
    if best is None:
        raise UsageError(f"every one of the {len(rows)} retrained configs failed (see "
                         f"{run_dir / RETRAIN_FILE}, column 'error'); try fewer {param('retrain_epochs')}")
    write_table(run_dir, rows, beyond, winner_by)
    drop_weights(run_dir, {*(r["trial"] for r in rows), *(r["trial"] for r in beyond)})
    table, winner = summarize(complete=True)
    here = "auto" if remote else device  # the winner is loaded on this machine, which a Dask worker's GPU is not
    return RetrainResult(table, winner, load_winner(run_dir, device=resolve_device(here)), run_dir,
                         trained=len(todo))


def _candidate(candidates: list[dict], trial: int) -> dict:
    return next(c for c in candidates if c["trial"] == trial)

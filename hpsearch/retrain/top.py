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
have no row yet, so a finished retraining is never redone. A config cut short goes on from its last
checkpoint (``<run>/retrain_states/<trial>.pt``, every ``checkpoint_every`` epochs: weights,
optimizer, schedule, history, random state; ``hpsearch.rundir.checkpoints``), not from epoch 0, and ends with
the weights of an uninterrupted fit.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import delayed

from ..data.dataset import Dataset
from ..errors import UsageError, check_whole, param
from ..jobs.backends import LokyBackend
from ..rundir.atomic import atomic_write_text
from ..rundir.checkpoints import checkpoint_path, remove_checkpoint, resume_state
from ..rundir.names import RETRAIN_FILE, SUMMARY_FILE, WINNER_FILE
from ..rundir.run_info import read_json, read_settings, run_dataset
from ..rundir.states import run_digest
from ..rundir.store import load_records, load_results, run_fingerprint
from ..search.interrupt import InterruptFlag, SearchInterrupted
from ..settings import WINNER_RULES, retrain_defaults
from ..training.models.user import shipped
from ..training.net import DEFAULT_BATCH_SIZE, resolve_device
from ..training.schedules import check_schedule_name
from ..winner.bundle import load_winner, read_winner_info, save_winner
from .job import checkpoint_meta, retrain_one
from .progress import EpochBar, fit_sink

__all__ = ["retrain_top", "RetrainResult", "top_configs"]






TEST_MONITOR_LABEL = "test loss (recorded each epoch; never used to train, stop or choose)"


_DEFAULTS = retrain_defaults()  # the Lab 3 seed's 15 configs x 300 epochs, declared in hpsearch.settings


@dataclass
class RetrainResult:
    """What ``retrain_top`` did.

    Attributes
    ----------
    table : DataFrame
        ``retrain.csv``'s rows, best test accuracy first.
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


def top_configs(run_dir, top: int) -> list[dict]:
    """The ``top`` best finished trials of a run, best first: dicts with ``trial`` (the config's
    index), ``search_rank``, ``cv_score`` and ``config`` (the config dict as sampled).

    Failed trials (NaN score) are never chosen.
    """
    run_dir = Path(run_dir)
    frame = load_results(run_dir)
    frame = frame[frame["mean_test_score"].notna()]
    if frame.empty:
        raise UsageError(f"{run_dir} has no finished trial to retrain; run (or resume) the search first")
    configs = {record["index"]: record["config"] for record in load_records(run_dir)}
    return [{"trial": int(row.trial), "search_rank": int(row.rank_test_score),
             "cv_score": float(row.mean_test_score), "cv_accuracy": float(row.mean_test_accuracy),
             "config": configs[int(row.trial)]}
            for row in frame.head(top).itertuples()]


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


def _finished_rows(run_dir: Path, candidates: list[dict], epochs: int, winner_by: str) -> list[dict]:
    """Rows of ``retrain.csv`` a former call finished with the same epochs for these candidates,
    kept only while ``winner.pt`` is the best of them (else they are retrained: nothing is guessed)."""
    path = run_dir / RETRAIN_FILE
    if not path.is_file():
        return []
    columns = pd.read_csv(path, nrows=0).columns
    table = pd.read_csv(path, keep_default_na=False, na_values=[""],
                        dtype={c: str for c in columns if c.startswith("param_")})  # written back as read
    if "retrain_epochs" not in table:
        return []
    wanted = {c["trial"]: c["config"].get("schedule", "none") for c in candidates}
    schedules = table["schedule"].fillna("none") if "schedule" in table else pd.Series("none", index=table.index)
    table = table[(table["retrain_epochs"] == epochs) & table["trial"].isin(list(wanted))
                  & (schedules == table["trial"].map(wanted))]
    rows = [{k: v for k, v in row.items() if k not in ("retrain_rank", "winner", "chosen_by")}
            for row in table.to_dict("records")]
    for row in rows:
        row["error"] = "" if pd.isna(row["error"]) else str(row["error"])
    best = _best(rows, winner_by)
    if best is None:
        return rows
    try:
        info = read_winner_info(run_dir)
    except UsageError:
        return []
    same = (info.get("trial") == best["trial"] and info.get("retrain_epochs") == epochs
            and info.get("config", {}).get("schedule", "none") == wanted[best["trial"]])
    return rows if same else []


def retrain_top(run_dir, top: int = _DEFAULTS["top"], retrain_epochs: int = _DEFAULTS["retrain_epochs"], *,
                device: str = "cpu", dataset: Dataset | None = None, monitor_test: bool = True,
                progress: bool = True, n_jobs: int = -1, backend=None, schedule: str | None = None,
                checkpoint_every: int = _DEFAULTS["checkpoint_every"],
                winner_by: str = _DEFAULTS["winner_by"]) -> RetrainResult:
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
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
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

    Returns
    -------
    RetrainResult
        The table (also written to ``retrain.csv``), the winner and its fitted net. The winner is
        saved to ``winner.pt`` and named in ``summary.json``.
    """
    run_dir = Path(run_dir)
    check_whole("top", top, 1)
    check_whole("retrain_epochs", retrain_epochs, 1)
    settings = read_settings(run_dir)
    name = settings.get("dataset_name", settings.get("dataset"))
    if dataset is None:
        dataset = run_dataset(run_dir)
    elif dataset.name != name:
        raise UsageError(f"dataset {dataset.name!r} is not the run's dataset {name!r}; pass the "
                         "dataset the search used (or none, to load it)")
    batch_size = int(settings.get("batch_size", DEFAULT_BATCH_SIZE))
    seed = int(settings.get("seed", 0))
    candidates = top_configs(run_dir, top)
    if schedule is not None:  # --schedule beats the config's own
        check_schedule_name(schedule)
        candidates = [{**c, "config": {**c["config"], "schedule": schedule}} for c in candidates]
    check_whole("checkpoint_every", checkpoint_every, 0)
    if winner_by not in WINNER_RULES:
        raise UsageError(f"{param('winner_by')} must be one of {', '.join(WINNER_RULES)}, got {winner_by!r}")
    rows = _finished_rows(run_dir, candidates, retrain_epochs, winner_by)
    done = {row["trial"] for row in rows}
    todo = [c for c in candidates if c["trial"] not in done]
    best = _best(rows, winner_by)

    if progress:
        _say_resumed(run_dir, todo, retrain_epochs, monitor_test, batch_size, seed, checkpoint_every)
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
                checkpoint_every=checkpoint_every, run_id=run_digest(run_fingerprint(run_dir)),
                **shipped(cand["config"])) for cand in todo)
            for row, payload in results:
                if flag.raised or row["error"] == "interrupted":
                    raise KeyboardInterrupt
                rows.append(row)
                if _better(row, best, winner_by):  # each new best is saved the moment it appears
                    best = row
                    save_winner(payload, run_dir, dataset, config=_config_of(candidates, row["trial"]),
                                test_accuracy=row["test_accuracy"],
                                extra={"trial": row["trial"], "search_rank": row["search_rank"],
                                       "cv_score": row["cv_score"], "retrain_epochs": retrain_epochs,
                                       "valid_label": TEST_MONITOR_LABEL if monitor_test else None,
                                       "winner_by": winner_by})
                bar.finished(best["test_accuracy"] if best else None)
                atomic_write_text(run_dir / RETRAIN_FILE, _ranked(rows, winner_by).to_csv(index=False))
                remove_checkpoint(run_dir, row["trial"])  # its row is kept: the checkpoint has served
    except KeyboardInterrupt:
        raise SearchInterrupted(
            f"retraining interrupted: {len(rows)} of {len(candidates)} configs are retrained (retrain.csv) "
            f"and the best so far is in {run_dir / WINNER_FILE}; run the same command again (or hpsearch "
            f"retrain {run_dir} --top {top} --retrain-epochs {retrain_epochs}"
            f"{f' --schedule {schedule}' if schedule else ''} --winner-by {winner_by}) to retrain the rest") from None
    finally:
        bar.close()
    if best is None:
        raise UsageError(f"every one of the {len(rows)} retrained configs failed (see "
                         f"{run_dir / RETRAIN_FILE}, column 'error'); try fewer {param('retrain_epochs')}")
    table = _ranked(rows, winner_by)
    atomic_write_text(run_dir / RETRAIN_FILE, table.to_csv(index=False))
    winner = table.iloc[0].to_dict()
    winner["config"] = _config_of(candidates, winner["trial"])
    _write_summary(run_dir, settings, table, winner, retrain_epochs, device, monitor_test, winner_by)
    return RetrainResult(table, winner, load_winner(run_dir, device=resolve_device(device)), run_dir,
                         trained=len(todo))


def _say_resumed(run_dir: Path, todo: list[dict], epochs: int, monitor_test: bool, batch_size: int, seed: int,
                 checkpoint_every: int) -> None:
    """Which configs go on from a checkpoint, and from which epoch (said before the work starts)."""
    if checkpoint_every <= 0:
        return
    run_id = run_digest(run_fingerprint(run_dir))
    for cand in todo:
        path = checkpoint_path(run_dir, cand["trial"])
        if path.is_file():
            state = resume_state(path, checkpoint_meta(run_id, cand, epochs, monitor_test, batch_size, seed))
            if state is not None:
                print(f"trial {cand['trial']} goes on from epoch {len(state['history'])} of {epochs} (its checkpoint)",
                      file=sys.stderr, flush=True)


def _config_of(candidates: list[dict], trial: int) -> dict:
    return next(c["config"] for c in candidates if c["trial"] == trial)


def _ranked(rows: list[dict], winner_by: str) -> pd.DataFrame:
    """The retrained configs, the winner first: by search rank (``cv``; a failed one last) or by test
    accuracy (``test``); ``retrain_rank`` is that order, ``winner`` marks the first."""
    table = pd.DataFrame(rows)
    failed = table["test_accuracy"].isna()
    by = table["search_rank"] if winner_by == "cv" else -table["test_accuracy"]
    order = pd.DataFrame({"failed": failed, "by": by, "search_rank": table["search_rank"]})
    table = table.loc[order.sort_values(["failed", "by", "search_rank"], kind="stable").index].reset_index(drop=True)
    table.insert(0, "retrain_rank", range(1, len(table) + 1))
    table.insert(1, "winner", [i == 0 and not np.isnan(a) for i, a in enumerate(table["test_accuracy"])])
    table.insert(2, "chosen_by", winner_by)
    return table


WINNER_LABELS = {
    "cv": "chosen by its search (CV) rank; the test set was read only after the choice",
    "test": "selected on the test set (the Lab 3 rule): its test accuracy is optimistic",
}


def _write_summary(run_dir, settings, table, winner, retrain_epochs, device, monitor_test, winner_by) -> None:
    path = run_dir / SUMMARY_FILE
    summary = read_json(path, replace_damaged=True)  # a damaged one must not stop a finished retraining
    summary.update({
        "dataset": settings.get("dataset_name", settings.get("dataset")),
        "search": {k: settings.get(k) for k in ("n", "space", "cv", "scoring", "max_epochs", "patience",
                                               "batch_size", "seed", "strategy", "max_train")},
        "retrain": {"top": int(len(table)), "retrain_epochs": retrain_epochs, "device": device,
                    "schedule": winner["config"].get("schedule", "none"),
                    "train_set": "whole training set, no early stopping",
                    "test_monitored_each_epoch": monitor_test, "table": RETRAIN_FILE},
        "winner": {"trial": int(winner["trial"]), "search_rank": int(winner["search_rank"]),
                   "config": winner["config"], "test_accuracy": float(winner["test_accuracy"]),
                   "test_loss": float(winner["test_loss"]), "epochs": int(winner["epochs"]),
                   **{k: float(v) for k, v in winner.items() if k.startswith("test_digit_") or k == "test_exact_match"},
                   "fit_time": float(winner["fit_time"]), "file": WINNER_FILE,
                   "chosen_by": winner_by, "chosen_how": WINNER_LABELS[winner_by]},
    })
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")

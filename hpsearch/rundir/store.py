"""Persistence of a run's trials: an Optuna study in ``<run>/trials.db`` (SQLite).

One Optuna trial per config, numbered like hpsearch's trial index (trials are created in index
order), with its real start and end times. Each rung a config finishes is committed the moment it
finishes, as one user attribute ``rung<k>`` (its budget in epochs and the per-fold scores) plus
Optuna's intermediate value at step = epochs, so a killed process loses only the work in flight.
A config is RUNNING while it may still continue, then COMPLETE (it reached its last rung), PRUNED
(a strategy stopped it; its value is its last score) or FAIL (it diverged or raised; the reason is
kept). ``optuna-dashboard sqlite:///<run>/trials.db`` and Optuna's plots open it as it is.
"""

from __future__ import annotations

import json
import logging
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import sqlalchemy.exc

from ..errors import UsageError, param, plural
from .exports import results_frame, trend_of
from .fingerprints import differences_shown
from .lock import refuse_links_out
from .names import SETTINGS_FILE, TRIALS_CSV, TRIALS_DB
from .states import run_digest

__all__ = ["TrialStore", "load_records", "load_results", "open_study", "run_fingerprint", "STUDY"]

STUDY = "search"
State = optuna.trial.TrialState
optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


def _record(trial: optuna.trial.FrozenTrial) -> dict:
    """A stored trial as plain data: index, config, its rungs in order, and its state."""
    attrs = trial.user_attrs
    rungs = [attrs[f"rung{k}"] for k in range(len(attrs)) if f"rung{k}" in attrs]
    return {"index": attrs["index"], "config": attrs["config"], "rungs": rungs, "state": trial.state.name}


def _read_records(study: optuna.Study, path: Path | None = None) -> dict[int, tuple[int, dict]]:
    """``{index: (trial_id, record)}`` of the trials that have a config; one whose attributes are not of the
    kinds hpsearch writes is the file's damage, named (``path``: trials.db)."""
    records = {}
    for t in study.get_trials(deepcopy=False):
        if "index" not in t.user_attrs or "config" not in t.user_attrs:
            continue
        record = _record(t)
        if not isinstance(record["index"], int) or not isinstance(record["config"], dict) \
                or not all(isinstance(r, dict) and isinstance(r.get("epochs"), int) for r in record["rungs"]):
            raise _damaged(path or Path(TRIALS_DB), f"Optuna's trial {t.number} holds attributes of another kind "
                                                    "than hpsearch writes (index, config, rungs)")
        records[record["index"]] = (t._trial_id, record)
    return records


def _refuse_foreign_trials(study: optuna.Study, run_dir: Path) -> None:
    """Trials made outside hpsearch (study.optimize, enqueue_trial) take Optuna numbers hpsearch's configs
    own: a search cannot go on beside them (it failed with a traceback). hpsearch's own unadopted last
    trial (a run cut off between a sampler's ask and its config) is not one: ``reopen_orphan`` takes it."""
    trials = study.get_trials(deepcopy=False)
    foreign = [t for t in trials if "index" not in t.user_attrs
               and (t.number != len(trials) - 1 or t.state.is_finished() or "fixed_params" in t.system_attrs)]
    if foreign:
        shown = ", ".join(f"{t.number} ({t.state.name})" for t in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise UsageError(f"{run_dir / TRIALS_DB} holds {plural(len(foreign), 'trial')} hpsearch did not make "
                         f"(Optuna's trial {shown}: added by study.optimize or enqueue_trial?); hpsearch numbers its "
                         "trials as its configs, so it cannot search on beside them: put back a copy of trials.db "
                         f"from before, or search in a new {param('out')}")


class TrialStore:
    """The trials of one run, in an Optuna study on SQLite, with an in-memory copy of what is stored
    (read once when the store opens, then kept up to date by its own writes: one writer per run).

    Parameters
    ----------
    run_dir : path
        The run folder; the database is ``run_dir/trials.db``.
    fingerprint : dict
        What makes trials comparable (dataset, space, folds, epochs, strategy ...). Opening an
        existing store with a different fingerprint is refused: its trials would not rank against new ones.
    metric : str
        The objective's name in Optuna (``set_metric_names``), e.g. ``neg_log_loss``.
    """

    def __init__(self, run_dir: Path, fingerprint: dict, metric: str = "score", direction: str = "maximize"):
        self.run_dir = Path(run_dir)
        self.url = f"sqlite:///{self.run_dir / 'trials.db'}"
        self.study = open_study(self.run_dir, create=True, direction=direction)
        self.digest = run_digest(fingerprint)  # the owner this run's continuation states carry
        self._storage = self.study._storage
        stored = self.study.user_attrs.get("fingerprint")
        if stored is not None and not isinstance(stored, dict):
            raise _damaged(self.run_dir / TRIALS_DB, f"its fingerprint is a {type(stored).__name__}, not an object")
        if stored is None:
            self.study.set_user_attr("fingerprint", fingerprint)
            with warnings.catch_warnings():  # set_metric_names is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names([metric])
        elif not (shown := differences_shown(stored, fingerprint)):  # the same space, other comments
            self.digest = run_digest(stored)  # the owner its continuation states carry
        else:
            raise UsageError(
                f"{self.run_dir} holds a search with other settings ({shown}); resume it with the "
                f"same settings, or pass a different {param('out')} for a new search"
            )
        self._trials = _read_records(self.study, self.run_dir / TRIALS_DB)
        _refuse_foreign_trials(self.study, self.run_dir)

    # -- reading -------------------------------------------------------------------------------
    def __contains__(self, index: int) -> bool:
        return index in self._trials

    def __len__(self) -> int:
        return self._storage.get_n_trials(self.study._study_id)

    def config(self, index: int) -> dict:
        return self._trials[index][1]["config"]

    def state(self, index: int) -> str:
        return self._trials[index][1]["state"]

    def rung_result(self, index: int, epochs: int) -> dict | None:
        """The stored result of config ``index`` at a budget of ``epochs``, or None."""
        if index not in self._trials:
            return None
        return next((r for r in self._trials[index][1]["rungs"] if r["epochs"] == epochs), None)

    def records(self) -> list[dict]:
        """The stored trials that finished at least one rung, in trial-index order."""
        return [rec for _, (_, rec) in sorted(self._trials.items()) if rec["rungs"]]

    # -- writing -------------------------------------------------------------------------------
    def create(self, index: int, config: dict, params: dict, distributions: dict, started: datetime) -> None:
        """Store config ``index`` as a RUNNING trial that started at ``started``. Trials are created
        in index order, so Optuna's trial number is the index."""
        number = len(self)
        if number != index:
            raise RuntimeError(f"trial {index} would be Optuna's trial {number}: trials must be created in order")
        template = optuna.trial.FrozenTrial(
            number=number, state=State.RUNNING, value=None, datetime_start=started, datetime_complete=None,
            params=params, distributions=distributions, user_attrs={"index": index, "config": _plain(config)},
            system_attrs={}, intermediate_values={}, trial_id=-1)
        trial_id = self._storage.create_new_trial(self.study._study_id, template_trial=template)
        self._trials[index] = (trial_id, {"index": index, "config": _plain(config), "rungs": [], "state": "RUNNING"})

    def reopen_orphan(self, index: int) -> bool:
        """A trial a sampler created (``study.ask``) but a run cut off before ``adopt`` kept its config: put
        it back in the queue (WAITING), so the next ``ask`` fills that very trial and Optuna's trial numbers
        stay hpsearch's indices."""
        if len(self) != index + 1 or index in self._trials:
            return False
        last = self.study.get_trials(deepcopy=False)[-1]
        if last.number != index or last.state not in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
            return False
        if last.state == optuna.trial.TrialState.WAITING:  # put back already, by a run cut off before its ask
            return True
        return self._storage.set_trial_state_values(last._trial_id, optuna.trial.TrialState.WAITING)

    def adopt(self, trial: optuna.Trial, config: dict) -> int:
        """Take a trial a sampler created (``study.ask``) as config ``trial.number``; returns the index."""
        index = trial.number
        trial.set_user_attr("index", index)
        trial.set_user_attr("config", _plain(config))
        self._trials[index] = (trial._trial_id, {"index": index, "config": _plain(config), "rungs": [],
                                                 "state": "RUNNING"})
        return index

    def add_rung(self, index: int, epochs: int, result, final: bool) -> None:
        """Commit config ``index``'s result at a budget of ``epochs``; a failed one ends the trial
        (FAIL), a ``final`` one completes it."""
        trial_id, rec = self._trials[index]
        rung = {"epochs": int(epochs), "split_test_scores": result.test_scores,
                "split_test_accuracies": result.test_accuracies, "split_fit_times": result.fit_times,
                "split_epochs": result.epochs, "error": result.error}
        if result.metrics:
            rung["split_metrics"] = result.metrics
        if result.stopped:  # fold racing: the folds it ran, and why it ran no more
            rung["stopped"] = result.stopped
        if result.error is None:
            # Optuna's view of the rung first: each write is its own commit, and a resume takes the rung as
            # done once its attribute is stored (a kill -9 between them left a rung without its value for good)
            self._storage.set_trial_intermediate_value(trial_id, int(epochs), result.mean_test_score)
        self._storage.set_trial_user_attr(trial_id, f"rung{len(rec['rungs'])}", rung)
        rec["rungs"].append(rung)
        if result.error is not None:
            self._end(index, State.FAIL)
            return
        if final:
            self._end(index, State.COMPLETE)

    def prune(self, index: int) -> None:
        """A strategy stopped config ``index``: PRUNED, its value the last rung's score."""
        self._end(index, State.PRUNED)

    def complete(self, index: int) -> None:
        self._end(index, State.COMPLETE)

    def _end(self, index: int, state) -> None:
        trial_id, rec = self._trials[index]
        if rec["state"] != "RUNNING":
            return
        values = None
        if state != State.FAIL:
            last = rec["rungs"][-1]
            values = [float(np.mean(last["split_test_scores"]))]
        self._storage.set_trial_state_values(trial_id, state, values=values)
        rec["state"] = state.name


def _plain(config: dict) -> dict:
    return json.loads(json.dumps(config))


def _damaged(path: Path, reason: str) -> UsageError:
    return UsageError(
        f"{path} is damaged ({reason}); the finished trials are listed in {path.parent / 'trials.csv'}; "
        f"move the file away (mv {path} {path}.damaged) and run the search again to start it over, "
        "or put back a copy of it")


def open_study(run_dir, create: bool = False, **create_kwargs) -> optuna.Study:
    """The run's study (``<run_dir>/trials.db``; the one way every module reads it), or a
    ``UsageError`` naming the file when it is damaged (truncated, overwritten, not an hpsearch
    store) instead of SQLAlchemy's traceback."""
    path = Path(run_dir) / TRIALS_DB
    refuse_links_out(run_dir, (TRIALS_DB,))  # even reading: Optuna creates its tables in a new file
    if create and path.is_file() and path.stat().st_size == 0 and (path.parent / TRIALS_CSV).is_file():
        raise _damaged(path, "empty, while trials.csv lists finished trials")  # SQLite would start afresh
    try:
        if create:
            storage = optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 60}})
            return optuna.create_study(study_name=STUDY, storage=storage, load_if_exists=True, **create_kwargs)
        return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{path}")
    except sqlalchemy.exc.DatabaseError as exc:
        raise _damaged(path, str(exc.orig) if exc.orig is not None else type(exc).__name__) from None
    except RuntimeError as exc:  # Optuna's schema check: the file was written by another Optuna
        if "schema" not in str(exc):
            raise
        fix = (f"upgrade it with optuna storage upgrade --storage sqlite:///{path}" if "upgrade" in str(exc) else
               "open it with the Optuna that wrote it (pip install -c constraints.txt -e . pins the one hpsearch "
               "was tested with)")
        raise UsageError(f"{path} was written by another Optuna than this environment's {optuna.__version__} "
                         f"({str(exc).split('.')[0]}); {fix}") from None
    except KeyError:  # optuna: no study of that name in the file
        raise _damaged(path, f"it holds no study named {STUDY!r}") from None


def load_records(run_dir) -> list[dict]:
    """The trials stored in ``run_dir`` that finished a rung, in trial-index order, as plain data
    (``index``, ``config``, ``rungs``, ``state``; read-only)."""
    path = Path(run_dir) / TRIALS_DB
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no trials.db; is it a run folder made by hpsearch search?")
    return [rec for _, (_, rec) in sorted(_read_records(open_study(run_dir), path).items()) if rec["rungs"]]


def stored_fingerprint(run_dir) -> dict | None:
    """The fingerprint a run's store keeps; None for a new run: no trials.db, or one without a study yet
    (killed while it was created). A damaged store gives None too: ``TrialStore`` then names the damage
    (an empty file is not opened here, so its check still sees it empty)."""
    path = Path(run_dir) / TRIALS_DB
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        fingerprint = open_study(run_dir).user_attrs.get("fingerprint")
    except UsageError:
        return None
    return fingerprint if isinstance(fingerprint, dict) else None  # another kind: TrialStore names it


def run_fingerprint(run_dir) -> dict:
    """What the run's trials were made with (``hpsearch.settings.fingerprint``), as its store keeps it."""
    if not (Path(run_dir) / TRIALS_DB).is_file():
        raise UsageError(f"{run_dir} holds no trials.db; is it a run folder made by hpsearch search?")
    fingerprint = open_study(run_dir).user_attrs.get("fingerprint") or {}
    if not isinstance(fingerprint, dict):
        raise _damaged(Path(run_dir) / TRIALS_DB, f"its fingerprint is a {type(fingerprint).__name__}, not an object")
    return fingerprint


def load_results(run_dir) -> pd.DataFrame:
    """The ranked ``results_frame`` of the trials stored in ``run_dir`` (read-only), with ``at_chance``
    where the run recorded its chance levels (``settings.json``, key ``chance``)."""
    settings_path = Path(run_dir) / SETTINGS_FILE
    settings = {}
    if settings_path.is_file():
        try:
            settings = json.loads(settings_path.read_text())
        except (ValueError, OSError, RecursionError):  # a damaged settings.json: the frame without those columns
            settings = {}
    settings = settings if isinstance(settings, dict) else {}
    chance = settings.get("chance")
    return results_frame(load_records(run_dir), chance if isinstance(chance, dict) else None, trend_of(settings))

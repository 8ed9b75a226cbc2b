"""Persistence of a run's trials, and the files exported from them.

Trials live in an Optuna study in ``<run>/trials.db`` (SQLite): each finished trial is committed
the moment it finishes, so a killed process loses only the trials in flight. Failed trials are
stored too (state FAIL, with their reason), so a resume never re-runs them. The ranking files are
exports of the store, rewritten atomically (temp file + rename) after every trial.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from .errors import UsageError
from .space import Categorical, DecreasingInts, IntUniform, LogUniform, SearchSpace, Uniform

__all__ = ["TrialStore", "RunLock", "results_frame", "load_results", "write_exports", "param_text",
           "atomic_write_text"]

STUDY = "search"
optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class RunLock:
    """An exclusive lock on a run folder, so only one search writes to it at a time.

    The OS drops the lock when the process dies, even by ``kill -9``.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fh = None

    def __enter__(self):
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise UsageError(
                f"{self.path.parent} is in use by a running search ({holder}); wait for it to "
                "finish, or pass a different --out"
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()}")
        self._fh.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def _optuna_params(space: SearchSpace, config: dict):
    """The config's sampled values as flat Optuna params with their distributions."""
    params, dists = {}, {}
    for key, dist in space.params.items():
        value = config.get(key)
        if isinstance(dist, Uniform | LogUniform):
            params[key] = float(value)
            dists[key] = optuna.distributions.FloatDistribution(
                dist.low, dist.high, log=isinstance(dist, LogUniform))
        elif isinstance(dist, IntUniform):
            params[key] = int(value)
            dists[key] = optuna.distributions.IntDistribution(dist.low, dist.high)
        elif isinstance(dist, Categorical):
            choices = tuple(json.dumps(c) if isinstance(c, tuple) else c for c in dist.choices)
            params[key] = json.dumps(value) if isinstance(value, tuple | list) else value
            dists[key] = optuna.distributions.CategoricalDistribution(choices)
        elif isinstance(dist, DecreasingInts):
            params[f"{key}_layers"] = len(value)
            dists[f"{key}_layers"] = optuna.distributions.IntDistribution(
                dist.min_layers, dist.max_layers)
            for i, width in enumerate(value, 1):
                params[f"{key}_{i}"] = int(width)
                dists[f"{key}_{i}"] = optuna.distributions.IntDistribution(dist.low, dist.high)
    return params, dists


class TrialStore:
    """The trials of one run, in an Optuna study on SQLite.

    Parameters
    ----------
    run_dir : path
        The run folder; the database is ``run_dir/trials.db``.
    fingerprint : dict
        What makes trials comparable (dataset, space, folds, epochs ...). Opening an existing store
        with a different fingerprint is refused: its trials would not rank against new ones.
    """

    def __init__(self, run_dir: Path, fingerprint: dict, direction: str = "maximize"):
        self.run_dir = Path(run_dir)
        self.url = f"sqlite:///{self.run_dir / 'trials.db'}"
        storage = optuna.storages.RDBStorage(self.url, engine_kwargs={"connect_args": {"timeout": 60}})
        self.study = optuna.create_study(study_name=STUDY, storage=storage, direction=direction,
                                         load_if_exists=True)
        stored = self.study.user_attrs.get("fingerprint")
        if stored is None:
            self.study.set_user_attr("fingerprint", fingerprint)
        elif stored != fingerprint:
            diffs = [k for k in sorted(set(stored) | set(fingerprint))
                     if stored.get(k) != fingerprint.get(k)]
            shown = "; ".join(f"{k}: stored {_short(stored.get(k))}, now {_short(fingerprint.get(k))}"
                              for k in diffs)
            raise UsageError(
                f"{self.run_dir} holds a search with other settings ({shown}); resume it with the "
                "same settings, or pass a different --out for a new search"
            )

    def finished_indices(self) -> set[int]:
        return {t.user_attrs["index"] for t in self.study.get_trials(deepcopy=False)
                if "index" in t.user_attrs
                and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)}

    def add(self, index: int, config: dict, space: SearchSpace, result) -> None:
        """Commit one finished trial (completed or failed) in a single transaction."""
        params, dists = _optuna_params(space, config)
        failed = result.error is not None
        attrs = {
            "index": index,
            "config": json.loads(json.dumps(config)),
            "split_test_scores": result.test_scores,
            "split_test_accuracies": result.test_accuracies,
            "split_fit_times": result.fit_times,
            "split_epochs": result.epochs,
            "error": result.error,
        }
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
            value=None if failed else result.mean_test_score,
            params=params, distributions=dists, user_attrs=attrs,
        )
        self.study.add_trial(trial)

    def records(self) -> list[dict]:
        """The stored trials' user attributes, in trial-index order."""
        rows = [dict(t.user_attrs) for t in self.study.get_trials(deepcopy=False)
                if "index" in t.user_attrs]
        return sorted(rows, key=lambda r: r["index"])


def _short(value, width: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def param_text(value) -> str:
    if isinstance(value, list | tuple):
        return "-".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One row per trial, shaped like sklearn's ``cv_results_`` and ranked best first.

    Columns: ``trial``, ``param_*``, ``split{k}_test_score``, ``mean_test_score``,
    ``std_test_score``, ``rank_test_score``, ``split{k}_test_accuracy``, ``mean_test_accuracy``,
    ``std_test_accuracy``, ``mean_fit_time``, ``std_fit_time``, ``mean_epochs``, ``error``.
    Failed trials have NaN scores and rank last.
    """
    rows = []
    for rec in records:
        row = {"trial": rec["index"]}
        for key, value in sorted(rec["config"].items()):
            row[f"param_{key}"] = param_text(value)
        scores = rec["split_test_scores"] or []
        accs = rec["split_test_accuracies"] or []
        times = rec["split_fit_times"] or []
        for k, value in enumerate(scores):
            row[f"split{k}_test_score"] = value
        nan = float("nan")
        row["mean_test_score"] = float(np.mean(scores)) if scores else nan
        row["std_test_score"] = float(np.std(scores)) if scores else nan
        for k, value in enumerate(accs):
            row[f"split{k}_test_accuracy"] = value
        row["mean_test_accuracy"] = float(np.mean(accs)) if accs else nan
        row["std_test_accuracy"] = float(np.std(accs)) if accs else nan
        row["mean_fit_time"] = float(np.mean(times)) if times else nan
        row["std_fit_time"] = float(np.std(times)) if times else nan
        row["mean_epochs"] = float(np.mean(rec["split_epochs"])) if rec.get("split_epochs") else nan
        row["error"] = rec.get("error") or ""
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # Best first; failed (NaN) last; ties broken by trial number so the order is stable.
    scores = frame["mean_test_score"]
    frame["rank_test_score"] = (
        scores.rank(ascending=False, method="min").fillna(scores.notna().sum() + 1).astype(int)
    )
    return frame.sort_values(["rank_test_score", "trial"], kind="stable").reset_index(drop=True)


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    cells = [[str(c) for c in columns]]
    for _, row in frame[columns].iterrows():
        cells.append([f"{v:.6g}" if isinstance(v, float) else str(v) for v in row])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() + "\n" for r in cells)


def write_exports(run_dir: Path, frame: pd.DataFrame) -> None:
    """Write ``trials.csv``, ``sorted_scores.dat`` and ``sorted_params.dat`` atomically.

    Both ``.dat`` files have one header line, then one line per config, best first; line i of one
    is line i of the other. Read them with ``numpy.loadtxt(path, skiprows=1)`` (scores) or
    ``pandas.read_csv(path, sep=r"\\s+")`` (either).
    """
    run_dir = Path(run_dir)
    if frame.empty:
        return
    atomic_write_text(run_dir / "trials.csv", frame.to_csv(index=False))
    ranked = frame.rename(columns={"rank_test_score": "rank"})
    score_cols = ["rank", "trial", "mean_test_score", "std_test_score", "mean_test_accuracy"]
    atomic_write_text(run_dir / "sorted_scores.dat", _table(ranked, score_cols))
    params = ranked.rename(columns=lambda c: c[len("param_"):] if c.startswith("param_") else c)
    param_cols = ["rank", "trial"] + [c[len("param_"):] for c in frame if c.startswith("param_")]
    atomic_write_text(run_dir / "sorted_params.dat", _table(params, param_cols))


def load_results(run_dir) -> pd.DataFrame:
    """The ranked ``results_frame`` of the trials stored in ``run_dir`` (read-only)."""
    path = Path(run_dir) / "trials.db"
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no trials.db; is it a run folder made by hpsearch search?")
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{path}")
    records = [dict(t.user_attrs) for t in study.get_trials(deepcopy=False) if "index" in t.user_attrs]
    return results_frame(sorted(records, key=lambda r: r["index"]))

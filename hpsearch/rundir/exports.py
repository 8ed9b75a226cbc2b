"""A run's trials as a table shaped like scikit-learn's ``cv_results_``, and the files exported
from it (``trials.csv``, ``sorted_scores.dat``, ``sorted_params.dat``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import shell
from .atomic import atomic_write_text
from .chance import at_chance
from .names import SORTED_PARAMS, SORTED_SCORES, TRIALS_CSV

__all__ = ["results_frame", "write_exports", "param_text", "read_sorted", "unscored", "trend_of", "rewrite_trials_csv"]


def param_text(value) -> str:
    """A config value as one cell: a list as ``532-195`` (an empty one as ``[]``), a float to
    6 significant digits, anything else as ``str``."""
    if isinstance(value, list | tuple):
        return "-".join(param_text(v) for v in value) if value else "[]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _mean(values) -> float:
    return float(np.mean(values)) if values else float("nan")


def _std(values) -> float:
    return float(np.std(values)) if values else float("nan")


def trend_of(settings) -> tuple[float, int] | None:
    """``(weight, max_epochs)`` of a halving run that ranks its rungs by the trend (``--trend``), from its
    settings (a ``SearchSettings`` or settings.json's dict), else None."""
    get = settings.get if isinstance(settings, dict) else lambda key: getattr(settings, key, None)
    weight = get("trend")
    if get("strategy") != "halving" or isinstance(weight, bool) or not isinstance(weight, int | float):
        return None
    return float(weight), int(get("max_epochs"))


def _trend_keys(rungs: list[dict], trend: tuple[float, int]) -> dict[int, float]:
    """What ranked each of a config's rungs after the first (``hpsearch.strategies.trend.extrapolate``):
    its score extrapolated along its trend since the rung before; NaN where fold racing stopped it."""
    from ..strategies.trend import extrapolate

    weight, max_epochs = trend
    keys = {}
    for before, now in zip(rungs, rungs[1:], strict=False):
        if now["epochs"] >= max_epochs:
            break  # the full budget ranks by the score
        score = float("nan") if now.get("stopped") else _mean(now["split_test_scores"])
        keys[now["epochs"]] = extrapolate({0: score}, {0: _mean(before["split_test_scores"])}, now["epochs"],
                                          before["epochs"], max_epochs, weight)[0]
    return keys


def results_frame(records: list[dict], chance: dict | None = None,
                  trend: tuple[float, int] | None = None) -> pd.DataFrame:
    """One row per trial, shaped like sklearn's ``cv_results_`` and ranked best first.

    Columns: ``trial``, ``param_*``, ``split{k}_test_score``, ``mean_test_score``,
    ``std_test_score``, ``rank_test_score``, ``split{k}_test_accuracy``, ``mean_test_accuracy``,
    ``std_test_accuracy``, for labels per position ``mean_test_digit_{k}_accuracy`` and
    ``mean_test_exact_match``, ``mean_fit_time``, ``std_fit_time``, ``mean_epochs``, ``error``, in a run
    with ``--fold-racing`` ``stopped`` (why racing stopped it after the folds it ran), then
    ``n_epochs`` (the budget, in epochs, of the last rung the config reached), ``rung`` (that
    rung's number, from 0), ``state`` (Optuna's: COMPLETE, PRUNED, FAIL, or RUNNING while a rung is
    in progress) and, when the run has several budgets, ``score_{E}ep``: the mean score at each; with
    ``trend`` (``trend_of``: a halving run's ``--trend``), ``trend_{E}ep`` for each rung after the first but
    the last: the extrapolated score that ranked it; with
    ``chance`` (``hpsearch.rundir.chance.chance_levels``), ``at_chance``: scored no better than guessing.
    The split columns are the last rung's; ``mean_fit_time`` adds up the rungs' fit times.
    A config that reached a higher rung ranks before every config that stopped at a lower one
    (scikit-learn's rule for successive halving), then one that ran every fold before one fold racing
    stopped, then by score; failed trials rank last.
    """
    budgets = sorted({r["epochs"] for rec in records for r in rec["rungs"]})
    # every row names every fold, in order: a config fold racing stopped has the folds it did not run empty
    n_folds = max((len(rec["rungs"][-1]["split_test_scores"] or []) for rec in records), default=0)
    rows = []
    for rec in records:
        last = rec["rungs"][-1]
        row = {"trial": rec["index"]}
        for key, value in sorted(rec["config"].items()):
            row[f"param_{key}"] = param_text(value)
        scores, accs = last["split_test_scores"] or [], last["split_test_accuracies"] or []
        for k in range(n_folds):
            row[f"split{k}_test_score"] = scores[k] if k < len(scores) else float("nan")
        row["mean_test_score"], row["std_test_score"] = _mean(scores), _std(scores)
        for k in range(n_folds):
            row[f"split{k}_test_accuracy"] = accs[k] if k < len(accs) else float("nan")
        row["mean_test_accuracy"], row["std_test_accuracy"] = _mean(accs), _std(accs)
        times = _fit_times(rec["rungs"])
        for name in (last.get("split_metrics") or [{}])[0]:  # the task's own: digit_0_accuracy, ...
            row[f"mean_test_{name}"] = _mean([m[name] for m in last["split_metrics"]])
        row["mean_fit_time"], row["std_fit_time"] = _mean(times), _std(times)
        row["mean_epochs"] = _mean(last["split_epochs"])
        row["error"] = last.get("error") or ""
        row["stopped"] = last.get("stopped") or ""  # fold racing: its scores are over the folds it ran
        row["n_epochs"], row["rung"], row["state"] = last["epochs"], len(rec["rungs"]) - 1, rec["state"]
        if len(budgets) > 1:
            at = {r["epochs"]: _mean(r["split_test_scores"]) for r in rec["rungs"]}
            for epochs in budgets:
                row[f"score_{epochs}ep"] = at.get(epochs, float("nan"))
        if trend is not None and len(budgets) > 2:
            keys = _trend_keys(rec["rungs"], trend)
            for epochs in budgets[1:]:
                if epochs < trend[1]:
                    row[f"trend_{epochs}ep"] = keys.get(epochs, float("nan"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # a config fold racing stopped ranks after those that ran every fold at its budget (fewer folds: less evidence)
    frame["rank_test_score"] = _ranks(2 * frame["n_epochs"].to_numpy() - (frame["stopped"] != "").to_numpy(),
                                      frame["mean_test_score"].to_numpy())
    if not frame["stopped"].any():
        frame = frame.drop(columns="stopped")
    if chance is not None:
        frame["at_chance"] = at_chance(frame, chance)
    return frame.sort_values(["rank_test_score", "trial"], kind="stable").reset_index(drop=True)


def unscored(run_dir, frame: pd.DataFrame) -> str | None:
    """Why a run's ``results_frame`` has no scored trial to retrain, compare or plot, as one line that names
    the fix (the run stopped before its first trial finished, or every config failed); None when it has one."""
    if "mean_test_score" in frame and frame["mean_test_score"].notna().any():
        return None
    if frame.empty:
        return (f"{run_dir} holds no scored trial yet; resume the search first (hpsearch search --resume "
                f"{shell(run_dir)})")
    return (f"{run_dir} holds no scored trial: each of its {len(frame)} configs failed (their reasons are in "
            f"{Path(run_dir) / TRIALS_CSV}, column 'error'); search again with other settings, or resume it for "
            f"more configs (hpsearch search --resume {shell(run_dir)} --n MORE)")


def _fit_times(rungs: list[dict]) -> list[float]:
    """Each fold's fit time over the rungs (a config fold racing stopped ran fewer folds at its last)."""
    times: list[float] = []
    for rung in rungs:
        for k, seconds in enumerate(rung["split_fit_times"] or []):
            if k == len(times):
                times.append(0.0)
            times[k] += seconds
    return times


def _ranks(budgets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """1 + the number of configs strictly better (a higher budget reached, or the same budget and
    a higher score; ``budgets`` may be any levels ordered so); failed (NaN) configs all share the
    rank after the last finite one."""
    finite = ~np.isnan(scores)
    ranks = np.full(len(scores), int(finite.sum()) + 1)
    for i in np.flatnonzero(finite):
        better = finite & ((budgets > budgets[i]) | ((budgets == budgets[i]) & (scores > scores[i])))
        ranks[i] = 1 + int(better.sum())
    return ranks


def _token(value) -> str:
    """One whitespace-free cell of a ``.dat`` file (a missing value is ``nan``)."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return re.sub(r"\s+", "_", text) or '""'


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    """A ``# name ...`` comment line, then the rows, every cell one token, in aligned columns."""
    cells = [["# " + columns[0], *columns[1:]]]
    cells += [[_token(v) for v in row] for row in frame[columns].itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in cells)


def write_exports(run_dir: Path, frame: pd.DataFrame) -> None:
    """Write ``trials.csv``, ``sorted_scores.dat`` and ``sorted_params.dat`` atomically.

    Both ``.dat`` files start with a ``# rank trial ...`` comment line naming the columns, then
    one line per config, best first; line i of one is line i of the other. Every cell is one
    whitespace-free token (hidden widths ``532-195``, an empty list ``[]``, a missing value
    ``nan``). ``numpy.loadtxt(path)`` reads the scores; ``read_sorted(path)`` either file, with
    its column names.
    """
    run_dir = Path(run_dir)
    if frame.empty:
        return
    atomic_write_text(run_dir / TRIALS_CSV, frame.to_csv(index=False))
    ranked = frame.rename(columns={"rank_test_score": "rank"})
    score_cols = ["rank", "trial", "mean_test_score", "std_test_score", "mean_test_accuracy"]
    atomic_write_text(run_dir / SORTED_SCORES, _table(ranked, score_cols))
    params = ranked.rename(columns=lambda c: c[len("param_"):] if c.startswith("param_") else c)
    param_cols = ["rank", "trial"] + [c[len("param_"):] for c in frame if c.startswith("param_")]
    atomic_write_text(run_dir / SORTED_PARAMS, _table(params, param_cols))


def read_sorted(path) -> pd.DataFrame:
    """``sorted_scores.dat`` or ``sorted_params.dat`` as a DataFrame, the column names taken from
    its ``#`` header line: what the README's two lines of pandas do."""
    with open(path) as fh:
        names = fh.readline().split()[1:]
    return pd.read_csv(path, sep=r"\s+", skiprows=1, names=names)


def rewrite_trials_csv(run_dir) -> str:
    """How a damaged trials.csv is written again: from trials.db, by a resume."""
    return f"hpsearch search --resume {shell(run_dir)} writes it again from trials.db"

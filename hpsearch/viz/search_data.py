"""The data of a search's own pictures (``hpsearch plot search RUN``; drawn by ``search_plots``): pure
functions from a frame shaped like ``trials.csv``, the run's space and its study to plain numbers, as
in Optuna's visualization. A picture that cannot be drawn for a run gets a ``Skipped`` with the reason.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from ..errors import UsageError, plural
from ..rundir.exports import param_text, rewrite_trials_csv, unscored
from ..rundir.names import SETTINGS_FILE, SPACE_FILE, TRIALS_CSV, TRIALS_DB
from ..rundir.run_info import read_settings, read_table
from ..settings import HALVING_STRATEGIES
from ..space.distributions import Categorical, Constant, DecreasingInts, IntLists, LogUniform
from ..space.search_space import load_space
from ..training.models.trust import UntrustedModule

__all__ = ["Skipped", "ParamPoints", "load_trials", "score_vs_params", "history", "importances", "first_rung_study",
           "run_importances", "fold_spread", "rungs", "learned_floor", "search_plot_data"]

_SPLIT = re.compile(r"split(\d+)_test_score")
_BUDGET = re.compile(r"score_(\d+)ep")


@dataclass(frozen=True)
class Skipped:
    """A picture that does not apply to this run, and why."""

    reason: str


@dataclass
class ParamPoints:
    """One panel of score vs a hyperparameter: ``x`` as in trials.csv (numbers, or the category
    labels when ``kind == "categorical"``), ``score`` the mean CV score, ``epochs`` each point's
    budget; ``log`` for a log-uniform parameter."""

    name: str
    kind: str  # "numeric" | "categorical"
    x: list
    score: np.ndarray
    trial: np.ndarray
    epochs: np.ndarray
    log: bool = False
    categories: list = field(default_factory=list)


def load_trials(run_dir) -> pd.DataFrame:
    """The run's ``trials.csv`` (or the same frame from the study when it is not exported yet)."""
    run_dir = Path(run_dir)
    if (run_dir / TRIALS_CSV).is_file():
        table = read_table(run_dir / TRIALS_CSV, ("trial", "mean_test_score"),
                           f"read from trials.db instead ({rewrite_trials_csv(run_dir)})")
        if table is not None:
            return table
    from ..rundir.store import load_results

    return load_results(run_dir)


def _scored(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[np.isfinite(frame["mean_test_score"].astype(float))]


def _layer_widths(value) -> list[int]:
    return [] if pd.isna(value) or str(value) == "[]" else [int(w) for w in str(value).split("-")]


def score_vs_params(frame: pd.DataFrame, space=None) -> list[ParamPoints]:
    """One panel per searched parameter (constants left out): log axes for log-uniform ones,
    categorical ones as strips, and widths of decreasing layers one panel per layer."""
    rows = _scored(frame)
    score, trial = rows["mean_test_score"].to_numpy(float), rows["trial"].to_numpy(int)
    epochs = _epochs(rows)
    params = space.params if space is not None else {c[6:]: None for c in frame if c.startswith("param_")}
    panels = []
    for name, dist in params.items():
        column = f"param_{name}"
        if column not in rows or isinstance(dist, Constant) or (dist is None and frame[column].nunique() < 2):
            continue
        values = rows[column]
        if isinstance(dist, DecreasingInts | IntLists):
            widths = [_layer_widths(v) for v in values]
            for layer in range(getattr(dist, "max_layers", getattr(dist, "layers", 0))):
                keep = np.array([len(w) > layer for w in widths], bool)
                panels.append(ParamPoints(f"{name}[{layer + 1}]", "numeric",
                                          [w[layer] for w in widths if len(w) > layer],
                                          score[keep], trial[keep], epochs[keep]))
            if isinstance(dist, DecreasingInts) and dist.max_layers > dist.min_layers:
                panels.append(_strip(f"{name} layers", [len(w) for w in widths], score, trial, epochs,
                                     list(range(dist.min_layers, dist.max_layers + 1))))
        elif isinstance(dist, Categorical) or (dist is None and not pd.api.types.is_numeric_dtype(values)):
            # as trials.csv writes them (a list choice is "16" or "[]", not "(16,)"), so each point finds its strip
            choices = ([param_text(c) for c in dist.choices] if dist is not None
                       else sorted(set(map(param_text, values))))
            panels.append(_strip(name, [param_text(v) for v in values], score, trial, epochs, choices))
        else:
            panels.append(ParamPoints(name, "numeric", values.astype(float).tolist(), score, trial, epochs,
                                      log=isinstance(dist, LogUniform)))
    return panels


def _strip(name, labels, score, trial, epochs, categories) -> ParamPoints:
    return ParamPoints(name, "categorical", list(labels), score, trial, epochs, categories=list(categories))


def _epochs(rows: pd.DataFrame) -> np.ndarray:
    """Each row's epochs trained (halving's rung reached; 0 where trials.csv does not say)."""
    return rows["n_epochs"].to_numpy(int) if "n_epochs" in rows else np.zeros(len(rows), int)


def history(frame: pd.DataFrame, maximize: bool = True) -> dict:
    """Each scored trial's mean CV score in trial order, and the best so far (monotone). Where the
    trials were scored at several budgets (halving's rungs), the best so far is over the largest
    budget's alone (``best_epochs``; NaN before its first): a short rung's score is no rival to it."""
    rows = _scored(frame).sort_values("trial")
    score, epochs = rows["mean_test_score"].to_numpy(float), _epochs(rows)
    top = int(epochs.max()) if len(epochs) and len(set(epochs)) > 1 else None
    counted = np.where(epochs == top, score, np.nan) if top is not None else score
    accumulate = np.fmax.accumulate if maximize else np.fmin.accumulate  # NaN until the first counted score
    return {"trial": rows["trial"].to_numpy(int), "score": score, "best": accumulate(counted), "epochs": epochs,
            "best_epochs": top}


def _shared_distributions(trials) -> dict:
    """One distribution per parameter for every trial: a decreasing width's range depends on the width
    before it (hidden_2 in [51, hidden_1 - 1]), so each trial kept its own, and Optuna's importances,
    which compare a parameter only across trials of one distribution, gave every later width 0."""
    shared: dict = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            seen = shared.setdefault(name, dist)
            if seen != dist and type(seen) is type(dist) and isinstance(dist, optuna.distributions.IntDistribution
                                                                        | optuna.distributions.FloatDistribution) \
                    and (seen.log, seen.step) == (dist.log, dist.step):
                shared[name] = type(dist)(min(seen.low, dist.low), max(seen.high, dist.high), log=dist.log,
                                          step=dist.step)
    return shared


def _comparable_study(direction, valued: list) -> optuna.Study:
    """An in-memory study of ``(trial, value)`` pairs whose parameters share one distribution each."""
    shared = _shared_distributions([t for t, _ in valued])
    copy = optuna.create_study(direction=direction)
    for t, value in valued:
        copy.add_trial(optuna.trial.create_trial(params=t.params, distributions={n: shared[n] for n in t.params},
                                                 value=value))
    return copy


def importances(study: optuna.Study) -> dict[str, float] | Skipped:
    """``optuna.importance.get_param_importances`` on the run's complete trials, each parameter under one
    range (normalized: they sum to 1), or the reason it cannot compute them."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return Skipped(f"parameter importances need at least 2 complete trials, the study has {len(complete)}")
    varied = {n for t in complete for n, d in t.distributions.items() if not d.single()}
    if not varied:
        return Skipped("parameter importances need a parameter that varies; every one is constant")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = optuna.importance.get_param_importances(
                _comparable_study(study.direction, [(t, t.value) for t in complete]))
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        return Skipped(f"Optuna could not compute parameter importances: {exc}")
    values = np.array(list(result.values()), float)
    if not result or not np.all(np.isfinite(values)) or values.sum() <= 0:
        return Skipped("Optuna could not compute parameter importances (every complete trial scored the same?)")
    return dict(result)


def first_rung_study(study: optuna.Study, frame: pd.DataFrame) -> tuple[optuna.Study, int] | None:
    """For a halving or Hyperband run, an in-memory copy of ``study`` in which every config that
    was scored at the lowest budget is a complete trial valued at its score there, and that budget
    (epochs); ``None`` for a run with one budget.

    Optuna's importances read only complete trials, which in a halving run are the few survivors of
    the last rung; at the first rung every config has a score, so the importances see them all.
    """
    budgets = sorted(int(_BUDGET.fullmatch(c)[1]) for c in frame if _BUDGET.fullmatch(c))
    if len(budgets) < 2:
        return None
    first = budgets[0]
    scores = frame.set_index("trial")[f"score_{first}ep"].dropna().to_dict()
    valued = [(t, scores.get(t.user_attrs.get("index"))) for t in study.get_trials(deepcopy=False)]
    return _comparable_study(study.direction, [(t, v) for t, v in valued
                                               if v is not None and np.isfinite(v) and t.params]), first


def run_importances(study: optuna.Study, frame: pd.DataFrame) -> dict | Skipped:
    """The importances a run's picture shows: ``{"values": {param: importance}, "basis": text}``.
    Over the complete trials of a one-budget run; at the first rung for halving and Hyperband,
    where every config has a score (see :func:`first_rung_study`)."""
    rung = first_rung_study(study, frame)
    if rung is None:
        values, basis = importances(study), "complete trials"
    else:
        values, basis = importances(rung[0]), f"score at {plural(rung[1], 'epoch')}, the first rung"
        basis += f", {len(rung[0].trials)} configs"
    if isinstance(values, Skipped):
        return values
    return {"values": {_shown_name(name, frame): v for name, v in values.items()}, "basis": basis}


def _shown_name(name: str, frame: pd.DataFrame) -> str:
    """A layer width's Optuna name (``hidden_1``, ``hidden_layers``) as the parameter plot names it
    (``hidden[1]``, ``hidden layers``): only where the run's parameter is the list ``hidden``."""
    base, _, last = name.rpartition("_")
    if base and f"param_{base}" in frame and f"param_{name}" not in frame:
        if last.isdigit():
            return f"{base}[{last}]"
        if last == "layers":
            return f"{base} layers"
    return name


def fold_spread(frame: pd.DataFrame) -> dict:
    """Per scored config, best first: its fold scores (``split{k}_test_score``), mean and std."""
    columns = sorted((c for c in frame if _SPLIT.fullmatch(c)), key=lambda c: int(_SPLIT.fullmatch(c)[1]))
    rows = _scored(frame)
    rows = rows.sort_values("rank_test_score") if "rank_test_score" in rows else rows
    return {"trial": rows["trial"].to_numpy(int), "splits": rows[columns].to_numpy(float),
            "mean": rows["mean_test_score"].to_numpy(float), "epochs": _epochs(rows),
            # a config fold racing stopped has fewer folds (NaN in the rest)
            "std": np.nanstd(rows[columns].to_numpy(float), axis=1) if columns else np.zeros(len(rows))}


def rungs(frame: pd.DataFrame, strategy: str | None = None) -> dict | Skipped:
    """For halving and Hyperband runs: the budgets (epochs) of the rungs, how many configs were
    scored at each, and their scores there (``score_{E}ep``)."""
    columns = sorted((c for c in frame if _BUDGET.fullmatch(c)), key=lambda c: int(_BUDGET.fullmatch(c)[1]))
    if not columns and strategy in HALVING_STRATEGIES:  # a run stopped (or still going) in its first rung
        return Skipped(f"no config of this {strategy} run has passed its first rung yet; resume it to draw the rungs")
    if not columns:
        return Skipped("rungs apply to halving and hyperband runs; this run gave every config one budget")
    scores = {int(_BUDGET.fullmatch(c)[1]): frame.loc[frame[c].notna(), ["trial", c]] for c in columns}
    # a config that failed at a rung (diverged) was trained there too, with no score to show
    failed_at = (frame.loc[frame["state"] == "FAIL", "n_epochs"] if {"state", "n_epochs"} <= set(frame)
                 else pd.Series(dtype=int))
    failed = np.array([int((failed_at == epochs).sum()) for epochs in scores], int)
    return {"epochs": np.array(list(scores), int),
            "configs": np.array([len(s) for s in scores.values()], int) + failed, "failed": failed,
            "trials": [s["trial"].to_numpy(int) for s in scores.values()],
            "scores": [s.iloc[:, 1].to_numpy(float) for s in scores.values()]}


# --- thin drawing functions ---


def learned_floor(frame: pd.DataFrame) -> float | None:
    """The lowest score of the configs that learned (not at chance), when some are at chance: the plots'
    lower limit, so the chance-level ones do not flatten the differences that matter into one line."""
    if "at_chance" not in frame or not frame["at_chance"].astype(bool).any():
        return None
    learned = _scored(frame[~frame["at_chance"].astype(bool)])["mean_test_score"]
    return float(learned.min()) if len(learned) else None


def search_plot_data(run_dir) -> dict[str, object]:
    """Every search picture's data for ``run_dir``, keyed by file stem (a ``Skipped`` where one
    does not apply); a ``UsageError`` naming the fix for a run that holds no trial yet."""
    from ..rundir.store import open_study

    run_dir = Path(run_dir)
    frame = load_trials(run_dir)
    if frame.empty:  # stopped before its first trial finished: nothing to draw, and no picture applies yet
        raise UsageError(unscored(run_dir, frame))
    strategy = None
    if (run_dir / SETTINGS_FILE).is_file():
        strategy = read_settings(run_dir).get("strategy")  # (a space naming your module finds it where the search did)
    try:
        space = load_space(run_dir / SPACE_FILE) if (run_dir / SPACE_FILE).is_file() else None
    except UntrustedModule:  # the plots read the trials; only the axes' scales came from the space
        space = None
    study = open_study(run_dir) if (run_dir / TRIALS_DB).is_file() else None
    maximize = study is None or study.direction == optuna.study.StudyDirection.MAXIMIZE
    if _scored(frame).empty:  # every config failed: axes with no point, scaled by nothing (inf is no score either)
        failed = Skipped(f"no config scored: all {len(frame)} failed (trials.csv, column 'error')")
        return {name: failed for name in ("search_params", "search_history", "search_importances", "search_folds")} \
            | {"search_rungs": rungs(frame, strategy)}
    return {"search_params": score_vs_params(frame, space),
            "search_history": history(frame, maximize),
            "search_importances": run_importances(study, frame) if study is not None else Skipped("no trials.db"),
            "search_folds": fold_spread(frame),
            "search_rungs": rungs(frame, strategy)}

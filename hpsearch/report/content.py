"""What the report says, section by section, read from a run folder: the settings and data, the
ranking and the failures, the search plots and the retraining (the winner with its pictures:
``winner_section``).

Each ``*_section(run_dir, ...)`` returns the section's HTML body; a part of the run that does not
exist yet (a search stopped early, no retraining, no pictures) is said to be missing, with the
command that makes it, instead of failing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UsageError, param, shell
from ..rundir.chance import chance_summary
from ..rundir.names import RETRAIN_FILE
from ..settings import report_settings, setting_specs
from ..tasks import position_titles
from . import html as H

__all__ = ["SEARCH_CAPTIONS", "run_section", "ranking_section", "failures_section", "search_section",
           "retrain_section", "ranking_table", "unfinished", "pending"]

RANKED_SHOWN = 15  # the Lab 3 seed retrains its best 15

SEARCH_CAPTIONS = {
    "search_params": "Each config's mean CV score against each hyperparameter (log axis for log-uniform "
                     "ones, strips for categorical ones, colour = epochs reached when budgets differ).",
    "search_history": "Each config's mean CV score in the order it was tried, and the best score so far.",
    "search_importances": "Optuna's parameter importances (optuna.importance.get_param_importances; over the "
                          "complete trials, or for halving and Hyperband at the first rung, where every config "
                          "has a score; they sum to 1).",
    "search_folds": "The held-out score of each fold per config, best config first, with the mean.",
    "search_rungs": "Successive halving: how many configs each rung scored, and their scores at that "
                    "rung's budget in epochs.",
}

_SPLIT = re.compile(r"split\d+_test_score")


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _command(settings: dict) -> str:
    argv, resumed = settings.get("argv"), settings.get("resumed_argv")
    began = " ".join(argv) if argv else "(not recorded)"
    return f"{began}  (last resumed by: {' '.join(resumed)})" if resumed else began


def run_section(run_dir: Path, settings: dict) -> str:
    """The settings the search ran with and the data it ran on."""
    from ..rundir.run_info import run_dataset

    if not settings:
        return H.note(f"{run_dir} holds no settings.json: the settings are unknown.", missing=True)
    keys = report_settings(settings)
    specs = setting_specs()
    pairs = [(k, specs[k].unset if settings[k] is None else settings[k]) for k in keys if k in settings]
    body = f"<h3>Settings</h3><p><code>{H.escape(_command(settings))}</code></p>" + H.facts(pairs, wide=True)
    try:
        data = run_dataset(run_dir)
    except (UsageError, OSError, ValueError) as exc:
        return body + "<h3>Data</h3>" + H.note(f"the data could not be loaded here: {exc}", missing=True)
    counts = np.bincount(data.y_train.ravel(), minlength=data.n_classes)  # every position's label, if several
    shape = "×".join(str(v) for v in data.image_shape)
    data_pairs = [("dataset", data.name), ("training images", f"{len(data.y_train):,}" + (
        f" (a stratified slice: {param('max_train')} {settings['max_train']})" if settings.get("max_train") else "")),
        ("test images", f"{len(data.y_test):,} (never seen by the search)"),
        ("image shape", f"{shape} (channels × height × width)"),
        ("classes", ", ".join(data.class_names)),
        ("training images per class" if not data.task.positions else
         f"training labels per class (over the {data.task.positions} positions)",
         f"{counts.min():,} to {counts.max():,}")]
    return body + "<h3>Data</h3>" + H.facts(data_pairs)


def _trials(run_dir: Path) -> pd.DataFrame:
    from ..viz.search_plots import load_trials

    return load_trials(run_dir)


def ranking_table(frame: pd.DataFrame, top: int = RANKED_SHOWN) -> pd.DataFrame:
    """The best ``top`` configs: rank, trial, parameters, mean ± std CV score, fold range,
    accuracy, epochs reached and fit time."""
    scored = frame[np.isfinite(frame["mean_test_score"].astype(float))].head(top)
    splits = [c for c in frame if _SPLIT.fullmatch(c)]
    out = pd.DataFrame({"rank": scored["rank_test_score"], "trial": scored["trial"]})
    for column in (c for c in frame if c.startswith("param_")):
        out[column[len("param_"):]] = scored[column]
    out["CV score"] = scored["mean_test_score"]
    out["± std"] = scored["std_test_score"]
    if splits:
        out["worst fold"] = scored[splits].min(axis=1)
        out["best fold"] = scored[splits].max(axis=1)
    out["CV accuracy"] = scored["mean_test_accuracy"]
    per_position = position_titles(c for c in frame if c.startswith("mean_test_digit_") or c == "mean_test_exact_match")
    for column, title in per_position.items():
        out[title] = scored[column]
    if "mean_epochs" in scored:  # reached (early stopping may end a fold before its budget)
        out["epochs trained"] = scored["mean_epochs"]
    elif "n_epochs" in scored:
        out["epochs"] = scored["n_epochs"]
    out["fit time (s)"] = scored["mean_fit_time"]
    return out


def unfinished(run_dir: Path, frame: pd.DataFrame | None, settings: dict) -> str | None:
    """Why the search is not finished, with the command that finishes it, or None: configs a Ctrl-C or a kill
    left running (halving's scored at an early rung only), or fewer configs stored than asked."""
    if frame is None or frame.empty:
        return None  # the ranking says no trial is stored
    running = int((frame["state"] == "RUNNING").sum()) if "state" in frame else 0
    asked = settings.get("n")
    fewer = isinstance(asked, int) and len(frame) < asked
    if not running and not fewer:
        return None
    parts = ([f"{len(frame)} of the {asked} configs asked have a score"] if fewer else []) + (
        [f"{running} still running (scored short of their budget)"] if running else [])
    return (f"the search is unfinished ({', '.join(parts)}): it was stopped; finish it with hpsearch search "
            f"--resume {shell(run_dir)} (what is finished is kept)")


def pending(run_dir: Path, frame: pd.DataFrame | None, settings: dict) -> str | None:
    """Why there is nothing to retrain yet (an unfinished search, or no config that scored), or None."""
    if frame is not None and not frame.empty and frame["mean_test_score"].notna().sum() == 0:
        return ("nothing to retrain: no config of the search scored (each failed, see Failures); search again "
                "with other settings (another space, lower learning rates)")
    why = unfinished(run_dir, frame, settings)
    if why is None:
        return None
    then = "" if (settings.get("extra") or {}).get("no_retrain") else ", which then retrains its best configs"
    return f"the search is unfinished: hpsearch search --resume {shell(run_dir)} finishes it{then}"


def ranking_section(run_dir: Path, frame: pd.DataFrame | None, settings: dict) -> str:
    if frame is None or frame.empty:
        return H.note("no trial is stored yet: the search has not finished a config. Run or resume it: "
                      f"hpsearch search --resume {shell(run_dir)}", missing=True)
    stopped = unfinished(run_dir, frame, settings)
    parts = [f"{len(frame)} configs" + (f" of the {settings['n']} asked" if settings.get("n") else "")]
    if "state" in frame:  # each config counted once, by its state (a failed one is FAIL)
        words = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
        counts = sorted(frame["state"].value_counts().items())
        parts += [f"{n} {words.get(state, state.lower())}" for state, n in counts]
    if "state" not in frame or "FAIL" not in set(frame["state"]):
        failed = int(frame["mean_test_score"].isna().sum())
        parts.append(f"{failed} failed" if failed else "none failed")
    metric = settings.get("scoring", "score")
    racing = settings.get("fold_racing")  # halving stores "off" when it does not race
    raced = " (one that fold racing stopped: over the folds it trained)" if racing not in (None, "off") else ""
    text = (f"<p>{H.escape(', '.join(parts))}. Ranked by {H.escape(metric)}, the mean over "
            f"{H.escape(settings.get('cv', 'k'))} folds of the held-out fold's score{raced} (higher is better); a "
            "config trained for more epochs ranks before every config stopped at fewer. ")
    table = ranking_table(frame)
    failed = "" if len(table) == len(frame) or len(table) == RANKED_SHOWN else " (the failed ones are under Failures)"
    said = H.note(stopped, missing=True) if stopped else ""
    return said + text + f"The best {len(table)}{failed}:</p>" + H.table(table)


def failures_section(frame: pd.DataFrame | None, chance: dict | None = None) -> str:
    if frame is None or "error" not in frame:
        return H.note("no trial stored yet.")
    failed = frame[frame["error"].notna() & (frame["error"].astype(str) != "")]
    parts = [H.note("no config failed or diverged.") if failed.empty else
             f"<p>{len(failed)} configs scored NaN and rank last (a diverged fit or an error):</p>"
             + H.table(pd.DataFrame({"trial": failed["trial"], "reason": failed["error"].astype(str)}))]
    said = chance_summary(frame, chance)
    if said:  # they did not fail, but they learned nothing: not "fine"
        low = frame[frame["at_chance"].astype(bool)]
        shown = low[["trial", "mean_test_score", "mean_test_accuracy", *[c for c in low if c.startswith("param_")]]]
        parts.append(f"<p>{H.escape(said)}.</p>" + H.table(shown.rename(columns=lambda c: c.removeprefix("param_"))))
    elif chance is not None:
        parts.append(H.note("no config scored at chance level."))
    return "".join(parts)


def search_section(run_dir: Path) -> str:
    from ..viz.search_plots import draw_search_plots

    skipped: dict[str, str] = {}
    parts = []
    for stem, fig in draw_search_plots(run_dir, skipped).items():
        parts.append(H.png_figure(fig, SEARCH_CAPTIONS.get(stem, stem), alt=stem))
    parts += [H.note(f"{stem.removeprefix('search_')}: not drawn: {reason}") for stem, reason in skipped.items()]
    return "\n".join(parts)


def retrain_section(run_dir: Path, settings: dict, summary: dict | None = None, waiting: str | None = None) -> str:
    """The retraining's table; ``waiting``: why nothing is retrained yet (``pending``)."""
    path = run_dir / RETRAIN_FILE
    if not path.is_file():
        return H.note(f"not retrained yet: {waiting}" if waiting else "not retrained yet: the best configs get their "
                      f"full training with hpsearch retrain {shell(run_dir)}", missing=True)
    frame = pd.read_csv(path)
    if "in_top" in frame:  # rows kept from an earlier, larger --top: not this retraining's
        frame = frame[frame["in_top"].astype(str) == "True"]
    per_position = [c for c in frame if c.startswith("test_digit_") or c == "test_exact_match"]
    keep = [c for c in ("retrain_rank", "winner", "chosen_by", "trial", "search_rank", "cv_score", "cv_accuracy",
                        "cv_epochs", "test_accuracy", *per_position, "test_loss", "epochs", "schedule", "fit_time",
                        "error") if c in frame]
    titles = position_titles(per_position)
    shown = frame[keep + [c for c in frame if c.startswith("param_")]].rename(
        columns=lambda c: titles.get(c) or c.removeprefix("param_").replace("_", " "))
    epochs = frame["retrain_epochs"].iloc[0] if "retrain_epochs" in frame and len(frame) else "?"
    by = frame["chosen_by"].iloc[0] if "chosen_by" in frame and len(frame) else "test"  # older runs: the seed's
    rule = ("the winner is the one with the best search (CV) rank: the test set was read only after the choice, so "
            "its test accuracy is an honest estimate; the others' test accuracies are shown, not used for the choice"
            if by == "cv" else "the most accurate on the test set is the winner: <b>selected on the test set</b>, so "
            "its test accuracy is optimistic (choose by CV rank with --winner-by cv)")
    from ..retrain.files import train_set_words

    done = (summary or {}).get("retrain") or {}
    best = f"The best {H.plural(len(frame), 'config')} of the search"
    # a Ctrl-C: so far, of the top asked (a summary written before "retrained" was kept counted "top" so far)
    if done.get("complete") is False and isinstance(done.get("top"), int) and "retrained" in done:
        best = (f"{len(frame)} of the best {done['top']} configs of the search so far (the retraining stopped; "
                f"hpsearch retrain {H.escape(shell(run_dir))} retrains the rest)")
    return (f"<p>{best}, each retrained for "
            f"{H.escape(H.plural(epochs, 'epoch'))} on "
            f"{H.escape(train_set_words(settings))} (no early stopping) and scored once on the test set; {rule}.</p>"
            + H.table(shown))

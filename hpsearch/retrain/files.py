"""What a retraining writes besides the winner: ``retrain.csv``, its rows ranked by the rule that
chose the winner, and the retraining's part of ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..rundir.atomic import atomic_write_text
from ..rundir.names import RETRAIN_FILE, SUMMARY_FILE, WINNER_FILE
from ..rundir.run_info import read_json

__all__ = ["ranked_table", "write_table", "write_summary", "WINNER_LABELS"]


def ranked_table(rows: list[dict], winner_by: str) -> pd.DataFrame:
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
    table.insert(3, "in_top", True)
    return table


def write_table(run_dir: Path, rows: list[dict], beyond: list[dict], winner_by: str) -> None:
    """``retrain.csv``: the top's rows ranked, then the rows kept from a larger top (``in_top`` False, never the
    winner), ranked the same way after them."""
    table = ranked_table(rows, winner_by)
    if beyond:
        more = ranked_table(beyond, winner_by).assign(winner=False, in_top=False)
        more["retrain_rank"] += len(table)
        table = pd.concat([table, more], ignore_index=True)
    atomic_write_text(run_dir / RETRAIN_FILE, table.to_csv(index=False))


WINNER_LABELS = {
    "cv": "chosen by its search (CV) rank; the test set was read only after the choice",
    "test": "selected on the test set (the Lab 3 rule): its test accuracy is optimistic",
}


def train_set_words(settings: dict) -> str:
    """What the retraining trained on: the whole training set, or the search's --max-train slice of it."""
    max_train = settings.get("max_train")
    if max_train:
        return f"the search's slice of at most {int(max_train):,} training images (--max-train)"
    return "the whole training set"


def write_summary(run_dir, settings, rows: list[dict], configs: dict, retrain_epochs, device, monitor_test, winner_by,
                  complete: bool) -> tuple[pd.DataFrame, dict]:
    """summary.json's retraining and winner as ``rows`` stand (``configs``: trial -> config), and that
    ranked table and winner. Written with every new winner.pt, so the two agree even after a Ctrl-C or
    ``kill -9``; ``complete`` False says the retraining stopped before every config was retrained."""
    table = ranked_table(rows, winner_by)
    winner = {**table.iloc[0].to_dict(), "config": configs[int(table.iloc[0]["trial"])]}
    path = run_dir / SUMMARY_FILE
    summary = read_json(path, replace_damaged=True)  # a damaged one must not stop a finished retraining
    summary.update({
        "dataset": settings.get("dataset_name", settings.get("dataset")),
        "search": {k: settings.get(k) for k in ("n", "space", "cv", "scoring", "max_epochs", "patience",
                                               "batch_size", "seed", "strategy", "max_train")},
        # where the winner was trained: a call that reuses its row trained nothing, on no device of its own
        # top: the configs asked for; retrained: those done (fewer when the retraining stopped, complete False)
        "retrain": {"top": len(configs), "retrained": int(len(table)), "retrain_epochs": retrain_epochs,
                    "device": winner["device"] if isinstance(winner.get("device"), str) else device,
                    "schedule": winner["config"].get("schedule", "none"),
                    "train_set": f"{train_set_words(settings).removeprefix('the ')}, no early stopping",
                    "test_monitored_each_epoch": monitor_test, "table": RETRAIN_FILE, "complete": complete},
        "winner": {"trial": int(winner["trial"]), "search_rank": int(winner["search_rank"]),
                   "config": winner["config"], "test_accuracy": float(winner["test_accuracy"]),
                   "test_loss": float(winner["test_loss"]), "epochs": int(winner["epochs"]),
                   **{k: float(v) for k, v in winner.items() if k.startswith("test_digit_") or k == "test_exact_match"},
                   "fit_time": float(winner["fit_time"]), "file": WINNER_FILE,
                   "chosen_by": winner_by, "chosen_how": WINNER_LABELS[winner_by]},
    })
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return table, winner

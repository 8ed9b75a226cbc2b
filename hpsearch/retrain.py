"""Retrain the best configs of a search on the whole training set, crown a winner, save it.

This is section 4.4 of the Lab 3 seed: the top ``k`` configs of the ranking are each trained
again on the *whole* training set (no cross-validation, no early stopping) for a fixed number of
epochs, then scored on the test set, which the search never saw. The most accurate one is the
winner. As in the seed, each new best is saved the moment it appears, so an interrupted retraining
still leaves the best net so far.

Learning curves: the net trains on every training image, so no validation split exists. The test
set's loss and accuracy are *recorded* after each epoch (skorch's ``valid_loss``/``valid_acc``
columns) so the learning curves have a held-out curve, but nothing reads them during training:
no early stopping, no checkpoint, no epoch choice, so the weights are exactly those a run without
the monitor would give. The test set is used once for a decision: picking the winner among the
``k`` retrained configs (as in the seed), which makes the winner's test accuracy slightly
optimistic. Pass ``monitor_test=False`` to keep the test set out of training entirely.

Files written into the run folder:

``retrain.csv``
    One row per retrained config, best test accuracy first.
``winner.pt``
    The winner's bundle: weights, config, dataset name, image shape, class names, test accuracy,
    epochs and training history. ``load_winner(run_dir)`` rebuilds the fitted skorch net.
``summary.json``
    The run's summary: search settings, the retraining and the winner.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from skorch.dataset import Dataset as SkorchDataset
from skorch.helper import predefined_split
from skorch.history import History
from tqdm.auto import tqdm

from .data import Dataset, load_dataset
from .errors import DivergedError, UsageError, check_whole
from .estimator import DEFAULT_BATCH_SIZE, make_net
from .results import param_text
from .search import InterruptFlag, SearchInterrupted, trial_seed
from .store import STUDY, atomic_write_text, load_results

__all__ = ["retrain_top", "RetrainResult", "save_winner", "load_winner", "read_winner_info",
           "top_configs", "WINNER_FILE", "RETRAIN_FILE", "SUMMARY_FILE"]

WINNER_FILE = "winner.pt"
RETRAIN_FILE = "retrain.csv"
SUMMARY_FILE = "summary.json"
BUNDLE_FORMAT = 1
TEST_MONITOR_LABEL = "test loss (recorded each epoch; never used to train, stop or choose)"


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
        The fitted winning net.
    run_dir : Path
    """

    table: pd.DataFrame
    winner: dict
    net: object
    run_dir: Path


def _read_settings(run_dir: Path) -> dict:
    path = run_dir / "settings.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no settings.json; is it a run folder made by hpsearch search?")
    return json.loads(path.read_text())


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
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{run_dir / 'trials.db'}")
    configs = {t.user_attrs["index"]: t.user_attrs["config"]
               for t in study.get_trials(deepcopy=False) if "index" in t.user_attrs}
    return [{"trial": int(row.trial), "search_rank": int(row.rank_test_score),
             "cv_score": float(row.mean_test_score), "cv_accuracy": float(row.mean_test_accuracy),
             "config": configs[int(row.trial)]}
            for row in frame.head(top).itertuples()]


def _build(config: dict, dataset: Dataset, *, device: str, epochs: int, batch_size: int,
           random_state: int | None, monitor_test: bool):
    config = {**config, "max_epochs": epochs}  # the retraining's epochs beat the space's
    extra = {}
    if monitor_test:
        extra["train_split"] = predefined_split(SkorchDataset(dataset.X_test, dataset.y_test))
        # Each pass of a DataLoader draws a seed from its generator; a private one keeps the global
        # RNG (shuffling, dropout) exactly where a run without the monitor has it: same weights.
        extra["iterator_valid__generator"] = torch.Generator()
    return make_net(config, dataset.n_features, dataset.n_classes, image_shape=dataset.image_shape,
                    device=device, max_epochs=epochs, batch_size=batch_size, patience=0,
                    random_state=random_state, **extra)


def retrain_top(run_dir, top: int = 15, retrain_epochs: int = 300, *, device: str = "cpu",
                dataset: Dataset | None = None, monitor_test: bool = True,
                progress: bool = True) -> RetrainResult:
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
        Show a progress bar over the configs.

    Returns
    -------
    RetrainResult
        The table (also written to ``retrain.csv``), the winner and its fitted net. The winner is
        saved to ``winner.pt`` and named in ``summary.json``.
    """
    run_dir = Path(run_dir)
    check_whole("--top", top, 1)
    check_whole("--retrain-epochs", retrain_epochs, 1)
    settings = _read_settings(run_dir)
    name = settings.get("dataset_name", settings.get("dataset"))
    if dataset is None:
        dataset = load_dataset(settings["dataset"], settings.get("data_dir"))
    elif dataset.name != name:
        raise UsageError(f"dataset {dataset.name!r} is not the run's dataset {name!r}; pass the "
                         "dataset the search used (or none, to load it)")
    batch_size = int(settings.get("batch_size", DEFAULT_BATCH_SIZE))
    seed = int(settings.get("seed", 0))
    candidates = top_configs(run_dir, top)

    rows, best_acc, best_net = [], -np.inf, None
    bar = tqdm(candidates, desc="retrain", unit="cfg", disable=not progress, dynamic_ncols=True)
    for cand in bar:
        config = cand["config"]
        net = _build(config, dataset, device=device, epochs=retrain_epochs, batch_size=batch_size,
                     random_state=trial_seed(seed, cand["trial"]), monitor_test=monitor_test)
        start = time.perf_counter()
        error, acc, loss = "", float("nan"), float("nan")
        try:
            with InterruptFlag() as flag:
                net.fit(dataset.X_train, dataset.y_train)
            if flag.raised:  # skorch's fit swallows Ctrl-C and returns a half-trained net
                bar.close()
                raise SearchInterrupted(
                    f"retraining interrupted after {len(rows)} of {len(candidates)} configs; the best "
                    f"so far is in {run_dir / WINNER_FILE}, the rest are not retrained") from None
            proba = net.predict_proba(dataset.X_test)
            acc = float(np.mean(proba.argmax(1) == dataset.y_test))
            loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(proba)), dataset.y_test], 1e-12, 1))))
        except (DivergedError, ValueError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        row = {"trial": cand["trial"], "search_rank": cand["search_rank"], "cv_score": cand["cv_score"],
               "cv_accuracy": cand["cv_accuracy"], "test_accuracy": acc, "test_loss": loss,
               "epochs": len(net.history) if error == "" else 0,
               "fit_time": time.perf_counter() - start, "error": error,
               **{f"param_{k}": param_text(v) for k, v in sorted(config.items())}}
        rows.append(row)
        if not error and acc > best_acc:  # strictly better: ties keep the better-ranked config
            best_acc, best_net = acc, net
            save_winner(net, run_dir, dataset, config=config, test_accuracy=acc,
                        extra={"trial": cand["trial"], "search_rank": cand["search_rank"],
                               "cv_score": cand["cv_score"], "retrain_epochs": retrain_epochs,
                               "valid_label": TEST_MONITOR_LABEL if monitor_test else None})
            bar.set_postfix(best=f"{acc:.4f}")
        table = _ranked(rows)
        atomic_write_text(run_dir / RETRAIN_FILE, table.to_csv(index=False))
    bar.close()
    if best_net is None:
        raise UsageError(f"every one of the {len(rows)} retrained configs failed (see "
                         f"{run_dir / RETRAIN_FILE}, column 'error'); try fewer --retrain-epochs")
    table = _ranked(rows)
    winner = table.iloc[0].to_dict()
    winner["config"] = next(c["config"] for c in candidates if c["trial"] == winner["trial"])
    _write_summary(run_dir, settings, table, winner, retrain_epochs, device, monitor_test)
    return RetrainResult(table, winner, best_net, run_dir)


def _ranked(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    acc = table["test_accuracy"]
    table.insert(0, "retrain_rank", acc.rank(ascending=False, method="min").fillna(acc.notna().sum() + 1)
                 .astype(int))
    table = table.sort_values(["retrain_rank", "search_rank"], kind="stable").reset_index(drop=True)
    table.insert(1, "winner", [i == 0 and not np.isnan(a) for i, a in enumerate(table["test_accuracy"])])
    return table


def _write_summary(run_dir, settings, table, winner, retrain_epochs, device, monitor_test) -> None:
    path = run_dir / SUMMARY_FILE
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary.update({
        "dataset": settings.get("dataset_name", settings.get("dataset")),
        "search": {k: settings.get(k) for k in ("n", "space", "cv", "scoring", "max_epochs", "patience",
                                               "batch_size", "seed")},
        "retrain": {"top": int(len(table)), "retrain_epochs": retrain_epochs, "device": device,
                    "train_set": "whole training set, no early stopping",
                    "test_monitored_each_epoch": monitor_test, "table": RETRAIN_FILE},
        "winner": {"trial": int(winner["trial"]), "search_rank": int(winner["search_rank"]),
                   "config": winner["config"], "test_accuracy": float(winner["test_accuracy"]),
                   "test_loss": float(winner["test_loss"]), "epochs": int(winner["epochs"]),
                   "fit_time": float(winner["fit_time"]), "file": WINNER_FILE},
    })
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")


def _history_list(net) -> list[dict]:
    """The skorch history without per-batch records, JSON-clean (for the bundle)."""
    def plain(v):  # numpy scalars would not load with torch.load(weights_only=True)
        return v.item() if isinstance(v, np.generic) else v

    return [{k: plain(v) for k, v in epoch.items()
             if k != "batches" and isinstance(v, bool | int | float | str | np.generic)}
            for epoch in net.history]


def save_winner(net, run_dir, dataset: Dataset, *, config: dict, test_accuracy: float,
                extra: dict | None = None) -> Path:
    """Save a fitted net as the run's winner in ``<run_dir>/winner.pt``.

    The bundle holds the weights (on the CPU), the config, the dataset's name, image shape and
    class names, the test accuracy, the epochs trained and the per-epoch history, plus ``extra``.
    It is written atomically and read back by ``load_winner``.

    Returns
    -------
    Path
        The bundle's path.
    """
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().clone() for k, v in net.module_.state_dict().items()}
    bundle = {
        "format": BUNDLE_FORMAT,
        "state_dict": state,
        "config": json.loads(json.dumps(config)),
        "dataset": dataset.name,
        "image_shape": [int(v) for v in dataset.image_shape],
        "class_names": list(dataset.class_names),
        "n_features": int(dataset.n_features),
        "n_classes": int(dataset.n_classes),
        "test_accuracy": float(test_accuracy),
        "epochs": len(net.history),
        "batch_size": int(net.batch_size),
        "history": _history_list(net),
        **(extra or {}),
    }
    path = run_dir / WINNER_FILE
    tmp = run_dir / f".{WINNER_FILE}.tmp"
    torch.save(bundle, tmp)
    tmp.replace(path)
    return path


def _read_bundle(run_dir) -> dict:
    path = Path(run_dir) / WINNER_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no {WINNER_FILE}; retrain the search's best configs first: "
                         f"hpsearch retrain {run_dir}")
    bundle = torch.load(path, map_location="cpu", weights_only=True)
    if bundle.get("format") != BUNDLE_FORMAT:
        raise UsageError(f"{path} has bundle format {bundle.get('format')!r}; this hpsearch reads "
                         f"format {BUNDLE_FORMAT}; retrain the run again to rewrite it")
    return bundle


def read_winner_info(run_dir) -> dict:
    """The winner's bundle without its weights: config, dataset, image_shape, class_names,
    test_accuracy, epochs, history, trial ..."""
    bundle = _read_bundle(run_dir)
    bundle.pop("state_dict")
    return bundle


def load_winner(run_dir, device: str = "cpu"):
    """Load the winner saved in ``run_dir`` as a fitted skorch net.

    Parameters
    ----------
    run_dir : path
        A run folder holding ``winner.pt`` (written by ``retrain_top`` / ``hpsearch retrain``).
    device : str
        Where the net lives: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    SeededNet
        The fitted net: ``predict``/``predict_proba`` give exactly what the net gave before it was
        saved, and ``net.history`` holds its training history. ``net.winner_`` is the bundle's
        metadata (config, dataset, image_shape, class_names, test_accuracy, ...).

    Examples
    --------
    >>> net = hpsearch.load_winner("results/digits_mlp_mnist_seed0")  # doctest: +SKIP
    >>> net.predict(load_dataset("digits").X_test[:5])                  # doctest: +SKIP
    """
    bundle = _read_bundle(run_dir)
    state = bundle.pop("state_dict")
    net = make_net(bundle["config"], bundle["n_features"], bundle["n_classes"],
                   image_shape=tuple(bundle["image_shape"]), device=device,
                   max_epochs=bundle["epochs"] or 1, batch_size=bundle["batch_size"], patience=0)
    net.initialize()
    net.module_.load_state_dict(state)
    net.module_.eval()
    net.history = History(bundle["history"])
    net.winner_ = bundle
    return net

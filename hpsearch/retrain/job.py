"""One config's retraining, as a job runs it: build the net (the test set as a recorded monitor),
train it for the retraining's epochs, from its checkpoint when an earlier run was cut short
(``hpsearch.rundir.checkpoints``), score it on the test set, return its row and its weights.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch
from skorch.dataset import Dataset as SkorchDataset
from skorch.helper import predefined_split

from ..data.dataset import Dataset
from ..errors import DivergedError, StorageError
from ..jobs.resources import import_before_timing, torch_threads
from ..jobs.workers import die_with_parent, missing_module
from ..rundir.checkpoints import EpochCheckpoint, checkpoint_path, resume_state
from ..rundir.exports import param_text
from ..rundir.states import restore, run_digest
from ..training.models.shipping import shipped
from ..training.net import make_net
from ..training.seeds import trial_seed
from ..winner.bundle import winner_payload
from .progress import EpochReport

__all__ = ["build_retrain_net", "retrain_one", "checkpoint_meta", "say_resumed"]


def build_retrain_net(config: dict, dataset: Dataset, *, device: str, epochs: int, batch_size: int,
                      random_state: int | None, monitor_test: bool, callbacks=None, module=None):
    """The net a retraining fits; ``module``: your module's class, as a job's worker was sent it
    (``hpsearch.training.models.user.shipped``)."""
    config = {**config, "max_epochs": epochs}  # the retraining's epochs beat the space's
    extra = {}
    if monitor_test:
        extra["train_split"] = predefined_split(SkorchDataset(dataset.X_test, dataset.y_test))
        # Each pass of a DataLoader draws a seed from its generator; a private one keeps the global
        # RNG (shuffling, dropout) exactly where a run without the monitor has it: same weights.
        extra["iterator_valid__generator"] = torch.Generator()
    return make_net(config, dataset.n_features, dataset.n_classes, image_shape=dataset.image_shape,
                    device=device, max_epochs=epochs, batch_size=batch_size, patience=0,
                    random_state=random_state, callbacks=callbacks, task=dataset.task, **extra,
                    **({"module": module} if module is not None else shipped(config)))


def _fit(net, dataset: Dataset, checkpoint, epochs: int) -> None:
    """``net.fit``, or, from this fit's checkpoint, ``partial_fit`` for the epochs left."""
    state = resume_state(checkpoint.path, checkpoint.meta) if checkpoint is not None else None
    if state is None:
        net.fit(dataset.X_train, dataset.y_train)
        return
    restore(net, state)
    if len(net.history) < epochs:
        net.partial_fit(dataset.X_train, dataset.y_train, epochs=epochs - len(net.history))


def checkpoint_meta(run_id: str, cand: dict, epochs: int, monitor_test: bool, batch_size: int, seed: int) -> dict:
    """The owner a retraining's checkpoint carries: this very fit, nothing else resumes from it."""
    return {"run": run_id, "trial": int(cand["trial"]), "retrain_epochs": epochs, "config": cand["config"],
            "monitor_test": bool(monitor_test), "batch_size": batch_size, "seed": seed}


def retrain_one(cand: dict, dataset: Dataset, *, device, epochs, batch_size, seed, monitor_test, threads,
                sink, run_dir=None, checkpoint_every: int = 1, run_id: str = "",
                module=None) -> tuple[dict, bytes | None]:
    """Retrain one candidate; its table row and the fitted net as ``winner_payload`` bytes (``None``
    when it failed; bytes, because torch would share a returned tensor through a file descriptor that
    the busy worker hands over only when idle, holding every result back until the last fit). A fit that
    Ctrl-C cut short comes back with ``row["error"] == "interrupted"`` and is never kept; with
    ``run_dir`` its checkpoint is, and the next call goes on from it."""
    die_with_parent()  # a kill -9 of the search must not leave this job training
    # joblib hands a job's large arrays over as read-only memory maps; torch warns on each, and the
    # fit only reads them (as the search's resident data, which is quiet about it too)
    with torch_threads(threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        callbacks = [("progress", EpochReport(cand["trial"], sink))]
        checkpoint = None
        if run_dir is not None and checkpoint_every > 0:
            meta = checkpoint_meta(run_id, cand, epochs, monitor_test, batch_size, seed)
            checkpoint = EpochCheckpoint(checkpoint_path(run_dir, cand["trial"]), meta, checkpoint_every)
            callbacks.append(("checkpoint", checkpoint))
        import_before_timing()
        start = time.perf_counter()
        error, missing = "", {}
        tested = {"test_accuracy": float("nan"), "test_loss": float("nan")}
        tested.update({f"test_{name}": float("nan") for name in dataset.task.metric_names()})
        try:  # (outside the fit's try: a UsageError of the config's net is the command's one line, as before)
            net = build_retrain_net(cand["config"], dataset, device=device, epochs=epochs, batch_size=batch_size,
                                    random_state=trial_seed(seed, cand["trial"]), monitor_test=monitor_test,
                                    callbacks=callbacks, module=module)
        except ImportError as exc:  # the config's, unless the retraining's process has it (check_missing)
            net, missing = None, missing_module(exc)
            error = missing["error"]
        try:
            if net is not None:
                _fit(net, dataset, checkpoint, epochs)
                if len(net.history) < epochs or "dur" not in net.history[-1]:  # skorch swallowed Ctrl-C
                    error = "interrupted"
                else:
                    tested = dataset.task.test_metrics(dataset.y_test, net.predict_proba(dataset.X_test))
        except StorageError:  # a full or read-only disk is not the config's fault: not recorded, retried
            raise
        except ImportError as exc:  # the config's, unless the retraining's process has it (check_missing)
            missing = missing_module(exc)
            error = missing["error"]
        except (DivergedError, ValueError, RuntimeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        row = {"trial": cand["trial"], "search_rank": cand["search_rank"], "cv_score": cand["cv_score"],
               "cv_accuracy": cand["cv_accuracy"], "cv_epochs": cand.get("cv_epochs"), **tested,
               "epochs": len(net.history) if error == "" else 0, "retrain_epochs": epochs,
               "schedule": cand["config"].get("schedule", "none"),
               "fit_time": time.perf_counter() - start, "device": str(net.device) if net is not None else str(device),
               "error": error, **missing,
               **{f"param_{k}": param_text(v) for k, v in sorted(cand["config"].items())}}
        return row, (winner_payload(net) if error == "" else None)


def say_resumed(run_dir: Path, todo: list[dict], epochs: int, monitor_test: bool, batch_size: int, seed: int,
                 checkpoint_every: int) -> None:
    """Which configs go on from a checkpoint, and from which epoch (said before the work starts)."""
    from ..rundir.store import run_fingerprint  # (not at the top: the jobs import this module, not the store)

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

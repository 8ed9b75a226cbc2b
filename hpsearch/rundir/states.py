"""Continuation states: where a (config, fold) fit stopped, so a survivor of a halving rung trains
on from there instead of starting over.

A state is ``<run>/states/<index>/fold<k>.pt``: the module's weights, the optimizer's state, the
skorch history, early stopping's counters, the learning-rate schedule's state and torch's random
state right after the last epoch (batch order and dropout draw from it), written atomically by
whichever worker trained the fold.
Restoring all of it makes continuation exact on the CPU: a fit brought to 3 epochs and continued to
9 has the weights of a fit trained straight for 9. States are removed when their config is pruned
or final.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from skorch.history import History

from .atomic import atomic_write
from .names import STATES_DIR

__all__ = ["state_path", "capture", "restore", "save_state", "load_state", "remove_states", "early_stopping_of"]



def state_path(run_dir, index: int, fold: int) -> Path:
    return Path(run_dir) / STATES_DIR / str(index) / f"fold{fold}.pt"


def early_stopping_of(net):
    """The net's ``ContinuableEarlyStopping`` callback, or None (``--patience 0``)."""
    return dict(net.callbacks_).get("early_stopping")


def _schedule_of(net):
    """The net's learning-rate schedule callback (``hpsearch.training.schedules``), or None."""
    return dict(net.callbacks_).get("lr_schedule")


def capture(net) -> dict:
    """Everything a fitted skorch ``net`` needs to go on training as if it had never paused."""
    stopping = early_stopping_of(net)
    schedule = _schedule_of(net)
    return {
        "lr_schedule": schedule.state() if schedule is not None else None,
        "module": net.module_.state_dict(),
        "optimizer": net.optimizer_.state_dict(),
        "history": net.history.to_list(),
        "early_stopping": stopping.counters() if stopping is not None else None,
        "stopped": bool(stopping is not None and stopping.stopped),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if str(net.device).startswith("cuda") else None,
    }


def restore(net, state: dict) -> None:
    """Initialize ``net`` and put it back where ``state`` was captured (weights, optimizer,
    history, early stopping and the random state the next epoch draws from)."""
    net.initialize()
    net.module_.load_state_dict(state["module"])
    net.optimizer_.load_state_dict(state["optimizer"])
    net.history = History(state["history"])
    stopping = early_stopping_of(net)
    if stopping is not None and state["early_stopping"] is not None:
        stopping.resume_from(state["early_stopping"])
    schedule = _schedule_of(net)
    if schedule is not None and state.get("lr_schedule") is not None:
        schedule.resume_from(state["lr_schedule"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def save_state(path: Path, state: dict) -> None:
    """Write ``state`` so that a reader sees the previous file or this one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: torch.save(state, fh), binary=True)


def load_state(path: Path) -> dict | None:
    """The state at ``path``, or None when there is none (the fold starts from scratch)."""
    path = Path(path)
    if not path.is_file():
        return None
    # our own file in the run folder; the history holds plain Python values, not only tensors
    return torch.load(path, map_location="cpu", weights_only=False)


def remove_states(run_dir, index: int) -> None:
    """Forget config ``index``'s states (it was pruned, or it is final)."""
    shutil.rmtree(Path(run_dir) / STATES_DIR / str(index), ignore_errors=True)

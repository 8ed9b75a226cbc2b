"""Continuation states: where a (config, fold) fit stopped, so a survivor of a halving rung trains
on from there instead of starting over.

A state is ``<run>/states/<index>/fold<k>.pt``: the module's weights, the optimizer's state, the
skorch history, early stopping's counters, the learning-rate schedule's state and torch's random
state right after the last epoch (batch order and dropout draw from it), written atomically by
whichever worker trained the fold, with its ``owner``: the run (a digest of its fingerprint), the
config, its trial index and fold. A state is data, never code: it holds tensors and plain Python
values only and is read with ``torch.load(weights_only=True)``. One that cannot be used (damaged,
crafted, another run's or another config's, copied in) is refused, said on stderr, and that fold
starts from scratch.
Restoring all of it makes continuation exact on the CPU: a fit brought to 3 epochs and continued to
9 has the weights of a fit trained straight for 9. States are removed when their config is pruned
or final.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from skorch.history import History

from ..errors import UsageError, brief
from .atomic import atomic_write
from .names import STATES_DIR
from .pickle_scan import TooLarge, Unfollowable, load_torch_data

__all__ = ["state_path", "capture", "restore", "save_state", "load_state", "refuse_state", "remove_states",
           "early_stopping_of", "owner_of", "run_digest", "unreadable"]



def state_path(run_dir, index: int, fold: int) -> Path:
    return Path(run_dir) / STATES_DIR / str(index) / f"fold{fold}.pt"


def early_stopping_of(net):
    """The net's ``ContinuableEarlyStopping`` callback, or None (``--patience 0``). Found by its kind, not
    its name: a user's own callback may be called "early_stopping"."""
    from ..training.callbacks import ContinuableEarlyStopping

    return next((cb for _, cb in net.callbacks_ if isinstance(cb, ContinuableEarlyStopping)), None)


def _schedule_of(net):
    """The net's learning-rate schedule callback (``hpsearch.training.schedules``), or None."""
    from ..training.schedules import ResumableLRScheduler

    return next((cb for _, cb in net.callbacks_ if isinstance(cb, ResumableLRScheduler)), None)


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
        "cuda_rng": torch.cuda.get_rng_state(net.device) if str(net.device).startswith("cuda") else None,
        # parameters a callback froze (skorch's Freezer): a fresh module trains them all
        "frozen": [name for name, p in net.module_.named_parameters() if not p.requires_grad],
        # the shuffling of a loader given its own generator: the next epoch's order, as a straight fit's
        "loader_rng": loader.get_state() if isinstance(loader := _loader_generator(net), torch.Generator) else None,
    }


def _loader_generator(net):
    return net.get_params(deep=False).get("iterator_train__generator")


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
    _restore_cuda_rng(net, state.get("cuda_rng"))
    frozen = set(state.get("frozen") or ())
    for name, parameter in net.module_.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    loader = _loader_generator(net)
    if isinstance(loader, torch.Generator) and state.get("loader_rng") is not None:
        loader.set_state(state["loader_rng"])


def _restore_cuda_rng(net, saved) -> None:
    """The net's own GPU's random state: the one ``capture`` keeps, or, from a state kept before, its
    device's entry of every GPU's (put back whole on a machine with fewer GPUs, that failed the fit)."""
    if saved is None or not str(net.device).startswith("cuda"):
        return  # a CPU state, or a GPU fit going on on the CPU: no GPU draws to restore
    device = torch.device(net.device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    if isinstance(saved, list | tuple):
        saved = saved[index] if index < len(saved) else None
    if saved is not None:
        torch.cuda.set_rng_state(saved, index)


def run_digest(fingerprint: dict) -> str:
    """What identifies a run's computation: a digest of its fingerprint (runs with equal fingerprints
    train the same fits, so their states are interchangeable)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]


def owner_of(run: str, index: int, fold: int, config: dict) -> dict:
    """The owner a (config, fold)'s state carries and is checked against: run digest, trial, fold, config."""
    return _canonical({"run": run, "index": int(index), "fold": int(fold), "config": config})


def _canonical(value):
    """As JSON reads it back (tuples as lists, numpy scalars as numbers): equal owners compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _plain(value):
    """``value`` with numpy scalars as Python numbers and numpy arrays as tensors: what
    ``torch.load(weights_only=True)`` reads back."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, dict):
        return type(value)((k, _plain(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


def save_state(path: Path, state: dict, owner: dict) -> None:
    """Write ``state`` with its ``owner`` (``owner_of``), so that a reader sees the previous file or
    this one, never half of it."""
    path = Path(path)
    if path.parent.is_symlink():  # a config's folder linked out of the run: never written through
        raise UsageError(f"{path.parent} is a symbolic link (to {os.readlink(path.parent)}), not a folder hpsearch "
                         "made; remove it, then run the same command again")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**_plain(state), "owner": _canonical(owner)}
    atomic_write(path, lambda fh: torch.save(payload, fh), binary=True)


def load_state(path: Path, owner: dict) -> dict | None:
    """The state at ``path`` when it is there and usable: readable as data only and ``owner``'s.
    None otherwise: no file (the fold starts from scratch), or a file that cannot be used, which is
    said on stderr (in a job: the search's terminal) before the fold starts from scratch."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = load_torch_data(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError,
            AttributeError, KeyError, IndexError) as exc:  # torch's reader raises any of these on bad bytes
        return refuse_state(path, f"cannot be read as data ({unreadable(exc, path)})")
    if not isinstance(state, dict) or "owner" not in state:
        return refuse_state(path, "holds no owner (not a state hpsearch wrote)")
    mine = _canonical(owner)
    if state["owner"] != mine:
        theirs = state["owner"] if isinstance(state["owner"], dict) else {}
        what = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
        return refuse_state(path, f"belongs to another {' and '.join(what) or 'fit'} (copied in from elsewhere?)")
    return state


def unreadable(exc: BaseException, path: Path | None = None) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in our words: torch's own text advises
    loading it with ``weights_only=False``, the very thing that would run a crafted file's code. A file
    that is not torch.save's archive at all (empty, text, cut before its header) is said as such, not
    as possibly crafted."""
    if isinstance(exc, TooLarge | Unfollowable):
        return str(exc)
    if path is not None and not _an_archive(path):
        return "not a file torch.save wrote: empty, cut short or replaced by another kind of file"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return "it holds objects, not only tensors and plain values: possibly crafted, so never loaded"
    cannot_open = isinstance(exc, OSError) and exc.errno not in (None, errno.EINVAL)  # a permission, a missing file
    if any(word in str(exc) for word in ("PytorchStreamReader", "zip archive", "miniz")) or (
            path is not None and not cannot_open and not zipfile.is_zipfile(path)):  # torch's words, or EINVAL
        return "a torch.save archive cut short or damaged (its zip directory or a record cannot be read)"
    return f"{type(exc).__name__}: {brief(exc)}"


def _an_archive(path: Path) -> bool:
    """Whether ``path`` begins as torch.save's files do (a zip archive, since torch 1.6)."""
    try:
        with open(path, "rb") as file:
            return file.read(4) == b"PK\x03\x04"
    except OSError:
        return True  # unreadable for another reason: the exception says it


def refuse_state(path: Path, why: str) -> None:
    """Say (on stderr: in a job, the search's terminal) that the state at ``path`` is not used, and why."""
    print(f"hpsearch: warning: {path} {why}; not used: that fit starts from scratch", file=sys.stderr, flush=True)
    return None


def remove_states(run_dir, index: int) -> None:
    """Forget config ``index``'s states (it was pruned, or it is final)."""
    shutil.rmtree(Path(run_dir) / STATES_DIR / str(index), ignore_errors=True)

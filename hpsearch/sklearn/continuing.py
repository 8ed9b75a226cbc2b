"""A skorch net whose fits continue: what makes halving's survivors go on from where they stopped.

scikit-learn's searches clone the estimator and call ``fit(X_train, y_train)`` with
``max_epochs = n_resources`` at every iteration, from scratch. ``continuing(net, storage, ...)``
returns the same net as an instance of a subclass of its own class whose ``fit`` first looks in
``storage`` for a state of the same fit (the same parameters but ``max_epochs``, the same rows) at
fewer epochs: it restores it (weights, optimizer, history, random state) and trains only the epochs
left, then keeps its own state for the next iteration. A state at exactly the epochs asked is a fit
already done (a resumed search): restored, nothing trained. Every net is seeded from the search's
``random_state`` and its parameters, so a continued fit equals a straight one, and states are read
as data only (``torch.load(weights_only=True)``, checked against their owner).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..jobs.resources import torch_threads
from ..rundir.states import capture, load_state, restore, save_state

__all__ = ["continuing", "fit_key", "described", "EPOCHS_LOG"]

EPOCHS_LOG = "epochs.log"  # one line per fit: the epochs it trained (a resumed fit trains 0)
_VOLATILE = ("max_epochs", "verbose", "warm_start")  # what does not make another fit


def described(value):
    """A stable description of a parameter's value (classes by name, estimators by their params)."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if hasattr(value, "get_params"):
        return [type(value).__qualname__, {k: described(v) for k, v in sorted(value.get_params(deep=False).items())}]
    if isinstance(value, list | tuple):
        return [described(v) for v in value]
    if isinstance(value, dict):
        return {str(k): described(v) for k, v in sorted(value.items())}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return type(value).__qualname__  # an object without parameters: its kind


def fit_key(net) -> str:
    """What identifies a fit apart from its epochs: the net's parameters (classes by name)."""
    # not the private ones: scikit-learn's search sets _parent_callback_ctx on the nets it fits
    params = {k: v for k, v in net.get_params(deep=False).items() if k not in _VOLATILE and not k.startswith("_")}
    return hashlib.sha256(json.dumps(described(params), sort_keys=True).encode()).hexdigest()[:20]


def _rows_key(X, y) -> str:
    digest = hashlib.sha256()
    for array in (X, y):
        if array is not None:
            a = np.ascontiguousarray(array.cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array))
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(a.tobytes())
    return digest.hexdigest()[:20]


class Continuing:
    """Mixed in before the user's net class (see ``continuing``); its settings are class attributes so
    that ``clone`` and ``set_params`` see exactly the user's parameters."""

    _hp_storage: str = ""
    _hp_seed: int = 0
    _hp_threads: int = 1

    def _hp_fit_seed(self) -> int:
        return int(hashlib.sha256(f"{self._hp_seed}:{fit_key(self)}".encode()).hexdigest()[:8], 16)

    def initialize(self):
        torch.manual_seed(self._hp_fit_seed())  # weights, shuffling, dropout: one seed per candidate
        return super().initialize()

    def fit(self, X, y=None, **fit_params):
        key, target = fit_key(self), int(self.max_epochs)
        folder = Path(self._hp_storage) / "states" / key / _rows_key(X, y)
        owner = {"fit": key, "rows": folder.name}
        with torch_threads(self._hp_threads):
            done = sorted((int(p.stem) for p in folder.glob("*.pt") if p.stem.isdigit() and int(p.stem) <= target),
                          reverse=True)
            state = next((s for s in (load_state(folder / f"{e}.pt", owner) for e in done) if s is not None), None)
            if state is None:
                super().fit(X, y, **fit_params)
                trained = len(self.history)
            else:
                restore(self, state)
                start = len(self.history)
                if start < target:
                    self.partial_fit(X, y, epochs=target - start, **fit_params)
                trained = len(self.history) - start
            save_state(folder / f"{target}.pt", capture(self), owner)
        with open(Path(self._hp_storage) / EPOCHS_LOG, "a") as log:  # one short line: an atomic append
            log.write(f"{trained}\n")
        return self


def continuing(net, storage, seed: int, threads: int):
    """``net`` (unfitted, its parameters as given) as an instance of a continuing subclass of its class."""
    cls = type(net)
    sub = type(f"Continuing{cls.__name__}", (Continuing, cls),
               {"_hp_storage": str(os.fspath(storage)), "_hp_seed": int(seed), "_hp_threads": int(threads)})
    return sub(**net.get_params(deep=False))

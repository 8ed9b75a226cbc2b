"""A skorch net whose fits continue: what makes halving's survivors go on from where they stopped.

scikit-learn's searches clone the estimator and call ``fit(X_train, y_train)`` with
``max_epochs = n_resources`` at every iteration, from scratch. ``continuing(net, storage, ...)``
returns the same net as an instance of a subclass of its own class whose ``fit`` first looks in
``storage`` for a state of the same fit (the same parameters but ``max_epochs``, the same code of your
classes, the same seed and rows) at fewer epochs: it restores it (weights, optimizer, history, random
state, the user's callbacks' state: ``callback_states``) and trains only the epochs left, then keeps its
own state, as it was before any ``on_train_end``, for the next iteration. A state at exactly the epochs asked is a fit
already done (a resumed search), and one that ended before the epochs it was asked for stopped early
for good: restored, nothing trained. Every net is seeded from the search's ``random_state`` and its
parameters, so a continued fit equals a straight one; a fit puts the caller's torch random state
back. States are read as data only (``torch.load(weights_only=True)``, checked against their owner).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import os
import re
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DivergedError, StorageError, brief
from ..jobs.resources import rng_kept, torch_threads
from ..rundir.states import capture, load_state, refuse_state, restore, save_state
from ..search.interrupt import InterruptFlag
from ..training.models.code import module_digest
from .callback_states import callback_states, put_back_callback_states

__all__ = ["continuing", "fit_key", "code_key", "described", "forget_warnings", "EPOCHS_LOG"]

EPOCHS_LOG = "epochs.log"  # one line per fit: the epochs it trained (a resumed fit trains 0)
_VOLATILE = ("max_epochs", "verbose", "warm_start")  # what does not make another fit


def described(value):
    """A stable description of a parameter's value: equal for equal values, in any process, and
    different for values that train differently (two tensors, functions or modules of one kind
    included: candidates told apart only by their type's name shared each other's fits)."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if id(value) in _describing():  # an object reached again through itself (an initialized Freezer's schedule)
        return [type(value).__qualname__, "itself"]
    if hasattr(value, "get_params"):
        return _within(value, lambda: [type(value).__qualname__,
                                       {k: described(v) for k, v in sorted(value.get_params(deep=False).items())}])
    if isinstance(value, list | tuple):
        return [described(v) for v in value]
    if isinstance(value, set | frozenset):  # in a sorted order: a set's own order changes from process to process
        return ["set", sorted((described(v) for v in value), key=lambda d: json.dumps(d, sort_keys=True, default=str))]
    if isinstance(value, torch.Generator):  # its state (its repr names an address): another seed, another fit
        return ["generator", _digest(value.get_state())]
    if isinstance(value, np.random.RandomState | np.random.Generator):
        state = value.get_state() if isinstance(value, np.random.RandomState) else value.bit_generator.state
        return ["random", hashlib.sha256(repr(state).encode()).hexdigest()[:20]]
    if isinstance(value, dict):
        return {str(k): described(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor | np.ndarray):
        return ["array", _digest(value)]
    if isinstance(value, torch.nn.Module):  # its settings (repr, attributes) and its weights
        # not `training`: a fit of the net before the search sets it, and it changes nothing a fit does
        return _within(value, lambda: [
            type(value).__qualname__, repr(value),
            {k: described(v) for k, v in sorted(vars(value).items()) if not k.startswith("_") and k != "training"},
            {k: _digest(t) for k, t in value.state_dict().items()}])
    if isinstance(value, functools.partial):
        return ["partial", described(value.func), described(value.args), described(value.keywords)]
    if callable(value) and hasattr(value, "__code__"):  # a function, lambda or method: its code and its data
        cells = [c.cell_contents for c in getattr(value, "__closure__", None) or ()]
        bound = getattr(value, "__self__", None)
        return [f"{value.__module__}.{value.__qualname__}", _code(value.__code__),
                described(value.__defaults__ or ()), described(cells),
                None if bound is None or inspect.ismodule(bound) else described(bound)]
    if callable(value) and hasattr(value, "__qualname__"):  # a builtin such as torch.relu
        return f"{getattr(value, '__module__', None)}.{value.__qualname__}"
    if type(value).__repr__ is not object.__repr__ and not _ADDRESS.search(text := repr(value)):
        return [type(value).__qualname__, text]
    if hasattr(value, "__dict__"):
        return _within(value, lambda: [type(value).__qualname__,
                                       {k: described(v) for k, v in sorted(vars(value).items())}])
    return type(value).__qualname__  # an object without parameters or state: its kind


_ACTIVE = threading.local()  # per thread: a search on joblib's threading backend describes nets at once


def _describing() -> set[int]:
    """The objects being described further up this thread's call."""
    if not hasattr(_ACTIVE, "ids"):
        _ACTIVE.ids = set()
    return _ACTIVE.ids


def _within(value, describe):
    """``describe()`` with ``value`` marked as being described, so a path back to it ends there."""
    _describing().add(id(value))
    try:
        return describe()
    finally:
        _describing().discard(id(value))


# a repr naming the object's memory address (skorch's ValidSplit, the default train_split, has one) differs
# between a net and its clone, and between processes: such a value is described by its attributes instead
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _code(code) -> str:
    """A function's code as a digest that every process computes alike (no addresses, sets sorted)."""
    def const(c):
        if inspect.iscode(c):
            return _code(c)
        if isinstance(c, frozenset):
            return sorted(map(const, c))
        return [const(v) for v in c] if isinstance(c, tuple) else repr(c)

    return hashlib.sha256((code.co_code.hex() + repr([const(c) for c in code.co_consts]) + repr(code.co_names))
                          .encode()).hexdigest()[:20]


def _digest(array) -> str:
    a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:20]


def fit_key(net) -> str:
    """What identifies a fit apart from its epochs: the net's parameters (classes by name)."""
    # not the private ones: scikit-learn's search sets _parent_callback_ctx on the nets it fits
    params = {k: v for k, v in net.get_params(deep=False).items() if k not in _VOLATILE and not k.startswith("_")}
    return hashlib.sha256(json.dumps(described(params), sort_keys=True).encode()).hexdigest()[:20]


def code_key(net) -> str:
    """The code of your own classes among the net's parameters (its module's above all; '' when none is yours):
    a fit of an edited class is another fit, whose states were trained by other code."""
    codes = sorted({f"{c.__module__}.{c.__qualname__}={d}" for c in _classes(net.get_params(deep=False), set())
                    if (d := _class_code(c)) is not None})
    return hashlib.sha256(repr(codes).encode()).hexdigest()[:12] if codes else ""


def _classes(value, seen: set[int]):
    """The classes ``value`` names or holds instances of (through lists, dicts and estimators' parameters)."""
    if id(value) in seen or value is None or isinstance(value, bool | int | float | str | bytes):
        return
    seen.add(id(value))
    if isinstance(value, type):
        yield value
        return
    yield type(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _classes(item, seen)
    elif hasattr(value, "get_params"):
        yield from _classes(value.get_params(deep=False), seen)


def _class_code(cls: type) -> str | None:
    """A digest of your class's code, None for one installed (torch's, skorch's): the bytecode of its methods and
    of its bases' from the same place (the class as imported: a file edited since, not yet reloaded, is not the
    code that trains), with, where it has a file, its module's syntax and its neighbours' (``module_digest``:
    comments and layout aside). A class of a script's ``__main__``, a notebook cell or ``exec``: its methods."""
    codes = [f"{name}={_code(f.__code__)}" for c in cls.__mro__ if c.__module__ == cls.__module__
             for name, v in sorted(vars(c).items())
             if (f := getattr(v, "__func__", v)) is not None and hasattr(f, "__code__")]
    methods = hashlib.sha256(repr(codes).encode()).hexdigest()[:20] if codes else None
    if getattr(sys.modules.get(cls.__module__), "__file__", None) and cls.__module__ not in ("__main__", "__mp_main__"):
        digest = module_digest(cls.__module__)
        return None if digest is None else f"{digest.split(':')[1]}:{methods}"
    return methods


def _rows_key(X, y) -> str:
    return hashlib.sha256("".join(_digest(a) for a in (X, y) if a is not None).encode()).hexdigest()[:20]


class Continuing:
    """Mixed in before the user's net class (see ``continuing``); its settings are class attributes so
    that ``clone`` and ``set_params`` see exactly the user's parameters."""

    _hp_storage: str = ""
    _hp_seed: int = 0
    _hp_threads: int = 1
    _hp_resume: dict | None = None  # the restored state, for the user's callbacks after on_train_begin
    _hp_paused: dict | None = None  # the state as the last fit ended, before any on_train_end
    _hp_ended = False  # a callback ended the fit (skorch's EarlyStopping raises KeyboardInterrupt in fit_loop)
    _hp_start = 0  # the epochs the fit had when this call began (restored from a state)

    def _hp_fit_seed(self) -> int:
        return int(hashlib.sha256(f"{self._hp_seed}:{fit_key(self)}".encode()).hexdigest()[:8], 16)

    def initialize(self):
        torch.manual_seed(self._hp_fit_seed())  # weights, shuffling, dropout: one seed per candidate
        return super().initialize()

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:  # a callback ended the fit (a Ctrl-C too: that fit is never kept)
            self._hp_ended = True
            raise

    def notify(self, method_name, **cb_kwargs):
        if method_name == "on_train_end":  # the pause, before a callback's on_train_end changes the net
            self._hp_paused = {**capture(self), "callbacks": callback_states(self), "ended": self._hp_ended}
        try:
            super().notify(method_name, **cb_kwargs)
        except KeyboardInterrupt:  # a callback ended the fit at this epoch: a diverged one fails all the same
            if method_name == "on_epoch_end":
                _check_finite(self)
            raise  # (any other error of a callback's is the fit's own, shown as it is)
        # (after skorch's callbacks: they record the epoch's train_loss)
        if method_name == "on_epoch_end":
            _check_finite(self)
        if method_name == "on_train_begin" and self._hp_resume is not None:
            put_back_callback_states(self, self._hp_resume.get("callbacks", {}), self._hp_resume["optimizer"])
            self._hp_resume = None

    def fit(self, X, y=None, **fit_params):
        key, target = fit_key(self), int(self.max_epochs)
        # the seed is part of the fit: another random_state with the same storage trains anew
        code = code_key(self)  # a fit of edited code is another fit (its seed stays: the parameters' and the search's)
        place = f"{key}-{code}" if code else key
        folder = Path(self._hp_storage) / "states" / f"seed{self._hp_seed}" / place / _rows_key(X, y)
        owner = {"fit": place, "seed": self._hp_seed, "rows": folder.name}
        try:  # the caller's random states (CPU and GPUs): a fit neither reseeds nor draws from them
            with rng_kept(), torch_threads(self._hp_threads), InterruptFlag() as ctrl_c:
                try:
                    trained = self._fit_from(self._last_state(folder, owner, target), X, y, target, **fit_params)
                except DivergedError:  # scikit-learn scores the fit error_score (NaN: last); its epochs count
                    self._count_epochs(len(self.history) - self._hp_start)
                    if ctrl_c.raised:
                        raise KeyboardInterrupt from None
                    raise
                # skorch swallows a Ctrl-C and returns the net as it was: a fit cut short is not kept as done
                # (every later fit with this storage restored it) and the search stops, as without skorch
                if ctrl_c.raised:  # (not a row cut short: a callback of yours may end a fit so, as skorch lets it)
                    raise KeyboardInterrupt
                try:
                    save_state(folder / f"{target}.pt", self._hp_paused, owner)
                except (StorageError, OSError) as exc:  # a cache: the fit is scored all the same (a full disk)
                    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split("; ")[0]
                    _storage_warning(self._hp_storage, f"this fit's state is not kept ({why}); a survivor of it "
                                     "trains from scratch at the next budget (the same result, more epochs)")
        finally:
            self._hp_paused = self._hp_resume = None  # tensors a fitted net has no use for
        self._count_epochs(trained)
        return self

    def _count_epochs(self, trained: int) -> None:
        try:
            with open(Path(self._hp_storage) / EPOCHS_LOG, "a") as log:  # one short line: an atomic append
                log.write(f"{trained}\n")
        except OSError as exc:
            _storage_warning(self._hp_storage, f"the epochs of a fit are not counted ({exc.strerror}): n_fold_epochs_ "
                             "counts fewer than were trained")

    def _last_state(self, folder: Path, owner: dict, target: int) -> tuple[Path, dict] | None:
        """The state of this fit at the most epochs up to ``target`` and its file, or None."""
        done = sorted((int(p.stem) for p in folder.glob("*.pt") if p.stem.isdigit() and int(p.stem) <= target),
                      reverse=True)
        found = ((folder / f"{e}.pt", load_state(folder / f"{e}.pt", owner)) for e in done)
        return next(((path, s) for path, s in found if s is not None), None)

    def _fit_from(self, stored: tuple[Path, dict] | None, X, y, target: int, **fit_params) -> int:
        """Train to ``target`` epochs from the ``stored`` state (None: from scratch); the epochs trained. A fit
        that ended before the epochs it was asked for (early stopping) ended there for good, as a
        straight fit would have. A state this net cannot take (its tensors of other shapes) is said and
        left: the fit starts from scratch (it failed the candidate on every run while the file stayed)."""
        if stored is not None:
            try:
                restore(self, stored[1])
                put_back_callback_states(self, stored[1].get("callbacks", {}))
            except Exception as exc:  # noqa: BLE001 - torch's load_state_dict and the optimizer's raise their own
                stored = refuse_state(stored[0], f"cannot be restored into this net ({type(exc).__name__}: "
                                                 f"{brief(exc, joined=True)})")
                self.initialize()  # what restore copied before it failed is gone (warm_start would have kept it)
        self._hp_ended, self._hp_start = False, 0
        if stored is None:
            super().fit(X, y, **fit_params)
            self._hp_paused["asked"] = target
            return len(self.history)
        state = stored[1]
        start = self._hp_start = len(self.history)
        # a fit already done, or one a callback ended (at the epoch asked too: it was not the budget that ended it)
        if start >= target or state.get("ended") or start < state.get("asked", start):
            self.check_data(X, y)  # what fit learns of y (a classifier's classes_, which scikit-learn's scorers read)
            self.notify("on_train_end", X=X, y=y)  # what a straight fit does last (an EarlyStopping's load_best)
            self._hp_paused = state  # kept as it was, not as on_train_end left the net
            return 0
        self._hp_resume = state
        self.partial_fit(X, y, epochs=target - start, **fit_params)
        self._hp_paused["asked"] = target
        return len(self.history) - start


def _check_finite(net) -> None:
    """Raise DivergedError when the last epoch's training loss is NaN or infinite: the net diverged (skorch
    would train on, then score NaN weights' constant predictions, at chance, above configs that learned)."""
    history = net.history
    loss = history[-1].get("train_loss", 0.0) if len(history) else 0.0
    if isinstance(loss, float) and not math.isfinite(loss):
        fix = "lower lr"
        if net.criterion is torch.nn.NLLLoss:  # skorch's default: it takes the log of the module's output
            fix += ("; or your module returns logits, which skorch's default criterion NLLLoss reads as "
                    "probabilities: pass criterion=torch.nn.CrossEntropyLoss")
        raise DivergedError(f"training loss became {loss} at epoch {len(history)}: the net diverged ({fix})")


def _storage_warning(storage: str, what: str) -> None:
    """Once per storage, kind of trouble and search (``forget_warnings``; each job process warns once): the
    storage cannot be written, and what follows."""
    key = (storage, what.split(" (")[0])
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(f"storage {storage}: {what}", RuntimeWarning, stacklevel=3)


_WARNED: set[tuple[str, str]] = set()


def forget_warnings() -> None:
    """A new search says again what its storage cannot do (a notebook's second search with the same full disk)."""
    _WARNED.clear()


def continuing(net, storage, seed: int, threads: int):
    """``net`` (unfitted, its parameters as given) as an instance of a continuing subclass of its class."""
    cls = type(net)
    sub = type(f"Continuing{cls.__name__}", (Continuing, cls),
               {"_hp_storage": str(os.fspath(storage)), "_hp_seed": int(seed), "_hp_threads": int(threads)})
    return sub(**net.get_params(deep=False))

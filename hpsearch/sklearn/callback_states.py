"""The state of a user's own skorch callbacks across a pause, so that a continued fit equals a straight one.

skorch restarts every callback at ``on_train_begin``: a ``partial_fit`` that goes on from a restored
state would restart an ``LRScheduler``'s policy (and step it once more), forget how many epochs an
``EarlyStopping`` has waited, and so on. What a callback learns during a fit is in its fitted
attributes (names ending in ``_``): those that are data (numbers, strings, tensors, arrays and lists
or dicts of them) are kept as they are, an object with ``state_dict`` (a torch learning-rate policy)
as its state dict; anything else (a progress bar) starts anew. They are put back twice: at once, for
a fit that trains no further, and after the next ``on_train_begin``, which reset them. hpsearch's
own callbacks (``ContinuableEarlyStopping``, ``ResumableLRScheduler``) carry their own state and are
left to it.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["callback_states", "put_back_callback_states"]

_STATE_DICT = "state_dict"  # the key under which an attribute's state dict is kept


def _own(callback) -> bool:
    from ..training.callbacks import ContinuableEarlyStopping
    from ..training.schedules import ResumableLRScheduler

    return isinstance(callback, ContinuableEarlyStopping | ResumableLRScheduler)


def _is_data(value) -> bool:
    """What ``torch.load(weights_only=True)`` reads back as it was written."""
    if value is None or isinstance(value, bool | int | float | str | np.generic | np.ndarray | torch.Tensor):
        return True
    if isinstance(value, list | tuple):
        return all(_is_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str | int) and _is_data(v) for k, v in value.items())
    return False


def callback_states(net) -> dict:
    """Each user callback's fitted attributes that can be kept, by callback name."""
    states = {}
    for name, callback in net.callbacks_:
        if _own(callback):
            continue
        kept = {}
        for attr, value in vars(callback).items():
            if not attr.endswith("_") or attr.startswith("_"):
                continue
            if not isinstance(value, type) and hasattr(value, "load_state_dict") and _is_data(value.state_dict()):
                kept[attr] = {_STATE_DICT: value.state_dict()}
            elif _is_data(value):
                kept[attr] = value
        states[name] = kept
    return states


def put_back_callback_states(net, states: dict, optimizer_state: dict | None = None) -> None:
    """Give each user callback of ``net`` its kept attributes. A kept policy goes into the one the
    callback has (none before ``on_train_begin``); with ``optimizer_state``, the optimizer gets its
    learning rates back from building the new policy, which changed them."""
    policies = False
    for name, callback in net.callbacks_:
        for attr, value in states.get(name, {}).items():
            if isinstance(value, dict) and set(value) == {_STATE_DICT}:
                target = getattr(callback, attr, None)
                if target is not None and hasattr(target, "load_state_dict"):
                    target.load_state_dict(value[_STATE_DICT])
                    policies = True
            else:
                setattr(callback, attr, value)
    if policies and optimizer_state is not None:
        net.optimizer_.load_state_dict(optimizer_state)

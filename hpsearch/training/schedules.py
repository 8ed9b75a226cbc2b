"""Learning-rate schedules: ``schedule = "none" | "cosine" | "step" | "plateau" | "onecycle"`` in a
space, and ``--schedule`` for the retraining, each one skorch ``LRScheduler`` over a torch policy.

The defaults, for a fit of ``E`` epochs at learning rate ``lr`` (epochs counted from 0):

- ``cosine``: ``CosineAnnealingLR(T_max=E, eta_min=0)``, stepped per epoch: epoch ``e`` trains at
  ``lr * (1 + cos(pi * e / E)) / 2``, from ``lr`` down towards 0 (the last epoch at
  ``lr * (1 + cos(pi * (E - 1) / E)) / 2``);
- ``step``: ``MultiStepLR(milestones=[ceil(E / 3), ceil(2E / 3)], gamma=0.1)``: a tenth of the rate after
  each of the first two thirds, so a fit of 3 epochs or more ends at ``lr / 100`` (``StepLR(E // 3)``
  cut three times when ``E`` is not a multiple of 3: 100 epochs ended at ``lr / 1000``);
- ``plateau``: ``ReduceLROnPlateau(factor=0.1, patience=5)`` on the validation loss when the fit has a
  validation split of its own (early stopping's; never the retraining's test monitor), else on the
  training loss;
- ``onecycle``: ``OneCycleLR(max_lr=lr)`` stepped per batch over ``E x ceil(n / batch_size)``
  steps (``n``: the rows the fit trains on, after early stopping's split), rising for 30% of them,
  then annealing to ``lr / 1e4 / 25``.

A schedule's horizon is the fit's own epochs, so a schedule needs a fit that knows its end: with
``--strategy halving`` or ``hyperband`` a survivor continues at a new budget, which would change
its curve midway; those strategies refuse a space with a schedule (``check_schedule_strategy``).
``ResumableLRScheduler`` carries the policy's state over a pause (a checkpointed retraining).
"""

from __future__ import annotations

import math

from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR, OneCycleLR, ReduceLROnPlateau

from .. import setting_checks
from ..errors import UsageError, param

__all__ = ["SCHEDULES", "schedule_callback", "ResumableLRScheduler", "check_schedule_name"]

SCHEDULES = setting_checks.SCHEDULES  # name -> what it does (kept where --help reads it without torch)


class ResumableLRScheduler(LRScheduler):
    """skorch's ``LRScheduler`` whose policy state survives a pause: ``state()`` exports it and
    ``resume_from(state)`` loads it into the policy the next ``on_train_begin`` creates (skorch
    would restart it), with the learning rates the optimizer had."""

    resume_ = None  # skorch hands every attribute not ending in "_" to the policy

    def state(self) -> dict | None:
        policy = getattr(self, "lr_scheduler_", None)
        if policy is None:
            return None
        return {"policy": policy.state_dict(), "lrs": [g["lr"] for g in policy.optimizer.param_groups]}

    def resume_from(self, state: dict | None) -> None:
        self.resume_ = state

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        if self.resume_ is not None:
            self.lr_scheduler_.load_state_dict(self.resume_["policy"])
            for group, lr in zip(self.lr_scheduler_.optimizer.param_groups, self.resume_["lrs"], strict=True):
                group["lr"] = lr  # building the policy reset them; the paused fit had these
            self.resume_ = None


class _OneCycle(ResumableLRScheduler):
    """OneCycleLR over the batches the fit trains: sized on the rows it is given when it begins, then
    again on the first epoch's training rows (early stopping's split keeps back a fifth: sized on all
    of them, the cycle ended at 28% of ``lr``, its peak late)."""

    def __init__(self, max_lr: float, epochs: int):
        super().__init__(OneCycleLR, step_every="batch", max_lr=max_lr, total_steps=1)
        self.fit_epochs_ = epochs  # skorch passes every attribute not ending in "_" to the policy

    def _size(self, rows: int, batch_size: int) -> None:
        self.total_steps = max(1, self.fit_epochs_ * math.ceil(rows / batch_size))

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self._size(len(X) if X is not None else 1, net.batch_size)
        super().on_train_begin(net, X=X, y=y, **kwargs)

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        if len(net.history) == 1 and dataset_train is not None:  # a fit's first epoch (a resumed one keeps its own)
            self._size(len(dataset_train), net.batch_size)
            self.lr_scheduler_ = self._get_scheduler(net, self.policy_, **{**self.kwargs, "last_epoch": -1})
        super().on_epoch_begin(net, dataset_train=dataset_train, **kwargs)


def check_schedule_name(name, where: str = "schedule") -> str:
    """``name`` if it is a schedule, else a UsageError naming the parameter ``where``."""
    if not isinstance(name, str) or name not in SCHEDULES:
        from ..errors import did_you_mean

        hint = did_you_mean(name, list(SCHEDULES)) if isinstance(name, str) else ""
        raise UsageError(f"{param(where)} must be one of {', '.join(SCHEDULES)}, got {name!r}{hint}")
    return name


def schedule_callback(name: str, epochs: int, lr: float, validates: bool):
    """The ``("lr_schedule", callback)`` pair of schedule ``name`` for a fit of ``epochs`` epochs at
    ``lr``, or ``None`` for ``"none"``; ``validates``: the fit has a validation split (plateau
    watches its loss)."""
    check_schedule_name(name)
    epochs = max(1, int(epochs))
    if name == "none":
        return None
    if name == "cosine":
        callback = ResumableLRScheduler(CosineAnnealingLR, T_max=epochs, eta_min=0.0)
    elif name == "step":
        thirds = [math.ceil(epochs / 3), math.ceil(2 * epochs / 3)]
        callback = ResumableLRScheduler(MultiStepLR, milestones=thirds, gamma=0.1)
    elif name == "plateau":
        callback = ResumableLRScheduler(ReduceLROnPlateau, monitor="valid_loss" if validates else "train_loss",
                                        factor=0.1, patience=5)
    else:
        callback = _OneCycle(float(lr), epochs)
    return ("lr_schedule", callback)

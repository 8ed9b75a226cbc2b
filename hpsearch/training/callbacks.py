"""skorch callbacks of hpsearch: stop a diverging fit, and early stopping that survives a pause."""

from __future__ import annotations

import math

from skorch.callbacks import Callback, EarlyStopping

from ..errors import DivergedError

__all__ = ["StopOnNonFiniteLoss", "ContinuableEarlyStopping"]


class StopOnNonFiniteLoss(Callback):
    """Ends a fit whose training loss became NaN or infinite: the config has diverged."""

    def on_epoch_end(self, net, **kwargs):
        loss = net.history[-1].get("train_loss", 0.0)
        if not math.isfinite(loss):
            raise DivergedError(f"training loss became {loss} at epoch {len(net.history)}")


class ContinuableEarlyStopping(EarlyStopping):
    """skorch's ``EarlyStopping``, whose counters can be carried over a pause.

    skorch resets ``misses_`` and the threshold at every ``on_train_begin``, so a fit continued
    with ``partial_fit`` (a survivor of a halving rung) would forget how long its loss has not
    improved. ``counters()`` exports them and ``resume_from(counters)`` hands them to the next
    ``on_train_begin``; without a resume it is exactly ``EarlyStopping``.
    """

    _resume = None

    def counters(self) -> dict:
        return {"misses": int(self.misses_), "threshold": float(self.dynamic_threshold_),
                "best_epoch": int(self.best_epoch_)}

    def resume_from(self, counters: dict | None) -> None:
        """Take the counters now (``stopped`` must be right even if no epoch follows) and again
        at the next ``on_train_begin``, which would reset them."""
        self._resume = counters
        if counters is not None:
            self._apply(counters)

    def _apply(self, counters: dict) -> None:
        self.misses_ = counters["misses"]
        self.dynamic_threshold_ = counters["threshold"]
        self.best_epoch_ = counters["best_epoch"]

    @property
    def stopped(self) -> bool:
        """Whether this callback ended the last fit."""
        return getattr(self, "misses_", 0) >= self.patience

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        if self._resume is not None:
            self._apply(self._resume)
            self._resume = None

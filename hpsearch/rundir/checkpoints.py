"""Checkpoints of a retraining: each config's whole training state every ``--checkpoint-every``
epochs, so an interrupted retraining (Ctrl-C, ``kill -9``, a crash) goes on where it stopped instead
of starting over, and ends with the weights an uninterrupted one has (on the CPU, exactly).

A checkpoint is ``<run>/retrain_states/<trial>.pt``: what ``states.capture`` takes (weights,
optimizer, history, the learning-rate schedule's state, torch's random state) with what the fit was
as its owner (``meta``: the run's digest, epochs, schedule, test monitor, config), read as data only
(``states.load_state``: ``torch.load(weights_only=True)``). skorch's own ``Checkpoint`` decides when (its
``monitor``) and names the event in the history; its files (params, optimizer, history) would not
hold the random state or the schedule, so a resumed fit would shuffle and drop out differently:
``save_model`` writes ``capture(net)`` instead, atomically (a reader sees the previous checkpoint or
this one). A checkpoint of another fit (other epochs, schedule, config) is ignored and replaced; the
checkpoint of a finished config is removed once its row is in ``retrain.csv``.
"""

from __future__ import annotations

from pathlib import Path

from skorch.callbacks import Checkpoint

from .names import CHECKPOINTS_DIR
from .states import capture, load_state, save_state

__all__ = ["checkpoint_path", "EpochCheckpoint", "resume_state", "remove_checkpoint"]



def checkpoint_path(run_dir, trial: int) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR / f"{int(trial)}.pt"


class EpochCheckpoint(Checkpoint):
    """skorch's ``Checkpoint`` every ``every`` epochs (and at the last), writing the whole state."""

    def __init__(self, path, meta: dict, every: int = 1):
        self.path, self.meta, self.every = Path(path), meta, int(every)
        super().__init__(monitor=self._due, dirname=str(self.path.parent), load_best=False,
                         f_params=None, f_optimizer=None, f_criterion=None, f_history=None, f_pickle=None)

    def _due(self, net) -> bool:
        done = len(net.history)
        return done % self.every == 0 or done >= net.max_epochs

    def save_model(self, net):
        save_state(self.path, capture(net), owner=self.meta)

    def __getstate__(self):  # sent to a job with the net: the monitor is a bound method of ours
        return {k: v for k, v in self.__dict__.items() if k != "monitor"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.monitor = self._due


def resume_state(path, meta: dict) -> dict | None:
    """The checkpoint at ``path`` when it is of this very fit (``meta``: its owner), else None (a
    damaged, foreign or crafted one costs the epochs it held, nothing more, and is said)."""
    return load_state(path, owner=meta)


def remove_checkpoint(run_dir, trial: int) -> None:
    checkpoint_path(run_dir, trial).unlink(missing_ok=True)

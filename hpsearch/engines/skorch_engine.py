"""The skorch engine: one seeded skorch net per (config, fold), the faithful reference.

The folds of all configs go to the jobs as one stream (``evaluate_configs``); each fit is
``make_net(config, ..., max_epochs=epochs, random_state=trial_seed(seed, index))``, continued from
``<run>/states/<index>/fold<k>.pt`` when the strategy continues its survivors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from ..rundir.states import owner_of, state_path
from ..training.models.shipping import shipped
from ..training.net import make_net
from ..training.seeds import trial_seed
from .cv import CVResult, evaluate_configs
from .seam import RunContext

__all__ = ["SkorchEngine"]


class SkorchEngine:
    def __init__(self, context: RunContext):
        self.context = context

    def train(self, configs: dict[int, dict], epochs: int, keep_states: bool,
              on_start: Callable[[int], None] | None = None,
              folds: list[int] | None = None) -> Iterator[tuple[int, CVResult]]:
        c = self.context
        folds = list(range(len(c.folds))) if folds is None else list(folds)
        s, data = c.settings, c.dataset
        makers = {index: partial(
            make_net, config, data.n_features, data.n_classes, image_shape=data.image_shape, device=s.device,
            max_epochs=epochs, batch_size=s.batch_size, patience=s.patience,
            random_state=trial_seed(s.seed, index), task=data.task, **shipped(config, c.module_code),
        ) for index, config in configs.items()}
        states = None
        if c.continues:
            states = {index: [(state_path(c.run_dir, index, k), keep_states, owner_of(c.run_id, index, k, config))
                              for k in folds] for index, config in configs.items()}
        threads = c.backend.threads(min(c.jobs, len(makers) * len(folds)))  # the jobs that will be busy
        # a fold's fit depends on its rows and the trial's seed only: a subset of the folds is exact
        yield from evaluate_configs(makers, c.X, data.y_train, [c.folds[k] for k in folds], parallel=c.parallel,
                                    scoring=s.scoring,
                                    threads=threads, stop=c.stop, states=states, on_start=on_start)

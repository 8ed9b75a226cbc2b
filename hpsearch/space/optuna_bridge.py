"""A search space as Optuna distributions: the define-by-run function a sampler (TPE) fills in, and
the flat Optuna params under which every stored trial is recorded, whichever strategy drew it.

Both use one encoding, so a sampler reads the random-search trials of a run as its own history:

- ``uniform`` / ``log_uniform`` -> ``FloatDistribution`` (``log=True`` for the latter);
- ``int_uniform`` -> ``IntDistribution``;
- ``categorical`` -> ``CategoricalDistribution`` (list choices as JSON text, Optuna needs scalars).
  The space's probabilities ``p`` are the sampling weights of the configs drawn at random (the
  random strategy, and the TPE strategy's first ``--n-startup`` configs); TPE then learns its own;
- ``decreasing_int`` -> ``<name>_layers`` and one ``IntDistribution`` per width whose range depends
  on the widths before it: ``<name>_1`` in ``[low + L - 1, high]``, ``<name>_2`` in
  ``[low + L - 2, <name>_1 - 1]`` ... (``L`` layers), the ranges ``ParamGenerator`` draws from. So any
  sample, TPE's included, is strictly decreasing and inside ``[low, high]``;
- ``int_list`` -> ``<name>_1`` .. ``<name>_L``, each ``IntDistribution(low, high, step)``.

Constants are not Optuna params: they are the same in every trial (they stay in the config).
"""

from __future__ import annotations

import json

import optuna

from .distributions import Categorical, Constant, DecreasingInts, IntLists, IntUniform, LogUniform, Uniform
from .search_space import SearchSpace

__all__ = ["stored_params", "suggest_config"]


def _choices(dist: Categorical) -> tuple:
    return tuple(json.dumps(c) if isinstance(c, tuple) else c for c in dist.choices)


def _width_ranges(dist: DecreasingInts, widths) -> list[tuple[int, int]]:
    """The ``(low, high)`` each width was drawn from, given the widths before it."""
    ranges, upper = [], dist.high + 1
    for left, width in zip(range(len(widths) - 1, -1, -1), widths, strict=False):
        ranges.append((dist.low + left, upper - 1))
        upper = width
    return ranges


def stored_params(space: SearchSpace, config: dict) -> tuple[dict, dict]:
    """The config's values as flat Optuna ``params`` with their ``distributions``."""
    params, dists = {}, {}
    for key, dist in space.params.items():
        value = config.get(key)
        if isinstance(dist, Uniform | LogUniform):
            params[key] = float(value)
            dists[key] = optuna.distributions.FloatDistribution(dist.low, dist.high, log=isinstance(dist, LogUniform))
        elif isinstance(dist, IntUniform):
            params[key] = int(value)
            dists[key] = optuna.distributions.IntDistribution(dist.low, dist.high)
        elif isinstance(dist, Categorical):
            params[key] = json.dumps(list(value)) if isinstance(value, tuple | list) else value
            dists[key] = optuna.distributions.CategoricalDistribution(_choices(dist))
        elif isinstance(dist, DecreasingInts):
            params[f"{key}_layers"] = len(value)
            dists[f"{key}_layers"] = optuna.distributions.IntDistribution(dist.min_layers, dist.max_layers)
            for i, (width, (low, high)) in enumerate(zip(value, _width_ranges(dist, value), strict=False), 1):
                params[f"{key}_{i}"] = int(width)
                dists[f"{key}_{i}"] = optuna.distributions.IntDistribution(low, high)
        elif isinstance(dist, IntLists):
            for i, width in enumerate(value, 1):
                params[f"{key}_{i}"] = int(width)
                dists[f"{key}_{i}"] = optuna.distributions.IntDistribution(dist.low, dist.high, step=dist.step)
    return params, dists


def suggest_config(space: SearchSpace, trial: optuna.Trial) -> dict:
    """A config drawn through ``trial``'s sampler (define-by-run), keyed like ``ParamGenerator``'s."""
    config = {}
    for key, dist in sorted(space.params.items()):
        if isinstance(dist, Constant):
            config[key] = dist.value
        elif isinstance(dist, Uniform | LogUniform):
            config[key] = trial.suggest_float(key, dist.low, dist.high, log=isinstance(dist, LogUniform))
        elif isinstance(dist, IntUniform):
            config[key] = trial.suggest_int(key, dist.low, dist.high)
        elif isinstance(dist, Categorical):
            value = trial.suggest_categorical(key, _choices(dist))
            config[key] = dist.choices[_choices(dist).index(value)]
        elif isinstance(dist, DecreasingInts):
            layers = trial.suggest_int(f"{key}_layers", dist.min_layers, dist.max_layers)
            widths, upper = [], dist.high + 1
            for i, left in enumerate(range(layers - 1, -1, -1), 1):
                widths.append(trial.suggest_int(f"{key}_{i}", dist.low + left, upper - 1))
                upper = widths[-1]
            config[key] = widths
        elif isinstance(dist, IntLists):
            config[key] = [trial.suggest_int(f"{key}_{i}", dist.low, dist.high, step=dist.step)
                           for i in range(1, dist.layers + 1)]
        else:  # a new distribution kind must say how Optuna samples it
            raise TypeError(f"no Optuna encoding for {type(dist).__name__} ({key})")
    return config

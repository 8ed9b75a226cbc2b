"""Where ``SearchCV``'s candidates come from: scikit-learn's ``param_distributions`` (``ParameterSampler``,
and for TPE their translation into Optuna distributions) or an hpsearch ``SearchSpace`` (its configs,
compiled to the net's parameters)."""

from __future__ import annotations

from sklearn.model_selection import ParameterGrid, ParameterSampler

from ..errors import UsageError
from ..space.optuna_bridge import stored_params, suggest_config
from ..space.search_space import ParamGenerator
from .fitting import seed_of
from .spaces import is_space, net_params

__all__ = ["grid_size", "Distributions", "SpaceCandidates"]


def _optuna_distribution(name: str, values):
    """An Optuna distribution for TPE from a list or a scipy.stats frozen distribution."""
    import optuna

    if isinstance(values, list | tuple):
        if not all(v is None or isinstance(v, bool | int | float | str) for v in values):
            raise UsageError(f"param_distributions[{name!r}]: TPE takes lists of numbers, strings, booleans or None; "
                             f"got {values!r}: use strategy 'random' or 'halving' for other values")
        return optuna.distributions.CategoricalDistribution(list(values))
    dist_name = getattr(getattr(values, "dist", None), "name", "")
    low, high = (float(v) for v in values.support())
    if dist_name in ("loguniform", "reciprocal"):
        return optuna.distributions.FloatDistribution(low, high, log=True)
    if dist_name == "uniform":
        return optuna.distributions.FloatDistribution(low, high)
    if dist_name == "randint":
        return optuna.distributions.IntDistribution(int(low), int(high))
    raise UsageError(f"param_distributions[{name!r}]: TPE translates lists, uniform, loguniform and randint; got "
                     f"scipy.stats {dist_name or type(values).__name__}: use one of those, or strategy 'random'")


def grid_size(param_distributions) -> int | None:
    """How many candidates ``param_distributions`` holds when every value is a list (a grid); None when some
    value is a distribution (or the distributions are an hpsearch space), which draws without end."""
    if is_space(param_distributions):
        return None
    groups = param_distributions if isinstance(param_distributions, list) else [param_distributions]
    if not all(isinstance(g, dict) and all(not hasattr(v, "rvs") for v in g.values()) for g in groups):
        return None
    return len(ParameterGrid(groups))


class Distributions:
    """Candidates from scikit-learn's ``param_distributions``: ``ParameterSampler``'s at ``random_state``,
    and for TPE an Optuna study over their translation (``_optuna_distribution``)."""

    def __init__(self, param_distributions, n: int, random_state):
        self.groups, self.random_state = param_distributions, random_state
        self.candidates = list(ParameterSampler(param_distributions, n, random_state=random_state))
        self.distributions = None

    def sample(self, index: int) -> dict:
        if index >= len(self.candidates):  # the strategy asks for more than n_candidates: draw on
            self.candidates = list(ParameterSampler(self.groups, index + 1, random_state=self.random_state))
        return dict(self.candidates[index])

    def _optuna(self) -> dict:
        if self.distributions is None:
            if isinstance(self.groups, list):
                raise UsageError("strategy tpe takes param_distributions as one dict, not a list of dicts")
            self.distributions = {k: _optuna_distribution(k, v) for k, v in self.groups.items()}
        return self.distributions

    def remember(self, study, params: dict):
        study.enqueue_trial({k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()})
        return study.ask(self._optuna())

    def ask(self, study) -> tuple[dict, object]:
        trial = study.ask(self._optuna())
        return dict(trial.params), trial


class SpaceCandidates:
    """Candidates from an hpsearch ``SearchSpace``: its configs (``hpsearch search``'s at the seed; TPE's
    through the space's own Optuna encoding), compiled to the net's parameters on the data's shape."""

    def __init__(self, space, n: int, random_state, X, y):
        self.space, self.X, self.y = space, X, y  # X: a row is enough (its shape)
        self.generator = ParamGenerator(space, seed=seed_of(random_state))
        self.configs: list[dict] = []
        self.compiled: list[dict] = []

    def _compiled(self, config: dict) -> dict:
        params = net_params(config, self.X, self.y)
        self.configs.append(config)
        self.compiled.append(params)
        return params

    def sample(self, index: int) -> dict:
        return self._compiled(self.generator.sample(index))

    def remember(self, study, params: dict):
        config = self.configs[self.compiled.index(params)]
        study.enqueue_trial(stored_params(self.space, config)[0])
        trial = study.ask()
        suggest_config(self.space, trial)  # the enqueued values, recorded in the space's encoding
        return trial

    def ask(self, study) -> tuple[dict, object]:
        trial = study.ask()
        return self._compiled(suggest_config(self.space, trial)), trial

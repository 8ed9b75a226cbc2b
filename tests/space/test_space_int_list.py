"""The ``int_list`` distribution: ``layers`` whole numbers, each on its own grid (the Triple-MNIST
seed's filters per convolution, 32 to 128 in steps of 32)."""

import optuna
import pytest

from hpsearch.errors import UsageError
from hpsearch.space.distributions import IntLists
from hpsearch.space.optuna_bridge import stored_params, suggest_config
from hpsearch.space.search_space import ParamGenerator, SearchSpace

FILTERS = {"distribution": "int_list", "layers": 3, "low": 32, "high": 128, "step": 32}


def _space(**filters):
    return SearchSpace.from_dict({"model": "cnn", "filters": {**FILTERS, **filters}})


def test_every_draw_has_the_layers_on_the_grid_and_the_grid_is_covered():
    space = _space()
    assert space.params["filters"] == IntLists(32, 128, 32, 3)
    draws = [c["filters"] for c in ParamGenerator(space, seed=0).gen_values(60)]
    assert all(len(d) == 3 and all(v in (32, 64, 96, 128) for v in d) for d in draws)
    assert {v for d in draws for v in d} == {32, 64, 96, 128}
    assert len({tuple(d) for d in draws}) > 20  # each layer drawn on its own, not one list


def test_optuna_samples_each_layer_on_the_same_grid_and_stores_them_flat():
    space = _space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        config = suggest_config(space, trial)
        assert all(v in (32, 64, 96, 128) for v in config["filters"]) and len(config["filters"]) == 3
        params, dists = stored_params(space, config)
        assert [params[f"filters_{i}"] for i in (1, 2, 3)] == config["filters"]
        assert dists["filters_1"] == optuna.distributions.IntDistribution(32, 128, step=32)


def test_a_range_the_step_does_not_reach_is_refused_with_the_fix():
    with pytest.raises(UsageError, match=r"never reaches 120; use high = 96"):
        _space(high=120)
    with pytest.raises(UsageError, match="int_list needs low >= 1, step >= 1 and layers >= 1"):
        _space(layers=0)

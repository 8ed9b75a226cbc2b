import math

import numpy as np
import pytest

from hpsearch.errors import UsageError
from hpsearch.space.distributions import LogUniform
from hpsearch.space.search_space import ParamGenerator, load_space

LAB3 = load_space("mlp_mnist")


def test_lab3_space_is_the_seeds():
    p = LAB3.params
    assert (p["hidden"].low, p["hidden"].high, p["hidden"].min_layers, p["hidden"].max_layers) == (50, 600, 2, 2)
    assert (p["dropout"].low, p["dropout"].high) == (0.0, 0.5)
    assert isinstance(p["lr"], LogUniform) and (p["lr"].low, p["lr"].high) == (1e-4, 1e-1)
    assert isinstance(p["weight_decay"], LogUniform) and (p["weight_decay"].low, p["weight_decay"].high) == (1e-6, 1e-2)
    assert p["optimizer"].choices == ("adam", "rmsprop") and p["optimizer"].p == (0.8, 0.2)


@pytest.fixture(scope="module")
def many():
    return ParamGenerator(LAB3, seed=1).gen_values(3000)


def test_widths_strictly_decreasing_within_bounds(many):
    for cfg in many:
        h1, h2 = cfg["hidden"]
        assert 50 <= h2 < h1 <= 600


def test_log_uniform_spreads_evenly_over_decades(many):
    lr_decades = np.floor(np.log10([c["lr"] for c in many])).astype(int)
    counts = np.bincount(lr_decades + 4, minlength=3)[:3] / len(many)
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.03)
    l2 = np.log10([c["weight_decay"] for c in many])
    assert l2.min() >= -6 and l2.max() <= -2
    np.testing.assert_allclose(np.bincount(np.floor(l2).astype(int) + 6)[:4] / len(many), [0.25] * 4, atol=0.03)


def test_optimizer_drawn_with_given_probabilities(many):
    share = np.mean([c["optimizer"] == "adam" for c in many])
    assert abs(share - 0.8) < 0.025


def test_dropout_uniform(many):
    d = np.array([c["dropout"] for c in many])
    assert d.min() >= 0 and d.max() <= 0.5
    assert abs(d.mean() - 0.25) < 0.01


def test_same_seed_same_configs_and_prefix_stable():
    a = ParamGenerator(LAB3, seed=7).gen_values(20)
    b = ParamGenerator(LAB3, seed=7).gen_values(20)
    assert a == b
    assert ParamGenerator(LAB3, seed=7).gen_values(5) == a[:5]
    assert ParamGenerator(LAB3, seed=8).gen_values(5) != a[:5]


def test_variable_depth_space():
    space = load_space("mlp_deep")
    depths = {len(c["hidden"]) for c in ParamGenerator(space, 0).gen_values(200)}
    assert depths == {1, 2, 3}
    assert {c["batch_size"] for c in ParamGenerator(space, 0).gen_values(200)} == {64, 128, 256}


@pytest.mark.parametrize("toml, message", [
    ("[lr]\ndistribution='log_uniform'\nlow=0.1\nhigh=0.001\n", "lr] must satisfy low < high, got (0.1, 0.001); did you swap them?"),
    ("[lr]\ndistribution='log_uniform'\nlow=0\nhigh=0.1\n", "a log range needs 0 < low < high, got low = 0"),
    ("[lr]\ndistribution='log_uniform'\nlo=1e-4\nhigh=0.1\n", "unknown key 'lo'"),
    ("weight_decy = 0.1\n", "unknown hyperparameter 'weight_decy' in search space 'bad'; did you mean 'weight_decay'?"),
    ("[optimizer]\ndistribution='categorical'\nchoices=['adam','sgd']\np=[0.8,0.3]\n", "probabilities p must be >= 0 and sum to 1"),
    ("[optimizer]\ndistribution='categorical'\nchoices=['adam','sgd']\np=[1.0]\n", "p must list one probability per choice (2)"),
    ("[dropout]\ndistribution='gaussian'\nlow=0\nhigh=1\n", "distribution must be one of"),
    ("[hidden]\ndistribution='decreasing_int'\nlayers=5\nlow=10\nhigh=12\n", "room for 5 strictly decreasing widths"),
    ("lr = [\n", "not valid TOML"),
])
def test_bad_toml_gives_a_clear_error(tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(UsageError) as info:
        load_space(path)
    assert message in str(info.value)


def test_missing_space_names_the_known_ones():
    with pytest.raises(UsageError, match="mlp_mnist"):
        load_space("no_such_space")


def test_log_uniform_bounds_are_exact():
    dist = LogUniform(1e-4, 1e-1)
    rng = np.random.default_rng(0)
    values = [dist.sample(rng) for _ in range(1000)]
    assert min(values) >= 1e-4 and max(values) <= 1e-1
    assert not any(math.isnan(v) for v in values)


@pytest.mark.parametrize("text, one", [
    ("", True),  # an empty file: the default MLP, one config
    ('hidden = [16]\nlr = 0.01\n', True),
    ('[optimizer]\ndistribution = "categorical"\nchoices = ["adam", "adam"]\n', True),
    ('[optimizer]\ndistribution = "categorical"\nchoices = ["adam", "sgd"]\np = [1.0, 0.0]\n', True),
    ('[optimizer]\ndistribution = "categorical"\nchoices = ["adam", "sgd"]\n', False),
    ('[lr]\ndistribution = "log_uniform"\nlow = 1e-4\nhigh = 1e-2\n', False),
])
def test_a_space_that_draws_one_config_is_known(tmp_path, text, one):
    path = tmp_path / "space.toml"
    path.write_text(text)
    assert load_space(path).draws_one_config() is one


def test_a_search_of_a_space_of_one_config_says_it_trains_copies(tmp_path, capsys):
    """--n 8 of a space of constants printed "8 configs" and a winner among copies, without a word."""
    from hpsearch.cli import main

    space = tmp_path / "fixed.toml"
    space.write_text('hidden = [8]\nlr = 0.01\n')
    assert main(["search", "--space", str(space), "--dataset", "digits", "--n", "2", "--cv", "2", "--max-epochs", "1",
                 "--max-train", "300", "--patience", "0", "--n-jobs", "1", "--no-retrain", "--no-progress", "--out",
                 str(tmp_path / "my run")]) == 0
    said = capsys.readouterr()
    assert ("hpsearch: note: the space 'fixed' draws one config: --n 2 trains it 2 times, with only the initial "
            "weights differing (a spread over seeds, not a search); --n 1 trains it once\n") in said.err
    # a command to copy is one shell word per argument: "hpsearch retrain .../my run" was two
    assert f"retrain later with: hpsearch retrain '{tmp_path / 'my run'}'\n" in said.out
    # a resume trains only the configs still to do, from the run's copy of the space: said at the start only
    assert main(["search", "--resume", str(tmp_path / "my run"), "--n", "3", "--no-progress"]) == 0
    assert "draws one config" not in capsys.readouterr().err

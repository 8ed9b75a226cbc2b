"""The strategies against a fake ``evaluate`` that scores without training (as Optuna tests its pruners)."""

import math

import numpy as np
import optuna
import pytest

from hpsearch.errors import UsageError
from hpsearch.settings import SearchSettings
from hpsearch.space.optuna_bridge import stored_params, suggest_config
from hpsearch.space.search_space import ParamGenerator, load_space
from hpsearch.strategies import make_strategy
from hpsearch.strategies.halving import SuccessiveHalving, rung_budgets
from hpsearch.strategies.hyperband import Hyperband, bracket_sizes
from hpsearch.strategies.random import RandomSearch
from hpsearch.strategies.tpe import TPE
from hpsearch.strategies.tpe_halving import TPEHalving

SPACE = load_space("mlp_mnist")


class FakeEvaluate:
    """Scores a config by a fixed function of its values; records every call."""

    def __init__(self, score=lambda i, config, epochs: -abs(math.log10(config["lr"]) + 2), concurrency=1):
        self.score, self.concurrency = score, concurrency
        self.calls, self.pruned, self.raced, self.next = [], [], [], 0
        self.study = optuna.create_study(direction="maximize")
        self.generator = ParamGenerator(SPACE, 0)
        self.configs = {}

    def draw(self, k, sampler=None):
        drawn = {}
        for index in range(self.next, self.next + k):
            if sampler is None:
                drawn[index] = self.generator.sample(index)
                params, dists = stored_params(SPACE, drawn[index])
                self._pending = (params, dists)
            else:
                self.study.sampler = sampler
                trial = self.study.ask()
                drawn[index] = suggest_config(SPACE, trial)
                self.study.tell(trial, self.score(index, drawn[index], None))
            self.configs[index] = drawn[index]
        self.next += k
        return drawn

    def __call__(self, candidates, epochs):
        self.calls.append((sorted(candidates), epochs))
        scores = {i: self.score(i, c, epochs) for i, c in candidates.items()}
        for i, config in candidates.items():  # random draws become trials the sampler learns from
            if not math.isnan(scores[i]) and not any(t.number == i for t in self.study.trials):
                params, dists = stored_params(SPACE, config)
                self.study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=scores[i]))
        return scores

    def race(self, candidates, epochs, keep, margin):  # every fold scores as the config does: nobody stops
        self.raced.append((len(candidates), epochs, keep, margin))
        return self(candidates, epochs)

    def prune(self, indices):
        self.pruned += list(indices)


def test_random_asks_once_with_the_full_budget():
    fake = FakeEvaluate()
    RandomSearch(n=7, max_epochs=20).run(fake)
    assert fake.calls == [(list(range(7)), 20)]
    assert fake.configs[3] == ParamGenerator(SPACE, 0).sample(3)


class _Stop(Exception):
    pass


class _FirstChunkOnly(FakeEvaluate):
    def __call__(self, candidates, epochs):
        self.calls.append((len(candidates), epochs))
        raise _Stop  # the user's Ctrl-C, once the first chunk is training


def test_random_draws_a_huge_n_as_it_trains():
    fake = _FirstChunkOnly()
    with pytest.raises(_Stop):
        RandomSearch(n=10**12, max_epochs=5).run(fake)
    assert fake.calls == [(256, 5)] and fake.next == 256  # not 10**12 configs drawn before the first fit


def test_halving_rungs_keep_the_top_third_by_score():
    by_index = lambda i, config, epochs: float(i % 10)  # noqa: E731 - a score that ranks by index mod 10
    fake = FakeEvaluate(score=by_index)
    SuccessiveHalving(n=27, max_epochs=27, min_epochs=3).run(fake)
    assert [(len(c), e) for c, e in fake.calls] == [(27, 3), (9, 9), (3, 27)]
    rung1, rung2 = fake.calls[1][0], fake.calls[2][0]
    expected1 = sorted(range(27), key=lambda i: (-(i % 10), i))[:9]
    assert rung1 == sorted(expected1)
    assert rung2 == sorted(sorted(rung1, key=lambda i: (-(i % 10), i))[:3])
    assert sorted(fake.pruned) == sorted(set(range(27)) - set(rung2))


def test_halving_with_fold_racing_races_every_rung_but_the_last():
    fake = FakeEvaluate(score=lambda i, config, epochs: float(i % 10))
    halving = SuccessiveHalving(n=27, max_epochs=27, min_epochs=3)
    halving.fold_racing = 0.02
    halving.run(fake)
    assert fake.raced == [(27, 3, 9, 0.02), (9, 9, 3, 0.02)]  # keep: the rung's survivors
    assert [(len(c), e) for c, e in fake.calls] == [(27, 3), (9, 9), (3, 27)]  # the last rung: every fold
    assert halving.fingerprint()["fold_racing"] == 0.02
    assert "fold_racing" not in SuccessiveHalving(n=27, max_epochs=27).fingerprint()  # older runs resume


def test_failed_configs_never_continue():
    nan_for_even = lambda i, config, epochs: math.nan if i % 2 == 0 else float(i)  # noqa: E731
    fake = FakeEvaluate(score=nan_for_even)
    SuccessiveHalving(n=9, max_epochs=9, min_epochs=1).run(fake)
    assert all(i % 2 for c, _ in fake.calls[1:] for i in c)
    assert fake.calls[1][0] == [3, 5, 7]  # the best ceil(9 / 3) = 3 of the finite ones (1, 3, 5, 7)


def test_default_rungs_end_at_max_epochs_and_leave_at_most_factor_configs():
    assert rung_budgets(150, 100, 3) == [1, 4, 11, 33, 100]
    assert rung_budgets(150, 54, 3, min_epochs=2) == [2, 6, 18, 54]
    assert rung_budgets(18, 27, 3, min_epochs=3) == [3, 9, 27]
    plan = SuccessiveHalving(n=150, max_epochs=100).plan()
    assert plan == [(150, 1), (50, 4), (17, 11), (6, 33), (2, 100)]


def test_hyperband_brackets_share_the_grid_and_the_configs():
    strategy = Hyperband(n=150, max_epochs=54, min_epochs=2)
    brackets = strategy.brackets()
    assert [b for _, b in brackets] == [[2, 6, 18, 54], [6, 18, 54], [18, 54], [54]]
    assert sum(n for n, _ in brackets) == 150
    assert bracket_sizes(150, 4, 3) == [n for n, _ in brackets]
    fake = FakeEvaluate()
    strategy.run(fake)
    assert [(len(c), e) for c, e in fake.calls] == strategy.plan()
    assert strategy.plan()[:4] == [(83, 2), (28, 6), (10, 18), (4, 54)]
    # each bracket's first rung takes the next contiguous trial indices: 0-82, 83-119, 120-137, 138-149
    firsts = [c for c, e in fake.calls if len(c) in (83, 37, 18, 12) and c == list(range(c[0], c[0] + len(c)))]
    assert [(c[0], len(c)) for c in firsts] == [(0, 83), (83, 37), (120, 18), (138, 12)]
    assert sorted(fake.configs) == list(range(150))


def test_tpe_starts_random_then_learns_and_keeps_widths_decreasing():
    fake = FakeEvaluate()
    TPE(n=40, max_epochs=5, seed=0, n_startup=10).run(fake)
    assert fake.calls[0] == (list(range(10)), 5)
    for i in range(10):
        assert fake.configs[i] == ParamGenerator(SPACE, 0).sample(i)
    for config in fake.configs.values():
        h1, h2 = config["hidden"]
        assert 50 <= h2 < h1 <= 600
        assert config["optimizer"] in ("adam", "rmsprop")
    distance = [abs(math.log10(fake.configs[i]["lr"]) + 2) for i in range(40)]
    # TPE's proposals sit nearer the best lr (1e-2) than the random start does
    assert np.mean(distance[25:]) < 0.6 * np.mean(distance[:10])


def test_tpe_halving_prunes_each_batch_against_every_score_seen_at_the_rung():
    by_index = lambda i, config, epochs: float(i % 10)  # noqa: E731 - a score that ranks by index mod 10
    fake = FakeEvaluate(score=by_index, concurrency=2)
    TPEHalving(n=11, max_epochs=9, min_epochs=1, n_startup=7).run(fake)
    assert fake.calls == [
        (list(range(7)), 1), ([4, 5, 6], 3), ([6], 9),  # the random start: halving among themselves
        ([7, 8], 1), ([7, 8], 3), ([7, 8], 9),  # top ceil(9/3)=3 of rung 0 (8, 7, 6), top 2 of rung 1 (8, 7)
        ([9, 10], 1), ([9], 3), ([9], 9),  # rung 0: 9 in the top 4 of 11, 10 (score 0) is not; rung 1: top 2 of 6
    ]
    assert sorted(fake.pruned) == [0, 1, 2, 3, 4, 5, 10]
    for i in range(7):
        assert fake.configs[i] == ParamGenerator(SPACE, 0).sample(i)
    for i in range(7, 11):  # TPE's proposals obey the space
        h1, h2 = fake.configs[i]["hidden"]
        assert 50 <= h2 < h1 <= 600
    assert TPEHalving(n=11, max_epochs=9, min_epochs=1).plan() == [(11, 1), (4, 3), (2, 9)]  # an estimate
    assert not TPEHalving.exact_plan and TPEHalving.continues


def test_stored_params_obey_the_space_for_every_sampled_config():
    for i in range(50):
        config = ParamGenerator(SPACE, 3).sample(i)
        params, dists = stored_params(SPACE, config)
        for name, value in params.items():
            assert dists[name]._contains(dists[name].to_internal_repr(value)), (name, value, dists[name])
        assert dists["hidden_2"].high == config["hidden"][0] - 1


@pytest.mark.parametrize("changes, message", [
    (dict(strategy="halving", factor=1), "factor must be a whole number >= 2, got 1"),
    (dict(strategy="halving", min_epochs=200, max_epochs=100), "min_epochs (200) must be <= max_epochs (100)"),
    (dict(strategy="nosuch"), "strategy must be one of random, halving, hyperband, tpe, tpe-halving, got 'nosuch'"),
    (dict(strategy="halving", n=2), "n (2) must be >= factor (3) for successive halving"),
    (dict(strategy="hyperband", n=2), "n (2) must be >= factor (3) for successive halving"),
    (dict(strategy="hyperband", n=4, max_epochs=100, min_epochs=1), "must be >= the number of Hyperband brackets (6"),
    (dict(strategy="tpe", n_startup=0), "n_startup must be a whole number >= 1, got 0"),
    (dict(strategy="tpe-halving", n_startup=0), "n_startup must be a whole number >= 1, got 0"),
    (dict(strategy="tpe-halving", factor=1), "factor must be a whole number >= 2, got 1"),
])
def test_bad_strategy_settings_are_refused(changes, message):
    with pytest.raises(UsageError, match=None) as info:
        make_strategy(SearchSettings(**changes))
    assert message in str(info.value)


@pytest.mark.parametrize("flags, message", [
    (["--factor", "3"], "--factor applies only with --strategy halving or hyperband or tpe-halving; --strategy random"),
    (["--strategy", "tpe", "--min-epochs", "200"], "--min-epochs applies only with --strategy halving"),
    (["--strategy", "halving", "--n-startup", "5"], "--n-startup applies only with --strategy tpe or tpe-halving"),
    (["--strategy", "hyperband", "--fold-racing", "0.02"], "--fold-racing applies only with --strategy halving;"),
    (["--strategy", "halving", "--fold-racing", "-0.1"], "--fold-racing must be a margin >= 0 or off, got -0.1; 0.02 is"),
    # the trend's default is off: its message once called 0.5 "the measured choice (the default)"
    (["--strategy", "halving", "--trend", "-1"], "--trend must be a weight >= 0 or off, got -1.0; off is the default"),
])
def test_a_flag_the_strategy_would_ignore_is_refused(flags, message, tmp_path, capsys):
    from hpsearch.cli import main

    assert main(["search", *flags, "--no-progress", "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match="factor applies only with strategy halving"):  # Python: a non-default value
        SearchSettings(strategy="random", factor=4).validate()


def test_max_train_too_small_for_cv_is_named(tmp_path, capsys):
    from hpsearch.cli import main

    assert main(["search", "--max-train", "30", "--cv", "10", "--no-progress", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--cv 10 is more folds than the rarest class (0) has images (3)" in err and "--max-train 30 slice" in err

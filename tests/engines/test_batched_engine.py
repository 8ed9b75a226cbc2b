"""The batched engine (hpsearch.engines): agreement with the skorch engine, exact padding/masking,
torch's optimizer semantics, failures that stay in their model, and the search CLI end to end."""

import tomllib
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from hpsearch.cli import main
from hpsearch.data import load_dataset
from hpsearch.engines.batched_engine import evaluate_batched
from hpsearch.engines.cv import evaluate_config, make_folds
from hpsearch.engines.stack import MLPStack
from hpsearch.engines.stack_fit import FitSpec, initial_module, to_net, train_stack, valid_split
from hpsearch.space.search_space import ParamGenerator, SearchSpace
from hpsearch.training.models.mlp import MLP
from hpsearch.training.net import make_net
from hpsearch.training.seeds import trial_seed
from hpsearch.winner.bundle import load_winner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _configs(n):
    """The Lab 3 space (searches/mlp_mnist.toml), scaled to 8x8 digits: widths 32-256 and
    lr 1e-3..3e-2, so that 10 epochs bring every config near its plateau."""
    spec = tomllib.loads((ROOT / "searches" / "mlp_mnist.toml").read_text())
    spec["hidden"]["low"], spec["hidden"]["high"] = 32, 256
    spec["lr"]["low"], spec["lr"]["high"] = 1e-3, 3e-2
    return ParamGenerator(SearchSpace.from_dict(spec), 0).gen_values(n)


@pytest.mark.slow
def test_batched_and_skorch_engines_agree_on_digits(digits):
    X, y = digits.X_train, digits.y_train
    folds = make_folds(y, 4, 0)
    configs = _configs(12)
    seeds = {i: trial_seed(0, i) for i in range(len(configs))}
    batched = {}
    for chunk in evaluate_batched(dict(enumerate(configs)), seeds, X, y, folds, 10, max_epochs=10, patience=3):
        batched.update(chunk)
    skorch = {i: evaluate_config(partial(make_net, c, 64, 10, max_epochs=10, patience=3, random_state=seeds[i]),
                                 X, y, folds, n_jobs=2) for i, c in enumerate(configs)}
    assert all(r.error is None for r in [*batched.values(), *skorch.values()])
    acc_b = np.array([np.mean(batched[i].test_accuracies) for i in range(len(configs))])
    acc_s = np.array([np.mean(skorch[i].test_accuracies) for i in range(len(configs))])
    assert 100 * np.mean(np.abs(acc_b - acc_s)) <= 1.5
    assert spearmanr(acc_b, acc_s).statistic >= 0.8
    # the same early-stopping rule and epochs budget: no fit runs past max_epochs, some stop early
    assert all(1 <= e <= 10 for r in batched.values() for e in r.epochs)


def test_a_config_alone_and_inside_a_wider_stack_ends_with_the_same_weights(digits):
    X, y = digits.X_train, digits.y_train
    train, test = make_folds(y, 4, 0)[0]
    inner, valid = valid_split(train, y)
    config = dict(model="mlp", hidden=[40, 20], dropout=0.0, lr=3e-3, weight_decay=1e-4, optimizer="adam")
    wider = [dict(config, hidden=[90, 60], lr=1e-2, dropout=0.3),
             dict(config, hidden=[64, 50], optimizer="rmsprop", weight_decay=1e-3)]
    spec = FitSpec(config, 7, (7, 0), inner, valid, test)
    others = [FitSpec(c, 11 + k, (11 + k, 0), inner, valid, test) for k, c in enumerate(wider)]
    alone = train_stack([spec], X, y, 10, max_epochs=6, patience=0, keep_states=True)[0]
    stacked = train_stack([others[0], spec, others[1]], X, y, 10, max_epochs=6, patience=0,
                          keep_states=True)[1]
    assert alone.state_dict.keys() == stacked.state_dict.keys()
    for key, value in alone.state_dict.items():
        assert value.shape == MLP(64, (40, 20), 10).state_dict()[key].shape
        assert torch.allclose(value, stacked.state_dict[key], rtol=1e-5, atol=1e-6), key
    np.testing.assert_allclose(alone.proba, stacked.proba, rtol=1e-4, atol=1e-6)
    # the weights moved: this compares trained nets, not two copies of the initial ones
    start = initial_module(config, 7, 64, 10).state_dict()
    assert not torch.allclose(start["layers.1.weight"], alone.state_dict["layers.1.weight"])


def test_padding_stays_exactly_zero_and_updates_follow_torch_optimizers():
    torch.manual_seed(0)
    configs = [dict(lr=1e-2, weight_decay=1e-3, optimizer="adam"), dict(lr=5e-3, weight_decay=1e-2, optimizer="rmsprop")]
    modules = [MLP(20, (12, 5), 3), MLP(20, (6, 4), 3)]
    stack = MLPStack(modules, configs)
    reference = [MLP(20, (12, 5), 3), MLP(20, (6, 4), 3)]
    optims = []
    for ref, module, config in zip(reference, modules, configs, strict=True):
        ref.load_state_dict(module.state_dict())
        kind = torch.optim.Adam if config["optimizer"] == "adam" else torch.optim.RMSprop
        optims.append(kind(ref.parameters(), lr=config["lr"], weight_decay=config["weight_decay"]))
    for _ in range(25):
        x, target = torch.randn(2, 16, 20), torch.randint(0, 3, (2, 16))
        logits = stack.forward(x, train=True)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(2, 16) \
            .mean(1).sum().backward()
        stack.step()
        for m, (ref, opt) in enumerate(zip(reference, optims, strict=True)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ref(x[m]), target[m]).backward()
            opt.step()
    for m, ref in enumerate(reference):
        for key, value in ref.state_dict().items():
            assert torch.allclose(stack.state_dict(m)[key], value, rtol=1e-4, atol=1e-6), (m, key)
    W1, b1, W2, b2, W3 = stack.params[:5]
    # model 1 is narrower (6, 4) than the stack (12, 5): its padding is exactly zero, still
    assert torch.count_nonzero(W1[1, :, 6:]) == 0 and torch.count_nonzero(b1[1, :, 6:]) == 0
    assert torch.count_nonzero(W2[1, 6:, :]) == 0 and torch.count_nonzero(W2[1, :, 4:]) == 0
    assert torch.count_nonzero(b2[1, :, 4:]) == 0 and torch.count_nonzero(W3[1, 4:, :]) == 0


def test_a_diverging_config_fails_alone_in_its_stack(digits):
    X, y = digits.X_train, digits.y_train
    folds = make_folds(y, 4, 0)
    good = dict(model="mlp", hidden=[48, 24], dropout=0.0, lr=1e-2, weight_decay=1e-5, optimizer="adam")
    configs = {0: good, 1: dict(good, lr=1e38), 2: dict(good, optimizer="rmsprop", lr=3e-3)}
    seeds = {i: trial_seed(0, i) for i in configs}

    def run(subset, max_models=12):
        out = {}
        for chunk in evaluate_batched({i: configs[i] for i in subset}, seeds, X, y, folds, 10, max_epochs=4,
                                      patience=2, max_models_per_chunk=max_models):
            out.update(chunk)
        return out

    together, apart, one_per_chunk = run([0, 1, 2]), run([0, 2]), run([0, 1, 2], max_models=1)
    for result in (together[1], one_per_chunk[1]):  # its four folds failed in one chunk, or in four
        assert result.error.startswith("diverged: ") and np.isnan(result.mean_test_score)
    assert sorted(one_per_chunk) == [0, 1, 2]
    for i in (0, 2):
        assert together[i].error is None and one_per_chunk[i].error is None
        np.testing.assert_allclose(together[i].test_scores, apart[i].test_scores, rtol=1e-5)
        np.testing.assert_allclose(one_per_chunk[i].test_scores, apart[i].test_scores, rtol=1e-5)
        assert together[i].mean_test_score > -1.0  # they learned (10 classes: chance is -2.30)


@pytest.mark.slow
def test_search_cli_with_the_batched_engine(tmp_path, digits):
    out = tmp_path / "run"
    args = ["search", "--dataset", "digits", "--max-epochs", "6", "--patience", "3", "--engine", "batched",
            "--no-progress", "--out", str(out)]
    assert main([*args, "--n", "6", "--no-retrain"]) == 0
    for name in ("trials.db", "trials.csv", "sorted_scores.dat", "sorted_params.dat", "settings.json"):
        assert (out / name).is_file(), name
    frame = pd.read_csv(out / "trials.csv")
    assert sorted(frame["trial"]) == list(range(6)) and frame["error"].isna().all()
    ranked = frame.sort_values("rank_test_score")
    assert ranked["mean_test_score"].is_monotonic_decreasing
    assert ranked["mean_test_accuracy"].iloc[0] > 0.85
    scores = (out / "sorted_scores.dat").read_text().splitlines()
    assert int(scores[1].split()[1]) == int(ranked["trial"].iloc[0])
    # resume with a larger --n: only the new configs train, and (same settings) with this engine
    assert main([*args, "--n", "8", "--no-retrain"]) == 0
    frame2 = pd.read_csv(out / "trials.csv").set_index("trial")
    assert len(frame2) == 8
    np.testing.assert_array_equal(frame2.loc[range(6), "mean_test_score"],
                                  frame.set_index("trial").loc[range(6), "mean_test_score"])
    # the winner of a batched search retrains and loads like any other
    assert main(["retrain", str(out), "--top", "2", "--retrain-epochs", "3", "--no-progress"]) == 0
    net = load_winner(out)
    assert (net.predict(digits.X_test) == digits.y_test).mean() > 0.8


def test_a_stack_model_becomes_a_skorch_net(digits):
    X, y = digits.X_train, digits.y_train
    train, test = make_folds(y, 4, 0)[0]
    config = dict(model="mlp", hidden=[40, 20], dropout=0.1, lr=3e-3, weight_decay=1e-5, optimizer="adam")
    outcome = train_stack([FitSpec(config, 3, 3, train, None, test)], X, y, 10, max_epochs=5, patience=0,
                          keep_states=True)[0]
    net = to_net(outcome, config, 64, 10)
    np.testing.assert_allclose(net.predict_proba(X[test]), outcome.proba, rtol=1e-5, atol=1e-6)


def test_bad_chunk_size_is_a_usage_error(tmp_path, capsys):
    code = main(["search", "--n", "1", "--engine", "batched", "--max-models-per-chunk", "0", "--no-retrain",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    assert "--max-models-per-chunk must be a whole number >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("patience", [0, 2])
def test_stack_continues_exactly_from_its_states(digits, patience):
    """Models trained 3 epochs, then continued from their ``continuation`` states to 8, end with the
    weights and probabilities of the same models trained straight for 8 (no dropout: its masks are
    the one thing a continued stack draws anew)."""
    X, y = digits.X_train, digits.y_train
    configs = [{"hidden": [40, 20], "dropout": 0.0, "lr": 3e-3, "optimizer": "adam", "weight_decay": 1e-4},
               {"hidden": [30, 10], "dropout": 0.0, "lr": 1e-3, "optimizer": "rmsprop", "weight_decay": 0.0}]
    idx = np.arange(len(y))
    inner, valid = valid_split(idx[:1000], y)

    def specs(resumes=(None, None)):
        return [FitSpec(c, 7 + i, (7 + i, 0), inner, valid, idx[1000:], resume=r)
                for i, (c, r) in enumerate(zip(configs, resumes, strict=True))]

    kw = dict(patience=patience, continuation=True)
    straight = train_stack(specs(), X, y, 10, max_epochs=8, **kw)
    first = train_stack(specs(), X, y, 10, max_epochs=3, **kw)
    assert [o.continuation["epochs"] for o in first] == [3, 3]
    continued = train_stack(specs([o.continuation for o in first]), X, y, 10, max_epochs=8, **kw)
    for a, b in zip(straight, continued, strict=True):
        assert a.epochs == b.epochs and a.train_loss == b.train_loss
        np.testing.assert_array_equal(a.proba, b.proba)
        for key, value in a.continuation["module"].items():
            assert torch.equal(value, b.continuation["module"][key])


def test_a_stack_of_one_continues_exactly_dropout_included(digits):
    """A one-model stack (the CPU's chunk) owns its dropout generator, whose state travels with the
    model: 3 epochs, then on to 8, gives the straight 8-epoch fit's weights, with dropout 0.3."""
    X, y = digits.X_train, digits.y_train
    config = {"hidden": [40, 20], "dropout": 0.3, "lr": 3e-3, "optimizer": "adam", "weight_decay": 1e-4}
    idx = np.arange(len(y))

    def spec(resume=None):
        return [FitSpec(config, 7, (7, 1), idx[:1000], None, idx[1000:], resume=resume)]

    kw = dict(patience=0, continuation=True, dropout_seed=11)
    straight = train_stack(spec(), X, y, 10, max_epochs=8, **kw)[0]
    first = train_stack(spec(), X, y, 10, max_epochs=3, **kw)[0]
    continued = train_stack(spec(first.continuation), X, y, 10, max_epochs=8, **kw)[0]
    assert continued.train_loss == straight.train_loss
    np.testing.assert_array_equal(continued.proba, straight.proba)
    assert all(torch.equal(v, continued.continuation["module"][k]) for k, v in straight.continuation["module"].items())
    # without the generator's state the masks are new draws: the weights differ
    reseeded = dict(first.continuation, dropout_rng=None)
    other = train_stack(spec(reseeded), X, y, 10, max_epochs=8, **kw)[0]
    assert not torch.equal(other.continuation["module"]["layers.1.weight"],
                           straight.continuation["module"]["layers.1.weight"])


def test_the_folds_of_a_config_may_train_in_chunks_of_their_own(digits):
    """On the CPU a chunk is one (config, fold) model, so a halving rung of few configs keeps every
    job busy; a config's CVResult comes back once its last fold is in, the same as from one chunk."""
    X, y = digits.X_train, digits.y_train
    folds = make_folds(y, 4, 0)
    config = dict(model="mlp", hidden=[48, 24], dropout=0.0, lr=1e-2, weight_decay=1e-5, optimizer="adam")
    configs = {0: config, 1: dict(config, hidden=[40, 30], optimizer="rmsprop", lr=3e-3)}
    seeds = {i: trial_seed(0, i) for i in configs}

    def run(max_models):
        started, yields = [], []
        for chunk in evaluate_batched(configs, seeds, X, y, folds, 10, max_epochs=4, patience=2,
                                      max_models_per_chunk=max_models, on_start=started.append):
            yields.append(dict(chunk))
        return started, yields

    started, by_config = run(4)
    assert started == [1, 0] and [list(c) for c in by_config] == [[1], [0]]  # sorted by widths
    started, by_three = run(3)  # chunks (1,0..2) | (1,3) (0,0..1) | (0,2..3)
    assert started == [1, 0] and [list(c) for c in by_three] == [[], [1], [0]]
    alone = {}
    for chunk in run(None)[1]:  # the CPU default: one model per chunk
        alone.update(chunk)
    assert sorted(alone) == [0, 1]
    for i in configs:
        three = next(c[i] for c in by_three if i in c)
        reference = next(c[i] for c in by_config if i in c)
        for result in (three, alone[i]):
            assert result.error is None and result.epochs == reference.epochs
            np.testing.assert_allclose(result.test_scores, reference.test_scores, rtol=1e-5)
        assert reference.mean_test_score > -1.0  # they learned (10 classes: chance is -2.30)


def test_the_space_choices_the_batched_engine_leaves_to_skorch_are_said():
    """A built-in CNN (and an SGD optimizer) fell back to skorch without a word under --engine batched;
    each listed choice that cannot be batched is now said once, and the Lab 3 space has none."""
    from hpsearch.search.run import _unbatched_choices
    from hpsearch.space.search_space import load_space

    assert _unbatched_choices(load_space("mlp_mnist")) == []
    assert _unbatched_choices(load_space("cnn_mnist")) == [
        "model 'cnn' (only MLPs are batched)", "optimizer other than adam or rmsprop without momentum"]


def test_a_config_trains_with_its_own_batch_size(digits):
    """A space that searches batch_size (searches/mlp_deep.toml): the batched engine trained every
    config with --batch-size (128), so configs of batch 8 and 512 scored alike; each now trains with
    its own, as the skorch engine does."""
    X, y = digits.X_train, digits.y_train
    folds = make_folds(y, 2, 0)
    config = dict(model="mlp", hidden=[32], dropout=0.0, lr=1e-2, weight_decay=0.0, optimizer="adam")

    def scores(config, **kw):
        out = {}
        for chunk in evaluate_batched({0: config}, {0: trial_seed(0, 0)}, X, y, folds, 10, max_epochs=2,
                                      patience=0, **kw):
            out.update(chunk)
        assert out[0].error is None
        return out[0].test_scores

    own = scores(dict(config, batch_size=16))
    np.testing.assert_array_equal(own, scores(config, batch_size=16))  # the same as --batch-size 16
    assert not np.allclose(own, scores(config))  # not the default 128's
    assert not np.allclose(scores(dict(config, batch_size=512)), scores(config))


def test_a_momentum_range_the_batched_engine_leaves_to_skorch_is_said():
    """Only listed choices were checked: a momentum range (or negative_slope's) sent its configs to
    skorch without a word; the ends of a range are checked too."""
    from hpsearch.search.run import _unbatched_choices

    space = SearchSpace.from_dict({"model": "mlp", "optimizer": "rmsprop", "momentum": {"distribution": "uniform", "low": 0.0, "high": 0.9},
                                   "negative_slope": {"distribution": "uniform", "low": 0.01, "high": 0.3}})
    assert _unbatched_choices(space) == ["optimizer other than adam or rmsprop without momentum",
                                         "negative_slope other than 0.01"]

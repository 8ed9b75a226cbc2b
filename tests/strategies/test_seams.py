"""The typed seams: the run's Evaluator and the tests' fake satisfy the evaluate protocol every
strategy is written against, and every registered engine satisfies the engine protocol."""

import inspect

from test_strategies import FakeEvaluate

from hpsearch.engines import ENGINES
from hpsearch.engines.seam import Engine
from hpsearch.search.evaluator import Evaluator
from hpsearch.strategies import STRATEGIES
from hpsearch.strategies.seam import Evaluate


def test_the_run_and_the_fake_satisfy_the_evaluate_seam():
    run_side = Evaluator.__new__(Evaluator)  # its members, without a run behind them
    run_side.concurrency = 1
    assert isinstance(run_side, Evaluate)
    assert isinstance(FakeEvaluate(), Evaluate)
    assert not isinstance(object(), Evaluate)


def test_every_strategy_runs_through_the_evaluate_seam():
    for name, cls in STRATEGIES.items():
        annotation = inspect.signature(cls.run).parameters["evaluate"].annotation
        assert annotation in (Evaluate, "Evaluate"), name


def test_every_registered_engine_satisfies_the_engine_seam():
    assert set(ENGINES) == {"skorch", "batched"}
    for name, cls in ENGINES.items():
        assert isinstance(cls(context=None), Engine), name
        params = list(inspect.signature(cls.train).parameters)
        assert params == ["self", "configs", "epochs", "keep_states", "on_start", "folds"], name

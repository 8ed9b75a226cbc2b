import gc
import os
from functools import partial

import numpy as np
import pytest
import torch
from joblib import Parallel
from sklearn.model_selection import cross_val_score

from hpsearch.engines.cv import evaluate_config, evaluate_configs, make_folds
from hpsearch.errors import UsageError
from hpsearch.jobs.resident import data_moves, resident, shared_array
from hpsearch.jobs.resources import effective_jobs, threads_per_job
from hpsearch.training.net import make_net

CONFIG = {"model": "mlp", "hidden": [64, 32], "dropout": 0.1, "lr": 3e-3, "weight_decay": 1e-5,
          "optimizer": "adam"}


def _maker(ds, **kw):
    return partial(make_net, CONFIG, ds.n_features, ds.n_classes, max_epochs=kw.pop("max_epochs", 15),
                   patience=kw.pop("patience", 5), random_state=3, **kw)


def test_cv_scores_equal_sklearn_cross_val_score(digits):
    folds = make_folds(digits.y_train, 4, seed=0)
    ours = evaluate_config(_maker(digits), digits.X_train, digits.y_train, folds, n_jobs=1)
    theirs = cross_val_score(_maker(digits)(), digits.X_train, digits.y_train, cv=folds,
                             scoring="neg_log_loss")
    assert ours.error is None
    # Same folds, same seeded net: the same numbers (float32 nets, so compare to float32 precision).
    np.testing.assert_allclose(ours.test_scores, theirs, rtol=1e-5)
    acc = cross_val_score(_maker(digits)(), digits.X_train, digits.y_train, cv=folds, scoring="accuracy")
    np.testing.assert_allclose(ours.test_accuracies, acc, rtol=1e-6)


def test_parallel_jobs_give_the_same_scores(digits):
    folds = make_folds(digits.y_train, 2, seed=1)
    one = evaluate_config(_maker(digits, max_epochs=5), digits.X_train, digits.y_train, folds, n_jobs=1)
    two = evaluate_config(_maker(digits, max_epochs=5), digits.X_train, digits.y_train, folds, n_jobs=2)
    np.testing.assert_allclose(one.test_scores, two.test_scores, rtol=1e-5)


def test_a_net_learns_digits(digits):
    folds = make_folds(digits.y_train, 3, seed=0)
    result = evaluate_config(_maker(digits, max_epochs=40, patience=0), digits.X_train, digits.y_train,
                             folds, n_jobs=1, scoring="accuracy")
    assert min(result.test_accuracies) > 0.93  # chance is 0.10
    assert result.test_scores == result.test_accuracies
    assert result.epochs == [40, 40, 40]


def test_folds_are_seeded_and_stratified(digits):
    a = make_folds(digits.y_train, 4, seed=5)
    b = make_folds(digits.y_train, 4, seed=5)
    c = make_folds(digits.y_train, 4, seed=6)
    for (_tr1, te1), (_tr2, te2) in zip(a, b, strict=True):
        np.testing.assert_array_equal(te1, te2)
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))
    covered = np.sort(np.concatenate([te for _, te in a]))
    np.testing.assert_array_equal(covered, np.arange(len(digits.y_train)))
    for _, te in a:
        assert np.bincount(digits.y_train[te], minlength=10).min() >= 30


def test_diverging_config_scores_nan_with_reason(digits):
    folds = make_folds(digits.y_train, 2, seed=0)
    make = partial(make_net, dict(CONFIG, lr=50.0, optimizer="sgd"), digits.n_features, digits.n_classes,
                   max_epochs=5, patience=0)
    result = evaluate_config(make, digits.X_train, digits.y_train, folds, n_jobs=1)
    assert result.error.startswith("diverged:")
    assert np.isnan(result.mean_test_score)


def test_jobs_never_oversubscribe(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("hpsearch.jobs.resources.cpu_count", lambda: 8)
    assert effective_jobs(-1, 4) == 4 and threads_per_job(4) == 2
    assert effective_jobs(16, 100) == 8 and threads_per_job(8) == 1
    assert threads_per_job(1) == 8
    with pytest.raises(UsageError, match="n_jobs must be a whole number >= 1, or -1 for one per core; got 0"):
        effective_jobs(0, 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_job(1) == 1 and threads_per_job(4) == 1


def test_bad_cv():
    y = np.repeat(np.arange(3), 4)
    with pytest.raises(UsageError, match="cv must be a whole number >= 2"):
        make_folds(y, 1, 0)
    with pytest.raises(UsageError, match="more folds than the rarest class has images"):
        make_folds(y, 5, 0)


def test_the_data_are_put_on_the_device_once_per_job_not_per_fit(digits):
    X = digits.X_train.copy()  # an array no other test has made resident
    folds = make_folds(digits.y_train, 4, seed=0)
    before = data_moves()
    first = evaluate_config(_maker(digits, max_epochs=3), X, digits.y_train, folds, n_jobs=1)
    second = evaluate_config(_maker(digits, max_epochs=3), X, digits.y_train, folds, n_jobs=1)
    assert data_moves() - before == 1  # 8 fits, 1 move
    assert first.test_scores == second.test_scores
    on_cpu = resident(X, "cpu")
    assert on_cpu.data_ptr() == X.ctypes.data  # on the CPU a view, not a copy


def test_resident_data_are_keyed_by_joblib_file_or_by_identity(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(4, 3))
    # joblib gives each task of a worker a new memmap of the same file: one tensor serves all
    a, b = np.load(path, mmap_mode="r"), np.load(path, mmap_mode="r")
    assert resident(a, "cpu") is resident(b, "cpu")
    # an ordinary array is known by identity (on the CPU the tensor is a view that keeps it alive)
    first, twin = np.zeros((4, 3), dtype=np.float32), np.ones((4, 3), dtype=np.float32)
    assert resident(first, "cpu") is resident(first, "cpu")
    assert torch.equal(resident(twin, "cpu"), torch.ones(4, 3))
    assert torch.equal(resident(first, "cpu"), torch.zeros(4, 3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_each_job_moves_the_data_once(digits):
    X = digits.X_train.copy()
    folds = make_folds(digits.y_train, 4, seed=0)
    before = data_moves()
    for _ in range(2):
        result = evaluate_config(_maker(digits, max_epochs=3, device="cuda"), X, digits.y_train, folds, n_jobs=1)
        assert result.error is None and np.all(np.isfinite(result.test_scores))
    assert data_moves() - before == 1
    assert resident(X, "cuda").device.type == "cuda"
    # the GPU copy does not keep X alive: a new array that reuses a dead one's id is not it
    first = np.zeros((4, 3), dtype=np.float32)
    resident(first, "cuda")
    stale = id(first)
    del first
    gc.collect()
    reused = [x for x in [np.ones((4, 3), dtype=np.float32) for _ in range(50)] if id(x) == stale]
    assert reused, "CPython reuses a freed array's id for the next one of its size"
    assert torch.equal(resident(reused[0], "cuda").cpu(), torch.ones(4, 3))


def test_a_stream_of_configs_scores_each_as_evaluate_config_does(digits):
    folds = make_folds(digits.y_train, 3, seed=2)
    configs = {7: {**CONFIG, "hidden": [48]}, 3: {**CONFIG, "hidden": [32, 16], "optimizer": "rmsprop"},
               5: {**CONFIG, "lr": 0.5}}
    makers = {k: partial(make_net, c, digits.n_features, digits.n_classes, max_epochs=6, patience=2,
                         random_state=k) for k, c in configs.items()}
    # the same jobs and threads on both sides (float sums depend on the thread count)
    with Parallel(n_jobs=2, return_as="generator_unordered") as parallel:
        streamed = dict(evaluate_configs(makers, digits.X_train, digits.y_train, folds, parallel=parallel,
                                         threads=threads_per_job(2)))
    assert sorted(streamed) == [3, 5, 7]  # each config exactly once, whatever order they finish in
    for key, make in makers.items():
        alone = evaluate_config(make, digits.X_train, digits.y_train, folds, n_jobs=2)
        assert streamed[key].test_scores == alone.test_scores  # bit for bit
        assert streamed[key].epochs == alone.epochs


def test_a_stream_stops_between_folds_and_drops_unfinished_configs(digits):
    folds = make_folds(digits.y_train, 2, seed=0)
    makers = {k: _maker(digits, max_epochs=2) for k in range(3)}
    seen, folds_back = [], []

    def stop():
        folds_back.append(1)
        return len(folds_back) == 3  # after config 0's two folds and config 1's first

    with Parallel(n_jobs=1, return_as="generator_unordered") as parallel:
        with pytest.raises(KeyboardInterrupt):
            for key, _result in evaluate_configs(makers, digits.X_train, digits.y_train, folds,
                                                parallel=parallel, stop=stop):
                seen.append(key)
    assert seen == [0]


def test_resident_tells_slices_of_one_memmap_apart_and_takes_any_array(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.arange(20, dtype=np.float32).reshape(10, 2))
    whole = np.load(path, mmap_mode="r")
    # numpy gives a memmap's slices the parent's filename and offset: they must not share a key
    assert torch.equal(resident(whole[:5], "cpu"), torch.arange(10.0).view(5, 2))
    assert torch.equal(resident(whole[5:], "cpu"), torch.arange(10.0, 20.0).view(5, 2))
    flipped = np.arange(6, dtype=np.float32).reshape(3, 2)[::-1]  # negative strides
    assert torch.equal(resident(flipped, "cpu"), torch.tensor([[4.0, 5.0], [2.0, 3.0], [0.0, 1.0]]))
    tensor = torch.ones(3, 2)
    assert resident(tensor, "cpu") is tensor


def test_a_problem_with_the_data_raises_instead_of_failing_the_config(digits):
    folds = make_folds(digits.y_train, 2, seed=0)
    with pytest.raises(TypeError):
        evaluate_config(_maker(digits, max_epochs=1), digits.X_train.astype(object), digits.y_train, folds)


def test_shared_array_is_a_temporary_memmap_of_the_same_data():
    X = np.arange(300_000, dtype=np.float32).reshape(1000, 300)  # 1.2 MB: joblib would memmap it
    with shared_array(X) as shared:
        assert isinstance(shared, np.memmap) and np.array_equal(shared, X)
        path = shared.filename
        assert os.path.exists(path)
    assert not os.path.exists(path)  # removed with the search
    small = X[:10]  # under joblib's threshold: pickled, so left as it is
    with shared_array(small) as same:
        assert same is small


FIRST_FIT_TIMER = '''
import sys
import time
from functools import partial

import numpy as np

from hpsearch.data import load_dataset
from hpsearch.engines import cv
from hpsearch.engines.cv import evaluate_config, make_folds
from hpsearch.training.net import make_net

imported_at_each_timer = []


class Clock:  # the fit's timer, noting whether the optimizer's imports were done when it started
    @staticmethod
    def perf_counter():
        imported_at_each_timer.append("torch._dynamo" in sys.modules)
        return time.perf_counter()


cv.time = Clock
data = load_dataset("digits")
make = partial(make_net, {"model": "mlp", "hidden": [16], "lr": 0.01}, data.n_features, data.n_classes, max_epochs=1,
               patience=0, random_state=3)
result = evaluate_config(make, data.X_train, data.y_train, make_folds(data.y_train, 2, seed=0), n_jobs=1)
assert result.error is None, result.error
print(imported_at_each_timer)
'''


def test_a_process_first_fit_is_timed_without_the_imports_torch_does_at_the_first_optimizer():
    """torch's first optimizer imports torch._dynamo: 1.4 s against 0.014 s for the fit itself, charged to
    each job's first fold (its mean_fit_time, the search plots, the report). Run in a fresh process: here
    an earlier test has imported it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FIRST_FIT_TIMER], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[True, True, True, True]", done.stdout

"""The search estimators on a real Dask cluster (joblib's "dask" backend, scikit-learn's own route):
the same candidates, scores and fold-epochs as on loky processes, survivors continuing across the
workers (their states are in storage, a folder every worker of a LocalCluster sees)."""

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier

from hpsearch import HalvingRandomSearchCV, SearchCV
from hpsearch.space.search_space import SearchSpace
from hpsearch.training.models import MLP

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install -e '.[dask]'")

pytestmark = pytest.mark.slow  # a cluster's start and two searches

SPACE = SearchSpace.from_dict({"hidden": {"distribution": "decreasing_int", "layers": 2, "low": 16, "high": 96},
                               "lr": {"distribution": "log_uniform", "low": 3e-3, "high": 3e-2}})


def _search(cls, tmp, **kw):
    net = NeuralNetClassifier(MLP, module__n_inputs=64, max_epochs=9, train_split=None, verbose=0)
    return cls(net, SPACE, n_candidates=9, factor=3, min_resources=1, cv=3, random_state=2, n_jobs=2,
               storage=str(tmp), **kw)


def _scores(search) -> list:
    r = search.cv_results_
    return sorted(zip(r["n_resources"].tolist(), [repr(c) for c in r["config"]], r["mean_test_score"].tolist(),
                      strict=True))


@pytest.mark.parametrize("cls", [HalvingRandomSearchCV, SearchCV])
def test_a_dask_cluster_gives_the_scores_of_loky(cls, tmp_path):
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    loky = _search(cls, tmp_path / "loky").fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as tasks:
            dask = _search(cls, tmp_path / "dask").fit(X, y)
    ran_on = {task["worker"] for task in tasks.data}
    assert _scores(dask) == _scores(loky) and len(ran_on) == 2  # the fits ran on both workers
    assert dask.n_fold_epochs_ == loky.n_fold_epochs_ == 3 * (9 * 1 + 3 * 2 + 1 * 6)  # survivors continued
    assert dask.best_config_ == loky.best_config_ and dask.best_score_ > 0.85

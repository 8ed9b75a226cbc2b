"""Your module with every strategy, a resume, and a Dask cluster whose workers were started before the
module's folder was known (they get the class by value, never by importing the file); on an image
folder."""

import pandas as pd
import pytest
from fixtures.folders import write_own_network, write_tree

from hpsearch.cli import main
from hpsearch.rundir.store import load_results

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install -e '.[dask]'")

pytestmark = pytest.mark.slow
TINY = ["--cv", "2", "--patience", "0", "--no-progress", "--no-retrain"]


@pytest.fixture(scope="module")
def cluster():
    """Started first: its workers' sys.path never holds the module's folder."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def own(tmp_path_factory, digits, cluster):
    root = tmp_path_factory.mktemp("everywhere")
    write_tree(root / "tree", digits.X_train[:300], digits.y_train[:300])
    return root, write_own_network(root / "nets")


def _search(own, out, *flags):
    root, space = own
    return main(["search", "--dataset", "folder", "--data-dir", str(root / "tree"), "--space", str(space),
                 "--out", str(out), *TINY, *flags])


@pytest.mark.parametrize("flags", [
    ["--strategy", "random", "--n", "3", "--max-epochs", "2"],
    ["--strategy", "hyperband", "--n", "4", "--min-epochs", "1", "--max-epochs", "3"],
    ["--strategy", "tpe", "--n", "4", "--n-startup", "2", "--max-epochs", "2"],
    ["--strategy", "tpe-halving", "--n", "4", "--n-startup", "2", "--min-epochs", "1", "--max-epochs", "3"],
])
def test_every_strategy_searches_your_module(own, tmp_path, flags):
    assert _search(own, tmp_path / "run", *flags) == 0
    frame = load_results(tmp_path / "run")
    assert len(frame) == int(flags[flags.index("--n") + 1]) and frame["error"].fillna("").eq("").all()
    assert set(frame["param_model"]) == {"mynets:SmallCNN"} and frame["mean_test_score"].notna().all()


def test_a_resumed_search_keeps_its_trials(own, tmp_path):
    run = tmp_path / "run"
    assert _search(own, run, "--n", "2", "--max-epochs", "2") == 0
    first = load_results(run).sort_values("trial").reset_index(drop=True)
    assert main(["search", "--resume", str(run), "--n", "4", "--no-progress", "--no-retrain"]) == 0
    both = load_results(run).sort_values("trial").reset_index(drop=True)
    assert len(both) == 4
    pd.testing.assert_frame_equal(both.iloc[:2][["trial", "mean_test_score"]], first[["trial", "mean_test_score"]])


def test_on_dask_your_module_scores_as_on_loky(own, tmp_path, cluster):
    halving = ["--strategy", "halving", "--n", "3", "--factor", "3", "--min-epochs", "1", "--max-epochs", "3"]
    assert _search(own, tmp_path / "loky", *halving, "--n-jobs", "2") == 0
    assert _search(own, tmp_path / "dask", *halving, "--backend", "dask", "--scheduler",
                   cluster.scheduler_address) == 0
    columns = ["trial", "n_epochs", "split0_test_score", "split1_test_score", "mean_test_score"]
    loky, dask = (load_results(tmp_path / r)[columns].sort_values(["trial", "n_epochs"]).reset_index(drop=True)
                  for r in ("loky", "dask"))
    pd.testing.assert_frame_equal(loky, dask)

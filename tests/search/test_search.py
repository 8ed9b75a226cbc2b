"""The search loop and its files, in-process, on digits with a tiny budget."""

import numpy as np
import pandas as pd
import pytest
import torch

from hpsearch import read_sorted
from hpsearch.rundir.store import load_results
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings
from hpsearch.space.search_space import ParamGenerator, load_space
from hpsearch.training.models import MODELS

FAST = dict(dataset="digits", cv=2, max_epochs=4, patience=0, n_jobs=1, progress=False)


def test_files_sorted_aligned_and_parse(tmp_path):
    run = run_search(SearchSettings(n=4, out=str(tmp_path / "run"), **FAST))
    scores = np.loadtxt(run / "sorted_scores.dat")  # the header is a '#' comment line
    params = read_sorted(run / "sorted_params.dat")
    trials = pd.read_csv(run / "trials.csv")
    assert scores.shape == (4, 5) and len(params) == 4 and len(trials) == 4
    # best first: the score column (neg log-loss) never increases down the file
    assert np.all(np.diff(scores[:, 2]) <= 0)
    np.testing.assert_array_equal(scores[:, 0], [1, 2, 3, 4])
    # line i of one file is line i of the other: same trial numbers
    np.testing.assert_array_equal(scores[:, 1].astype(int), params["trial"])
    best = trials.iloc[0]
    assert best["trial"] == int(scores[0, 1])
    assert best["mean_test_score"] == pytest.approx(np.mean([best["split0_test_score"], best["split1_test_score"]]))
    for col in ["param_hidden", "param_lr", "param_optimizer", "split0_test_score", "split1_test_score",
                "mean_test_score", "std_test_score", "rank_test_score", "mean_fit_time", "mean_test_accuracy"]:
        assert col in trials
    assert params.loc[0, "hidden"].count("-") == 1
    assert (run / "space.toml").read_text().startswith("# The Lab 3 seed")
    assert '"cv": 2' in (run / "settings.json").read_text()


def test_same_seed_identical_scores(tmp_path):
    a = run_search(SearchSettings(n=3, out=str(tmp_path / "a"), seed=4, **FAST))
    b = run_search(SearchSettings(n=3, out=str(tmp_path / "b"), seed=4, **FAST))
    ta, tb = pd.read_csv(a / "trials.csv"), pd.read_csv(b / "trials.csv")
    cols = [c for c in ta if c.startswith(("split", "param_", "mean_test", "trial"))]
    pd.testing.assert_frame_equal(ta[cols], tb[cols])
    # the seed is the one that drew them (a seed ignored, or fixed at 0, passed the lines above)
    drawn = ParamGenerator(load_space("mlp_mnist"), 4).gen_values(3)
    assert ta.sort_values("trial")["param_lr"].tolist() == pytest.approx([c["lr"] for c in drawn], rel=1e-5)
    other = pd.read_csv(run_search(SearchSettings(n=3, out=str(tmp_path / "c"), seed=5, **FAST)) / "trials.csv")
    assert set(other["param_lr"]).isdisjoint(ta["param_lr"])


def test_diverging_config_ranks_last_with_reason(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text("hidden = [32]\noptimizer = 'sgd'\n[lr]\ndistribution = 'categorical'\n"
                     "choices = [80.0, 0.05]\n")
    with pytest.warns(RuntimeWarning, match=r"configs failed \(\d+ diverged\)"):
        run = run_search(SearchSettings(n=6, out=str(tmp_path / "run"), space=str(space), **FAST))
    frame = load_results(run)
    failed = frame[frame["param_lr"] == "80"]
    ok = frame[frame["param_lr"] == "0.05"]
    assert len(failed) and len(ok)
    assert failed["mean_test_score"].isna().all()
    assert failed["error"].str.startswith("diverged: training loss became").all()
    assert frame["rank_test_score"].iloc[-len(failed):].eq(len(ok) + 1).all()
    assert frame["mean_test_score"].iloc[: len(ok)].notna().all()
    lines = (run / "sorted_scores.dat").read_text().splitlines()
    assert len(lines) == 7 and lines[-1].split()[2] == "nan"


class Boom(torch.nn.Module):
    def __init__(self, n_inputs=64, n_classes=10, **kwargs):
        super().__init__()
        self.linear = torch.nn.Linear(n_inputs, n_classes)

    def forward(self, x):
        raise RuntimeError("this module always fails")


def test_raising_module_does_not_stop_the_search(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "boom", Boom)  # a model kind is its registration line
    space = tmp_path / "space.toml"
    space.write_text("hidden = [16]\n[model]\ndistribution = 'categorical'\nchoices = ['boom', 'mlp']\n")
    with pytest.warns(RuntimeWarning, match="RuntimeError"):
        run = run_search(SearchSettings(n=6, out=str(tmp_path / "run"), space=str(space), **FAST))
    frame = load_results(run)
    assert len(frame) == 6
    boom = frame[frame["param_model"] == "boom"]
    assert len(boom) and boom["error"].str.contains("this module always fails").all()
    mlp = frame[frame["param_model"] == "mlp"]
    assert len(mlp) and mlp["mean_test_score"].notna().all() and (mlp["error"] == "").all()


def test_resume_skips_finished_and_extends(tmp_path):
    out = str(tmp_path / "run")
    run_search(SearchSettings(n=2, out=out, **FAST))
    first = load_results(out).set_index("trial")
    run_search(SearchSettings(n=4, out=out, **FAST))
    after = load_results(out).set_index("trial")
    assert sorted(after.index) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(first[["mean_test_score", "mean_fit_time"]],
                                  after.loc[first.index, ["mean_test_score", "mean_fit_time"]])
    # an uninterrupted run draws the same configs
    fresh = load_results(run_search(SearchSettings(n=4, out=str(tmp_path / "fresh"), **FAST)))
    assert list(fresh.set_index("trial").sort_index()["param_hidden"]) == list(after.sort_index()["param_hidden"])

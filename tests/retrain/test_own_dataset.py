"""run_search(settings, dataset=Dataset(...)): the caller's own data is kept in the run folder as plain
arrays (dataset.npz, read with allow_pickle=False), so retraining, the winner, pictures and the report
use that data, not a dataset of ours with the same settings."""

import json

import numpy as np
import pytest

from hpsearch.cli import main
from hpsearch.data.dataset import Dataset
from hpsearch.retrain.top import retrain_top
from hpsearch.search.run import run_search
from hpsearch.settings import SearchSettings

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.mark.slow
def test_a_dataset_object_goes_through_retraining_the_winner_and_pictures(digits, tmp_path):
    keep = digits.y_train < 5  # not any dataset of ours: half the classes, named by words
    test = digits.y_test < 5
    mine = Dataset("my-digits", digits.X_train[keep], digits.y_train[keep], digits.X_test[test], digits.y_test[test],
                   WORDS[:5])
    run = run_search(SearchSettings(n=3, cv=2, max_epochs=3, patience=0, progress=False, out=str(tmp_path / "run")),
                     dataset=mine)
    assert json.loads((run / "settings.json").read_text())["dataset_file"] == "dataset.npz"
    with np.load(run / "dataset.npz", allow_pickle=False) as kept:
        assert np.array_equal(kept["X_train"], mine.X_train) and list(kept["class_names"]) == list(WORDS[:5])
    result = retrain_top(run, top=1, retrain_epochs=10, progress=False)  # loads the kept data, not digits
    assert result.net.classes_.tolist() == [0, 1, 2, 3, 4]
    assert float((result.net.predict(mine.X_test) == mine.y_test).mean()) == result.winner["test_accuracy"]
    assert main(["plot", "confusion-matrix", str(run)]) == 0
    assert main(["report", str(run)]) == 0 and "my-digits" in (run / "report.html").read_text()

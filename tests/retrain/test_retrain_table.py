"""retrain.csv says which search budget each config's CV score is of: halving's pruned configs, taken
by a --top larger than its last rung, scored at a shorter one."""

import pandas as pd

from hpsearch.cli import main


def test_each_retrained_config_says_the_budget_of_its_cv_score(tmp_path):
    run = tmp_path / "run"
    assert main(["search", "--dataset", "digits", "--strategy", "halving", "--n", "6", "--cv", "2", "--min-epochs",
                 "1", "--max-epochs", "3", "--patience", "0", "--n-jobs", "1", "--no-progress", "--no-retrain",
                 "--out", str(run)]) == 0
    assert main(["retrain", str(run), "--top", "4", "--retrain-epochs", "1", "--n-jobs", "1", "--no-progress"]) == 0
    table = pd.read_csv(run / "retrain.csv").set_index("trial")
    trials = pd.read_csv(run / "trials.csv").set_index("trial")
    assert (table["cv_epochs"] == trials.loc[table.index, "n_epochs"]).all()
    assert table["cv_epochs"].max() == 3 and table["cv_epochs"].min() < 3  # complete and pruned ones side by side

"""A second winner for the page's tests: a GAP-CNN (explained with CAM), put in place of a run's winner."""

import pytest


@pytest.fixture(scope="session")
def gap_run(tmp_path_factory, digits):
    """A tiny GAP-CNN trained 2 epochs on digits, saved as a run's winner (as trial 7's)."""
    from hpsearch import make_net
    from hpsearch.winner.bundle import save_winner

    config = {"model": "gapcnn", "filters": [8, 16], "pool_after": [], "lr": 0.01, "max_epochs": 2}
    net = make_net(config, digits, patience=0).fit(digits.X_train, digits.y_train)
    run = tmp_path_factory.mktemp("gap")
    accuracy = float((net.predict(digits.X_test) == digits.y_test).mean())
    save_winner(net, run, digits, config=config, test_accuracy=accuracy, extra={"trial": 7})
    return run

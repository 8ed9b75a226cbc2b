"""The retraining's and compare's epoch bar counts a fit resumed from a checkpoint whole: it ended at
88 of 120 epochs after a resumed group, as if the group had trained only what was left."""

from hpsearch.retrain.progress import EpochBar


def test_a_fit_resumed_at_epoch_5_counts_its_first_5_epochs_too():
    bar = EpochBar(20, 2, desc="compare", enabled=True)
    for epoch in range(6, 11):  # resumed: its history goes on from epoch 5
        bar.put(("a", epoch, 10, 0.5, None))
    for epoch in range(1, 11):  # from scratch
        bar.put(("b", epoch, 10, 0.5, None))
    assert bar.bar.n == 20
    bar.close()


def test_fits_that_share_a_key_side_by_side_are_counted_one_epoch_a_report():
    """compare --same-config: every group retrains the same trial, side by side; counting the gap from
    the key's last epoch ended a 4 x 10-epoch bar at 68 of 40."""
    bar = EpochBar(40, 4, desc="compare", enabled=True)
    for epoch in range(1, 11):
        for _ in range(4):
            bar.put((7, epoch, 10, 0.5, None))
    assert bar.bar.n == 40
    bar.close()

"""How-the-winner-does pictures, on the predictions of a real skorch net trained on digits."""

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from hpsearch.errors import UsageError
from hpsearch.training.net import make_net
from hpsearch.viz import (
    class_report,
    learning_curves,
    misclassified,
    plot_class_report,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_misclassified,
)

CONFIG = {"model": "mlp", "hidden": [32], "dropout": 0.1, "lr": 2e-3, "optimizer": "adam"}


@pytest.fixture(scope="module")
def fitted(digits):
    """A net with an internal validation split (so its history has valid_loss), and its test
    predictions; 6 epochs leave some mistakes to show."""
    net = make_net(CONFIG, digits.n_features, digits.n_classes, max_epochs=6, patience=50, random_state=0)
    net.fit(digits.X_train, digits.y_train)
    proba = net.predict_proba(digits.X_test)
    pred = proba.argmax(1)
    assert 0.8 < np.mean(pred == digits.y_test) < 1.0
    return net, proba, pred


def test_confusion_matrix_heatmap_shows_sklearns_counts(fitted, digits):
    _, _, pred = fitted
    fig = plot_confusion_matrix(digits.y_test, pred, digits.class_names)
    assert len(fig.axes) == 2  # the matrix and its colorbar
    shown = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_array_equal(shown, confusion_matrix(digits.y_test, pred, labels=range(10)))
    accuracy = np.mean(pred == digits.y_test)
    assert f"accuracy {accuracy:.2%}" in fig.axes[0].get_title()


def test_class_report_matches_sklearn_and_round_trips_as_csv(fitted, digits):
    _, _, pred = fitted
    text, table = class_report(digits.y_test, pred, digits.class_names)
    p, r, f, s = precision_recall_fscore_support(digits.y_test, pred, labels=range(10), zero_division=0)
    classes = table.loc[list(digits.class_names)]
    np.testing.assert_allclose(classes["precision"], p)
    np.testing.assert_allclose(classes["recall"], r)
    np.testing.assert_allclose(classes["f1-score"], f)
    np.testing.assert_array_equal(classes["support"], s)
    assert table.loc["accuracy", "precision"] == pytest.approx(np.mean(pred == digits.y_test))
    assert "precision" in text and "macro avg" in text
    back = pd.read_csv(io.StringIO(table.to_csv()), index_col="class")
    back.index = back.index.astype(str)
    np.testing.assert_allclose(back.loc[list(digits.class_names), "recall"], r)
    fig = plot_class_report(table)
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 3 * 10  # precision, recall, F1 per class


def test_misclassified_grid_shows_the_most_confident_mistakes(fitted, digits):
    _, proba, pred = fitted
    wrong = misclassified(digits.y_test, pred, proba)
    assert set(wrong) == set(np.flatnonzero(pred != digits.y_test))
    confidence = proba[wrong, pred[wrong]]
    assert np.all(np.diff(confidence) <= 0)
    fig = plot_misclassified(digits.X_test, digits.y_test, pred, digits.class_names, proba=proba, n=6)
    assert len(fig.axes) == min(6, len(wrong))
    first = wrong[0]
    assert fig.axes[0].get_title().startswith(f"{digits.y_test[first]} \u2192 {pred[first]}")
    all_wrong = plot_misclassified(digits.X_test, digits.y_test, pred, digits.class_names, n=10_000)
    assert len(all_wrong.axes) == len(wrong)


def test_learning_curves_plot_the_history_and_say_what_they_show(fitted, digits):
    net, _, _ = fitted
    frame = learning_curves(net.history)
    assert list(frame.columns) == ["epoch", "train_loss", "valid_loss", "valid_acc"]
    np.testing.assert_allclose(frame["valid_loss"], net.history[:, "valid_loss"])
    fig = plot_learning_curves(net.history, valid_label="validation loss (20% of the training set)")
    assert len(fig.axes) == 2  # loss, held-out accuracy
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and lines[1].get_label() == "validation loss (20% of the training set)"
    np.testing.assert_allclose(lines[0].get_ydata(), net.history[:, "train_loss"])
    # trained without a held-out split: one panel, one curve, and the title says so
    plain = make_net(CONFIG, digits.n_features, digits.n_classes, max_epochs=2, patience=0)
    plain.fit(digits.X_train, digits.y_train)
    fig = plot_learning_curves(plain.history)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1
    assert "no held-out data" in fig.axes[0].get_title()


def _drawn(fig):
    """Draw ``fig`` on an Agg canvas (as savefig does) and return its renderer."""
    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


@pytest.mark.parametrize("n", [1, 4, 9])
def test_misclassified_title_fits_inside_the_figure(n):
    y_true = np.arange(20) % 10
    images = np.random.default_rng(0).random((20, 1, 8, 8))
    fig = plot_misclassified(images, y_true, (y_true + 1) % 10, [str(c) for c in range(10)], n=n)
    title = fig._suptitle.get_window_extent(_drawn(fig))
    box = fig.bbox
    assert box.x0 <= title.x0 < title.x1 <= box.x1 and box.y0 <= title.y0 < title.y1 <= box.y1


def test_learning_curves_have_whole_epoch_ticks_and_a_legend_off_the_curves():
    history = [{"epoch": e, "train_loss": 1.0 / e, "valid_loss": 1.2 / e, "valid_acc": 0.5 + 0.1 * e}
               for e in (1, 2, 3)]
    fig = plot_learning_curves(history, valid_label="test loss (recorded each epoch; never used to train)")
    renderer = _drawn(fig)
    for ax in fig.axes:
        ticks = ax.get_xticks()
        np.testing.assert_array_equal(ticks, np.round(ticks))
        assert {1, 2, 3} <= set(ticks)
    legend = fig.legends[0].get_window_extent(renderer)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "train loss (mean over mini-batches, dropout on)", "test loss (recorded each epoch; never used to train)"]
    assert not any(legend.overlaps(ax.bbox) for ax in fig.axes)
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1 and fig.bbox.y0 <= legend.y0


def test_drawing_pictures_gives_the_callers_torch_threads_back(retrained_run, digits):
    """``draw_pictures`` draws with the search's thread count (never more than the cores) and then
    restores the caller's: a notebook or a later command in this process keeps its own count."""
    import torch

    from hpsearch.winner.pictures import draw_pictures

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert draw_pictures(retrained_run, "confusion-matrix", dataset=digits) == ["confusion_matrix.png"]
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_a_picture_that_cannot_be_drawn_for_the_net_is_skipped_by_all_and_one_line_alone(retrained_run, digits,
                                                                                          tmp_path, monkeypatch,
                                                                                          capsys):
    """A user's net a picture cannot read (it raised TypeError: Invalid shape () for image data on a
    shared ReLU) costs that picture, said and recorded, not the search's other pictures and report."""
    import json
    import shutil

    from hpsearch.viz import plots
    from hpsearch.winner.pictures import draw_pictures

    def cannot(net, dataset, options):
        raise TypeError("Invalid shape () for image data")

    run = tmp_path / "run"
    shutil.copytree(retrained_run, run)
    monkeypatch.setattr(plots, "REGISTRY", {"feature-maps": plots.PlotMethod("feature-maps", cannot, plots.always),
                                            "confusion-matrix": plots.REGISTRY["confusion-matrix"]})
    assert draw_pictures(run, "all", dataset=digits) == ["confusion_matrix.png"]
    reason = "it could not be drawn for this net (TypeError: Invalid shape () for image data)"
    assert f"skipped feature-maps: {reason}" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["figures"]["skipped"] == {"feature-maps": reason}
    with pytest.raises(UsageError, match=r"^feature-maps: it could not be drawn for this net \(TypeError: Invalid"):
        draw_pictures(run, "feature-maps", dataset=digits)

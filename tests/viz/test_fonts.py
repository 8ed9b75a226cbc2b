"""Class names in scripts matplotlib's DejaVu Sans lacks (an image folder of 零, 一, 二) are drawn with an
installed font that has them (Debian's fonts-wqy-microhei in CI), and a name no installed font draws
is said once, by code point, with the package to install."""

import io
import json
import warnings

import numpy as np
import pytest

from hpsearch.viz import plot_confusion_matrix
from hpsearch.viz.fonts import glyph_note, missing_glyphs, use_fallback_fonts

CHINESE = ["零", "一", "二"]


def test_chinese_class_names_are_drawn_not_boxes():
    if not use_fallback_fonts():
        pytest.skip("no font with Chinese installed (Debian: fonts-wqy-microhei)")
    assert missing_glyphs(CHINESE) == [] and glyph_note(CHINESE) is None
    y = np.array([0, 1, 2, 2])
    with warnings.catch_warnings(record=True) as caught:  # matplotlib warns of every glyph it draws as a box
        warnings.simplefilter("always")
        plot_confusion_matrix(y, y, CHINESE).savefig(io.BytesIO(), format="png")
    assert not [w for w in caught if "missing from font" in str(w.message)], [str(w.message) for w in caught]


def test_a_character_no_font_draws_is_said_by_its_code_point():
    note = glyph_note(["cat", "\ue000dog"])  # a private-use character: in no font
    assert missing_glyphs(["cat", "\ue000dog"]) == ["\ue000"]
    assert note.startswith("hpsearch: note: the class names hold characters no installed font draws (\ue000 U+E000)")
    assert "apt-get install fonts-noto-cjk" in note and glyph_note(["cat", "dog 7"]) is None


MATH_LOOKING = ("$\\frac$", "a_b^c", "$x$ & $y$")  # folder names a user may have: matplotlib's math marks


@pytest.mark.slow
def test_class_names_with_dollar_signs_are_drawn_as_written_in_every_picture(tmp_path, digits, capsys):
    """A class folder named ``$\\frac$`` failed the winner's pictures, and ``plot`` of every per-class
    method, with a mathtext ParseException traceback."""
    from fixtures.folders import write_tree

    from hpsearch.cli import main

    keep = np.isin(digits.y_train, [0, 1, 2])
    write_tree(tmp_path / "tree", digits.X_train[keep][:150], digits.y_train[keep][:150], names=MATH_LOOKING)
    space = tmp_path / "space.toml"
    space.write_text('model = "mlp"\nhidden = [16]\nlr = 0.01\n')
    run = tmp_path / "run"
    assert main(["search", "--dataset", "folder", "--data-dir", str(tmp_path / "tree"), "--space", str(space), "--n",
                 "1", "--cv", "2", "--max-epochs", "2", "--retrain-epochs", "2", "--top", "1", "--images", "3",
                 "--units", "3", "--no-progress", "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert not summary["figures"].get("failed"), summary["figures"]
    for stem in ("confusion_matrix", "class_report", "misclassified", "receptive_fields_output", "maximizers_output",
                 "saliency"):
        assert (run / f"{stem}.png").is_file(), stem
    assert main(["plot", "occlusion", str(run), "--images", "2"]) == 0
    capsys.readouterr()


def test_the_per_class_pictures_draw_names_with_dollar_signs_as_written():
    from hpsearch.viz import plot_class_report, plot_misclassified
    from hpsearch.viz.evaluation import class_report
    from hpsearch.viz.fonts import plain

    y_true, y_pred = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])
    fig = plot_confusion_matrix(y_true, y_pred, MATH_LOOKING)
    fig.savefig(io.BytesIO(), format="png")  # a ParseException here
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [plain(n) for n in MATH_LOOKING]
    plot_class_report(class_report(y_true, y_pred, MATH_LOOKING)[1]).savefig(io.BytesIO(), format="png")
    images = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    fig = plot_misclassified(images, y_true, y_pred, MATH_LOOKING)
    fig.savefig(io.BytesIO(), format="png")
    assert fig.axes[0].get_title() == "\\$x\\$ & \\$y\\$ \u2192 a_b^c"  # the one mistake: $x$ & $y$ read as a_b^c
    assert plain("$\\frac$") == "\\$\\frac\\$" and plain("a_b^c") == "a_b^c"

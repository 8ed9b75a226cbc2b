"""Class names in scripts matplotlib's DejaVu Sans lacks (an image folder of 零, 一, 二) are drawn with an
installed font that has them (Debian's fonts-wqy-microhei in CI), and a name no installed font draws
is said once, by code point, with the package to install."""

import io
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

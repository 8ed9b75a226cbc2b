"""A library's error inside one of ours: one line, cut at a word (errors.brief)."""

from hpsearch.errors import brief


def test_a_long_first_line_is_cut_at_a_word_and_marked():
    exc = RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory, "
                       "the file is damaged beyond repair\nsecond line")
    text = brief(exc, width=60)
    assert text == "PytorchStreamReader failed reading zip archive: failed..."
    assert brief(exc, width=1000) == exc.args[0].splitlines()[0]  # short enough: whole, first line only


def test_an_os_error_says_its_reason_and_an_empty_one_its_type():
    assert brief(OSError(28, "No space left on device")) == "No space left on device"
    assert brief(KeyError()) == "KeyError" and brief(ValueError("  \n")) == "ValueError"
    assert brief(ValueError("x" * 300), width=10) == "x" * 10 + "..."  # no space to cut at

"""Text in every script the installed fonts can draw: matplotlib draws with DejaVu Sans, which has no
Chinese, Japanese or Korean, so an image folder whose classes are named 零, 一, 二 got boxes. Installed
fonts that have those scripts are added after matplotlib's own, as fallbacks for the glyphs it lacks
(matplotlib >= 3.6 falls back glyph by glyph along ``font.family``); a class name no installed font
can draw is said once, with the package that draws it, instead of boxes without a word."""

from __future__ import annotations

import functools

import matplotlib
from matplotlib import font_manager

__all__ = ["use_fallback_fonts", "missing_glyphs", "glyph_note", "plain", "FALLBACK_FAMILIES"]

# Families with the scripts DejaVu lacks, as Debian's packages name them (fonts-noto-cjk,
# fonts-wqy-microhei, fonts-wqy-zenhei, fonts-droid-fallback), most complete first.
FALLBACK_FAMILIES = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "WenQuanYi Micro Hei",
                     "WenQuanYi Zen Hei", "Droid Sans Fallback")


def plain(text) -> str:
    """``text`` drawn as written: matplotlib reads what lies between two ``$`` as math, so a class folder
    named ``$\\frac$`` failed every picture of the winner; an escaped ``\\$`` is drawn as the sign."""
    return str(text).replace("$", r"\$")


@functools.cache  # once per process
def use_fallback_fonts() -> tuple[str, ...]:
    """Add the installed ``FALLBACK_FAMILIES`` after ``font.family``; returns them. Fonts installed
    after matplotlib cached its list are found too (its cache is not rebuilt by itself)."""
    known = {entry.fname for entry in font_manager.fontManager.ttflist}
    for path in font_manager.findSystemFonts():
        if path not in known:
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):  # a file FreeType cannot read: not ours to fix
                continue
    names = {entry.name for entry in font_manager.fontManager.ttflist}
    found = tuple(family for family in FALLBACK_FAMILIES if family in names)
    family = list(matplotlib.rcParams["font.family"])
    matplotlib.rcParams["font.family"] = family + [f for f in found if f not in family]
    return found


def _charmaps() -> list[set[int]]:
    """The code points of each font along ``font.family``, as matplotlib resolves its names."""
    from matplotlib.ft2font import FT2Font

    maps = []
    for family in matplotlib.rcParams["font.family"]:
        try:
            path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
            maps.append(set(FT2Font(path).get_charmap()))
        except (ValueError, OSError, RuntimeError):  # not installed after all
            continue
    return maps


def missing_glyphs(texts) -> list[str]:
    """The characters of ``texts`` that no font along ``font.family`` draws (spaces aside), in order."""
    use_fallback_fonts()
    maps = _charmaps()
    missing = []
    for char in "".join(map(str, texts)):
        if not char.isspace() and char not in missing and not any(ord(char) in m for m in maps):
            missing.append(char)
    return missing


def glyph_note(class_names) -> str | None:
    """One line for class names no installed font draws (shown as boxes in the pictures), or None."""
    missing = missing_glyphs(class_names)
    if not missing:
        return None
    shown = ", ".join(f"{char} U+{ord(char):04X}" for char in missing[:6]) + (", ..." if len(missing) > 6 else "")
    return (f"hpsearch: note: the class names hold characters no installed font draws ({shown}); the pictures "
            "show them as boxes: install a font that has them (Debian: apt-get install fonts-noto-cjk), then draw "
            "them again with hpsearch plot all RUN_DIR")

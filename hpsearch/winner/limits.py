"""The sizes a winner's files may ask for, shared by the bundle (``winner.pt``) and an export's card
(``model.json``): both are data read from disk, and a crafted size must not allocate gigabytes."""

from __future__ import annotations

__all__ = ["MAX_VALUES", "whole"]

# the values an input's preprocessing allocates for: far past any image a loader takes (3 x 4096 x 4096)
MAX_VALUES = 3 * 4096 ** 2


def whole(value, low: int, high: int | None = None) -> bool:
    """Whether ``value`` is a whole number (not a bool) in ``low..high``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)

"""What the model kinds accept: one check per constructor argument a config may set. The
constructors call them and so does the search-space validation (``hpsearch.space.checks``): one
source of truth. Each takes ``(value, name)``, returns the value as the module keeps it, or raises a
``UsageError``."""

from __future__ import annotations

import math
from numbers import Integral, Real

from ...errors import UsageError, unquote_hint

__all__ = ["PARAMETER_CHECKS", "check_number", "check_fraction", "check_bool", "check_widths", "check_kernel_size",
           "check_block_size", "max_pools"]


def _whole(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_number(value, name: str) -> float:
    """Any finite number (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}{unquote_hint(value)}")
    return value


def check_fraction(value, name: str) -> float:
    """A dropout probability in [0, 1): 1 would drop every unit and nothing could train."""
    check_number(value, name)
    if not 0 <= value < 1:
        fix = "1 drops every unit; use e.g. 0.5" if value >= 1 else "use 0 for no dropout"
        raise UsageError(f"{name} must be a probability in [0, 1), got {value!r}; {fix}")
    return value


def check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, got {value!r}; write true or false, without quotes")
    return value


def check_widths(values, name: str, empty: bool = True) -> tuple[int, ...]:
    """Layer widths (or, for ``pool_after``, 1-based indices): a list of whole numbers >= 1,
    non-empty unless ``empty``."""
    if not isinstance(values, list | tuple) or any(not _whole(v) or v < 1 for v in values):
        shown = list(values) if isinstance(values, tuple) else values
        raise UsageError(f"{name} must be a list of whole numbers >= 1, e.g. [64, 32], got {shown!r}")
    if not values and not empty:
        raise UsageError(f"{name} needs at least one entry, got []; e.g. [32, 64]")
    return tuple(int(v) for v in values)


def check_kernel_size(value, name: str = "kernel_size") -> int:
    """An odd whole number >= 1: 'same' padding (kernel_size // 2) keeps the image size only then."""
    if not _whole(value) or value < 1 or value % 2 == 0:
        raise UsageError(f"{name} must be an odd whole number >= 1 (1, 3, 5, ...), got {value!r}"
                         f"{unquote_hint(value)}")
    return value


def check_block_size(value, name: str = "block_size") -> int:
    if not _whole(value) or value < 1:
        raise UsageError(f"{name} must be a whole number >= 1 (convolutions per pooling block), got {value!r}; "
                         "use e.g. 2")
    return value


PARAMETER_CHECKS = {
    "hidden": check_widths,
    "dropout": check_fraction,
    "negative_slope": check_number,
    "filters": lambda value, name: check_widths(value, name, empty=False),
    "block_size": check_block_size,
    "dense": check_widths,
    "conv_dropout": check_fraction,
    "batch_norm": check_bool,
    "kernel_size": check_kernel_size,
    "pool_after": check_widths,
}


def max_pools(image_size: tuple[int, int]) -> int:
    """How many 2x2 poolings (floor division) leave at least one pixel: 8x8 -> 3, 28x28 -> 4."""
    return min(image_size).bit_length() - 1

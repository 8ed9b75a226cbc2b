"""The exceptions hpsearch raises for problems a user can fix."""

from __future__ import annotations

import difflib


class UsageError(ValueError):
    """Bad input from the user: the CLI prints the message alone and exits with code 2."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; the config scores NaN and ranks last."""


def check_whole(flag: str, value, low: int) -> None:
    """Raise a UsageError unless ``value`` is a whole number >= ``low`` (``flag`` names it)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{flag} must be a whole number >= {low}, got {value!r}")


def did_you_mean(word: str, allowed) -> str:
    """``"; did you mean 'lr'?"`` when ``word`` is close to one of ``allowed``, else ``""``."""
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""

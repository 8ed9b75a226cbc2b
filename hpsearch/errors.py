"""The exceptions hpsearch raises for problems a user can fix."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class UsageError(ValueError):
    """Bad input from the user: the CLI prints the message alone and exits with code 2."""


class StorageError(UsageError):
    """The run folder cannot be written (a full disk, a read-only one): never the config's fault, so
    no config is marked failed for it; the command stops, keeping every finished result."""


class JobEnvironmentError(UsageError):
    """A job could not import a module where it ran (a Dask worker without a package, or without a folder on
    its path): the machine's fault, never the config's, so no config is marked failed for it (a stored
    failure is never retried); the command stops, keeping every finished result."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; the config scores NaN and ranks last."""


_render: Callable[[str], str] = str  # how messages name a parameter: as Python spells it, unless the CLI says


def param(name: str) -> str:
    """The parameter ``name`` (``"max_epochs"``) as the user typed it: ``max_epochs`` from Python,
    ``--max-epochs`` from the command line (``hpsearch.cli`` sets that, in one place)."""
    return _render(name)


@contextmanager
def parameter_names(render: Callable[[str], str]) -> Iterator[None]:
    """Messages raised inside the block name parameters as ``render(name)`` (the command line's flags)."""
    global _render
    previous, _render = _render, render
    try:
        yield
    finally:
        _render = previous


def check_whole(name: str, value, low: int) -> None:
    """Raise a UsageError unless ``value`` is a whole number >= ``low`` (the parameter ``name``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{param(name)} must be a whole number >= {low}, got {value!r}")


def did_you_mean(word: str, allowed) -> str:
    """``"; did you mean 'lr'?"`` when ``word`` is close to one of ``allowed``, else ``""``."""
    allowed = list(allowed)
    by_lower = {str(a).lower(): a for a in allowed}  # TPE is close to tpe
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""


def brief(exc: BaseException, width: int = 160, joined: bool = False) -> str:
    """A library's error as one line of a message: its first line (``joined``: all its lines, where
    the first only introduces the rest, as torch's ``load_state_dict`` does), cut at a word and marked
    with ``...`` past ``width`` characters (``OSError``: its ``strerror``); its type name when it says nothing."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    lines = text.strip().splitlines()
    if not lines:
        return type(exc).__name__
    first = " ".join(" ".join(lines).split()) if joined else lines[0]
    if len(first) <= width:
        return first
    cut = first[:width].rsplit(" ", 1)[0] if " " in first[:width] else first[:width]
    return cut.rstrip(" ,;:") + "..."


def plural(n, word: str) -> str:
    """``1 epoch``, ``3 epochs``: a count said as a person would."""
    return f"{n} {word}" + ("" if str(n) == "1" else "s")


@contextmanager
def damage_named(path, fix: str) -> Iterator[None]:
    """A file of a shared (or hand-edited) run folder that parses but holds the wrong kinds of values is
    one line naming it and ``fix``, not a traceback from deep in the code that read it."""
    try:
        yield
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"{path} is damaged ({type(exc).__name__}: {brief(exc)}); {fix}") from None


def shell(path) -> str:
    """``path`` as one shell word, in a command a message gives to copy: a run folder named with a space
    (a default one takes the space file's name) split into two words when pasted."""
    return shlex.quote(str(path))


def unquote_hint(value) -> str:
    """``"; write it without quotes"`` for a string that reads as a number (``lr = "1e-3"``), else ``""``."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return "; write it without quotes"
    return ""

"""The checks and choices that ``hpsearch.settings``' table declares: a check takes the parameter's
name and its value and raises ``UsageError`` naming them; a choices function lists what a setting
allows, imported on first use (the registries import Optuna and numpy).

The registries that import torch (engines, scorings, schedules, backends) are named here by plain
lists instead, so that the command line's ``--help`` and its usage errors list them without
importing torch; tests/test_cli_startup.py checks that each list is its registry's keys."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from .errors import UsageError, check_whole, param

__all__ = ["whole", "optional", "one_of", "margin", "margin_or_off", "share", "image_size", "n_jobs", "colors",
           "scorings", "engines", "schedules", "datasets", "strategies", "backends", "SCORINGS", "ENGINES",
           "SCHEDULES", "BACKENDS"]

# The names of the registries that import torch, as they hold them (same order).
SCORINGS = ("neg_log_loss", "accuracy")  # hpsearch.engines.cv.SCORINGS
ENGINES = ("skorch", "batched")  # hpsearch.engines.ENGINES
BACKENDS = ("loky", "dask")  # hpsearch.jobs.backends.BACKENDS
SCHEDULES = {  # hpsearch.training.schedules.SCHEDULES, with their descriptions (the help shows them)
    "none": "a constant learning rate",
    "cosine": "cosine decay from lr to 0 over the fit's epochs",
    "step": "a tenth of the rate after each third of the epochs",
    "plateau": "a tenth of the rate after 5 epochs without improvement of the (validation) loss",
    "onecycle": "one cycle per fit, up to lr and down, stepped per batch",
}


def whole(low: int, high: int | None = None, why: str = "", grouped: bool = True) -> Callable[[str, Any], None]:
    def check(name: str, value) -> None:
        check_whole(name, value, low)
        if high is not None and value > high:
            shown = (f"{high:,}", f"{value:,}") if grouped else (high, value)
            raise UsageError(f"{param(name)} must be at most {shown[0]}{why}, got {shown[1]}")
    return check


def optional(check: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    return lambda name, value: None if value is None else check(name, value)


def one_of(allowed: Callable[[], Iterable[str]]) -> Callable[[str, Any], None]:
    def check(name: str, value) -> None:
        from .errors import did_you_mean

        options = list(allowed())
        if value not in options:
            hint = did_you_mean(value, options) if isinstance(value, str) else ""
            raise UsageError(f"{param(name)} must be one of {', '.join(options)}, got {value!r}{hint}")
    return check


def margin(name: str, value) -> None:
    if value == "off":
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
        raise UsageError(f"{param(name)} must be a margin >= 0 or off, got {value!r}; 0.02 is the measured choice "
                         "(the default)")


def margin_or_off(text: str) -> float | str:
    """The command line's reading of a margin: a number, or ``off``."""
    if text.strip().lower() == "off":
        return "off"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a margin (a number >= 0, such as 0.02) or off, got {text!r}") \
            from None


def share(name: str, value) -> None:
    from .data.folder import check_share

    check_share(name, value)


def image_size(name: str, value) -> None:
    from .data.folder import parse_image_size

    parse_image_size(name, value)


def colors():
    from .data.folder import COLORS

    return COLORS


def n_jobs(name: str, value) -> None:
    from .jobs.resources import effective_jobs

    effective_jobs(value, 1, name)


def scorings():
    return SCORINGS


def engines():
    return ENGINES


def schedules():
    return SCHEDULES


def datasets():
    from .data import DATASETS

    return DATASETS


def strategies():
    from .strategies import STRATEGIES

    return STRATEGIES


def backends():
    return BACKENDS

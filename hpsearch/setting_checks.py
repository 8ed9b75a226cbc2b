"""The checks and choices that ``hpsearch.settings``' table declares: a check takes the parameter's
name and its value and raises ``UsageError`` naming them; a choices function lists what a setting
allows, imported on first use (the registries import Optuna and numpy).

The registries that import torch (engines, scorings, schedules, backends) are named here by plain
lists instead, so that the command line's ``--help`` and its usage errors list them without
importing torch; tests/test_cli_startup.py checks that each list is its registry's keys."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from typing import Any

from .errors import UsageError, check_whole, param

__all__ = ["whole", "optional", "one_of", "margin", "margin_or_off", "weight", "weight_or_off", "share", "image_size",
           "n_jobs", "colors", "color_name", "scorings", "engines", "schedules", "datasets", "strategies", "backends",
           "SCORINGS", "ENGINES", "SCHEDULES", "BACKENDS", "canonical_dataset", "DATASET_ALIASES"]

# The names of the registries that import torch, as they hold them (same order).
SCORINGS = ("neg_log_loss", "accuracy")  # hpsearch.engines.cv.SCORINGS
ENGINES = ("skorch", "batched")  # hpsearch.engines.ENGINES
BACKENDS = ("loky", "dask")  # hpsearch.jobs.backends.BACKENDS
SCHEDULES = {  # hpsearch.training.schedules.SCHEDULES, with their descriptions (the help shows them)
    "none": "a constant learning rate",
    "cosine": "cosine decay from lr to 0 over the fit's epochs",
    "step": "a tenth of the rate after each of the first two thirds of the epochs",
    "plateau": "a tenth of the rate after 5 epochs without improvement of the (validation) loss",
    "onecycle": "one cycle per fit, up to lr and down, stepped per batch",
}


MAX_EPOCHS = 1_000_000  # the store keeps epochs as 64-bit integers; a few zeros too many is a typo, not a plan
MAX_IMAGES = 1_000_000_000  # a batch (or slice) larger than the data takes all of it


def whole(low: int, high: int | None = None, why: str = "", grouped: bool = True) -> Callable[[str, Any], None]:
    def check(name: str, value) -> None:
        check_whole(name, value, low)
        if high is not None and value > high:
            shown = (f"{high:,}", f"{value:,}") if grouped else (high, value)
            raise UsageError(f"{param(name)} must be at most {shown[0]}{why}, got {shown[1]}")
    return check


def device_name(name: str, device) -> None:
    """A device hpsearch can name: cpu, cuda, cuda:N or auto (cuda:x, cudax, cuda:01 refused here, not by torch
    inside a job); whether this machine has it is ``hpsearch.training.net.resolve_device``'s question."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|auto|cuda(:(0|[1-9]\d*))?", device):
        raise UsageError(f"{param(name)} must be cpu, cuda, cuda:N or auto, got {device!r}")


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


def at_least_zero_or_off(noun: str, hint: str) -> Callable[[str, Any], None]:
    """A check of a setting that takes a number >= 0 (a ``noun``: margin, weight) or ``off``; ``hint``
    says what to choose."""
    def check(name: str, value) -> None:
        if value == "off":
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value == float("inf"):
            raise UsageError(f"{param(name)} must be a {noun} >= 0 or off, got {value!r}; {hint}")
    return check


def number_or_off(noun: str, example: float) -> Callable[[str], float | str]:
    """The command line's reading of such a setting: a number, or ``off``."""
    def read(text: str) -> float | str:
        if text.strip().lower() == "off":
            return "off"
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {noun} (a number >= 0, such as {example:g}) or off, got "
                                             f"{text!r}") from None
    return read


margin = at_least_zero_or_off("margin", "0.02 is the measured choice (the default)")
margin_or_off = number_or_off("margin", 0.02)
weight = at_least_zero_or_off("weight", "off is the default (0.5, measured in BENCHMARKS.md, chose configs that tested "
                                         "worse in real runs)")
weight_or_off = number_or_off("weight", 0.5)


def share(name: str, value) -> None:
    from .data.folder import check_share

    check_share(name, value)


def image_size(name: str, value) -> None:
    from .data.folder import parse_image_size

    parse_image_size(name, value)


def colors():
    from .data.folder import COLORS

    return COLORS


def color_name(text: str) -> str:
    """The command line's reading of --color: any case, and the American ``gray`` for ``grey``."""
    from .data.folder import color_name as canonical

    return canonical(text)


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


DATASET_ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "triplemnist": "triple-mnist"}


def canonical_dataset(name) -> str:
    """The registry's name of dataset ``name`` as the loader reads it (any case, ``_`` for ``-``, aliases)."""
    key = str(name).lower().replace("_", "-")
    return DATASET_ALIASES.get(key, key)


def strategies():
    from .strategies import STRATEGIES

    return STRATEGIES


def backends():
    return BACKENDS

"""Search strategies: which configs get how many epochs. See ``_base`` for the seam they share."""

from __future__ import annotations

from ..errors import UsageError, did_you_mean, param
from ._base import Strategy
from .halving import SuccessiveHalving
from .hyperband import Hyperband
from .random import RandomSearch
from .tpe import TPE
from .tpe_halving import TPEHalving

__all__ = ["STRATEGIES", "make_strategy"]

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (RandomSearch, SuccessiveHalving, Hyperband, TPE,
                                                                    TPEHalving)}


def make_strategy(settings) -> Strategy:
    """The strategy ``settings.strategy`` names, built from (and checking) its settings."""
    if settings.strategy not in STRATEGIES:
        raise UsageError(f"{param('strategy')} must be one of {', '.join(STRATEGIES)}, got {settings.strategy!r}"
                         + (did_you_mean(settings.strategy, STRATEGIES) if isinstance(settings.strategy, str) else ""))
    return STRATEGIES[settings.strategy].from_settings(settings)
